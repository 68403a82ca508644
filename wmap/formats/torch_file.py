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
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from typing import Any

from wmap.core.inventory import DTYPE_BITS, Inventory, TensorMeta
from wmap.formats._common import (
    as_kind,
    canonical_framework,
    fail,
    missing,
    require,
    shown,
    torch_dtype_name,
)
from wmap.formats.base import ArrayKind

WRAPPER_KEYS = ("state_dict", "model")
_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)
_CODE_SIGNS = ("unsupported global", "unsupported operand", "unrecognized function", "unsupported class")


def load_weights_only(path: str) -> Any:
    """torch.load the safe way; every failure becomes a WmapError."""
    torch = require("torch", f"reading `{path}`")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pickle protocol")
        try:
            return torch.load(path, mmap=True, weights_only=True, map_location="cpu")
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


def pick_state_dict(obj: object, where: str) -> tuple[Mapping[Any, Any], str | None]:
    """The state dict in a loaded object, and the wrapper key it was found under."""
    torch = require("torch", where)
    if not isinstance(obj, Mapping):
        raise fail("WM510", f"{where} holds a {type(obj).__name__}, not a state dict",
                   hint="save `model.state_dict()` rather than the model or a tensor")

    def has_tensors(m: Mapping[Any, Any]) -> bool:
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
        obj = load_weights_only(self.path)
        sd, under = pick_state_dict(obj, f"`{self.path}`")
        self.label = "torch file" + (f" (state dict under `{under}`)" if under else "")
        self._tensors, self.skipped, self.tied = collect_tensors(sd, f"`{self.path}`")

    def inventory(self) -> Inventory:
        metas = (TensorMeta(k, tuple(t.shape), torch_dtype_name(t.dtype)) for k, t in self._tensors.items())
        return Inventory.from_metas(metas, self.label, self.framework, self.tied)

    def read(self, name: str, kind: ArrayKind = "numpy") -> Any:
        t = self._tensors.get(name)
        if t is None:
            raise missing(name, self._tensors, f"`{self.path}`")
        return as_kind(t, kind, f"`{self.path}`: `{name}`")

    def close(self) -> None:
        self._tensors = {}

    def __enter__(self) -> TorchFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def collect_tensors(sd: Mapping[Any, Any], where: str
                    ) -> tuple[dict[str, Any], tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(tensors by name, skipped entry names, tied pairs) from a state-dict-like mapping.

    Tied: two names viewing the same storage bytes the same way (torch.save keeps sharing).
    """
    torch = require("torch", where)
    tensors: dict[str, Any] = {}
    skipped: list[str] = []
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...], str], str] = {}
    tied: list[tuple[str, str]] = []
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            skipped.append(str(key))
            continue
        dname = torch_dtype_name(value.dtype)
        if dname not in DTYPE_BITS:
            raise fail("WM506", f"{where}: tensor `{key}` has dtype `{dname}`, which wmap cannot plan with",
                       hint="cast it in a trusted environment first")
        tensors[key] = value
        if value.numel() and value.device.type == "cpu":
            ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                     tuple(value.stride()), dname)
            if ident in seen:
                tied.append((key, seen[ident]))
            else:
                seen[ident] = key
    return tensors, tuple(skipped), tuple(tied)
