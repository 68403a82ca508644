"""Routing: one tensor to many (split, chunk, unstack), many to one (concat, stack), or a part
of one (slice, select). Fan-out sizes default to the target shapes, so a spec rarely
repeats a number the plan already knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wmap.core.errors import error
from wmap.transforms import _util as U
from wmap.transforms.base import A, ArrayMeta, ArrayOps, InferContext, Transform, TransformError, register


def _with(shape: Sequence[int], dim: int, size: int) -> tuple[int, ...]:
    s = list(shape)
    s[dim] = size
    return tuple(s)


@register
@dataclass(frozen=True)
class Split(Transform):
    """Fan-out: cut one tensor along `dim` into parts of `sizes` (default: the targets' sizes).

    Example: `attn.qkv.weight -> attn.{q,k,v}.weight | split(0)`  (192, 64) -> 3 x (64, 64)
    """

    NAME = "split"
    ARITY = "1:n"
    VIEW = True
    INVERTIBLE = True
    dim: int = 0
    sizes: tuple[int, ...] | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        if self.sizes is None and not ctx.is_last and ctx.targets:
            # more transforms follow (e.g. `split(1) | transpose`), so the target shapes are not the
            # parts' shapes: cut into equal parts, one per target; the final shape check still applies
            n = len(ctx.targets)
            if m.shape[d] % n:
                raise TransformError(f"`split({self.dim})` before other transforms cuts into {n} equal parts, "
                                     f"but dim {d} of {U.fmt(m.shape)} is not divisible by {n}",
                                     "give the sizes: `split(dim, sizes=[...])`")
            sizes = [m.shape[d] // n] * n
        elif self.sizes is None:
            shapes = U.targets_shapes(ctx, self.NAME, "sizes")
            bad = [s for s in shapes if len(s) != len(m.shape)]
            if bad:
                raise TransformError(f"`split({self.dim})`: target shape {U.fmt(bad[0])} has a different rank than "
                                     f"the source {U.fmt(m.shape)}", "reshape the parts after a split with `reshape`")
            sizes = [s[d] for s in shapes]
        else:
            sizes = list(self.sizes)
        free = [i for i, s in enumerate(sizes) if s == -1]
        if len(free) == 1:
            sizes[free[0]] = m.shape[d] - sum(s for s in sizes if s != -1)
        if sum(sizes) != m.shape[d] or any(s < 0 for s in sizes):
            raise TransformError(f"`split` into {len(sizes)} parts of {sizes} along dim {d} needs size {sum(sizes)}, "
                                 f"the source {U.fmt(m.shape)} has {m.shape[d]}",
                                 "check the split dim and the target shapes (a fused tensor may be padded or "
                                 "interleaved)")
        outs = tuple(ArrayMeta(_with(m.shape, d, s), m.dtype) for s in sizes)
        return Split(d, tuple(sizes)), outs

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return ops.split(xs[0], U.resolved(self.sizes, self.NAME, "sizes"), self.dim)

    def inverse(self) -> Transform:
        return Concat(self.dim, self.sizes)


@register
@dataclass(frozen=True)
class Chunk(Transform):
    """Fan-out: cut one tensor into `n` equal parts along `dim` (n defaults to the target count).

    Example: `mlp.gate_up.weight -> mlp.{gate,up}.weight | chunk(dim=0)`  (2F, D) -> 2 x (F, D)
    """

    NAME = "chunk"
    ARITY = "1:n"
    VIEW = True
    INVERTIBLE = True
    n: int | None = None
    dim: int = 0

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        n = self.n if self.n is not None else len(U.targets_shapes(ctx, self.NAME, "n"))
        if n < 1 or m.shape[d] % n:
            raise TransformError(f"`chunk` into {n} equal parts along dim {d}: size {m.shape[d]} of "
                                 f"{U.fmt(m.shape)} is not divisible by {n}",
                                 "use `split(dim, sizes=[...])` for unequal parts")
        part = ArrayMeta(_with(m.shape, d, m.shape[d] // n), m.dtype)
        return Chunk(n, d), (part,) * n

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        n = U.resolved(self.n, self.NAME, "n")
        size = ops.shape(xs[0])[self.dim] // n
        return ops.split(xs[0], [size] * n, self.dim)

    def inverse(self) -> Transform:
        return Concat(self.dim)


@register
@dataclass(frozen=True)
class Duplicate(Transform):
    """Fan-out: the same tensor to every target (`n`, default the target count), for one weight the
    other side keeps in several places (T5Gemma 2's token embedding, read by its encoder and by its
    decoder). Runs back as `deduplicate`.

    Example: `embed_tokens.weight -> {encoder,decoder}_embedding.embeddings | duplicate`  (V, D) -> 2 x (V, D)
    """

    NAME = "duplicate"
    ARITY = "1:n"
    VIEW = True
    INVERTIBLE = True
    n: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        n = self.n if self.n is not None else len(U.targets_shapes(ctx, self.NAME, "n"))
        if n < 1:
            raise TransformError(f"`duplicate` into {n} copies", "give n >= 1, or let the targets say how many")
        return Duplicate(n), (m,) * n

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (xs[0],) * U.resolved(self.n, self.NAME, "n")

    def inverse(self) -> Transform:
        return Deduplicate()


@register
@dataclass(frozen=True)
class Deduplicate(Transform):
    """Fan-in: one tensor from several copies of it, which must hold the same bytes (WM607 when they
    do not, since then no one of them is the tensor): the reverse of `duplicate`.

    Example: `{encoder,decoder}_embedding.embeddings -> embed_tokens.weight | deduplicate`  2 x (V, D) -> (V, D)
    """

    NAME = "deduplicate"
    ARITY = "n:1"
    INVERTIBLE = True

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.at_least(ins, 1, self.NAME)
        _agree(ins, None, self.NAME)
        return self, (ins[0],)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        for i, x in enumerate(xs[1:], 2):
            if not ops.same_bits(xs[0], x):
                raise error("WM607", f"`deduplicate`: input {i} differs from input 1, so they are not copies of one "
                            "tensor", hint="map one copy and drop the others, or make them equal in the model first")
        return (xs[0],)

    def inverse(self) -> Transform:
        return Duplicate()


def _agree(ins: Sequence[ArrayMeta], d: int | None, name: str) -> None:
    """Fan-in parts must agree on rank, dtype and every dim but `d`."""
    first = ins[0]
    for i, m in enumerate(ins[1:], 1):
        if m is first or (m.shape == first.shape and m.dtype == first.dtype):
            continue  # the usual case (256 experts alike), settled without the per-dim scan
        same = len(m.shape) == len(first.shape) and all(
            a == b for k, (a, b) in enumerate(zip(m.shape, first.shape, strict=True)) if k != d)
        if not same:
            where = "every dim" if d is None else f"every dim except {d}"
            raise TransformError(f"`{name}`: input {i + 1} has shape {U.fmt(m.shape)}, input 1 has "
                                 f"{U.fmt(first.shape)}; they must agree on {where}",
                                 "check the source order and that all sources are the same kind of tensor")
        if m.dtype != first.dtype:
            raise TransformError(f"`{name}`: input {i + 1} is {m.dtype}, input 1 is {first.dtype}",
                                 f"add `cast(\"{first.dtype}\")` to one source's rule first")


@register
@dataclass(frozen=True)
class Concat(Transform):
    """Fan-in: join the inputs along an existing `dim` (the plan records each part's size).

    Example: `attn.{q,k,v}.weight -> attn.qkv.weight | concat(0)`  3 x (64, 64) -> (192, 64)
    """

    NAME = "concat"
    ARITY = "n:1"
    INVERTIBLE = True
    dim: int = 0
    sizes: tuple[int, ...] | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.at_least(ins, 1, self.NAME)
        d = U.norm_dim(self.dim, len(ins[0].shape), self.NAME)
        _agree(ins, d, self.NAME)
        sizes = tuple(m.shape[d] for m in ins)
        if self.sizes is not None and tuple(self.sizes) != sizes:
            raise TransformError(f"`concat`: parts have sizes {list(sizes)} along dim {d}, "
                                 f"the rule says {list(self.sizes)}")
        return Concat(d, sizes), (ArrayMeta(_with(ins[0].shape, d, sum(sizes)), ins[0].dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.concat(xs, self.dim),)

    def inverse(self) -> Transform:
        return Split(self.dim, self.sizes) if self.sizes is not None else Chunk(None, self.dim)


@register
@dataclass(frozen=True)
class Stack(Transform):
    """Fan-in: join equal-shape inputs along a new `dim`.

    Example: `experts.{0..7}.w1 -> moe.w1 | stack(0)`  8 x (F, D) -> (8, F, D)
    """

    NAME = "stack"
    ARITY = "n:1"
    INVERTIBLE = True
    dim: int = 0

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.at_least(ins, 1, self.NAME)
        d = U.norm_dim(self.dim, len(ins[0].shape), self.NAME, extra=1)
        _agree(ins, None, self.NAME)
        s = ins[0].shape
        return Stack(d), (ArrayMeta(s[:d] + (len(ins),) + s[d:], ins[0].dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.stack(xs, self.dim),)

    def inverse(self) -> Transform:
        return Unstack(self.dim)


@register
@dataclass(frozen=True)
class Unstack(Transform):
    """Fan-out: one output per index along `dim`, with that dim removed (inverse of stack).

    Example: `moe.w1 -> experts.{0..7}.w1 | unstack(0)`  (8, F, D) -> 8 x (F, D)
    """

    NAME = "unstack"
    ARITY = "1:n"
    VIEW = True
    INVERTIBLE = True
    dim: int = 0

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        if ctx.is_last and ctx.targets and len(ctx.targets) != m.shape[d]:
            raise TransformError(f"`unstack({d})` gives {m.shape[d]} parts from {U.fmt(m.shape)}, the rule has "
                                 f"{len(ctx.targets)} targets", "the target alternation must list one name per part")
        part = ArrayMeta(m.shape[:d] + m.shape[d + 1:], m.dtype)
        return Unstack(d), (part,) * m.shape[d]

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        s = ops.shape(xs[0])
        rest = s[: self.dim] + s[self.dim + 1:]
        return tuple(ops.reshape(p, rest) for p in ops.split(xs[0], [1] * s[self.dim], self.dim))

    def inverse(self) -> Transform:
        return Stack(self.dim)


@register
@dataclass(frozen=True)
class Slice(Transform):
    """Keep `start:stop:step` along `dim` (Python semantics; stop=None means to the end).

    Example: `wte.weight -> embed.weight | slice(0, 0, 32000)`  drop padded vocabulary rows
    """

    NAME = "slice"
    VIEW = True
    INVERTIBLE = True
    dim: int
    start: int = 0
    stop: int | None = None
    step: int = 1

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        if self.step < 1:
            raise TransformError(f"`slice`: step must be >= 1, got {self.step}", "reverse with `flip(dim)`")
        start, stop, step = slice(self.start, self.stop, self.step).indices(m.shape[d])
        n = len(range(start, stop, step))
        if n == 0:
            raise TransformError(f"`slice({d}, {self.start}, {self.stop})` of {U.fmt(m.shape)} is empty",
                                 f"dim {d} has size {m.shape[d]}")
        stop = start + (n - 1) * step + 1
        return Slice(d, start, stop, step), (ArrayMeta(_with(m.shape, d, n), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        stop = self.stop if self.stop is not None else ops.shape(xs[0])[self.dim]
        return (ops.slice(xs[0], self.dim, self.start, stop, self.step),)

    def inverse(self) -> Transform | None:
        # what the slice left out is not in its output: the way back keeps it from the target
        return Splice(self.dim, self.start, self.stop) if self.step == 1 else None


@register
@dataclass(frozen=True)
class Splice(Transform):
    """Write the tensor into part `start:stop` along `dim` of the target's current value, and keep
    the rest of the target as it is: the reverse of `slice`, as `keep` is the reverse of `drop`.
    Needs a target with values (a model in hand, or a template checkpoint with `--out`).

    Example: `pos.embeddings -> roberta.embeddings.position_embeddings.weight | splice(0, 2)`
      (64, 32) into rows 2..66 of (66, 32); rows 0 and 1 stay
    """

    NAME = "splice"
    INVERTIBLE = True
    READS_TARGET = True
    dim: int
    start: int = 0
    stop: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        if not ctx.is_last or len(ctx.targets) != 1:
            raise TransformError("`splice` writes into its target's current value, so it ends the chain of a rule "
                                 "with one target", "put `splice` last")
        t = ctx.targets[0]
        d = U.norm_dim(self.dim, len(t.shape), self.NAME)
        start, stop, _ = slice(self.start, self.stop).indices(t.shape[d])
        want = _with(t.shape, d, max(stop - start, 0))
        if len(m.shape) != len(t.shape) or tuple(m.shape) != want:
            raise TransformError(f"`splice({d}, {self.start}, {self.stop})`: part {start}:{stop} of the target "
                                 f"{U.fmt(t.shape)} is {U.fmt(want)}, the input is {U.fmt(m.shape)}",
                                 "the input must fill exactly that part")
        if t.dtype != m.dtype:
            raise TransformError(f"`splice`: the input is {m.dtype} and the target {t.dtype}",
                                 "the kept part is the target's own values: `cast` the input to the target's dtype first")
        return Splice(d, start, stop), (ArrayMeta(t.shape, m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        part, current = xs
        n = ops.shape(current)[self.dim]
        stop = n if self.stop is None else self.stop
        pieces = [ops.slice(current, self.dim, 0, self.start, 1)] if self.start else []
        pieces.append(part)
        if stop < n:
            pieces.append(ops.slice(current, self.dim, stop, n, 1))
        return (ops.concat(pieces, self.dim) if len(pieces) > 1 else ops.contiguous(part),)

    def inverse(self) -> Transform:
        return Slice(self.dim, self.start, self.stop)


@register
@dataclass(frozen=True)
class Select(Transform):
    """Take index `index` along `dim`, removing that dim.

    Example: `gru.bias -> gru.bias_ih | select(0, 0)`  (2, 3H) -> (3H,)
    """

    NAME = "select"
    VIEW = True
    dim: int
    index: int

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        if not -m.shape[d] <= self.index < m.shape[d]:
            raise TransformError(f"`select({d}, {self.index})`: index out of range for size {m.shape[d]} "
                                 f"of {U.fmt(m.shape)}")
        return Select(d, self.index % m.shape[d]), (ArrayMeta(m.shape[:d] + m.shape[d + 1:], m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        s = ops.shape(xs[0])
        i = self.index % s[self.dim]
        part = ops.slice(xs[0], self.dim, i, i + 1, 1)
        return (ops.reshape(part, s[: self.dim] + s[self.dim + 1:]),)
