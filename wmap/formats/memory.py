"""In-memory sources: a mapping of arrays, a torch `nn.Module`, a built Keras model.

These are what the API passes in and what factories build. Reads return the live data
(numpy arrays as they are, torch tensors `.detach()`ed, so they share storage), since the
executor copies anyway. A torch module may live on the `meta` device: its inventory is
complete, and reading it as numpy is WM503.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from wmap.core.inventory import DTYPE_BITS, Inventory, TensorMeta
from wmap.formats._common import (
    as_kind,
    canonical_framework,
    check_unique,
    dtype_name,
    fail,
    is_torch_tensor,
    missing,
    torch_dtype_name,
)
from wmap.formats.base import Array, ArrayKind

if TYPE_CHECKING:
    import torch

    from wmap.core.frameworks import KerasModel, KerasVariable

Attrs = tuple[tuple[str, object], ...]


def _dtype_of(value: Array, where: str) -> str:
    name = torch_dtype_name(value.dtype) if is_torch_tensor(value) else dtype_name(value.dtype)
    if name is None or name not in DTYPE_BITS:
        raise fail("WM506", f"{where} has dtype `{value.dtype}`, which wmap cannot plan with")
    return name


class _Live:
    """Shared read/close for sources that hold their arrays by normalised name."""

    label = "in-memory"
    framework: str | None = None
    _metas: tuple[TensorMeta, ...] = ()
    _tied: tuple[tuple[str, str], ...] = ()
    _arrays: dict[str, object]

    def inventory(self) -> Inventory:
        return Inventory.from_metas(self._metas, self.label, self.framework, self._tied)

    def read(self, name: str, kind: ArrayKind = "numpy") -> Array:
        if name not in self._arrays:
            raise missing(name, self._arrays, f"the {self.label}")
        return as_kind(self._value(self._arrays[name]), kind, f"`{name}`")

    def _value(self, held: object) -> object:
        return held

    def close(self) -> None:
        pass


class MappingSource(_Live):
    """`Mapping[str, array]` of numpy arrays and/or torch tensors; other values are skipped.

    Skipped entries (`epoch`, nested dicts) are listed in `skipped`. Tied: the same array
    object under two names.
    """

    label = "state dict"

    def __init__(self, mapping: Mapping[Any, Any], framework: str | None = None):
        self._arrays = {}
        metas, skipped, tied = [], [], []
        first: dict[int, str] = {}
        any_torch = False
        for key, value in mapping.items():
            if not isinstance(key, str) or not (isinstance(value, np.ndarray) or is_torch_tensor(value)):
                skipped.append(str(key))
                continue
            any_torch = any_torch or is_torch_tensor(value)
            metas.append(TensorMeta(key, tuple(int(d) for d in value.shape), _dtype_of(value, f"`{key}`")))
            self._arrays[key] = value
            if id(value) in first:
                tied.append((key, first[id(value)]))
            else:
                first[id(value)] = key
        self._metas, self._tied, self.skipped = tuple(metas), tuple(tied), tuple(skipped)
        self.framework = canonical_framework(framework) or ("torch" if any_torch else None)


def _torch_attrs(module: torch.nn.Module | None) -> Attrs:
    """Layer settings a transfer must carry over (BatchNorm eps/momentum, conv groups)."""
    if module is None:
        return ()
    cls = type(module).__name__
    if "BatchNorm" in cls or "InstanceNorm" in cls:
        keys: tuple[str, ...] = ("eps", "momentum")
    elif hasattr(module, "groups") and hasattr(module, "in_channels"):
        keys = ("groups", "in_channels", "out_channels")
    elif hasattr(module, "eps"):
        keys = ("eps",)
    else:
        return ()
    return tuple((k, getattr(module, k)) for k in keys if isinstance(getattr(module, k, None), (int, float)))


class TorchModuleSource(_Live):
    """An `nn.Module`, named by `state_dict()` keys (the names users know), on any device.

    Tied parameters (one Parameter reachable under two names, e.g. tied embeddings) are
    reported as (alias, canonical), canonical being the first name in state-dict order.
    """

    label = "torch model"

    def __init__(self, module: torch.nn.Module, framework: str | None = None):
        self.framework = canonical_framework(framework) or "torch"
        sd = module.state_dict(keep_vars=True)
        modules = dict(module.named_modules(remove_duplicate=False))
        self._arrays = {}
        metas, skipped, tied = [], [], []
        first: dict[int, str] = {}
        for key, value in sd.items():
            if not is_torch_tensor(value):
                skipped.append(key)  # `_extra_state` and the like
                continue
            path = key.rpartition(".")[0]
            owner = modules.get(path)
            attrs = _torch_attrs(owner) + (FLATTENED if _torch_follows_flatten(modules, path) else ())
            metas.append(TensorMeta(key, tuple(value.shape), _dtype_of(value, f"`{key}`"), None,
                                    type(owner).__name__ if owner is not None else None, attrs))
            self._arrays[key] = value
            if id(value) in first:
                tied.append((key, first[id(value)]))
            else:
                first[id(value)] = key
        self._metas, self._tied, self.skipped = tuple(metas), tuple(tied), tuple(skipped)


# `after_flatten`: the layer reads a Flatten's output, whose order differs across frameworks
# (NCHW vs NHWC) with the same shapes; the compiler warns where a plain Linear<->Dense preset meets it
FLATTENED: Attrs = (("after_flatten", True),)


def _torch_follows_flatten(modules: Mapping[str, torch.nn.Module], path: str) -> bool:
    """A Linear right after an `nn.Flatten` in the same `nn.Sequential` (a flatten inside `forward`
    cannot be seen: the README's limits say so)."""
    if type(modules.get(path)).__name__ != "Linear":
        return False
    parent, _, leaf = path.rpartition(".")
    container = modules.get(parent)
    if container is None or type(container).__name__ != "Sequential":
        return False
    children: dict[str, torch.nn.Module | None] = dict(container._modules)
    names = list(children)
    i = names.index(leaf) if leaf in names else 0
    while i > 0 and type(children[names[i - 1]]).__name__ in ("Dropout", "Identity"):
        i -= 1
    return i > 0 and type(children[names[i - 1]]).__name__ == "Flatten"


def _keras_follows_flatten(layer: KerasModel) -> bool:
    if type(layer).__name__ != "Dense":
        return False
    try:  # the layer graph: each call of the layer is a node whose parents made its inputs
        parents = [type(n.operation).__name__ for n in getattr(layer, "_inbound_nodes", [])[0].parent_nodes]
    except (AttributeError, IndexError):
        return False
    return parents == ["Flatten"]


def _keras_attrs(layer: KerasModel) -> Attrs:
    if _keras_follows_flatten(layer):
        return FLATTENED
    cls = type(layer).__name__
    keys: tuple[str, ...] = ()
    if cls == "BatchNormalization":
        keys = ("epsilon", "momentum")
    elif cls in ("LayerNormalization", "GroupNormalization", "RMSNormalization"):
        keys = ("epsilon",)
    elif cls.startswith("Conv"):
        keys = ("groups",)
    return tuple((k, getattr(layer, k)) for k in keys
                 if isinstance(getattr(layer, k, None), (int, float)) and not isinstance(getattr(layer, k), bool))


def _never_builds(layer: KerasModel) -> bool:
    """A layer that keeps Keras' default `build` and holds no sublayers creates no variables, built or
    not (keras-hub's vision rotary embedding: a helper whose methods are called, never the layer)."""
    return bool(getattr(getattr(type(layer), "build", None), "_is_default", False)) and not list(layer._flatten_layers(include_self=False))


def _made_variables(layer: KerasModel) -> bool:
    """A layer that already holds variables of its own (created before any build)."""
    return bool(getattr(layer, "_trainable_variables", None) or getattr(layer, "_non_trainable_variables", None))


class KerasModelSource(_Live):
    """A built Keras model, named stably (`keras_naming.keras_names`); kind = owning layer class."""

    label = "keras model"

    def __init__(self, model: KerasModel, framework: str | None = None):
        # the Keras naming and layer tables, imported for a Keras model only (not for a torch load)
        from wmap.formats.keras_layers import WEIGHTLESS
        from wmap.formats.keras_naming import keras_names

        self.framework = canonical_framework(framework) or "keras"
        layers = list(model._flatten_layers(include_self=False)) if hasattr(model, "_flatten_layers") else []
        # An unbuilt layer in a built model is one its forward never calls. It matters only if building it
        # would create variables the model lacks: not when it keeps Keras' default `build` with no sublayers
        # (keras-hub's vision rotary helper), nor when it made its variables in `__init__` (SmolLM3's rotary
        # embedding, called only in the layers that use RoPE).
        unbuilt = [la for la in layers if not la.built and type(la).__name__ not in WEIGHTLESS
                   and not _never_builds(la) and not _made_variables(la)]
        if unbuilt or not model.built:
            name = (unbuilt[0] if unbuilt else model).name
            raise fail("WM502", f"Keras layer `{name}` has no variables yet (the model is not built)",
                       hint="Build the target (call it once on an input) before planning")
        owner: dict[int, KerasModel] = {}
        for layer in [model, *layers]:
            for v in getattr(layer, "_trainable_variables", []) + getattr(layer, "_non_trainable_variables", []):
                owner.setdefault(id(v), layer)
        self._arrays = {}
        metas = []
        for name, v in keras_names(model):
            native = getattr(v, "path", None) or v.name
            held_by = owner.get(id(v))
            dtype = str(getattr(v.dtype, "name", v.dtype))
            if dtype not in DTYPE_BITS:
                raise fail("WM506", f"Keras variable `{native}` has dtype `{dtype}`, which wmap cannot plan with")
            metas.append(TensorMeta(name, tuple(int(d) for d in v.shape), dtype, native,
                                    type(held_by).__name__ if held_by is not None else None,
                                    _keras_attrs(held_by) if held_by is not None else ()))
            self._arrays[name] = v
        self._metas = check_unique(metas, "the Keras model")

    def _value(self, held: object) -> object:
        value = getattr(held, "value", held)
        return value if is_torch_tensor(value) else np.asarray(cast("KerasVariable", held).numpy())
