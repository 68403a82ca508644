"""Channel adaptation: reduce or repeat along a dim, e.g. a pretrained RGB stem for 1 or 13
input channels (timm's adapt_input_conv).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from wmap.transforms import _util as U
from wmap.transforms.base import A, ArrayMeta, ArrayOps, InferContext, Transform, TransformError, register

_ADAPT_MODES = ("auto", "tile", "zeros")


def _with(shape: Sequence[int], dim: int, size: int) -> tuple[int, ...]:
    s = list(shape)
    s[dim] = size
    return tuple(s)


@register
@dataclass(frozen=True)
class AdaptChannels(Transform):
    """Adapt input channels along `dim` to `to` (default: the target's size).

    mode "auto" is timm's adapt_input_conv: to 1 channel, sum over the channels (a gray
    image then gives the RGB response); to N channels, tile the C channels ceil(N/C) times,
    keep N and scale by C/N so activations keep their magnitude. "tile" tiles without the
    rescale; "zeros" keeps the existing channels and zero-fills the new ones (an added depth
    channel starts with no effect).
    Example: `conv1.weight -> stem.weight | adapt_channels(1)`  (64, 3, 7, 7) -> (64, 13, 7, 7)
    """

    NAME = "adapt_channels"
    dim: int = 1
    mode: str = "auto"
    to: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in _ADAPT_MODES:
            raise TransformError(f"`adapt_channels`: unknown mode `{self.mode}`", "one of: " + ", ".join(_ADAPT_MODES))

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.need_float(m, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        if self.to is not None:
            to = self.to
        else:
            t = U.target_meta(ctx, self.NAME, "to").shape
            if len(t) != len(m.shape):
                raise TransformError(f"`adapt_channels`: the target {U.fmt(t)} has another rank than "
                                     f"{U.fmt(m.shape)}")
            to = t[d]
        if to < 1:
            raise TransformError(f"`adapt_channels`: `to` must be >= 1, got {to}")
        if self.mode == "zeros" and to < m.shape[d]:
            raise TransformError(f"`adapt_channels(mode=\"zeros\")` adds channels; {m.shape[d]} -> {to} removes some",
                                 "use mode=\"auto\" or `slice`")
        return AdaptChannels(d, self.mode, to), (ArrayMeta(_with(m.shape, d, to), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        (x,) = xs
        s = ops.shape(x)
        c, to = s[self.dim], U.resolved(self.to, self.NAME, "to")
        if to == c:
            return (x,)
        if self.mode == "auto" and to == 1:
            return (ops.sum(x, self.dim, True),)
        if self.mode == "zeros":
            return (ops.concat([x, ops.full(_with(s, self.dim, to - c), 0.0, ops.dtype_name(x), x)], self.dim),)
        reps = [1] * len(s)
        reps[self.dim] = math.ceil(to / c)
        y = ops.slice(ops.tile(x, reps), self.dim, 0, to, 1)
        if self.mode == "tile":
            return (y,)
        dt = ops.dtype_name(x)
        return (U.downcast(ops.mul(U.upcast(y, ops, dt), c / to), ops, dt),)


@register
@dataclass(frozen=True)
class Sum(Transform):
    """Sum along `dim` (accumulated in float64, rounded once).

    Example: `conv1.weight -> conv1.weight | sum(1)`  RGB stem -> 1 channel: (64, 3, 7, 7) -> (64, 1, 7, 7)
    """

    NAME = "sum"
    dim: int
    keepdim: bool = True

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        shape = _with(m.shape, d, 1) if self.keepdim else m.shape[:d] + m.shape[d + 1:]
        return type(self)(d, self.keepdim), (ArrayMeta(shape, m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.sum(xs[0], self.dim, self.keepdim),)


@register
@dataclass(frozen=True)
class Mean(Sum):
    """Mean along `dim` (accumulated in float64, rounded once).

    Example: `conv1.weight -> conv1.weight | mean(1)`  (64, 3, 7, 7) -> (64, 1, 7, 7)
    """

    NAME = "mean"

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.need_float(U.one(ins, self.NAME), self.NAME)
        return super().infer(ins, ctx)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.mean(xs[0], self.dim, self.keepdim),)


@register
@dataclass(frozen=True)
class Repeat(Transform):
    """Repeat along `dim` `n` times (default: target size / source size). Tiles the whole
    block like torch `Tensor.repeat` ([a, b] -> [a, b, a, b]); `interleave=true` repeats each
    entry like numpy `repeat` ([a, a, b, b]), e.g. grouped-query K/V heads to full heads.
    Example: `conv1.weight -> conv1.weight | repeat(2, dim=1)`  (64, 3, 7, 7) -> (64, 6, 7, 7)
    """

    NAME = "repeat"
    n: int | None = None
    dim: int = 0
    interleave: bool = False

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        if self.n is not None:
            n = self.n
        else:
            t = U.target_meta(ctx, self.NAME, "n").shape
            if len(t) != len(m.shape) or m.shape[d] == 0 or t[d] % m.shape[d]:
                raise TransformError(f"`repeat(dim={d})`: the target {U.fmt(t)} is not a whole multiple of "
                                     f"{U.fmt(m.shape)} along dim {d}", "give `n` explicitly, or use adapt_channels")
            n = t[d] // m.shape[d]
        if n < 1:
            raise TransformError(f"`repeat`: n must be >= 1, got {n}")
        return Repeat(n, d, self.interleave), (ArrayMeta(_with(m.shape, d, m.shape[d] * n), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        n = U.resolved(self.n, self.NAME, "n")
        if self.interleave:
            return (ops.repeat(xs[0], n, self.dim),)
        reps = [1] * len(ops.shape(xs[0]))
        reps[self.dim] = n
        return (ops.tile(xs[0], reps),)
