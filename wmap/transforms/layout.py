"""Layout transforms: reorder or regroup dims without changing values.

All of them return views where the backend can, and all are invertible once resolved
(reshape and rearrange record the sizes their inverse needs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wmap.transforms import _util as U
from wmap.transforms.base import (
    A,
    ArrayMeta,
    ArrayOps,
    InferContext,
    JSONValue,
    Transform,
    TransformError,
    register,
)

if TYPE_CHECKING:
    import numpy as np


@register
@dataclass(frozen=True)
class Transpose(Transform):
    """Reorder dims. No arguments reverses a 2-D matrix; two dims swap them (torch's
    `transpose(a, b)`); a list of every dim is a permutation (numpy's `transpose(perm)`).

    Why: PyTorch Linear stores (out, in), Keras Dense (in, out).
    Example: `fc.weight -> fc.kernel | transpose`  (10, 64) -> (64, 10)
    """

    NAME = "transpose"
    VIEW = True
    INVERTIBLE = True
    dims: tuple[int, ...] | None = None
    dim1: int | None = None

    def __post_init__(self) -> None:
        if self.dim1 is None:
            return
        if self.dims is None or len(self.dims) != 1:
            raise TransformError("`transpose(a, b)` swaps two dims; a permutation is `transpose(dims=[...])`")
        object.__setattr__(self, "dims", (self.dims[0], self.dim1))
        object.__setattr__(self, "dim1", None)

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        r = len(m.shape)
        if self.dims is None:
            if r != 2:
                raise TransformError(f"`transpose` without dims reverses a 2-D matrix; the input is {r}-D "
                                     f"{U.fmt(m.shape)}",
                                     f"name the dims: `transpose(a, b)` swaps two, `transpose(dims={list(reversed(range(r)))})` "
                                     "permutes all")
            perm: tuple[int, ...] = (1, 0)
        elif len(self.dims) == 2 and r > 2:
            a, b = (U.norm_dim(d, r, self.NAME) for d in self.dims)
            p = list(range(r))
            p[a], p[b] = p[b], p[a]
            perm = tuple(p)
        else:
            perm = U.check_perm(self.dims, r, self.NAME)
        out = ArrayMeta(tuple(m.shape[p] for p in perm), m.dtype)
        return Transpose(perm), (out,)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        (x,) = xs
        perm = self.dims if self.dims is not None else (1, 0)
        if len(perm) == 2 and len(ops.shape(x)) > 2:  # an unresolved swap
            p = list(range(len(ops.shape(x))))
            p[perm[0]], p[perm[1]] = p[perm[1]], p[perm[0]]
            perm = tuple(p)
        return (ops.transpose(x, perm),)

    def inverse(self) -> Transform:
        if self.dims is None or len(self.dims) <= 2:
            return self
        return Transpose(U.argsort(self.dims))


@register
@dataclass(frozen=True)
class Permute(Transform):
    """Permute all dims: output dim i is input dim dims[i].

    Example: `conv.weight -> conv.kernel | permute([2, 3, 1, 0])`  OIHW -> HWIO
    """

    NAME = "permute"
    VIEW = True
    INVERTIBLE = True
    VARARGS = "dims"
    dims: tuple[int, ...]

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        perm = U.check_perm(self.dims, len(m.shape), self.NAME)
        return Permute(perm), (ArrayMeta(tuple(m.shape[p] for p in perm), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.transpose(xs[0], self.dims),)

    def inverse(self) -> Transform:
        return Permute(U.argsort(self.dims))


def _abstract(shape: Sequence[int]) -> np.ndarray:
    """A zero-stride array of any shape backed by one element: shape algebra without data. (numpy is
    imported here, not with the module: checking a spec's names imports this family, numpy costs
    more than the rest of that check, and only `rearrange` needs it.)"""
    import numpy as np
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype=np.int8), tuple(shape), [0] * len(shape))


def _groups(side: str) -> list[list[str]]:
    from einops.parsing import ParsedExpression
    comp = ParsedExpression(side, allow_underscore=True).composition
    return [[g] if isinstance(g, str) else [a if isinstance(a, str) else str(a.value) for a in g]
            for g in comp]


def _axis_sizes(left: str, shape: Sequence[int], axes: dict[str, int]) -> dict[str, int]:
    """Sizes of every named input axis (best effort: skips ellipsis-covered dims)."""
    groups = _groups(left)
    sizes = dict(axes)
    if any(g == ["…"] for g in groups):
        n_ell = len(shape) - (len(groups) - 1)
        at = groups.index(["…"])
        dims = list(shape[:at]) + list(shape[at + n_ell:])
        groups = groups[:at] + groups[at + 1:]
    else:
        dims = list(shape)
    for g, d in zip(groups, dims, strict=False):
        unknown = [a for a in g if a not in sizes and not a.isdigit()]
        known = math.prod(int(a) if a.isdigit() else sizes[a] for a in g if a not in unknown)
        if len(unknown) == 1 and known:
            sizes[unknown[0]] = d // known
    return sizes


@register
@dataclass(frozen=True)
class Rearrange(Transform):
    """einops rearrange: transpose, split and merge dims by name.

    Axis sizes that cannot be deduced are keyword arguments, as in einops.
    Example: `attn.qkv.weight -> attn.qkv_heads | rearrange("(three h d) e -> three h d e", three=3, h=12)`
    """

    NAME = "rearrange"
    VIEW = True
    INVERTIBLE = True
    EXTRA = "axes"
    pattern: str
    axes: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if "->" not in self.pattern:
            raise TransformError(f"`rearrange` pattern {self.pattern!r} has no `->`",
                                 'write it as in einops: "o i h w -> h w i o"')

    def params(self) -> dict[str, JSONValue]:
        return {"pattern": self.pattern, **dict(self.axes)}

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        import einops  # only `rearrange` needs it: the rest of the family is imported by name checks
        m = U.one(ins, self.NAME)
        axes = dict(self.axes)
        try:
            shape = tuple(int(d) for d in einops.rearrange(_abstract(m.shape), self.pattern, **axes).shape)
        except einops.EinopsError as e:
            msg = str(e).strip().splitlines()
            raise TransformError(f"`rearrange({self.pattern!r})` does not fit shape {U.fmt(m.shape)}: "
                                 f"{msg[-1] if msg else e}",
                                 "give the sizes einops cannot deduce as keywords, e.g. `h=12`") from None
        left, right = (s.strip() for s in self.pattern.split("->"))
        sizes = _axis_sizes(left, m.shape, axes)
        for g in _groups(right):
            for a in g if len(g) > 1 else ():
                if a in sizes and a not in axes and not a.isdigit():
                    axes[a] = sizes[a]
        return Rearrange(self.pattern, tuple(axes.items())), (ArrayMeta(shape, m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.rearrange(xs[0], self.pattern, **dict(self.axes)),)

    def inverse(self) -> Transform:
        left, right = (s.strip() for s in self.pattern.split("->"))
        return Rearrange(f"{right} -> {left}", self.axes)


@register
@dataclass(frozen=True)
class Reshape(Transform):
    """Reshape (row-major, like numpy/torch); one size may be -1. No shape: the target's shape.

    Example: `prelu.weight -> prelu.alpha | reshape([1, 1, -1])`  (C,) -> (1, 1, C)
    """

    NAME = "reshape"
    VIEW = True
    INVERTIBLE = True
    VARARGS = "shape"
    shape: tuple[int, ...] | None = None
    from_shape: tuple[int, ...] | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        want = self.shape if self.shape is not None else U.target_meta(ctx, self.NAME, "shape").shape
        n = U.numel(m.shape)
        free = [i for i, d in enumerate(want) if d == -1]
        if len(free) > 1 or any(d < -1 for d in want):
            raise TransformError(f"`reshape({list(want)})`: at most one size may be -1, none below it")
        known = U.numel([d for d in want if d != -1])
        shape = list(want)
        if free:
            if known == 0 or n % known:
                raise TransformError(f"`reshape({list(want)})` cannot infer -1: {n} elements of {U.fmt(m.shape)} "
                                     f"are not a multiple of {known}")
            shape[free[0]] = n // known
        elif known != n:
            raise TransformError(f"`reshape` to {U.fmt(want)} needs {known} elements, the input {U.fmt(m.shape)} "
                                 f"has {n}", "sizes must multiply to the same count; use -1 for one of them")
        out = tuple(shape)
        return Reshape(out, tuple(m.shape)), (ArrayMeta(out, m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.reshape(xs[0], U.resolved(self.shape, self.NAME, "shape")),)

    def inverse(self) -> Transform | None:
        if self.from_shape is None or self.shape is None:
            return None
        return Reshape(self.from_shape, self.shape)


@register
@dataclass(frozen=True)
class Flip(Transform):
    """Reverse the order along one dim (e.g. a convolution kernel's spatial axis).

    Example: `conv.weight -> conv.weight | flip(-1)`
    """

    NAME = "flip"
    INVERTIBLE = True
    dim: int = 0

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        return Flip(U.norm_dim(self.dim, len(m.shape), self.NAME)), (m,)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.flip(xs[0], self.dim),)

    def inverse(self) -> Transform:
        return self


@register
@dataclass(frozen=True)
class Unsqueeze(Transform):
    """Insert a dim of size 1 at `dim`.

    Example: `prelu.weight -> prelu.alpha | unsqueeze(0) | unsqueeze(0)`  (C,) -> (1, 1, C)
    """

    NAME = "unsqueeze"
    VIEW = True
    INVERTIBLE = True
    dim: int = 0

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME, extra=1)
        return Unsqueeze(d), (ArrayMeta(m.shape[:d] + (1,) + m.shape[d:], m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        s = ops.shape(xs[0])
        return (ops.reshape(xs[0], s[: self.dim] + (1,) + s[self.dim:]),)

    def inverse(self) -> Transform:
        return Squeeze(self.dim)


@register
@dataclass(frozen=True)
class Squeeze(Transform):
    """Remove one dim of size 1 (named explicitly, so the plan never guesses).

    Example: `alpha -> prelu.weight | squeeze(0) | squeeze(0)`  (1, 1, C) -> (C,)
    """

    NAME = "squeeze"
    VIEW = True
    INVERTIBLE = True
    dim: int = 0

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        if m.shape[d] != 1:
            raise TransformError(f"`squeeze({self.dim})`: dim {d} of {U.fmt(m.shape)} has size {m.shape[d]}, not 1",
                                 "to drop entries use `select` or `slice`")
        return Squeeze(d), (ArrayMeta(m.shape[:d] + m.shape[d + 1:], m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        s = ops.shape(xs[0])
        return (ops.reshape(xs[0], s[: self.dim] + s[self.dim + 1:]),)

    def inverse(self) -> Transform:
        return Unsqueeze(self.dim)
