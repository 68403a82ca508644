"""Hypothesis strategies for transform chains: random 1:1 transforms whose parameters fit the
shape they meet, drawn step by step (shared by the transform and the pipeline property tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from wmap.transforms import ArrayMeta, InferContext, Transform, build

CTX = InferContext(sources=(), targets=(), is_last=False)
Shape = tuple[int, ...]


def _dim(draw: Any, shape: Shape) -> int:
    return int(draw(st.integers(-len(shape), len(shape) - 1)))


@st.composite
def step(draw: Any, shape: Shape) -> Transform:
    """One 1:1 transform that is valid for `shape`."""
    r = len(shape)
    options = ["permute", "rearrange", "reshape_flat", "reshape_split", "flip", "unsqueeze", "slice", "sum",
               "mean", "repeat", "scale", "prune", "cast", "identity", "pad", "adapt"]
    if r == 2:
        options += ["transpose", "linear_to_dense"]
    if r > 2:
        options += ["transpose_swap"]
    if 3 <= r <= 5:
        options += ["conv_to_keras"]
    if 1 in shape:
        options += ["squeeze"]
    if r >= 2:
        options += ["select"]
    if any(d % 2 == 0 for d in shape):
        options += ["gates"]
    if r >= 2:
        options += ["truncate"]
    kind = draw(st.sampled_from(options))
    d = _dim(draw, shape)
    if kind == "permute":
        return build("permute", [tuple(draw(st.permutations(range(r))))], [])
    if kind == "transpose":
        return build("transpose", [], [])
    if kind == "transpose_swap":
        return build("transpose", [d, _dim(draw, shape)], [])
    if kind == "rearrange":
        names = [f"a{i}" for i in range(r)]
        perm = draw(st.permutations(names))
        right = " ".join(perm)
        if r >= 2 and draw(st.booleans()):  # merge the first two output axes
            right = f"({perm[0]} {perm[1]}) " + " ".join(perm[2:])
        return build("rearrange", [f"{' '.join(names)} -> {right}"], [])
    if kind == "reshape_flat":
        return build("reshape", [[-1]], [])
    if kind == "reshape_split":
        size = shape[d]
        f = draw(st.sampled_from([k for k in range(1, size + 1) if size % k == 0]))
        new = list(shape[: d % r]) + [f, -1] + list(shape[d % r + 1:])
        return build("reshape", [new], [])
    if kind in ("flip", "unsqueeze"):
        return build(kind, [d], [])
    if kind == "squeeze":
        return build("squeeze", [shape.index(1)], [])
    if kind == "slice":
        n = shape[d]
        start = draw(st.integers(0, n - 1))
        return build("slice", [d, start, draw(st.integers(start + 1, n)), draw(st.integers(1, 3))], [])
    if kind == "select":
        return build("select", [d, draw(st.integers(-shape[d], shape[d] - 1))], [])
    if kind in ("sum", "mean"):
        return build(kind, [d], [("keepdim", draw(st.booleans()))])
    if kind == "repeat":
        return build("repeat", [draw(st.integers(1, 3)), d], [("interleave", draw(st.booleans()))])
    if kind == "scale":
        return build("scale", [draw(st.floats(-4, 4, allow_nan=False, width=32))], [])
    if kind == "prune":
        return build("prune", [draw(st.floats(0, 1, width=32))], [])
    if kind == "cast":
        return build("cast", [draw(st.sampled_from(["float32", "float64", "bfloat16", "float16"]))], [])
    if kind == "pad":
        init = draw(st.sampled_from(["zeros", "mean", "normal", "constant"]))
        return build("pad", [d, shape[d] + draw(st.integers(0, 3))], [("init", init)])
    if kind == "truncate":
        return build("truncate", [d, draw(st.integers(1, shape[d]))], [])
    if kind == "adapt":
        return build("adapt_channels", [d], [("to", draw(st.integers(1, 7)))])
    if kind == "gates":
        dd = next(i for i, s in enumerate(shape) if s % 2 == 0)
        return build("reorder_gates", ["ab", "ba", dd], [])
    return build(kind, [], [])


@st.composite
def chains(draw: Any) -> tuple[Shape, list[Transform], list[ArrayMeta]]:
    shape: Shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    meta = ArrayMeta(shape, "float32")
    steps: list[Transform] = []
    metas = [meta]
    for _ in range(draw(st.integers(1, 5))):
        if len(meta.shape) == 0 or np.prod(meta.shape) > 2000:
            break
        t = draw(step(meta.shape))
        resolved, (meta,) = t.infer([meta], CTX)
        steps.append(resolved)
        metas.append(meta)
    return shape, steps, metas
