"""Which part of each source a rank needs for its part of each target, from the plan alone.

A sharded target gives every rank one box of each tensor (a start and a length per dim). For
a step whose transforms each map a box of their output to one box of their input, the rank
reads exactly that box of each source and runs the step on it; the result is bit for bit the
same box of what the step computes on whole tensors, because every transform on that path is
either pure data movement or element-wise and exactly rounded per element:

  rename, `identity`, `cast`, `scale`, `prune`, and element-wise arithmetic over several
  sources (`add`, `sub`, `lerp`, `average`, `update`: sums of scaled terms, each rounded once)
  keep the box as it is; `transpose`/`permute` and the layout presets that are one permutation
  (`linear_to_dense`, `conv_to_keras`, ...) permute it; `unsqueeze`/`squeeze` add or drop
  a dim of one; `slice` shifts (and, with a step, strides) it; `select`, `split`, `chunk` and
  `unstack` shift it into the part they take.

Every other transform (reshape, rearrange, concat, stack, pad, resize, the presets that regroup
heads or gates, LoRA...) needs values from outside the box, so the step *gathers*: the rank reads the whole
source tensors, runs the step as a single process would, and keeps its box. The plan of
regions says which steps gather, why, and what the whole tensors cost.

Pure Python over shapes and boxes: nothing here reads data or imports a framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from wmap.core.inventory import DTYPE_BITS, Shape, TensorMeta
from wmap.planning.plan import Plan, Step
from wmap.transforms import layout, presets, routing, values
from wmap.transforms.base import Transform

Box = tuple[tuple[int, int], ...]
"""(start, length) along each dim of a tensor."""


def full_box(shape: Shape) -> Box:
    return tuple((0, n) for n in shape)


def itemsize(dtype: str) -> int:
    """Bytes per element as stored (a bool takes a byte)."""
    return max(1, DTYPE_BITS[dtype] // 8)


def box_numel(box: Box) -> int:
    return math.prod(n for _, n in box)


@dataclass(frozen=True)
class Read:
    """One box of one of the step's sources (an index into `step.sources`)."""

    source: int
    box: Box


@dataclass(frozen=True)
class Program:
    """How one target's box is computed: read these boxes, then run `ops` on them in order
    (a 1:1 op applies to each value, an n:1 op combines them, as in a whole-tensor chain)."""

    reads: tuple[Read, ...]
    ops: tuple[Transform, ...]


Mode = Literal["region", "gather", "init", "keep"]


@dataclass(frozen=True)
class ShardStep:
    """One plan step as one rank runs it.

    `boxes[j]` is this rank's box of `step.targets[j]`. In `region` mode `programs[j]` computes
    that box from source boxes; in `gather` mode the whole sources are read once for all targets
    (`reason` names the transform that needs them) and each box is cut from the result."""

    index: int
    step: Step
    mode: Mode
    boxes: tuple[Box, ...]
    programs: tuple[Program | None, ...] = ()
    reason: str = ""

    @property
    def reads(self) -> tuple[Read, ...]:
        """Every box of a source this step reads on this rank (whole tensors when it gathers)."""
        if self.mode == "gather":
            return tuple(Read(i, full_box(r.meta.shape)) for i, r in enumerate(self.step.sources))
        seen: dict[Read, None] = {}
        for p in self.programs:
            if p is not None:
                seen.update(dict.fromkeys(p.reads))
        return tuple(seen)

    def read_bytes(self) -> int:
        return sum(box_numel(r.box) * itemsize(self.step.sources[r.source].meta.dtype) for r in self.reads)

    def gather_bytes(self) -> int:
        """What a gathering step holds at its peak on this rank: the whole sources plus the whole results."""
        if self.mode != "gather":
            return 0
        return sum(r.meta.nbytes for r in self.step.sources) + sum(t.nbytes for t in self.step.targets)


def _insert(box: Box, d: int, piece: tuple[int, int]) -> Box:
    return box[:d] + (piece,) + box[d:]


def _replace(box: Box, d: int, piece: tuple[int, int]) -> Box:
    return box[:d] + (piece,) + box[d + 1:]


_SAME_BOX = (values.Identity, values.Cast, values.Scale, values.Prune)


