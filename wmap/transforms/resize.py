"""Resizing: grow a dim with a deterministic fill (vocabulary growth), shrink one (truncate),
or resample a grid (position embeddings, like timm's resample_abs_pos_embed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from wmap.transforms import _util as U
from wmap.transforms.base import A, ArrayMeta, ArrayOps, InferContext, Transform, TransformError, register

_INITS = ("zeros", "constant", "mean", "normal")


@register
@dataclass(frozen=True)
class Pad(Transform):
    """Grow `dim` to `to` (default: the target's size), filling the new rows deterministically.

    init: "zeros"; "constant" (`value`); "mean" (every new row is the mean of the existing
    rows, a common choice for new tokens); "normal" (N(0, std) from a numpy PCG64 generator
    seeded with `seed`, identical on every backend). `side="start"` prepends instead.
    Example: `wte.weight -> embed.weight | pad(0, init="mean")`  (50257, 768) -> (50304, 768)
    """

    NAME = "pad"
    dim: int = 0
    to: int | None = None
    init: str = "zeros"
    value: float = 0.0
    std: float = 0.02
    seed: int = 0
    side: str = "end"

    def __post_init__(self) -> None:
        if self.init not in _INITS:
            from wmap.core.errors import did_you_mean
            raise TransformError(f"`pad`: unknown init `{self.init}`",
                                 did_you_mean(self.init, _INITS) or "one of: " + ", ".join(_INITS))
        if self.side not in ("end", "start"):
            raise TransformError(f"`pad`: side must be \"end\" or \"start\", got {self.side!r}")
        if self.std < 0:
            raise TransformError(f"`pad`: std must be >= 0, got {self.std}")

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        if self.to is not None:
            to = self.to
        else:
            t = U.target_meta(ctx, self.NAME, "to").shape
            if len(t) != len(m.shape):
                raise TransformError(f"`pad({d})`: the target {U.fmt(t)} has another rank than {U.fmt(m.shape)}")
            to = t[d]
        if to < m.shape[d]:
            raise TransformError(f"`pad` grows dim {d} to {to}, but the source {U.fmt(m.shape)} already has "
                                 f"{m.shape[d]}", f"to shrink use `truncate({d})` or `slice({d}, 0, {to})`")
        if self.init in ("mean", "normal"):
            U.need_float(m, self.NAME)
        if self.init == "mean" and m.shape[d] == 0:
            raise TransformError("`pad(init=\"mean\")` needs at least one existing row")
        shape = list(m.shape)
        shape[d] = to
        return dataclasses.replace(self, dim=d, to=to), (ArrayMeta(tuple(shape), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        (x,) = xs
        shape = list(ops.shape(x))
        extra = U.resolved(self.to, self.NAME, "to") - shape[self.dim]
        if extra == 0:
            return (x,)
        shape[self.dim] = extra
        dt = ops.dtype_name(x)
        if self.init == "mean":
            fill = ops.repeat(ops.mean(x, self.dim, True), extra, self.dim)
        elif self.init == "normal":
            import numpy as np  # here, not with the module: checking a spec's names must not pay for it
            rng = np.random.Generator(np.random.PCG64(self.seed))
            vals = (rng.standard_normal(tuple(shape)) * self.std).astype(np.float32)
            fill = ops.cast(ops.asarray(vals, x), dt)
        else:
            fill = ops.full(shape, self.value if self.init == "constant" else 0.0, dt, x)
        parts = [x, fill] if self.side == "end" else [fill, x]
        return (ops.concat(parts, self.dim),)


@register
@dataclass(frozen=True)
class Truncate(Transform):
    """Keep the first `size` entries along `dim` (default: the target's size); the shrink of `pad`.

    Example: `embed.weight -> wte.weight | truncate(0)`  (50304, 768) -> (50257, 768)
    """

    NAME = "truncate"
    VIEW = True
    dim: int = 0
    size: int | None = None

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        if self.size is not None:
            size = self.size
        else:
            t = U.target_meta(ctx, self.NAME, "size").shape
            if len(t) != len(m.shape):
                raise TransformError(f"`truncate({d})`: the target {U.fmt(t)} has another rank than {U.fmt(m.shape)}")
            size = t[d]
        if not 0 < size <= m.shape[d]:
            raise TransformError(f"`truncate` keeps {size} of dim {d}, the source {U.fmt(m.shape)} has "
                                 f"{m.shape[d]}", f"to grow use `pad({d})`")
        shape = list(m.shape)
        shape[d] = size
        return Truncate(d, size), (ArrayMeta(tuple(shape), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.slice(xs[0], self.dim, 0, U.resolved(self.size, self.NAME, "size"), 1),)


_MODES = ("bicubic", "bilinear", "nearest")
_LAYOUTS = ("auto", "tokens", "chw", "hwc")


@register
@dataclass(frozen=True)
class Resize(Transform):
    """Resample a 2-D grid, as torch F.interpolate(align_corners=False, antialias=False).

    layout "tokens": (..., prefix + gh*gw, D), a ViT position embedding; the first
    `prefix_tokens` rows (cls/register tokens) are kept, the grid (`from_grid`, default
    square) is resampled to `size`. "chw": the last two dims are the grid, e.g. (C, H, W).
    "hwc": dims -3, -2 are the grid, e.g. (1, H, W, C). "auto" reads the layout from which
    dims differ between source and target (one dim at -2: tokens). `size` defaults from the
    target. Note timm's resample_abs_pos_embed defaults to antialias=True, which differs
    slightly when shrinking.
    Example: `pos_embed -> pos_embed | resize(prefix_tokens=1)`  (1, 197, 768) -> (1, 257, 768)
    """

    NAME = "resize"
    size: tuple[int, ...] | None = None
    mode: str = "bicubic"
    prefix_tokens: int = 0
    layout: str = "auto"
    from_grid: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise TransformError(f"`resize`: unknown mode `{self.mode}`", "one of: " + ", ".join(_MODES))
        if self.layout not in _LAYOUTS:
            raise TransformError(f"`resize`: unknown layout `{self.layout}`", "one of: " + ", ".join(_LAYOUTS))
        for p in (self.size, self.from_grid):
            if p is not None and (len(p) != 2 or min(p) < 1):
                raise TransformError(f"`resize`: grids are [h, w] with positive sizes, got {list(p)}")

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.need_float(m, self.NAME)
        target = U.target_meta(ctx, self.NAME, "size").shape if self.size is None else None
        layout = self.layout if self.layout != "auto" else _guess_layout(m.shape, target, self.size, self.prefix_tokens)
        if layout == "tokens":
            return self._tokens(m, target)
        U.rank_in(m, (2, 3, 4, 5), self.NAME, "a grid")
        if layout == "hwc" and len(m.shape) < 3:
            raise TransformError(f"`resize(layout=\"hwc\")` needs (..., H, W, C), got {U.fmt(m.shape)}")
        at = len(m.shape) - (2 if layout == "chw" else 3)
        size = self.size if self.size is not None else (target or ())[at:at + 2]
        if len(size) != 2:
            raise TransformError(f"`resize`: target {U.fmt(target or ())} has no grid at dims {at}, {at + 1}")
        shape = m.shape[:at] + tuple(size) + m.shape[at + 2:]
        return Resize(tuple(size), self.mode, 0, layout, None), (ArrayMeta(shape, m.dtype),)

    def _tokens(self, m: ArrayMeta, target: tuple[int, ...] | None) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.rank_in(m, (2, 3), self.NAME, "a token grid (..., tokens, dim)")
        p = self.prefix_tokens
        n = m.shape[-2] - p
        grid = self.from_grid or _square(n, "source", m.shape, p)
        if grid[0] * grid[1] != n:
            raise TransformError(f"`resize`: from_grid {list(grid)} holds {grid[0] * grid[1]} tokens, the source "
                                 f"{U.fmt(m.shape)} has {n} after {p} prefix token(s)")
        if self.size is not None:
            size = tuple(self.size)
        else:
            assert target is not None
            size = _square(target[-2] - p, "target", target, p)
        shape = m.shape[:-2] + (p + size[0] * size[1], m.shape[-1])
        return Resize(size, self.mode, p, "tokens", tuple(grid)), (ArrayMeta(shape, m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        (x,) = xs
        size = U.resolved(self.size, self.NAME, "size")
        s = ops.shape(x)
        if self.layout == "chw":
            return (ops.interpolate(x, size, self.mode),)
        if self.layout == "hwc":
            r = len(s)
            to_chw = tuple(range(r - 3)) + (r - 1, r - 3, r - 2)
            y = ops.interpolate(ops.transpose(x, to_chw), size, self.mode)
            return (ops.transpose(y, U.argsort(to_chw)),)
        p, (gh, gw) = self.prefix_tokens, U.resolved(self.from_grid, self.NAME, "from_grid")
        lead, dim = s[:-2], s[-1]
        r = len(lead)
        grid = ops.reshape(ops.slice(x, r, p, s[-2], 1), lead + (gh, gw, dim))
        to_chw = tuple(range(r)) + (r + 2, r, r + 1)
        y = ops.transpose(ops.interpolate(ops.transpose(grid, to_chw), size, self.mode), U.argsort(to_chw))
        y = ops.reshape(y, lead + (size[0] * size[1], dim))
        return (ops.concat([ops.slice(x, r, 0, p, 1), y], r) if p else y,)


def _square(n: int, which: str, shape: Sequence[int], p: int) -> tuple[int, int]:
    side = U.isqrt_exact(n)
    if side is None or side == 0:
        raise TransformError(f"`resize`: the {which} {U.fmt(shape)} has {n} grid tokens after {p} prefix token(s), "
                             "not a square grid", "set `prefix_tokens` (cls/register tokens), or give "
                             "`from_grid=[h, w]` and `size=[h, w]` for non-square grids")
    return side, side


def _guess_layout(src: Sequence[int], tgt: Sequence[int] | None, size: Sequence[int] | None, prefix: int) -> str:
    if tgt is not None and len(tgt) == len(src):
        diff = [i for i, (a, b) in enumerate(zip(src, tgt, strict=True)) if a != b]
        r = len(src)
        if diff == [r - 2]:
            return "tokens"
        if diff and set(diff) <= {r - 2, r - 1}:
            return "chw"
        if diff and set(diff) <= {r - 3, r - 2} and r >= 3:
            return "hwc"
        if not diff:  # same size: an identity resample; say "tokens" where it reads as one
            tokens = prefix > 0 or (r == 3 and src[0] == 1)
            return "tokens" if tokens and U.isqrt_exact(src[-2] - prefix) else "chw"
    elif tgt is None and size is not None:
        return "tokens" if len(src) == 3 and src[0] == 1 else "chw"
    raise TransformError(f"`resize` cannot tell which dims of {U.fmt(src)} form the grid"
                         + (f" (target {U.fmt(tgt)})" if tgt is not None else ""),
                         "set `layout=\"tokens\"` (ViT (1, N, D)), `\"chw\"` (grid last) or `\"hwc\"` (channels last)")
