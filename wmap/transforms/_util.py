"""Shared checks for transform `infer` methods: arity, dims, sizes from targets, dtypes.

Every check raises TransformError with a message that names the transform and the
shapes involved, and a hint saying what to write instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from wmap.core.inventory import DTYPE_BITS, FLOAT_DTYPES, Shape
from wmap.transforms.base import A, ArrayMeta, ArrayOps, InferContext, TransformError

V = TypeVar("V")


def fmt(shape: Sequence[int]) -> str:
    inner = ", ".join(str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def one(ins: Sequence[ArrayMeta], name: str) -> ArrayMeta:
    """The single input of a 1:1 (or 1:n) transform."""
    if len(ins) != 1:
        raise TransformError(f"`{name}` takes one input, got {len(ins)}",
                             "several sources need a fan-in transform first (concat, stack, add, lerp...)")
    return ins[0]


def exactly(ins: Sequence[ArrayMeta], n: int, name: str, what: str) -> None:
    if len(ins) != n:
        raise TransformError(f"`{name}` takes {n} inputs ({what}), got {len(ins)}",
                             f"list {n} sources in the rule, in the order {what}")


def at_least(ins: Sequence[ArrayMeta], n: int, name: str) -> None:
    if len(ins) < n:
        raise TransformError(f"`{name}` takes at least {n} inputs, got {len(ins)}",
                             "a fan-in rule lists several sources: `{a,b}.weight -> w | " + name + "`")


def norm_dim(dim: int, rank: int, name: str, extra: int = 0) -> int:
    """A non-negative dim for a tensor of `rank` (+`extra` for positions such as stack/unsqueeze)."""
    n = rank + extra
    if not -n <= dim < n:
        raise TransformError(f"`{name}`: dim {dim} is out of range for a {rank}-D tensor",
                             f"valid dims are {-n}..{n - 1}")
    return dim % n if n else 0


def rank_in(meta: ArrayMeta, ranks: Sequence[int], name: str, what: str) -> int:
    r = len(meta.shape)
    if r not in ranks:
        want = " or ".join(f"{k}-D" for k in ranks)
        raise TransformError(f"`{name}` expects {what} ({want}), got shape {fmt(meta.shape)}",
                             "check that the rule maps the tensor you meant; `wmap explain " + name + "`")
    return r


def target_meta(ctx: InferContext, name: str, param: str) -> ArrayMeta:
    """The single target, for a parameter left to default from it; only the last transform may."""
    if not ctx.is_last:
        raise TransformError(f"`{name}` needs `{param}` here: only the last transform of a chain takes "
                             "sizes from the target", f"write `{name}({param}=...)`")
    if len(ctx.targets) != 1:
        raise TransformError(f"`{name}` needs `{param}`: it takes it from one target, the rule has "
                             f"{len(ctx.targets)}", f"write `{name}({param}=...)`")
    t = ctx.targets[0]
    return ArrayMeta(t.shape, t.dtype)


def targets_shapes(ctx: InferContext, name: str, param: str) -> tuple[Shape, ...]:
    if not ctx.is_last or not ctx.targets:
        raise TransformError(f"`{name}` needs `{param}`: it takes it from the target shapes, and there are none "
                             "here", f"write `{name}({param}=...)`")
    return tuple(t.shape for t in ctx.targets)


def check_dtype(dtype: str, name: str) -> str:
    if dtype not in DTYPE_BITS:
        from wmap.core.errors import did_you_mean
        raise TransformError(f"`{name}`: unknown dtype `{dtype}`",
                             did_you_mean(dtype, DTYPE_BITS) or "known: " + ", ".join(sorted(DTYPE_BITS)))
    return dtype


def need_float(meta: ArrayMeta, name: str) -> None:
    if meta.dtype not in FLOAT_DTYPES:
        raise TransformError(f"`{name}` needs floating-point values, got {meta.dtype}",
                             f"add `cast(\"float32\")` before `{name}`")


_RANK = ("float8_e4m3fn", "float8_e5m2", "float16", "bfloat16", "float32", "float64")


def promote(dtypes: Sequence[str], name: str) -> str:
    """Result dtype of arithmetic on several inputs: equal dtypes stay; mixed floats widen.

    float16 with bfloat16 gives float32, as neither holds the other.
    """
    for d in dtypes:
        if d not in FLOAT_DTYPES:
            raise TransformError(f"`{name}` needs floating-point inputs, got {d}",
                                 "add `cast(\"float32\")` to the integer source first")
    uniq = sorted(set(dtypes), key=_RANK.index)
    if len(uniq) == 1:
        return uniq[0]
    best = uniq[-1]
    return "float32" if _RANK.index(best) < _RANK.index("float32") else best


def work_dtype(dtype: str) -> str:
    """Arithmetic runs in float32 (float64 for float64), so numpy and torch round the same way."""
    return "float64" if dtype == "float64" else "float32"


def upcast(x: A, ops: ArrayOps[A], dtype: str) -> A:
    w = work_dtype(dtype)
    return x if ops.dtype_name(x) == w else ops.cast(x, w)


def downcast(x: A, ops: ArrayOps[A], dtype: str) -> A:
    return x if ops.dtype_name(x) == dtype else ops.cast(x, dtype)


def resolved(value: V | None, name: str, param: str) -> V:
    """Guard for `apply` on a transform that never went through `infer`."""
    if value is None:
        raise TransformError(f"`{name}`: `{param}` is unresolved; run `infer` (plan) before `apply`")
    return value


def argsort(perm: Sequence[int]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def check_perm(perm: Sequence[int], rank: int, name: str) -> tuple[int, ...]:
    if len(perm) != rank:
        raise TransformError(f"`{name}`: permutation {list(perm)} has {len(perm)} dims, the tensor has {rank}",
                             f"give all {rank} dims, e.g. {list(reversed(range(rank)))}")
    out = tuple(norm_dim(d, rank, name) for d in perm)
    if sorted(out) != list(range(rank)):
        raise TransformError(f"`{name}`: {list(perm)} is not a permutation of {list(range(rank))}",
                             "every dim must appear exactly once")
    return out


def isqrt_exact(n: int) -> int | None:
    r = math.isqrt(n) if n >= 0 else -1
    return r if r >= 0 and r * r == n else None