def _back_1to1(tr: Transform, box: Box) -> tuple[Box, Transform | None] | None:
    """The input box a 1:1 transform needs for `box` of its output, and the op that turns that
    input box into the output box (None: nothing to do). None when no single box will do."""
    if isinstance(tr, _SAME_BOX):
        return box, tr
    if isinstance(tr, (layout.Transpose, layout.Permute, presets.PermutePreset)):
        # output dim i is input dim perm[i]; a layout preset (`linear_to_dense`, `conv_to_keras`...)
        # is one fixed permutation per rank
        if isinstance(tr, presets.PermutePreset):
            perm = tr.perm(len(box))
        else:
            perm = tr.dims if tr.dims is not None else (1, 0)
        if len(perm) != len(box):  # an unresolved swap; resolved plans carry full permutations
            return None
        back: list[tuple[int, int]] = [(0, 0)] * len(box)
        for i, p in enumerate(perm):
            back[p] = box[i]
        return tuple(back), tr
    if isinstance(tr, layout.Unsqueeze):
        return box[:tr.dim] + box[tr.dim + 1:], tr
    if isinstance(tr, layout.Squeeze):
        return _insert(box, tr.dim, (0, 1)), tr
    if isinstance(tr, routing.Select):
        return _insert(box, tr.dim, (tr.index, 1)), routing.Select(tr.dim, 0)
    if isinstance(tr, routing.Slice):
        start, n = box[tr.dim]
        if n == 0:
            return _replace(box, tr.dim, (tr.start, 0)), None
        piece = (tr.start + start * tr.step, (n - 1) * tr.step + 1)
        return _replace(box, tr.dim, piece), (routing.Slice(tr.dim, 0, None, tr.step) if tr.step > 1 else None)
    return None


def _back_fanout(tr: Transform, j: int, box: Box, in_shape: Shape) -> tuple[Box, Transform | None] | None:
    """The input box a fan-out needs for `box` of its j-th output."""
    if isinstance(tr, routing.Split) and tr.sizes is not None:
        start, n = box[tr.dim]
        return _replace(box, tr.dim, (sum(tr.sizes[:j]) + start, n)), None
    if isinstance(tr, routing.Chunk) and tr.n is not None:
        size = in_shape[tr.dim] // tr.n
        start, n = box[tr.dim]
        return _replace(box, tr.dim, (j * size + start, n)), None
    if isinstance(tr, routing.Unstack):
        return _insert(box, tr.dim, (j, 1)), routing.Select(tr.dim, 0)
    return None


def program_for(step: Step, j: int, box: Box) -> Program | str:
    """The region program of target j's `box`, or why there is none (the step must gather)."""
    shapes: list[tuple[Shape, ...]] = [tuple(r.meta.shape for r in step.sources)]
    shapes += [tuple(s for s, _ in metas) for metas in step.chain]
    need: dict[int, Box] = {j: box}  # value index (at the current point of the chain) -> box
    ops: list[Transform] = []
    for i in range(len(step.transforms) - 1, -1, -1):
        tr = step.transforms[i]
        if tr.ARITY == "1:1":
            backs = {v: _back_1to1(tr, b) for v, b in need.items()}
            if any(b is None for b in backs.values()):
                return f"`{tr.describe()}` needs more than the box it fills"
            firsts = [b for b in backs.values() if b is not None]
            need = {v: b[0] for v, b in backs.items() if b is not None}
            op = firsts[0][1]
        elif tr.ARITY == "n:1":
            if not isinstance(tr, values._Arith):
                return f"`{tr.describe()}` combines whole tensors"
            need = {v: need[0] for v in range(len(shapes[i]))}
            op = tr
        else:
            (v, b), = need.items()
            back = _back_fanout(tr, v, b, shapes[i][0])
            if back is None:
                return f"`{tr.describe()}` cuts parts that are not boxes of its input"
            need, op = {0: back[0]}, back[1]
        if op is not None:
            ops.append(op)
    reads = tuple(Read(v, b) for v, b in sorted(need.items()))
    return Program(reads, tuple(reversed(ops)))


def shard_step(index: int, step: Step, boxes: tuple[Box, ...]) -> ShardStep:
    """How this rank runs `step` for its `boxes` of the step's targets."""
    if step.kind == "keep":
        return ShardStep(index, step, "keep", boxes)
    if step.kind == "init":
        if step.init is not None and step.init.source is not None:  # `copy("name")`: a box of the source
            return ShardStep(index, step, "region", boxes, tuple(Program((Read(0, b),), ()) for b in boxes))
        return ShardStep(index, step, "init", boxes)
    programs: list[Program | None] = []
    for j, b in enumerate(boxes):
        if box_numel(b) == 0:
            programs.append(None)  # this rank holds none of target j
            continue
        p = program_for(step, j, b)
        if isinstance(p, str):
            return ShardStep(index, step, "gather", boxes, reason=p)
        programs.append(p)
    return ShardStep(index, step, "region", boxes, tuple(programs))


def shard_plan(plan: Plan, boxes: dict[str, Box]) -> tuple[ShardStep, ...]:
    """Every step of `plan` for one rank, given that rank's box of every target (by name)."""
    return tuple(shard_step(i, s, tuple(boxes[t.name] for t in s.targets)) for i, s in enumerate(plan.steps))


def target_box(meta: TensorMeta, local: Shape, offset: Shape) -> Box:
    return tuple(zip(offset, local, strict=True))
