"""The transform library: importing this package registers every transform.

Framework backends load lazily: `get_ops("torch")` imports torch, nothing here does.
"""

from __future__ import annotations

from typing import Any

from wmap.transforms import (  # noqa: F401  (imported for registration)
    auto,
    channels,
    gates,
    layout,
    presets,
    presets_attention,
    presets_rnn,
    resize,
    routing,
    values,
)
from wmap.transforms.base import (
    REGISTRY,
    ArrayMeta,
    ArrayOps,
    InferContext,
    Transform,
    TransformError,
    build,
    doc,
    register,
    signature,
)

_OPS: dict[str, ArrayOps] = {}


def get_ops(kind: str) -> ArrayOps:
    """The ArrayOps backend for "numpy" or "torch" (imports torch only when asked)."""
    if kind not in _OPS:
        if kind == "numpy":
            from wmap.transforms.ops_numpy import NumpyOps
            _OPS[kind] = NumpyOps()
        elif kind == "torch":
            from wmap.transforms.ops_torch import TorchOps
            _OPS[kind] = TorchOps()
        else:
            raise ValueError(f"no array backend {kind!r}; use 'numpy' or 'torch'")
    return _OPS[kind]


def ops_for(x: Any) -> ArrayOps:
    """The backend for an array, by its type's module (never imports a framework)."""
    return get_ops("torch" if type(x).__module__.startswith("torch") else "numpy")


__all__ = ["REGISTRY", "ArrayMeta", "ArrayOps", "InferContext", "Transform", "TransformError", "build", "doc",
           "get_ops", "ops_for", "register", "signature"]
