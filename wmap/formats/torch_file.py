"""PyTorch pickles (`.pt`, `.pth`, `.bin`), loaded without ever running pickled code.

`torch.load(mmap=True, weights_only=True, map_location="cpu")`: the weights-only unpickler
refuses any global outside torch's allowlist, so a pickle carrying code is refused (WM508)
before its payload can run; `weights_only=False` is never used. With mmap the tensors are
backed by the file, so the inventory touches no weight data. Legacy (pre-1.6, non-zip)
files cannot be mapped: they are loaded weights-only without mmap, which reads the data.

Accepted: a state dict, or a checkpoint dict wrapping one under `state_dict` or `model`
(the label says which). Entries that are not tensors (`epoch`, optimizer state, nested
dicts) are skipped and listed in `skipped`, because training checkpoints mix them in and
refusing them would make users re-save; the compiler reports what the inventory holds.

`torch.load(mmap=True)` itself is treated as untrusted, because in mmap mode it never compares
a storage with the archive member behind it: a member cut short, or a directory that lies
about its size, would be read on into the zip's own headers. So, before a value is used:

- the archive's layout is checked first (`bounds.members`: each member's bytes where its
  header says, nothing compressed past the expansion bound), before torch reads anything;
- every storage the pickle declares (`('storage', type, key, location, numel)`, collected by
  `_StorageScan`, an unpickler that builds nothing) must be a stored member of exactly
  numel x itemsize bytes, which is what `torch.load(mmap=False)` requires too;
- every tensor must be dense (sparse and nested layouts are refused), its view
  (offset + extent of its sizes and strides) must fit its storage, and zero or overlapping
  strides may not make it declare more than the expansion bound over the bytes it spans.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wmap.core import lease
from wmap.core.errors import WmapError
from wmap.core.inventory import DTYPE_BITS, Inventory, TensorMeta
from wmap.formats import bounds
from wmap.formats._common import (
    as_kind,
    canonical_framework,
    fail,
    missing,
    require,
    shown,
    torch_dtype_name,
)
from wmap.formats.base import Array, ArrayKind

WRAPPER_KEYS = ("state_dict", "model")
_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)
_CODE_SIGNS = ("unsupported global", "unsupported operand", "unrecognized function", "unsupported class")

if TYPE_CHECKING:
    from torch import Tensor


def load_weights_only(path: str) -> object:
    """torch.load the safe way, its storages checked against the archive; every failure is a WmapError."""
    torch = require("torch", f"reading `{path}`")
    layout = _zip_layout(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pickle protocol")
        warnings.filterwarnings("ignore", message=".*(sparse|nested).*(beta|prototype)", category=UserWarning)
        try:
            obj = torch.load(path, mmap=True, weights_only=True, map_location="cpu")
            if layout is not None:
                _check_storages(path, layout)
            return obj
        except WmapError:
            raise
        except RuntimeError as exc:
            if "mmap can only be used" not in str(exc):
                raise _classify(path, exc) from None
        except Exception as exc:
            raise _classify(path, exc) from None
        try:  # legacy non-zip format: no mmap possible
            return torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:
            raise _classify(path, exc) from None


def _classify(path: str, exc: BaseException) -> Exception:
    text = str(exc)
    if isinstance(exc, OSError):
        return fail("WM500", f"cannot read `{path}`: {exc.strerror or exc}")
    if isinstance(exc, pickle.UnpicklingError) and any(s in text.lower() for s in _CODE_SIGNS):
        m = _GLOBAL.search(text)
        if m:
            what = f"it needs `{m.group(1)}`"
        else:
            reason = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
            what = reason[0][:200] if reason else "a non-allowlisted pickle instruction"
        return fail("WM508", f"`{path}`: wmap refuses to unpickle code ({what}); only tensors and plain "
                    "containers are loaded", hint="if you trust the file, load it yourself and pass the state "
                    "dict, or convert it to safetensors in a trusted environment")
    first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else ""
    if isinstance(exc, (KeyError, IndexError, ValueError, EOFError)) or not first:
        first = f"{type(exc).__name__}: {first}".rstrip(": ")
    return fail("WM510", f"`{path}` is not a readable PyTorch checkpoint ({first[:200]})",
                hint="the file is corrupt, truncated, or not a torch.save file")


def _zip_layout(path: str) -> dict[str, bounds.Member] | None:
    """The checked members of a torch.save zip archive, or None for a legacy (non-zip) pickle."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return None
        with zipfile.ZipFile(path) as zf:
            return bounds.members(zf, path, "WM510")
    except WmapError:
        raise
    except OSError as exc:
        raise fail("WM500", f"cannot read `{path}`: {exc.strerror or exc}") from None
    except Exception as exc:  # BadZipFile, EOFError, ValueError...
        raise fail("WM510", f"`{path}` is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"[:300],
                   hint="the file is corrupt, truncated, or not a torch.save file") from None


