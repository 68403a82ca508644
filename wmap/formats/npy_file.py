"""numpy `.npy` files: one array, named by the file (`fc.weight.npy` holds `fc.weight`).

Only the magic and header are read for the inventory; the data is one private mmap, checked
first to hold exactly the header's shape x dtype bytes. A `.npy` of dtype `object` (what
`np.save` writes for a dict of arrays) would need pickle, which can run code: it is refused
(WM508) from its header alone, with the way to save the same arrays safely.
"""

from __future__ import annotations

import math
import mmap
import os
import threading
from typing import Any

import numpy as np

from wmap.core.inventory import Inventory, TensorMeta
from wmap.formats._common import (
    as_kind,
    canonical_framework,
    dtype_name,
    fail,
    map_private,
    missing,
    shown,
    unmap,
)
from wmap.formats.base import ArrayKind
from wmap.formats.npz_file import _read_npy_header


def npy_name(path: str) -> str:
    """The tensor's name: the file name without `.npy`."""
    base = os.path.basename(path)
    return base[:-4] if base.lower().endswith(".npy") else base


class NpyFile:
    """A single-array `.npy` file."""

    label = "npy"

    def __init__(self, path: str | os.PathLike[str], framework: str | None = None):
        self.path = shown(path)
        self.framework = canonical_framework(framework)
        self.name = npy_name(self.path)
        self.skipped: tuple[str, ...] = ()
        self._mm: mmap.mmap | None = None
        self._lock = threading.Lock()
        try:
            with open(self.path, "rb") as fp:
                size = os.fstat(fp.fileno()).st_size
                shape, fortran, dtype = _read_npy_header(fp)
                self._offset = fp.tell()
        except OSError as exc:
            raise fail("WM500", f"cannot read `{self.path}`: {exc.strerror or exc}") from None
        except Exception as exc:  # a bad magic or header: numpy says which
            raise fail("WM510", f"`{self.path}` is not a readable .npy array: {exc}",
                       hint="the file is truncated or not a .npy file") from None
        if dtype.hasobject:
            raise fail("WM508", f"`{self.path}` holds a pickled Python object (dtype object, e.g. a dict saved "
                       "with np.save); wmap refuses to unpickle, since a pickle can run code",
                       hint="load it once where you trust it and save the arrays by name: "
                       "`np.savez('weights.npz', **np.load(path, allow_pickle=True).item())`, or safetensors")
        if dtype_name(dtype) is None:
            raise fail("WM506", f"`{self.path}` has dtype `{dtype}`, which wmap cannot plan with",
                       hint="save numeric arrays only")
        need = math.prod(shape) * dtype.itemsize
        if size - self._offset != need:
            raise fail("WM510", f"`{self.path}` holds {size - self._offset:,} bytes of data where its header declares "
                       f"{need:,} ({shape} {dtype})", hint="the file is truncated or was edited; re-save it with np.save")
        self._shape, self._dtype, self._fortran = shape, dtype, fortran

    def inventory(self) -> Inventory:
        meta = TensorMeta(self.name, self._shape, dtype_name(self._dtype) or "")
        return Inventory.from_metas((meta,), self.label, self.framework)

    def read(self, name: str, kind: ArrayKind = "numpy") -> Any:
        if name != self.name:
            raise missing(name, (self.name,), f"`{self.path}`")
        with self._lock:
            if self._mm is None:
                self._mm = map_private(self.path)
        count = math.prod(self._shape)
        arr: np.ndarray[Any, Any] = np.frombuffer(self._mm, self._dtype, count, self._offset)
        arr = arr.reshape(self._shape, order="F" if self._fortran else "C")
        if self._fortran:
            arr = np.ascontiguousarray(arr)
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if kind == "numpy":
            arr.flags.writeable = False
        return as_kind(arr, kind, f"`{self.path}`")

    def close(self) -> None:
        unmap(self._mm)
        self._mm = None

    def __enter__(self) -> NpyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
