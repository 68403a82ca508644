"""Shared by the readers: errors that name the file, dtype spellings, numpy <-> torch views.

Every reader reports failures as `WmapError` with a WM5xx code and the path as the user
gave it (never absolutised, so reports stay reproducible). Frameworks are imported only
here and only when an array of that framework is already in hand, or asked for.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import platform
import sys
import warnings
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, TypeGuard, cast

from wmap.core.errors import WmapError, did_you_mean, error
from wmap.core.frameworks import layout_of
from wmap.core.inventory import DTYPE_BITS, TensorMeta

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import numpy.typing as npt
    import torch

    from wmap.formats.base import Array

# The dtypes wmap plans with are DTYPE_BITS' names; anything else is refused with WM506. numpy has
# most of them; bfloat16 and float8 come from ml_dtypes, whose import costs about 0.5 s of CPU (it
# builds its types and casts in C), so it is imported the first time such a dtype is asked for,
# never for a float32 checkpoint. numpy itself is imported when an array is made or a dtype is
# asked for, not with this module: planning from file headers needs neither.
_FROM_ML_DTYPES = frozenset({"bfloat16", "float8_e4m3fn", "float8_e5m2"})
_NP_DTYPES: dict[str, np.dtype[np.generic]] = {}
_LINUX_NORESERVE = 0x4000 if sys.platform == "linux" and platform.machine() in {"x86_64", "aarch64"} else 0
_MAP_NORESERVE: int = getattr(mmap, "MAP_NORESERVE", _LINUX_NORESERVE)


def fail(code: str, message: str, hint: str | None = None, notes: Iterable[str] = ()) -> WmapError:
    """A single-diagnostic error; the caller puts the file path (as given) in `message`."""
    return error(code, message, None, hint, tuple(notes))


def shown(path: str | os.PathLike[str]) -> str:
    """The path as the user wrote it, for messages."""
    return os.fspath(path)


def canonical_framework(framework: str | None) -> str | None:
    """The layout a reader tags its inventory with: `torch` / `keras` / None (see core/frameworks)."""
    return layout_of(framework)


def map_private(path: str) -> mmap.mmap:
    """Map a whole file privately (copy-on-write) without reserving swap for it.

    Writes through returned views stay in private pages and never reach the file (a
    read-only mapping would segfault a torch in-place op instead). MAP_NORESERVE keeps
    a checkpoint larger than RAM mappable under the default overcommit policy.
    """
    try:
        with open(path, "rb") as f:
            if hasattr(mmap, "MAP_PRIVATE"):
                return mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE | _MAP_NORESERVE,
                                 prot=mmap.PROT_READ | mmap.PROT_WRITE)
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # pragma: no cover - Windows
    except (OSError, ValueError) as exc:
        raise fail("WM500", f"cannot map `{path}`: {exc}") from None


# Mappings at least this large are released on a background thread (see `unmap`).
RELEASE_IN_BACKGROUND = 1 << 26
_releaser: ThreadPoolExecutor | None = None


def unmap(mm: mmap.mmap | None) -> None:
    """Close a mapping unless views handed out still use it (then it goes when they do).

    Tearing down the page tables of a large mapping is the last thing a transfer does, and
    nothing after it needs it done (about 25 ms per GB mapped here), so on POSIX a large
    mapping is closed on a background thread and the call returns as soon as the target is
    written. The thread is joined at interpreter exit. (On Windows a mapped file cannot be
    deleted, so there the mapping is closed before returning.)"""
    global _releaser
    if mm is None or mm.closed:
        return
    if os.name == "posix" and len(mm) >= RELEASE_IN_BACKGROUND:
        if _releaser is None:
            from concurrent.futures import ThreadPoolExecutor
            _releaser = ThreadPoolExecutor(1, thread_name_prefix="wmap-unmap")
        _releaser.submit(_close_mapping, mm)
    else:
        _close_mapping(mm)


def _close_mapping(mm: mmap.mmap) -> None:
    with contextlib.suppress(BufferError):
        mm.close()


def pread_exactly(fd: int, view: memoryview, offset: int, path: str, name: str) -> None:
    """Fill `view` (bytes) from `fd` at `offset`, in as many `preadv` calls as it takes (one returns
    at most ~2 GiB on Linux, and may return less): WM505 when the file ends first, WM500 on an I/O
    error, both naming the file and the tensor."""
    done, size = 0, len(view)
    while done < size:
        try:
            got = os.preadv(fd, [view[done:]], offset + done)
        except OSError as exc:
            raise fail("WM500", f"cannot read tensor `{name}` from `{path}`: {exc}",
                       hint="the disk or the file system failed; check the file and retry") from None
        if got <= 0:
            raise fail("WM505", f"`{path}` ended inside tensor `{name}` while it was read",
                       hint="another process truncated or rewrote the file during the transfer")
        done += got


def np_dtype(name: str) -> np.dtype[np.generic]:
    """The numpy dtype for a canonical name (`bfloat16` and fp8 via ml_dtypes); KeyError for others."""
    dt = _NP_DTYPES.get(name)
    if dt is None:
        if name not in DTYPE_BITS:
            raise KeyError(name)
        import numpy as np
        dt = _NP_DTYPES[name] = np.dtype(getattr(ml_dtypes(), name) if name in _FROM_ML_DTYPES else name)
    return dt


def itemsize(name: str) -> int:
    """Bytes per element of a canonical dtype (bool takes a byte), without importing numpy."""
    return max(1, DTYPE_BITS[name] // 8)


def ml_dtypes() -> ModuleType:
    """The ml_dtypes module, imported on first use (bfloat16/float8 in hand)."""
    import ml_dtypes as m
    return m


def dtype_name(dtype: object) -> str | None:
    """Canonical name of a numpy/ml_dtypes dtype, or None when wmap cannot plan with it."""
    import numpy as np
    try:
        name = np.dtype(cast("npt.DTypeLike", dtype)).name  # anything else is a TypeError, caught
    except TypeError:
        return None
    return name if name in DTYPE_BITS else None


def torch_dtype_name(dtype: object) -> str:
    """`torch.bfloat16` -> `bfloat16` (may be a name outside DTYPE_BITS, e.g. `complex32`)."""
    return str(dtype).removeprefix("torch.")


def is_torch_tensor(obj: object) -> TypeGuard[torch.Tensor]:
    """Recognise a torch tensor without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def require(module: str, what: str) -> ModuleType:
    """Import a framework lazily; a missing one is a WM501 with an install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pip = {"torch": "torch", "tensorflow": "tensorflow-cpu", "keras": "keras", "h5py": "h5py"}.get(module, module)
        raise fail("WM501", f"{what} needs `{module}`, which is not installed ({exc})",
                   hint=f"pip install {pip}") from None


_VIEWED_AS_INT = frozenset({"bfloat16", "float8_e4m3fn", "float8_e5m2"})


def to_torch(arr: npt.NDArray[np.generic]) -> torch.Tensor:
    """A zero-copy torch view of a numpy array (bf16/fp8 through same-width integer views)."""
    torch = sys.modules.get("torch") or require("torch", "reading as torch")
    import numpy as np
    name = arr.dtype.name
    if arr.flags.writeable and name not in _VIEWED_AS_INT:
        return torch.from_numpy(arr)  # the common case, per tensor: skip the warnings context
    with warnings.catch_warnings():
        # Read-only mmap views: torch warns that it cannot mark tensors read-only.
        warnings.simplefilter("ignore", UserWarning)
        if name == "bfloat16":
            return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
        if name in ("float8_e4m3fn", "float8_e5m2"):
            return torch.from_numpy(arr.view(np.uint8)).view(getattr(torch, name))
        return torch.from_numpy(arr)


def to_numpy(tensor: torch.Tensor, where: str) -> npt.NDArray[np.generic]:
    """A zero-copy numpy view of a CPU torch tensor; meta tensors have no data (WM503)."""
    torch = sys.modules["torch"]
    t = tensor.detach()
    if t.device.type == "meta":
        raise fail("WM503", f"{where} is on the meta device and has no data",
                   hint="read weights from a checkpoint, or build the model on a real device")
    if t.device.type != "cpu":
        t = t.cpu()
    name = torch_dtype_name(t.dtype)
    if t.dim() == 0:
        t = t.reshape(1)
        scalar = True
    else:
        scalar = False
    if name == "bfloat16":
        out = t.view(torch.int16).numpy().view(ml_dtypes().bfloat16)
    elif name in ("float8_e4m3fn", "float8_e5m2"):
        out = t.view(torch.uint8).numpy().view(getattr(ml_dtypes(), name))
    else:
        try:
            out = t.resolve_conj().resolve_neg().numpy()
        except (TypeError, RuntimeError) as exc:
            raise fail("WM506", f"{where}: torch dtype `{name}` has no numpy equivalent ({exc})",
                       hint="read it as torch (kind=\"torch\")") from None
    return out.reshape(()) if scalar else out


def as_kind(value: object, kind: str, where: str) -> Array:
    """Convert a numpy array or torch tensor to the requested kind, zero-copy where possible."""
    if kind == "numpy":
        import numpy as np
        return to_numpy(value, where) if is_torch_tensor(value) else np.asarray(value)
    if kind == "torch":
        import numpy as np
        return value.detach() if is_torch_tensor(value) else to_torch(np.asarray(value))
    raise fail("WM501", f"unknown array kind `{kind}`", hint="use kind=\"numpy\" or kind=\"torch\"")


def missing(name: str, names: Iterable[str], where: str) -> WmapError:
    """WM503 for a read of a name the source does not hold, with a did-you-mean."""
    return fail("WM503", f"{where} has no tensor `{name}`", hint=did_you_mean(name, names))


def check_unique(metas: Iterable[TensorMeta], where: str) -> tuple[TensorMeta, ...]:
    """Normalising names can collide (`a/b` and `a.b`); say which instead of dropping one."""
    seen: dict[str, TensorMeta] = {}
    out = []
    for m in metas:
        if m.name in seen:
            first = seen[m.name]
            raise fail("WM510", f"{where}: two tensors are both named `{m.name}` "
                       f"(`{first.native or first.name}` and `{m.native or m.name}`)",
                       hint="rename one of them in the checkpoint")
        seen[m.name] = m
        out.append(m)
    return tuple(out)
