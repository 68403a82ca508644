"""Value transforms: casts, scaling, pruning, and arithmetic over several sources (model
soups, task vectors, LoRA merges, `w - lr * g` updates).

Arithmetic runs in float32 (float64 for float64) and rounds once to the result dtype, so
numpy and torch give the same bits for bf16/fp16 inputs. The result dtype of several
inputs is their common dtype; mixed bf16/fp16 widen to float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


@register
@dataclass(frozen=True)
class Identity(Transform):
    """Pass the tensor through unchanged; what `layout(auto)` resolves to when layouts agree.

    Example: `bn.weight -> bn.gamma | identity`
    """

    NAME = "identity"
    VIEW = True
    INVERTIBLE = True

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        return self, (U.one(ins, self.NAME),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (xs[0],)

    def inverse(self) -> Transform:
        return self


@register
@dataclass(frozen=True)
class Cast(Transform):
    """Convert to `dtype` (round-to-nearest-even for floats). Narrowing is explicit in wmap:
    the plan only widens on its own.

    Example: `**.weight -> **.weight | cast("bfloat16")`
    """

    NAME = "cast"
    dtype: str

    def __post_init__(self) -> None:
        U.check_dtype(self.dtype, self.NAME)

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        return self, (ArrayMeta(m.shape, self.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (U.downcast(xs[0], ops, self.dtype),)


@register
@dataclass(frozen=True)
class Scale(Transform):
    """Multiply by a constant `a`.

    Example: `head.weight -> head.weight | scale(0.5)`
    """

    NAME = "scale"
    a: float

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.need_float(m, self.NAME)
        return self, (m,)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        dt = ops.dtype_name(xs[0])
        return (U.downcast(ops.mul(U.upcast(xs[0], ops, dt), self.a), ops, dt),)


@register
@dataclass(frozen=True)
class Prune(Transform):
    """Magnitude pruning: zero the small entries, keep the rest. `keep="ge"` (the default) keeps
    |x| >= threshold and zeroes |x| < threshold; `keep="gt"` keeps |x| > threshold and zeroes
    |x| <= threshold (what `mask = np.abs(w) > t` does). The plan shows which one a step uses.
    A zeroed entry keeps its sign (-0.0 where x < 0), as `w * mask` and torch.nn.utils.prune give it;
    magnitudes compare in the tensor's own dtype, as the hand-written mask does.

    Example: `**.weight -> **.weight | prune(1e-3)`, `| prune(0.1, keep="gt")`
    """

    NAME = "prune"
    threshold: float
    keep: str = "ge"

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise TransformError(f"`prune`: threshold must be >= 0, got {self.threshold}")
        if self.keep not in ("ge", "gt"):
            raise TransformError(f"`prune`: keep must be \"ge\" (keep |x| >= threshold) or \"gt\" (keep |x| > "
                                 f"threshold), got {self.keep!r}")

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.need_float(m, self.NAME)
        return self, (m,)

    def params(self) -> dict[str, JSONValue]:
        return {"threshold": self.threshold, "keep": self.keep}  # the default too: every plan says which

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.where_abs_below(xs[0], self.threshold, inclusive=self.keep == "gt"),)


def _same_shapes(ins: Sequence[ArrayMeta], name: str) -> ArrayMeta:
    for i, m in enumerate(ins[1:], 2):
        if m.shape != ins[0].shape:
            raise TransformError(f"`{name}`: input {i} has shape {U.fmt(m.shape)}, input 1 has {U.fmt(ins[0].shape)}",
                                 "element-wise arithmetic needs equal shapes; transform the sources to match first")
    return ArrayMeta(ins[0].shape, U.promote([m.dtype for m in ins], name))


def _combine(xs: Sequence[A], coeffs: Sequence[float], ops: ArrayOps[A], dtype: str) -> A:
    """sum(c_i * x_i) in the working precision, rounded once to `dtype`."""
    w = U.work_dtype(dtype)
    acc: A | None = None
    for x, c in zip(xs, coeffs, strict=True):
        term = U.upcast(x, ops, w)
        term = term if c == 1.0 else ops.mul(term, c)
        acc = term if acc is None else ops.add(acc, term)
    assert acc is not None  # `infer` takes at least one input
    return U.downcast(acc, ops, dtype)


@dataclass(frozen=True)
class _Arith(Transform):
    """Element-wise n:1 arithmetic: subclasses give the input count and coefficients."""

    ARITY = "n:1"

    def _count(self, ins: Sequence[ArrayMeta]) -> None:
        U.at_least(ins, 2, self.NAME)

    def coeffs(self, n: int) -> tuple[float, ...]:
        raise NotImplementedError

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        self._count(ins)
        return self, (_same_shapes(ins, self.NAME),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        dtype = U.promote([ops.dtype_name(x) for x in xs], self.NAME)
        return (_combine(xs, self.coeffs(len(xs)), ops, dtype),)


@register
@dataclass(frozen=True)
class Add(_Arith):
    """Fan-in: element-wise sum of two or more inputs (e.g. base + task vector).

    Example: `{base,delta}:**.weight -> **.weight | add`
    """

    NAME = "add"

    def coeffs(self, n: int) -> tuple[float, ...]:
        return (1.0,) * n


@register
@dataclass(frozen=True)
class AddRow(Transform):
    """Fan-in: the first input plus one row of the second (`index` along `dim`), added to every row
    of the first along `dim`: a constant folded into another tensor. One-way: a sum does not say
    what its parts were.

    Example: `embeddings.{position,token_type}_embeddings.weight -> pos.embeddings | add_row(0)`
      (66, 32) + row 0 of (2, 32) -> (66, 32)  (XLM-RoBERTa's token-type row, the same for every token)
    """

    NAME = "add_row"
    ARITY = "n:1"
    index: int = 0
    dim: int = 0

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.exactly(ins, 2, self.NAME, "the tensor, then the one whose row is added")
        a, b = ins
        d = U.norm_dim(self.dim, len(a.shape), self.NAME)
        if len(b.shape) != len(a.shape) or b.shape[:d] + b.shape[d + 1:] != a.shape[:d] + a.shape[d + 1:]:
            raise TransformError(f"`add_row`: a row of {U.fmt(b.shape)} along dim {d} does not fit {U.fmt(a.shape)}",
                                 "both inputs need the same shape apart from `dim`")
        if not -b.shape[d] <= self.index < b.shape[d]:
            raise TransformError(f"`add_row({self.index})`: index out of range for size {b.shape[d]} of "
                                 f"{U.fmt(b.shape)}")
        return AddRow(self.index % b.shape[d], d), (ArrayMeta(a.shape, U.promote([a.dtype, b.dtype], self.NAME)),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        a, b = xs
        row = ops.slice(b, self.dim, self.index, self.index + 1, 1)
        rows = ops.repeat(row, ops.shape(a)[self.dim], self.dim)
        dtype = U.promote([ops.dtype_name(a), ops.dtype_name(b)], self.NAME)
        return (_combine((a, rows), (1.0, 1.0), ops, dtype),)


@register
@dataclass(frozen=True)
class Sub(_Arith):
    """Fan-in: first input minus the second (e.g. a task vector: tuned - base).

    Example: `{tuned,base}:**.weight -> **.weight | sub`
    """

    NAME = "sub"

    def _count(self, ins: Sequence[ArrayMeta]) -> None:
        U.exactly(ins, 2, self.NAME, "a, b for a - b")

    def coeffs(self, n: int) -> tuple[float, ...]:
        return (1.0, -1.0)


@register
@dataclass(frozen=True)
class Lerp(_Arith):
    """Fan-in: a + t * (b - a) = (1 - t) a + t b for two inputs (linear model merge).

    Example: `{base,tuned}:**.weight -> **.weight | lerp(0.3)`
    """

    NAME = "lerp"
    t: float

    def _count(self, ins: Sequence[ArrayMeta]) -> None:
        U.exactly(ins, 2, self.NAME, "a, b for a + t * (b - a)")

    def coeffs(self, n: int) -> tuple[float, ...]:
        return (1.0 - self.t, self.t)


@register
@dataclass(frozen=True)
class Average(_Arith):
    """Fan-in: weighted average of N inputs (a model soup). Weights default to equal; with
    `normalize` (default) they are divided by their sum.

    Example: `{a,b,c}:**.weight -> **.weight | average(weights=[0.5, 0.3, 0.2])`
    """

    NAME = "average"
    weights: tuple[float, ...] | None = None
    normalize: bool = True

    def _count(self, ins: Sequence[ArrayMeta]) -> None:
        U.at_least(ins, 1, self.NAME)
        if self.weights is not None and len(self.weights) != len(ins):
            raise TransformError(f"`average` has {len(self.weights)} weights for {len(ins)} inputs",
                                 "give one weight per source, in source order")
        if self.normalize and self.weights is not None and sum(self.weights) == 0:
            raise TransformError("`average`: the weights sum to 0 and cannot be normalised",
                                 "set `normalize=false` for task arithmetic with signed weights")

    def coeffs(self, n: int) -> tuple[float, ...]:
        w = self.weights if self.weights is not None else (1.0,) * n
        total = sum(w) if self.normalize else 1.0
        return tuple(x / total for x in w)


@register
@dataclass(frozen=True)
class Update(_Arith):
    """Fan-in: w - lr * g, an incremental update from a gradient or delta checkpoint.

    Example: `{base,grads}:**.weight -> **.weight | update(0.01)`
    """

    NAME = "update"
    lr: float

    def _count(self, ins: Sequence[ArrayMeta]) -> None:
        U.exactly(ins, 2, self.NAME, "w, g for w - lr * g")

    def coeffs(self, n: int) -> tuple[float, ...]:
        return (1.0, -self.lr)


@register
@dataclass(frozen=True)
class Lora(Transform):
    """Fan-in: merge a LoRA adapter, W + scale * B @ A, for inputs W (out, in), A (r, in),
    B (out, r) (peft's lora_A / lora_B). `scale` is usually lora_alpha / r.

    Example: `{base:q.weight, lora:q.lora_A.weight, lora:q.lora_B.weight} -> q.weight | lora(2.0)`
    """

    NAME = "lora"
    ARITY = "n:1"
    scale: float = 1.0

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.exactly(ins, 3, self.NAME, "W, A, B")
        w, a, b = ins
        if len(w.shape) != 2 or len(a.shape) != 2 or len(b.shape) != 2:
            raise TransformError(f"`lora` needs 2-D W, A, B; got {U.fmt(w.shape)}, {U.fmt(a.shape)}, {U.fmt(b.shape)}",
                                 "for conv LoRA reshape W to (out, in*k*k) first")
        (o, i), (r, ai), (bo, br) = w.shape, a.shape, b.shape
        if ai != i or bo != o or br != r:
            swapped = a.shape[0] == o and b.shape[1] == i and a.shape[1] == b.shape[0]
            hint = "the order is W, A, B (A is lora_A: (r, in))" if swapped else \
                f"for W {U.fmt(w.shape)}, A must be (r, {i}) and B ({o}, r)"
            raise TransformError(f"`lora`: W {U.fmt(w.shape)}, A {U.fmt(a.shape)}, B {U.fmt(b.shape)} do not fit "
                                 "W + B @ A", hint)
        return self, (ArrayMeta(w.shape, U.promote([w.dtype, a.dtype, b.dtype], self.NAME)),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        w, a, b = xs
        dtype = U.promote([ops.dtype_name(x) for x in xs], self.NAME)
        wd = U.work_dtype(dtype)
        delta = ops.matmul(U.upcast(b, ops, wd), U.upcast(a, ops, wd))
        return (U.downcast(ops.add(U.upcast(w, ops, wd), ops.mul(delta, self.scale)), ops, dtype),)
