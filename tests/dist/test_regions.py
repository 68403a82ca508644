"""The region algebra (wmap/run/regions.py) on its own, in one process: for every step and every way of
cutting each target into 2 or 3 parts along any dim, the part computed from the source boxes the
program reads is bit for bit the same part of the whole-tensor computation; steps that need more
than a box gather, and say why."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

import wmap  # noqa: E402
from tests.support import paths  # noqa: E402
from tests.support.example_inventories import CHECKPOINTS  # noqa: E402
from wmap.run.execute import apply_chain  # noqa: E402
from wmap.run.regions import Program, box_numel, full_box, program_for, shard_step  # noqa: E402
from wmap.transforms import get_ops  # noqa: E402

OPS = get_ops("torch")

# (spec, source shapes, target shapes, dtype of the sources)
CASES: dict[str, tuple[str, dict[str, tuple[int, ...]], dict[str, tuple[int, ...]], Any]] = {
    "split_then_transpose": ("a -> {x,y,z} | split(0) | transpose", {"a": (6, 5)}, dict.fromkeys("xyz", (5, 2)),
                             torch.float32),
    "transpose_then_split": ("a -> {x,y,z} | transpose | split(0)", {"a": (5, 9)}, dict.fromkeys("xyz", (3, 5)),
                             torch.float32),
    "chunk_of_3d": ("a -> {x,y} | chunk(dim=1)", {"a": (3, 8, 5)}, dict.fromkeys("xy", (3, 4, 5)), torch.float32),
    "unstack": ("a -> {x,y,z} | unstack(1)", {"a": (4, 3, 5)}, dict.fromkeys("xyz", (4, 5)), torch.float32),
    "select_slice_step": ("a -> x | select(0, 1) | slice(1, 1, 8, 2)", {"a": (3, 4, 9)}, {"x": (4, 4)},
                          torch.float32),
    "permute_unsqueeze": ("a -> x | permute(2, 0, 1) | unsqueeze(1)", {"a": (3, 4, 5)}, {"x": (5, 1, 3, 4)},
                          torch.float32),
    "squeeze": ("a -> x | squeeze(1)", {"a": (6, 1, 4)}, {"x": (6, 4)}, torch.float32),
    "lerp_of_bf16": ("a, b -> x | lerp(0.3)", {"a": (7, 6), "b": (7, 6)}, {"x": (7, 6)}, torch.bfloat16),
    "scale_cast": ("a -> x | scale(0.1) | cast(\"bfloat16\")", {"a": (5, 7)}, {"x": (5, 7)}, torch.float32),
    "each_transposed_then_added": ("{a,b} -> x | transpose | add", {"a": (4, 6), "b": (4, 6)}, {"x": (6, 4)},
                                   torch.float32),
    "conv_to_keras": ("a -> x | conv_to_keras", {"a": (8, 3, 3, 5)}, {"x": (3, 5, 3, 8)}, torch.float32),
    "linear_to_dense": ("a -> x | linear_to_dense", {"a": (6, 4)}, {"x": (4, 6)}, torch.float32),
    # these need more than a box: they gather
    "concat": ("{a,b} -> x | concat(0)", {"a": (3, 4), "b": (5, 4)}, {"x": (8, 4)}, torch.float32),
    "reshape": ("a -> x | reshape(4, 6)", {"a": (6, 4)}, {"x": (4, 6)}, torch.float32),
    "pad": ("a -> x | pad(0, init=zeros)", {"a": (5, 3)}, {"x": (8, 3)}, torch.float32),
}
GATHERS = {"concat": "concat", "reshape": "reshape", "pad": "pad"}


def _cuts(shape: tuple[int, ...]) -> list[tuple[tuple[int, int], ...]]:
    """Every part of `shape` cut into 2 or 3 (torch.tensor_split sizes) along any one dim."""
    out = []
    for d, size in enumerate(shape):
        for n in (2, 3):
            start = 0
            for piece in torch.arange(size).tensor_split(n):
                out.append(tuple((start, len(piece)) if k == d else (0, s) for k, s in enumerate(shape)))
                start += len(piece)
    return out


def _cut(t: Any, box: tuple[tuple[int, int], ...]) -> Any:
    return t[tuple(slice(s, s + n) for s, n in box)]


def _check_plan(plan: Any, sources: dict[str, Any]) -> set[str]:
    """Every part of every target computed from its boxes equals the whole computation's part;
    returns the rules that gather."""
    gathered = set()
    for i, step in enumerate(plan.steps):
        if step.kind != "map":
            continue
        xs = tuple(sources[r.read_name] for r in step.sources)
        whole = apply_chain(step.transforms, xs, OPS)
        for j, t in enumerate(step.targets):
            for box in _cuts(t.shape):
                if box_numel(box) == 0:
                    continue  # a rank that holds none of a target reads nothing for it (shard_step)
                prog = program_for(step, j, box)
                if isinstance(prog, str):
                    assert shard_step(i, step, (box,) * len(step.targets)).mode == "gather"
                    gathered.add(step.rule_text)
                    continue
                assert isinstance(prog, Program)
                parts = tuple(_cut(xs[r.source], r.box) for r in prog.reads)
                (got,) = apply_chain(prog.ops, parts, OPS)
                want = _cut(whole[j], box)
                assert got.dtype == want.dtype and torch.equal(got, want), (step.rule_text, t.name, box)
                # and it reads no more than the part needs: the same number of elements per source
                assert sum(_cut(xs[r.source], r.box).numel() for r in prog.reads) <= \
                    len(prog.reads) * max(want.numel(), 1) * (9 if "slice" in step.rule_text else 1)
    return gathered


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_part_from_its_boxes_is_that_part_of_the_whole(case: str) -> None:
    text, src_shapes, tgt_shapes, dtype = CASES[case]
    g = torch.Generator().manual_seed(0)
    sources = {n: torch.randn(s, generator=g).to(dtype) for n, s in src_shapes.items()}
    target = {n: torch.zeros(s, dtype=torch.bfloat16 if "cast" in text else dtype) for n, s in tgt_shapes.items()}
    plan = wmap.plan(wmap.parse_spec(f"wmap 1\n{text}\n"), source=sources, target=target)
    gathered = _check_plan(plan, sources)
    if case in GATHERS:
        assert gathered, f"{case} should gather"
        step = plan.steps[0]
        reason = shard_step(0, step, tuple(full_box(t.shape) for t in step.targets)).reason
        assert GATHERS[case] in reason
    else:
        assert not gathered, f"{case} gathered: {gathered}"


@pytest.mark.parametrize("example", ["fused_qkv_split", "backbone_new_head", "vocab_growth", "two_source_merge"])
def test_example_specs_in_parts(example: str) -> None:
    srcs, tgt = CHECKPOINTS[example]()
    g = torch.Generator().manual_seed(1)
    named = {name: {n: torch.randn(s, generator=g) for n, s in shapes.items()} for name, shapes in srcs.items()}
    source: Any = named["src"] if list(named) == ["src"] else named
    plan = wmap.plan(paths.EXAMPLES / f"{example}.wmap", source=source, target={n: torch.zeros(s) for n, s in tgt.items()})
    flat = {n: t for d in named.values() for n, t in d.items()}
    gathered = _check_plan(plan, flat)
    assert gathered == ({"model.embed_tokens.weight -> model.embed_tokens.weight | pad",
                         "lm_head.weight -> lm_head.weight | pad"} if example == "vocab_growth" else set())