class _Inert:
    """What `_StorageScan` builds for every global: it takes any arguments, state and items."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, value: object) -> None:
        pass

    def extend(self, values: object) -> None:
        pass


@dataclass(frozen=True)
class _StorageType:
    name: str


class _StorageScan(pickle.Unpickler):
    """Reads a torch pickle for its storage declarations only: no global is ever resolved, so
    nothing in the pickle runs (it has passed torch's weights-only unpickler already)."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self.storages: dict[str, tuple[str, int]] = {}

    def find_class(self, module: str, name: str) -> type | _StorageType:
        if module in ("torch", "torch.storage") and name.endswith("Storage"):
            return _StorageType(name)
        return type(str(name), (_Inert,), {})

    def persistent_load(self, pid: object) -> None:
        if isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage"):
            _, kind, key, _, numel = pid
            key = key.decode("ascii") if isinstance(key, bytes) else key
            if isinstance(kind, _StorageType) and isinstance(key, str) and type(numel) is int and numel >= 0:
                self.storages.setdefault(key, (kind.name, numel))  # torch, too, keeps the first
                return None
        raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")


def _itemsize(storage_type: str, path: str) -> int:
    if storage_type == "UntypedStorage":
        return 1
    torch = require("torch", path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy typed storage classes warn when touched
        dtype = getattr(getattr(torch, storage_type, None), "dtype", None)
    if not isinstance(dtype, torch.dtype):
        raise fail("WM510", f"`{path}` declares a storage of unknown type `{storage_type}`",
                   hint="the file is corrupt or was edited")
    return int(dtype.itemsize)


def _check_storages(path: str, layout: Mapping[str, bounds.Member]) -> None:
    """Every storage the pickle declares is a stored member of exactly the declared size."""
    first = next(iter(layout.values()), None)
    archive = first.info.filename.split("/", 1)[0] if first is not None else ""
    pkl = layout.get(f"{archive}/data.pkl")
    if pkl is None:
        raise fail("WM510", f"`{path}` has no `{archive}/data.pkl`", hint="the file is not a torch.save archive")
    try:
        with zipfile.ZipFile(path) as zf:
            scan = _StorageScan(zf.read(pkl.info))
        scan.load()
    except Exception as exc:
        raise fail("WM510", f"`{path}`: cannot read the storages `{archive}/data.pkl` declares ({exc})"[:300],
                   hint="the file is corrupt or was edited") from None
    for key, (storage_type, numel) in scan.storages.items():
        name = f"{archive}/data/{key}"
        member = layout.get(name)
        nbytes = numel * _itemsize(storage_type, path)
        if member is None:
            raise fail("WM510", f"`{path}`: storage `{key}` has no archive member `{name}`",
                       hint="the file is truncated or was edited; re-save it with torch.save")
        if not member.stored:
            raise fail("WM510", f"`{path}`: storage member `{name}` is compressed; torch maps storages raw",
                       hint="re-save it with torch.save, which stores them uncompressed")
        if member.info.file_size != nbytes:
            raise fail("WM510", f"`{path}`: storage `{name}` declares {nbytes:,} bytes, but its archive member "
                       f"holds {member.info.file_size:,}", hint="the file is truncated or was edited; "
                       "re-save it with torch.save")


def pick_state_dict(obj: object, where: str) -> tuple[Mapping[object, object], str | None]:
    """The state dict in a loaded object, and the wrapper key it was found under."""
    torch = require("torch", where)
    if not isinstance(obj, Mapping):
        raise fail("WM510", f"{where} holds a {type(obj).__name__}, not a state dict",
                   hint="save `model.state_dict()` rather than the model or a tensor")

    def has_tensors(m: Mapping[object, object]) -> bool:
        return any(isinstance(v, torch.Tensor) for v in m.values())

    if has_tensors(obj) or not obj:
        return obj, None
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and has_tensors(inner):
            return inner, key
    keys = ", ".join(f"`{k}`" for k in list(obj)[:8])
    raise fail("WM510", f"{where} holds no tensors (top-level keys: {keys})",
               hint="wmap reads a state dict, or a dict wrapping one under `state_dict` or `model`")


class TorchFile:
    """A torch.save'd state dict, memory-mapped."""

    def __init__(self, path: str | os.PathLike[str], framework: str | None = None):
        self.path = shown(path)
        self.framework = canonical_framework(framework) or "torch"
        # held while the archive is mapped: a truncation by another process is WM505, not a SIGBUS
        # a reader nobody closed releases it when collected
        self._release = lease.release_with(self, lease.take(self.path))
        try:
            obj = load_weights_only(self.path)
        except BaseException:
            self._release()
            raise
        sd, under = pick_state_dict(obj, f"`{self.path}`")
        self.label = "torch file" + (f" (state dict under `{under}`)" if under else "")
        self._tensors, self.skipped, self.tied = collect_tensors(sd, f"`{self.path}`")
        declared = sum(t.numel() * t.element_size() for t in self._tensors.values())
        bounds.check_total(declared, os.path.getsize(self.path), self.path, "WM510")

    def inventory(self) -> Inventory:
        metas = (TensorMeta(k, tuple(t.shape), torch_dtype_name(t.dtype)) for k, t in self._tensors.items())
        return Inventory.from_metas(metas, self.label, self.framework, self.tied)

    def read(self, name: str, kind: ArrayKind = "numpy") -> Array:
        t = self._tensors.get(name)
        if t is None:
            raise missing(name, self._tensors, f"`{self.path}`")
        return as_kind(t, kind, f"`{self.path}`: `{name}`")

    def close(self) -> None:
        self._tensors = {}
        self._release()

    def __enter__(self) -> TorchFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def collect_tensors(sd: Mapping[object, object], where: str
                    ) -> tuple[dict[str, Tensor], tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(tensors by name, skipped entry names, tied pairs) from a state-dict-like mapping.

    Tied: two names viewing the same storage bytes the same way (torch.save keeps sharing).
    """
    torch = require("torch", where)
    tensors: dict[str, Tensor] = {}
    skipped: list[str] = []
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...], str], str] = {}
    tied: list[tuple[str, str]] = []
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            skipped.append(str(key))
            continue
        if value.is_nested or value.layout != torch.strided:
            what = "a nested tensor" if value.is_nested else f"a tensor with the {str(value.layout).removeprefix('torch.')} layout"
            raise fail("WM510", f"{where}: `{key}` is {what}, which wmap does not read (dense tensors only)",
                       hint="convert it in a trusted environment first, e.g. `t.to_dense()`")
        dname = torch_dtype_name(value.dtype)
        if dname not in DTYPE_BITS:
            raise fail("WM506", f"{where}: tensor `{key}` has dtype `{dname}`, which wmap cannot plan with",
                       hint="cast it in a trusted environment first")
        check_view(value, key, where)
        tensors[key] = value
        if value.numel() and value.device.type == "cpu":
            ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                     tuple(value.stride()), dname)
            if ident in seen:
                tied.append((key, seen[ident]))
            else:
                seen[ident] = key
    return tensors, tuple(skipped), tuple(tied)


def check_view(t: Tensor, key: str, where: str) -> None:
    """A tensor's view must lie inside its storage, and may not declare more than the expansion
    bound over the storage bytes it spans (zero or overlapping strides repeat bytes)."""
    numel = t.numel()
    if numel == 0 or t.device.type != "cpu":
        return
    item = t.element_size()
    span = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))
    reach = (t.storage_offset() + span) * item
    size = t.untyped_storage().nbytes()
    view = f"shape {tuple(t.shape)}, stride {tuple(t.stride())}, offset {t.storage_offset()}"
    if min(t.stride(), default=0) < 0 or reach > size:
        raise fail("WM510", f"{where}: `{key}` views bytes up to {reach:,} of a {size:,}-byte storage ({view})",
                   hint="the file is corrupt or was edited; re-save it with torch.save")
    if not bounds.expansion_ok(numel * item, span * item):
        raise fail("WM510", f"{where}: `{key}` declares {numel * item:,} bytes over {span * item:,} stored bytes "
                   f"(zero or overlapping stride: {view})",
                   hint=f"save a real copy, `t.contiguous()`; {bounds.EXPANSION_HINT}")
