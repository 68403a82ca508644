"""numpy `.npz` archives: inventory from the `.npy` headers inside the zip, data on demand.

Only each member's magic and header are read for the inventory. Members stored without
compression (`np.savez`) are read zero-copy from one private mmap of the archive; members
that are compressed (`np.savez_compressed`) or Fortran-ordered are decoded on read. Object
arrays would need pickle, which can run code, so they are refused (WM508); a damaged
archive or member header is WM510.

Before anything is mapped or inflated, the archive's layout is checked (`bounds.members`:
every member's bytes where its header says, compressed members within the expansion bound),
and each member must hold exactly its `.npy` header plus shape x dtype bytes: a short member
would otherwise be read on into the next one.
"""

from __future__ import annotations

import math
import mmap
import os
import threading
import zipfile
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from wmap.core.errors import WmapError
from wmap.core.inventory import Inventory, TensorMeta
from wmap.formats import bounds
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
from wmap.formats.base import Array, ArrayKind


@dataclass(frozen=True)
class _Member:
    member: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran: bool
    data_offset: int | None  # absolute offset of raw data when stored uncompressed


def _read_npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(int(d) for d in shape), bool(fortran), np.dtype(dtype)


class NpzFile:
    """An `.npz` archive; names are the member names without `.npy`."""

    label = "npz"

    def __init__(self, path: str | os.PathLike[str], framework: str | None = None):
        self.path = shown(path)
        self.framework = canonical_framework(framework)
        self._mm: mmap.mmap | None = None
        self._lock = threading.Lock()
        self.skipped: tuple[str, ...] = ()
        try:
            self._zip = zipfile.ZipFile(self.path)
        except OSError as exc:
            raise fail("WM500", f"cannot read `{self.path}`: {exc.strerror or exc}") from None
        except (zipfile.BadZipFile, ValueError, EOFError) as exc:
            raise fail("WM510", f"`{self.path}` is not a readable .npz archive: {exc}",
                       hint="the file is truncated or corrupt") from None
        try:
            self._members = self._scan()
        except WmapError:
            self._zip.close()
            raise

    def _scan(self) -> dict[str, _Member]:
        members: dict[str, _Member] = {}
        skipped = []
        layout = bounds.members(self._zip, self.path, "WM510")
        for m in layout.values():
            info = m.info
            if not info.filename.endswith(".npy"):
                skipped.append(info.filename)
                continue
            name = info.filename[:-4]
            try:
                with self._zip.open(info) as fp:
                    shape, fortran, dtype = _read_npy_header(fp)
                    header_len = fp.tell()
                offset = m.data_start + header_len if m.stored and not fortran else None
            except WmapError:
                raise
            except Exception as exc:
                raise fail("WM510", f"`{self.path}`: member `{info.filename}` is not a readable .npy array: "
                           f"{exc}", hint="the archive is corrupt") from None
            if dtype.hasobject:
                raise fail("WM508", f"`{self.path}`: `{name}` is an object array; wmap refuses to unpickle "
                           "code", hint="save numeric arrays only (np.savez with numeric dtypes)")
            if dtype_name(dtype) is None:
                hint = ("bfloat16/float8 arrays lose their dtype in .npz (stored as raw `|V2`/`|V1`); save "
                        "them as float32 or use safetensors") if dtype.kind == "V" else "save numeric arrays only"
                raise fail("WM506", f"`{self.path}`: `{name}` has dtype `{dtype}`, which wmap cannot plan with",
                           hint=hint)
            need = math.prod(shape) * dtype.itemsize
            if info.file_size - header_len != need:
                raise fail("WM510", f"`{self.path}`: `{info.filename}` holds {info.file_size - header_len:,} bytes of "
                           f"data where its header declares {need:,} ({shape} {dtype})",
                           hint="the archive is truncated or was edited; re-save it with np.savez")
            members[name] = _Member(info.filename, shape, dtype, fortran, offset)
        self.skipped = tuple(skipped)
        return members

    def inventory(self) -> Inventory:
        metas = (TensorMeta(k, m.shape, dtype_name(m.dtype) or "") for k, m in self._members.items())
        return Inventory.from_metas(metas, self.label, self.framework)

    def read(self, name: str, kind: ArrayKind = "numpy") -> Array:
        m = self._members.get(name)
        if m is None:
            raise missing(name, self._members, f"`{self.path}`")
        where = f"`{self.path}`: `{name}`"
        if m.data_offset is not None:
            arr = self._view(m, where)
        else:
            try:
                with self._zip.open(m.member) as fp:
                    arr = np.lib.format.read_array(fp, allow_pickle=False)
            except Exception as exc:
                raise fail("WM510", f"{where} cannot be read: {exc}", hint="the archive is corrupt") from None
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if kind == "numpy":
            arr.flags.writeable = False
        return as_kind(arr, kind, where)

    def _view(self, m: _Member, where: str) -> np.ndarray[Any, Any]:
        with self._lock:
            if self._mm is None:
                self._mm = map_private(self.path)
        count = 1
        for d in m.shape:
            count *= d
        assert m.data_offset is not None
        if m.data_offset + count * m.dtype.itemsize > len(self._mm):
            raise fail("WM510", f"{where}: the archive ends before the array's data",
                       hint="the file is truncated")
        return np.frombuffer(self._mm, m.dtype, count, m.data_offset).reshape(m.shape)

    def close(self) -> None:
        self._zip.close()
        unmap(self._mm)
        self._mm = None

    def __enter__(self) -> NpzFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
