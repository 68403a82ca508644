"""Multi-head attention presets: PyTorch MultiheadAttention (fused in_proj
(3E, E), out_proj (E, E)) <-> Keras MultiHeadAttention (EinsumDense kernels: query/key/value
(E, NH, Dh), attention_output (NH, Dh, E)).

`num_heads` defaults from the Keras-side shapes: it cannot be read from PyTorch's (3E, E)
and a wrong value has the right total size, so it is always shown in the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wmap.transforms import _util as U
from wmap.transforms.base import A, ArrayMeta, ArrayOps, InferContext, Transform, TransformError, register


def _heads(given: int | None, ctx: InferContext, name: str, axis: int, rank: int) -> int:
    if given is not None:
        return given
    shapes = U.targets_shapes(ctx, name, "num_heads")
    if len(shapes[0]) != rank:
        raise TransformError(f"`{name}`: the target {U.fmt(shapes[0])} is not a {rank}-D Keras attention tensor",
                             f"give `num_heads`, e.g. `{name}(num_heads=8)`")
    return shapes[0][axis]


def _divide(total: int, heads: int, name: str, shape: Sequence[int]) -> int:
    if heads < 1 or total % heads:
        raise TransformError(f"`{name}`: {total} features of {U.fmt(shape)} do not split into {heads} heads",
                             "check num_heads (the Keras layer's num_heads)")
    return total // heads


@register
@dataclass(frozen=True)
class MhaInToKeras(Transform):
    """Fan-out: PyTorch in_proj_weight (3E, E) -> Keras query/key/value kernels (E, NH, Dh):
    `W.reshape(3, NH, Dh, E).transpose(0, 3, 1, 2)`, one slice per target.

    Example: `attn.in_proj_weight -> mha.{query,key,value}.kernel | mha_in_to_keras`  (96, 32) -> 3 x (32, 4, 8)
    """

    NAME = "mha_in_to_keras"
    ARITY = "1:n"
    VIEW = True
    INVERTIBLE = True
    num_heads: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (2,), self.NAME, "in_proj_weight (3E, E)")
        if m.shape[0] % 3:
            raise TransformError(f"`{self.NAME}`: {U.fmt(m.shape)} is not a fused q/k/v weight (3E, E)")
        nh = _heads(self.num_heads, ctx, self.NAME, 1, 3)
        dh = _divide(m.shape[0] // 3, nh, self.NAME, m.shape)
        part = ArrayMeta((m.shape[1], nh, dh), m.dtype)
        return MhaInToKeras(nh), (part, part, part)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        o, e = ops.shape(xs[0])
        nh = U.resolved(self.num_heads, self.NAME, "num_heads")
        y = ops.transpose(ops.reshape(xs[0], (3, nh, o // 3 // nh, e)), (0, 3, 1, 2))
        return tuple(ops.reshape(p, (e, nh, o // 3 // nh)) for p in ops.split(y, [1, 1, 1], 0))

    def inverse(self) -> Transform:
        return MhaInFromKeras(self.num_heads)


@register
@dataclass(frozen=True)
class MhaInFromKeras(Transform):
    """Fan-in: Keras query/key/value kernels (E, NH, Dh) -> PyTorch in_proj_weight (3E, E).

    Example: `mha.{query,key,value}.kernel -> attn.in_proj_weight | mha_in_from_keras`  3 x (32, 4, 8) -> (96, 32)
    """

    NAME = "mha_in_from_keras"
    ARITY = "n:1"
    INVERTIBLE = True
    num_heads: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.exactly(ins, 3, self.NAME, "query, key, value")
        for m in ins:
            U.rank_in(m, (3,), self.NAME, "Keras q/k/v kernels (E, NH, Dh)")
        if len({m for m in ins}) != 1:
            raise TransformError(f"`{self.NAME}`: q/k/v kernels differ: {', '.join(U.fmt(m.shape) for m in ins)}",
                                 "PyTorch's fused in_proj needs equal q/k/v sizes; map them to q/k/v_proj_weight "
                                 "with mha_proj_from_keras")
        e, nh, dh = ins[0].shape
        if self.num_heads is not None and self.num_heads != nh:
            raise TransformError(f"`{self.NAME}`: kernels have {nh} heads, the rule says {self.num_heads}")
        return MhaInFromKeras(nh), (ArrayMeta((3 * nh * dh, e), ins[0].dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        e, nh, dh = ops.shape(xs[0])
        y = ops.transpose(ops.stack(xs, 0), (0, 2, 3, 1))
        return (ops.reshape(y, (3 * nh * dh, e)),)

    def inverse(self) -> Transform:
        return MhaInToKeras(self.num_heads)


@register
@dataclass(frozen=True)
class MhaInBiasToKeras(Transform):
    """Fan-out: PyTorch in_proj_bias (3E,) -> Keras query/key/value biases (NH, Dh).

    Example: `attn.in_proj_bias -> mha.{query,key,value}.bias | mha_in_bias_to_keras`  (96,) -> 3 x (4, 8)
    """

    NAME = "mha_in_bias_to_keras"
    ARITY = "1:n"
    VIEW = True
    INVERTIBLE = True
    num_heads: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (1,), self.NAME, "in_proj_bias (3E,)")
        if m.shape[0] % 3:
            raise TransformError(f"`{self.NAME}`: {U.fmt(m.shape)} is not a fused q/k/v bias (3E,)")
        nh = _heads(self.num_heads, ctx, self.NAME, 0, 2)
        dh = _divide(m.shape[0] // 3, nh, self.NAME, m.shape)
        part = ArrayMeta((nh, dh), m.dtype)
        return MhaInBiasToKeras(nh), (part, part, part)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        nh = U.resolved(self.num_heads, self.NAME, "num_heads")
        dh = ops.shape(xs[0])[0] // 3 // nh
        return tuple(ops.reshape(p, (nh, dh)) for p in ops.split(xs[0], [nh * dh] * 3, 0))

    def inverse(self) -> Transform:
        return MhaInBiasFromKeras(self.num_heads)


@register
@dataclass(frozen=True)
class MhaInBiasFromKeras(Transform):
    """Fan-in: Keras query/key/value biases (NH, Dh) -> PyTorch in_proj_bias (3E,).

    Example: `mha.{query,key,value}.bias -> attn.in_proj_bias | mha_in_bias_from_keras`  3 x (4, 8) -> (96,)
    """

    NAME = "mha_in_bias_from_keras"
    ARITY = "n:1"
    INVERTIBLE = True
    num_heads: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.exactly(ins, 3, self.NAME, "query, key, value")
        for m in ins:
            U.rank_in(m, (2,), self.NAME, "Keras q/k/v biases (NH, Dh)")
        if len(set(ins)) != 1:
            raise TransformError(f"`{self.NAME}`: q/k/v biases differ: {', '.join(U.fmt(m.shape) for m in ins)}")
        nh, dh = ins[0].shape
        if self.num_heads is not None and self.num_heads != nh:
            raise TransformError(f"`{self.NAME}`: biases have {nh} heads, the rule says {self.num_heads}")
        return MhaInBiasFromKeras(nh), (ArrayMeta((3 * nh * dh,), ins[0].dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        nh, dh = ops.shape(xs[0])
        return (ops.reshape(ops.stack(xs, 0), (3 * nh * dh,)),)

    def inverse(self) -> Transform:
        return MhaInBiasToKeras(self.num_heads)


@register
@dataclass(frozen=True)
class MhaOutToKeras(Transform):
    """PyTorch out_proj.weight (E, NH*Dh) -> Keras attention_output kernel (NH, Dh, E):
    `W.reshape(E, NH, Dh).transpose(1, 2, 0)`. The out_proj bias (E,) copies as it is.

    Example: `attn.out_proj.weight -> mha.attention_output.kernel | mha_out_to_keras`  (32, 32) -> (4, 8, 32)
    """

    NAME = "mha_out_to_keras"
    VIEW = True
    INVERTIBLE = True
    num_heads: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (2,), self.NAME, "out_proj.weight (E, E)")
        nh = _heads(self.num_heads, ctx, self.NAME, 0, 3)
        dh = _divide(m.shape[1], nh, self.NAME, m.shape)
        return MhaOutToKeras(nh), (ArrayMeta((nh, dh, m.shape[0]), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        e, i = ops.shape(xs[0])
        nh = U.resolved(self.num_heads, self.NAME, "num_heads")
        return (ops.transpose(ops.reshape(xs[0], (e, nh, i // nh)), (1, 2, 0)),)

    def inverse(self) -> Transform:
        return MhaOutFromKeras(self.num_heads)


@register
@dataclass(frozen=True)
class MhaOutFromKeras(Transform):
    """Keras attention_output kernel (NH, Dh, E) -> PyTorch out_proj.weight (E, NH*Dh):
    `K.transpose(2, 0, 1).reshape(E, NH*Dh)`.

    Example: `mha.attention_output.kernel -> attn.out_proj.weight | mha_out_from_keras`  (4, 8, 32) -> (32, 32)
    """

    NAME = "mha_out_from_keras"
    INVERTIBLE = True
    num_heads: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (3,), self.NAME, "a Keras attention_output kernel (NH, Dh, E)")
        nh, dh, e = m.shape
        if self.num_heads is not None and self.num_heads != nh:
            raise TransformError(f"`{self.NAME}`: kernel has {nh} heads, the rule says {self.num_heads}")
        return MhaOutFromKeras(nh), (ArrayMeta((e, nh * dh), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        nh, dh, e = ops.shape(xs[0])
        return (ops.reshape(ops.transpose(xs[0], (2, 0, 1)), (e, nh * dh)),)

    def inverse(self) -> Transform:
        return MhaOutToKeras(self.num_heads)


@register
@dataclass(frozen=True)
class MhaProjToKeras(Transform):
    """One separate projection -> a Keras query/key/value EinsumDense: a Linear weight
    (NH*Dh, E_in) -> (E_in, NH, Dh) via `W.reshape(NH, Dh, E_in).transpose(2, 0, 1)`, or its
    bias (NH*Dh,) -> (NH, Dh). For q/k/v_proj_weight (kdim != embed_dim) and HF attention.

    Example: `attn.q_proj.weight -> mha.query.kernel | mha_proj_to_keras`  (32, 48) -> (48, 4, 8)
    """

    NAME = "mha_proj_to_keras"
    VIEW = True
    INVERTIBLE = True
    num_heads: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        r = U.rank_in(m, (1, 2), self.NAME, "a projection weight (NH*Dh, E_in) or bias (NH*Dh,)")
        nh = _heads(self.num_heads, ctx, self.NAME, 1 if r == 2 else 0, r + 1)
        dh = _divide(m.shape[0], nh, self.NAME, m.shape)
        out = (m.shape[1], nh, dh) if r == 2 else (nh, dh)
        return MhaProjToKeras(nh), (ArrayMeta(out, m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        s = ops.shape(xs[0])
        nh = U.resolved(self.num_heads, self.NAME, "num_heads")
        if len(s) == 1:
            return (ops.reshape(xs[0], (nh, s[0] // nh)),)
        return (ops.transpose(ops.reshape(xs[0], (nh, s[0] // nh, s[1])), (2, 0, 1)),)

    def inverse(self) -> Transform:
        return MhaProjFromKeras(self.num_heads)


@register
@dataclass(frozen=True)
class MhaProjFromKeras(Transform):
    """A Keras query/key/value EinsumDense kernel (E_in, NH, Dh) -> a Linear weight (NH*Dh, E_in),
    or its bias (NH, Dh) -> (NH*Dh,).

    Example: `mha.query.kernel -> attn.q_proj.weight | mha_proj_from_keras`  (48, 4, 8) -> (32, 48)
    """

    NAME = "mha_proj_from_keras"
    INVERTIBLE = True
    num_heads: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        r = U.rank_in(m, (2, 3), self.NAME, "a Keras kernel (E_in, NH, Dh) or bias (NH, Dh)")
        nh, dh = m.shape[-2:]
        if self.num_heads is not None and self.num_heads != nh:
            raise TransformError(f"`{self.NAME}`: {U.fmt(m.shape)} has {nh} heads, the rule says {self.num_heads}")
        out = (nh * dh, m.shape[0]) if r == 3 else (nh * dh,)
        return MhaProjFromKeras(nh), (ArrayMeta(out, m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        s = ops.shape(xs[0])
        if len(s) == 2:
            return (ops.reshape(xs[0], (s[0] * s[1],)),)
        return (ops.reshape(ops.transpose(xs[0], (1, 2, 0)), (s[1] * s[2], s[0])),)

    def inverse(self) -> Transform:
        return MhaProjToKeras(self.num_heads)
