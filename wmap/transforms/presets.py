"""Cross-framework presets for dense, convolution and PReLU layers (the README's PyTorch <-> Keras table).

Each preset names one verified PyTorch <-> Keras rule and has its reverse, so a spec
says *what* moves (`conv_to_keras`) rather than a permutation a reader must check.
RNN and attention presets live in presets_rnn.py and presets_attention.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from wmap.transforms import _util as U
from wmap.transforms.base import (
    REGISTRY,
    A,
    ArrayMeta,
    ArrayOps,
    InferContext,
    Transform,
    TransformError,
    register,
)


@dataclass(frozen=True)
class PermutePreset(Transform):
    """A preset that is one fixed permutation per rank."""

    VIEW = True
    INVERTIBLE = True
    RANKS: ClassVar[tuple[int, ...]] = (2,)
    WHAT: ClassVar[str] = "a matrix"
    REVERSE: ClassVar[str] = ""

    def perm(self, rank: int) -> tuple[int, ...]:
        raise NotImplementedError

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        p = self.perm(U.rank_in(m, self.RANKS, self.NAME, self.WHAT))
        return self, (ArrayMeta(tuple(m.shape[i] for i in p), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.transpose(xs[0], self.perm(len(ops.shape(xs[0])))),)

    def inverse(self) -> Transform:
        return REGISTRY[self.REVERSE]()


@register
@dataclass(frozen=True)
class LinearToDense(PermutePreset):
    """PyTorch Linear weight (out, in) -> Keras Dense kernel (in, out): `W.T`. Biases copy as they are.

    Example: `fc.weight -> fc.kernel | linear_to_dense`  (10, 64) -> (64, 10)
    """

    NAME = "linear_to_dense"
    WHAT = "a Linear weight (out, in)"
    REVERSE = "dense_to_linear"

    def perm(self, rank: int) -> tuple[int, ...]:
        return (1, 0)


@register
@dataclass(frozen=True)
class DenseToLinear(LinearToDense):
    """Keras Dense kernel (in, out) -> PyTorch Linear weight (out, in): `K.T`.

    Example: `fc.kernel -> fc.weight | dense_to_linear`  (64, 10) -> (10, 64)
    """

    NAME = "dense_to_linear"
    WHAT = "a Dense kernel (in, out)"
    REVERSE = "linear_to_dense"


@register
@dataclass(frozen=True)
class ConvToKeras(PermutePreset):
    """PyTorch ConvNd weight (out, in/groups, *k) -> Keras ConvND kernel (*k, in/groups, out):
    OIW->WIO (2,1,0), OIHW->HWIO (2,3,1,0), OIDHW->DHWIO (2,3,4,1,0). Grouped convs too
    (Keras `groups=`); a depthwise Conv2d into DepthwiseConv2D is `depthwise_to_keras`.

    Example: `conv1.weight -> conv1.kernel | conv_to_keras`  (64, 3, 7, 7) -> (7, 7, 3, 64)
    """

    NAME = "conv_to_keras"
    RANKS = (3, 4, 5)
    WHAT = "a Conv1d/2d/3d weight (out, in, *kernel)"
    REVERSE = "conv_from_keras"

    def perm(self, rank: int) -> tuple[int, ...]:
        return (*range(2, rank), 1, 0)


@register
@dataclass(frozen=True)
class ConvFromKeras(PermutePreset):
    """Keras ConvND kernel (*k, in/groups, out) -> PyTorch ConvNd weight (out, in/groups, *k):
    HWIO->OIHW (3,2,0,1), and likewise for 1-D and 3-D.

    Example: `conv1.kernel -> conv1.weight | conv_from_keras`  (7, 7, 3, 64) -> (64, 3, 7, 7)
    """

    NAME = "conv_from_keras"
    RANKS = (3, 4, 5)
    WHAT = "a Conv1D/2D/3D kernel (*kernel, in, out)"
    REVERSE = "conv_to_keras"

    def perm(self, rank: int) -> tuple[int, ...]:
        return (rank - 1, rank - 2, *range(rank - 2))


@register
@dataclass(frozen=True)
class ConvTransposeToKeras(ConvToKeras):
    """PyTorch ConvTransposeNd weight (in, out, *k) -> Keras ConvNDTranspose kernel (*k, out, in):
    (2,3,1,0) for 2-D. The same permutation as conv_to_keras, because both frameworks also
    swap the meaning of the two channel dims; no spatial flip is needed.

    Example: `up.weight -> up.kernel | conv_transpose_to_keras`  (32, 16, 4, 4) -> (4, 4, 16, 32)
    """

    NAME = "conv_transpose_to_keras"
    WHAT = "a ConvTranspose1d/2d/3d weight (in, out, *kernel)"
    REVERSE = "conv_transpose_from_keras"


@register
@dataclass(frozen=True)
class ConvTransposeFromKeras(ConvFromKeras):
    """Keras ConvNDTranspose kernel (*k, out, in) -> PyTorch ConvTransposeNd weight (in, out, *k).

    Example: `up.kernel -> up.weight | conv_transpose_from_keras`  (4, 4, 16, 32) -> (32, 16, 4, 4)
    """

    NAME = "conv_transpose_from_keras"
    WHAT = "a Conv1DTranspose/2D/3D kernel (*kernel, out, in)"
    REVERSE = "conv_transpose_to_keras"


def _multiplier_from_target(ctx: InferContext, name: str, rank: int) -> int:
    t = U.target_meta(ctx, name, "multiplier").shape
    if len(t) != rank:
        raise TransformError(f"`{name}`: the target {U.fmt(t)} is not a {rank}-D depthwise kernel (*k, C, M)",
                             "depthwise_to_keras maps a depthwise Conv into DepthwiseConv1D/2D")
    return t[-1]


@register
@dataclass(frozen=True)
class DepthwiseToKeras(Transform):
    """Depthwise PyTorch Conv (groups == in_channels) weight (C*M, 1, *k) -> Keras DepthwiseConvND
    kernel (*k, C, M): `transpose(2,3,0,1).reshape(kh, kw, C, M)`; torch's output channel
    c*M + m is Keras' (c, m). M (depth multiplier) defaults from the target.

    Example: `dw.weight -> dw.kernel | depthwise_to_keras`  (64, 1, 3, 3) -> (3, 3, 32, 2)
    """

    NAME = "depthwise_to_keras"
    VIEW = True
    INVERTIBLE = True
    multiplier: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        r = U.rank_in(m, (3, 4), self.NAME, "a depthwise Conv1d/2d weight (C*M, 1, *kernel)")
        if m.shape[1] != 1:
            raise TransformError(f"`{self.NAME}`: {U.fmt(m.shape)} is not depthwise (in/groups = {m.shape[1]}, not 1)",
                                 "a grouped conv with groups < in_channels maps with `conv_to_keras` into a Keras "
                                 "ConvND(groups=...)")
        mult = self.multiplier if self.multiplier is not None else _multiplier_from_target(ctx, self.NAME, r)
        if mult < 1 or m.shape[0] % mult:
            raise TransformError(f"`{self.NAME}`: {m.shape[0]} output channels are not C x multiplier {mult}")
        out = (*m.shape[2:], m.shape[0] // mult, mult)
        return DepthwiseToKeras(mult), (ArrayMeta(out, m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        s = ops.shape(xs[0])
        r, mult = len(s), U.resolved(self.multiplier, self.NAME, "multiplier")
        y = ops.transpose(xs[0], (*range(2, r), 0, 1))
        return (ops.reshape(y, (*s[2:], s[0] // mult, mult)),)

    def inverse(self) -> Transform:
        return DepthwiseFromKeras(self.multiplier)


@register
@dataclass(frozen=True)
class DepthwiseFromKeras(Transform):
    """Keras DepthwiseConvND kernel (*k, C, M) -> PyTorch depthwise Conv weight (C*M, 1, *k).

    Example: `dw.kernel -> dw.weight | depthwise_from_keras`  (3, 3, 32, 2) -> (64, 1, 3, 3)
    """

    NAME = "depthwise_from_keras"
    VIEW = True
    INVERTIBLE = True
    multiplier: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (3, 4), self.NAME, "a DepthwiseConv1D/2D kernel (*kernel, C, M)")
        if self.multiplier is not None and self.multiplier != m.shape[-1]:
            raise TransformError(f"`{self.NAME}`: kernel {U.fmt(m.shape)} has multiplier {m.shape[-1]}, "
                                 f"the rule says {self.multiplier}")
        out = (m.shape[-2] * m.shape[-1], 1, *m.shape[:-2])
        return DepthwiseFromKeras(m.shape[-1]), (ArrayMeta(out, m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        s = ops.shape(xs[0])
        r = len(s)
        y = ops.reshape(xs[0], (*s[:-2], s[-2] * s[-1], 1))
        return (ops.transpose(y, (r - 2, r - 1, *range(r - 2))),)

    def inverse(self) -> Transform:
        return DepthwiseToKeras(self.multiplier)


@register
@dataclass(frozen=True)
class PreluToKeras(Transform):
    """PyTorch PReLU weight (C,) -> Keras PReLU alpha (1, 1, C) (alpha shared over H, W;
    `keras_shape` defaults from the target). A Keras alpha without shared axes, e.g.
    (H, W, C), gets the per-channel values broadcast over positions.

    Example: `act.weight -> act.alpha | prelu_to_keras`  (64,) -> (1, 1, 64)
    """

    NAME = "prelu_to_keras"
    INVERTIBLE = True
    keras_shape: tuple[int, ...] | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (1,), self.NAME, "a PReLU weight (C,)")
        if self.keras_shape is not None:
            shape = tuple(self.keras_shape)
        elif ctx.is_last and len(ctx.targets) == 1:
            shape = ctx.targets[0].shape
        else:
            shape = (1, 1, m.shape[0])
        c = m.shape[0]
        if not shape or (shape[-1] != c and c != 1):
            raise TransformError(f"`{self.NAME}`: {c} PReLU parameter(s) do not fit Keras alpha {U.fmt(shape)}",
                                 "the Keras alpha's last dim is the channel dim")
        return PreluToKeras(shape), (ArrayMeta(shape, m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        shape = U.resolved(self.keras_shape, self.NAME, "keras_shape")
        c = ops.shape(xs[0])[0]
        y = ops.reshape(xs[0], (1,) * (len(shape) - 1) + (c,))
        reps = [n if n != 1 and i < len(shape) - 1 else 1 for i, n in enumerate(shape)]
        reps[-1] = shape[-1] // c
        return (ops.tile(y, reps) if any(r != 1 for r in reps) else y,)

    def inverse(self) -> Transform | None:
        if self.keras_shape is not None and any(d != 1 for d in self.keras_shape[:-1]):
            return None  # broadcast over positions: PyTorch cannot hold per-position alphas
        return PreluFromKeras(self.keras_shape)


@register
@dataclass(frozen=True)
class PreluFromKeras(Transform):
    """Keras PReLU alpha (1, 1, C) -> PyTorch PReLU weight (C,). An alpha that varies over
    positions (no shared axes) has no PyTorch equivalent and is refused.

    Example: `act.alpha -> act.weight | prelu_from_keras`  (1, 1, 64) -> (64,)
    """

    NAME = "prelu_from_keras"
    VIEW = True
    INVERTIBLE = True
    keras_shape: tuple[int, ...] | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        if not m.shape or any(d != 1 for d in m.shape[:-1]):
            raise TransformError(f"`{self.NAME}`: alpha {U.fmt(m.shape)} varies over positions; PyTorch PReLU "
                                 "holds one value per channel", "build the Keras PReLU with shared_axes=[1, 2]")
        return PreluFromKeras(tuple(m.shape)), (ArrayMeta((m.shape[-1],), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.reshape(xs[0], (ops.shape(xs[0])[-1],)),)

    def inverse(self) -> Transform:
        return PreluToKeras(self.keras_shape)


def _chw(c: int | None, h: int | None, w: int | None, n: int, name: str) -> tuple[int, int, int]:
    known = [v for v in (c, h, w) if v is not None]
    if len(known) < 2:
        raise TransformError(f"`{name}` needs at least two of c, h, w (the feature map before Flatten)",
                             f"e.g. `{name}(c=64, h=7, w=7)`; the third is inferred from the {n} features")
    prod = U.numel(known)
    if prod == 0 or n % prod:
        raise TransformError(f"`{name}`: {n} features are not a multiple of {prod} ({c=}, {h=}, {w=})")
    c, h, w = (v if v is not None else n // prod for v in (c, h, w))
    if c * h * w != n:
        raise TransformError(f"`{name}`: c*h*w = {c}*{h}*{w} = {c * h * w}, the Linear has {n} input features",
                             "give the shape of the feature map that Flatten consumes")
    return c, h, w


@register
@dataclass(frozen=True)
class FlattenDenseToKeras(Transform):
    """A Linear after Flatten of NCHW (out, C*H*W) -> a Dense after Flatten of NHWC (H*W*C, out):
    `W.reshape(out, C, H, W).transpose(2, 3, 1, 0).reshape(H*W*C, out)`. A plain transpose
    has the right shape and wrong outputs (max error 0.86 on LeNet).

    Example: `fc1.weight -> fc1.kernel | flatten_dense_to_keras(c=16, h=5, w=5)`  (120, 400) -> (400, 120)
    """

    NAME = "flatten_dense_to_keras"
    INVERTIBLE = True
    c: int | None = None
    h: int | None = None
    w: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (2,), self.NAME, "a Linear weight (out, C*H*W)")
        c, h, w = _chw(self.c, self.h, self.w, m.shape[1], self.NAME)
        return type(self)(c, h, w), (ArrayMeta((m.shape[1], m.shape[0]), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        out = ops.shape(xs[0])[0]
        c, h, w = (U.resolved(v, self.NAME, "c, h, w") for v in (self.c, self.h, self.w))
        y = ops.transpose(ops.reshape(xs[0], (out, c, h, w)), (2, 3, 1, 0))
        return (ops.reshape(y, (h * w * c, out)),)

    def inverse(self) -> Transform:
        return FlattenDenseFromKeras(self.c, self.h, self.w)


@register
@dataclass(frozen=True)
class FlattenDenseFromKeras(FlattenDenseToKeras):
    """A Dense after Flatten of NHWC (H*W*C, out) -> a Linear after Flatten of NCHW (out, C*H*W):
    `K.reshape(H, W, C, out).transpose(3, 2, 0, 1).reshape(out, C*H*W)`.

    Example: `fc1.kernel -> fc1.weight | flatten_dense_from_keras(c=16, h=5, w=5)`  (400, 120) -> (120, 400)
    """

    NAME = "flatten_dense_from_keras"

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (2,), self.NAME, "a Dense kernel (H*W*C, out)")
        c, h, w = _chw(self.c, self.h, self.w, m.shape[0], self.NAME)
        return type(self)(c, h, w), (ArrayMeta((m.shape[1], m.shape[0]), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        out = ops.shape(xs[0])[1]
        c, h, w = (U.resolved(v, self.NAME, "c, h, w") for v in (self.c, self.h, self.w))
        y = ops.transpose(ops.reshape(xs[0], (h, w, c, out)), (3, 2, 0, 1))
        return (ops.reshape(y, (out, c * h * w)),)

    def inverse(self) -> Transform:
        return FlattenDenseToKeras(self.c, self.h, self.w)
