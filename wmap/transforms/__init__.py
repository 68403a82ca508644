"""The transform library: one registry, a module per family.

Importing this package imports no family: `REGISTRY` knows every name from `catalog` and
imports a family the first time one of its transforms is looked up. Framework backends load
lazily too: `get_ops("torch")` imports torch, nothing here does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

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

if TYPE_CHECKING:
    import torch

    from wmap.transforms.ops_numpy import NDArray

# One instance per backend; the value type is whichever backend the key names.
_OPS: dict[str, ArrayOps[Any]] = {}


@overload
def get_ops(kind: Literal["numpy"]) -> ArrayOps[NDArray]: ...
@overload
def get_ops(kind: Literal["torch"]) -> ArrayOps[torch.Tensor]: ...
@overload
def get_ops(kind: str) -> ArrayOps[Any]: ...  # a kind known only at run time (a sink's): either backend


def get_ops(kind: str) -> ArrayOps[Any]:
    """The ArrayOps backend for "numpy" or "torch" (imports torch only when asked)."""
    if kind not in _OPS:
        if kind == "numpy":
            from wmap.transforms.ops_numpy import NumpyOps
            numpy_ops: ArrayOps[NDArray] = NumpyOps()  # mypy checks NumpyOps against the protocol here
            _OPS[kind] = numpy_ops
        elif kind == "torch":
            from wmap.transforms.ops_torch import TorchOps
            torch_ops: ArrayOps[torch.Tensor] = TorchOps()  # and TorchOps here
            _OPS[kind] = torch_ops
        else:
            raise ValueError(f"no array backend {kind!r}; use 'numpy' or 'torch'")
    return _OPS[kind]


@overload
def ops_for(x: NDArray) -> ArrayOps[NDArray]: ...
@overload
def ops_for(x: torch.Tensor) -> ArrayOps[torch.Tensor]: ...
@overload
def ops_for(x: object) -> ArrayOps[Any]: ...  # anything else is handed to numpy, as before


def ops_for(x: object) -> ArrayOps[Any]:
    """The backend for an array, by its type's module (never imports a framework)."""
    return get_ops("torch" if type(x).__module__.startswith("torch") else "numpy")


__all__ = ["REGISTRY", "ArrayMeta", "ArrayOps", "InferContext", "Transform", "TransformError", "build", "doc",
           "get_ops", "ops_for", "register", "signature"]
