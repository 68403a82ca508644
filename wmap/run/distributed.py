"""Distributed execution: run a plan through `torch.distributed.checkpoint` into sharded targets.

Call `apply` on every rank of an initialised process group (gloo on CPU, NCCL on GPUs; `torchrun`
sets one up, see `init_from_env`). The target is a model whose parameters are DTensors (FSDP2's
`fully_shard`, or tensor-parallel `Shard(d)`/`Replicate()` placements) or, with `out=`, a new DCP
checkpoint folder. Sources are safetensors files (single or sharded with an index).

**Every rank compiles the plan itself.** Compiling reads headers and model metadata only
(kilobytes) and is deterministic: the same spec and inventories give the same plan, to the byte
of its JSON. So each rank compiles from its own view of the files and the ranks all-gather a
digest of the plan before anything is read (WM605 if they differ). That beats compiling on rank 0
and broadcasting: every rank needs the validated headers anyway to read byte ranges, a broadcast
plan would be checked by no one against the files the other ranks actually see (a stale copy on
one host), and rank 0 would be a serial step in front of all the others.

**Each rank reads only its boxes.** For each step and this rank's box of each target,
`run/regions.py` works out the boxes of the sources it needs: for renames, element-wise ops,
transposes, and split/chunk/slice/select/unstack, exactly the box, computed on that region alone
(bit for bit what the whole-tensor computation gives there). Steps whose transforms need values
from outside the box (reshape, concat, pad, resize, presets...) *gather*: the rank reads the
whole sources, runs the step, keeps its box, and the report lists the step and its cost. The
reads go through DCP: a `LoadPlanner` (below) turns the boxes into `ReadItem`s and computes each
step as soon as its reads are in, and `formats/dcp_reader.py`'s `StorageReader` serves them with
one `pread` per contiguous run of the safetensors data section.

**All or nothing across ranks.** Nothing is written while reading: each rank stages its parts.
Then the ranks exchange verdicts (an all-gather of each rank's failure, if any), and only if every
rank succeeded does any rank commit; otherwise every rank aborts (its model untouched) and raises
(the failing rank its own error, the others WM606 quoting it). DCP's own steps already fail on
every rank when one fails; the verdict exchange covers what happens after them. A DCP output
folder is written into a temporary folder and renamed into place by rank 0 after a barrier.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup
from torch.distributed.checkpoint.metadata import Metadata, MetadataIndex
from torch.distributed.checkpoint.planner import LoadItemType, LoadPlan, LoadPlanner, ReadItem

from wmap.core.errors import Diagnostic, WmapError, error
from wmap.core.inventory import Inventory, TensorMeta
from wmap.core.values import ConfigLike, Endpoint
from wmap.formats.base import TensorSource
from wmap.lang.spec import Spec
from wmap.planning.plan import Plan
from wmap.run.execute import _nonfinite, apply_chain
from wmap.run.regions import Read, ShardStep, box_numel, shard_plan
from wmap.transforms import ArrayOps, get_ops

if TYPE_CHECKING:
    from wmap.formats.dcp_reader import SafetensorsRangeReader

Box = tuple[tuple[int, int], ...]


class ShardSink(Protocol):
    """What the distributed executor needs of a sink: this rank's box of each target, and two-phase
    landing (`sinks/dtensor_sink.py`)."""

    framework: str | None
    staged_bytes: int

    def box(self, meta: TensorMeta) -> Box: ...
    def read_current(self, meta: TensorMeta) -> torch.Tensor: ...
    def stage(self, meta: TensorMeta, value: torch.Tensor) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...
    def finish(self, frozen: set[str], options: dict[str, object]) -> list[str]: ...

    @property
    def result(self) -> Any: ...


@dataclass(frozen=True)
class Gathered:
    """A step that read whole source tensors on this rank, why, and what it held at its peak."""

    step: int
    rule: str
    targets: tuple[str, ...]
    reason: str
    nbytes: int


@dataclass
class DistributedReport:
    """What one rank did. `bytes_read` counts the bytes of tensor data this rank read (headers apart,
    in `header_bytes`); `staged_bytes` what it held for commit (its parts of the targets);
    `peak_working_bytes` the most read buffers and results it held at once beyond that."""

    plan: Plan
    rank: int
    world_size: int
    result: Any
    bytes_read: int
    header_bytes: int
    staged_bytes: int
    peak_working_bytes: int
    region_steps: int
    gathered: tuple[Gathered, ...]
    notes: list[str] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def target(self) -> Any:
        return self.result

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "world_size": self.world_size, "spec_digest": self.plan.spec_digest,
                "bytes_read": self.bytes_read, "header_bytes": self.header_bytes,
                "staged_bytes": self.staged_bytes, "peak_working_bytes": self.peak_working_bytes,
                "region_steps": self.region_steps,
                "gathered": [g.__dict__ | {"targets": list(g.targets)} for g in self.gathered],
                "notes": self.notes, "warnings": [w.to_json() for w in self.warnings]}


def plan_digest(plan: Plan) -> str:
    """sha256 of the plan's canonical JSON: equal on two ranks exactly when they would do the same."""
    return hashlib.sha256(json.dumps(plan.to_json(), sort_keys=True).encode()).hexdigest()


def _describe(e: BaseException) -> str:
    if isinstance(e, WmapError) and e.diagnostics:
        d = e.diagnostics[0]
        return f"[{d.code}] {d.message}"
    return f"{type(e).__name__}: {e}"


def _agree(group: ProcessGroup | None, stage: str, failure: BaseException | None, payload: object = None
           ) -> list[object]:
    """Every rank's verdict, exchanged (an all-gather, so every rank learns every failure). Raises on
    every rank if any rank failed: this rank's own error, or WM606 quoting the first failing rank."""
    mine = (None if failure is None else _describe(failure), payload)
    everyone: list[tuple[str | None, object]] = [(None, None)] * dist.get_world_size(group)
    dist.all_gather_object(everyone, mine, group=group)
    if failure is not None:
        raise failure
    failed = [(r, msg) for r, (msg, _) in enumerate(everyone) if msg is not None]
    if failed:
        r, msg = failed[0]
        more = f" (and {len(failed) - 1} more rank(s))" if len(failed) > 1 else ""
        raise error("WM606", f"rank {r} failed while {stage}{more}: {msg}", None,
                    "nothing was written on any rank; that rank's own error says more")
    return [p for _, p in everyone]


class _Planner(LoadPlanner):
    """DCP's LoadPlanner for a wmap plan: one ReadItem per source box, and each step computed (and
    staged in the sink) as soon as the last of its reads arrives, so a rank holds one step's read
    buffers at a time besides what it has staged."""

    def __init__(self, steps: Sequence[ShardStep], plan: Plan, sink: ShardSink, ops: ArrayOps[Any]):
        self.plan, self.sink, self.ops = plan, sink, ops
        self.steps = {s.index: s for s in steps}
        self.items: list[ReadItem] = []
        # one ReadItem per distinct (source tensor, box): a box two steps need (a tied copy, `copy("...")`
        # of a mapped tensor) is read once and handed to both
        self._consumers: dict[str, list[tuple[int, Read]]] = {}
        self._pending: dict[int, int] = {}
        self._buffers: dict[int, dict[Read, torch.Tensor]] = {}
        self._users: dict[int, int] = {}  # id(buffer) -> steps still to use it
        self.readless: list[ShardStep] = []
        self.failure: WmapError | None = None
        self.live = self.peak = 0
        self.warnings: list[Diagnostic] = []
        from wmap.formats.dcp_reader import storage_key
        seen: dict[tuple[str, Box, str], str] = {}
        for s in steps:
            reads = [r for r in s.reads if box_numel(r.box) > 0]
            if not reads:
                self.readless.append(s)
                continue
            self._pending[s.index] = len(reads)
            for r in reads:
                ref = s.step.sources[r.source]
                key = (storage_key(ref.source, ref.read_name), r.box, ref.meta.dtype)
                dest = seen.get(key)
                if dest is None:
                    dest = seen[key] = str(len(self.items))
                    self.items.append(ReadItem(
                        type=LoadItemType.TENSOR, dest_index=MetadataIndex(dest),
                        dest_offsets=torch.Size([0] * len(r.box)), storage_index=MetadataIndex(key[0]),
                        storage_offsets=torch.Size([s0 for s0, _ in r.box]), lengths=torch.Size([n for _, n in r.box])))
                self._consumers.setdefault(dest, []).append((s.index, r))

    # -- the LoadPlanner protocol --------------------------------------------------------------
    def set_up_planner(self, state_dict: dict[str, object], metadata: Metadata | None = None, is_coordinator: bool = False) -> None:
        pass  # the reads were planned from the wmap plan; DCP's state dict is unused

    def create_local_plan(self) -> LoadPlan:
        return LoadPlan(list(self.items))

    def create_global_plan(self, global_plan: list[LoadPlan]) -> list[LoadPlan]:
        return global_plan  # each rank reads its own boxes; nothing to balance or deduplicate

    def finish_plan(self, central_plan: LoadPlan) -> LoadPlan:
        return central_plan

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        raise RuntimeError("a wmap plan reads tensors only")

    def resolve_tensor(self, read_item: ReadItem) -> torch.Tensor:
        index, r = self._consumers[read_item.dest_index.fqn][0]
        dtype = self.steps[index].step.sources[r.source].meta.dtype
        buf = torch.empty(tuple(read_item.lengths), dtype=getattr(torch, dtype))
        self._account(buf.numel() * buf.element_size())
        return buf

    def commit_tensor(self, read_item: ReadItem, tensor: torch.Tensor) -> None:
        consumers = self._consumers[read_item.dest_index.fqn]
        self._users[id(tensor)] = len(consumers)
        for index, r in consumers:
            self._buffers.setdefault(index, {})[r] = tensor
            self._pending[index] -= 1
            if self._pending[index] == 0:
                bufs = self._buffers.pop(index)
                try:
                    self.run(self.steps[index], bufs)
                finally:
                    for b in bufs.values():  # a buffer stops counting when its last step has run
                        self._users[id(b)] -= 1
                        if self._users[id(b)] == 0:
                            del self._users[id(b)]
                            self._account(-b.numel() * b.element_size())

    # -- computing and staging -----------------------------------------------------------------
    def _account(self, delta: int) -> None:
        self.live += delta
        self.peak = max(self.peak, self.live)

    def run(self, ss: ShardStep, bufs: Mapping[Read, torch.Tensor]) -> None:
        """Compute this rank's part of every target of `ss` from its read buffers and stage it."""
        step = ss.step
        try:
            values = self._compute(ss, bufs)
            for meta, v in zip(step.targets, values):
                if v is None:
                    continue
                if self.ops.dtype_name(v) != meta.dtype:
                    v = self.ops.cast(v, meta.dtype)
                policy = self.plan.option("nonfinite")
                if policy != "allow" and step.kind == "map" and _nonfinite(self.ops, v):
                    msg = f"`{meta.name}` receives NaN or Inf from {', '.join(r.name for r in step.sources)}"
                    if policy == "error":
                        raise error("WM603", msg, step.span,
                                    "set `option nonfinite = \"warn\"` (or \"allow\") to load it anyway")
                    self.warnings.append(Diagnostic("WM603", "warning", msg, step.span))
                self.sink.stage(meta, v)
        except WmapError as e:
            self.failure = e
            raise
        except Exception as e:  # a transform failing on real data: report it with the step
            self.failure = error("WM601", f"step {ss.index + 1} (`{step.rule_text}`) failed: {type(e).__name__}: {e}",
                                 step.span, "nothing was written; this is a bug in the transform or corrupt data")
            raise self.failure from e

    def _compute(self, ss: ShardStep, bufs: Mapping[Read, torch.Tensor]) -> list[torch.Tensor | None]:
        step, ops = ss.step, self.ops
        if ss.mode == "keep":
            if self.sink.framework is not None:
                return [None] * len(step.targets)  # an in-memory model already holds what `keep` keeps
            return [self.sink.read_current(t) for t in step.targets]
        if ss.mode == "init":
            assert step.init is not None
            out: list[torch.Tensor | None] = []
            for t, box in zip(step.targets, ss.boxes):
                whole = ops.asarray(step.init.generate(t.shape, int(self.plan.option("seed")), t.name,
                                                       self.plan.target_framework), None)
                out.append(_cut(whole, box))
            return out
        if ss.mode == "gather":
            xs = tuple(bufs[r] for r in ss.reads)
            outs = apply_chain(step.transforms, xs, ops)
            self._account(sum(o.numel() * o.element_size() for o in outs))
            try:
                return [_cut(o, box) for o, box in zip(outs, ss.boxes)]
            finally:
                self._account(-sum(o.numel() * o.element_size() for o in outs))
        res: list[torch.Tensor | None] = []
        for t, box, prog in zip(step.targets, ss.boxes, ss.programs):
            if prog is None:  # this rank holds none of t
                res.append(torch.empty(tuple(n for _, n in box), dtype=getattr(torch, t.dtype)))
                continue
            (v,) = apply_chain(prog.ops, tuple(bufs[r] for r in prog.reads), ops)
            res.append(v)
        return res

    def finish(self) -> None:
        """The steps that read nothing on this rank (initialisers, keeps, empty parts)."""
        for ss in self.readless:
            self.run(ss, {})


def _cut(whole: torch.Tensor, box: Box) -> torch.Tensor:
    """A fresh copy of `box` of `whole`, so the whole tensor can go."""
    return whole[tuple(slice(s, s + n) for s, n in box)].clone()


def _open(spec: Spec | str | os.PathLike[str], source: Endpoint, target: Endpoint, config: ConfigLike
          ) -> tuple[Plan, dict[str, TensorSource], Inventory]:
    from wmap.lang import load_spec
    from wmap.lang.validate import check_names
    from wmap.run.resolve import compile_bound, open_spec_sources

    s = spec if isinstance(spec, Spec) else load_spec(spec)
    check_names(s)
    readers = open_spec_sources(s, source)
    try:
        plan, inv = compile_bound(s, {n: r.inventory() for n, r in readers.items()}, source, target, config)
    except BaseException:
        for r in readers.values():
            r.close()
        raise
    return plan, readers, inv


def _sink(plan: Plan, inv: Inventory, out: str | None, group: ProcessGroup | None) -> ShardSink:
    from torch import nn

    from wmap.run.factory import Built
    from wmap.sinks.dtensor_sink import DCPFolderSink, DTensorModelSink, sharded_entries

    target = plan.bound[1]
    model = target.model if isinstance(target, Built) else target
    if not isinstance(model, nn.Module):
        if out is None:
            raise error("WM522", "a distributed apply writes into a sharded model or a DCP folder",
                        hint="pass the model (target=...) or a folder to write (out=... / --out DIR)")
        model = None
    if out is not None:
        if os.path.lexists(out):
            raise error("WM522", f"`{out}` already exists; a distributed apply writes a new DCP folder",
                        hint="remove it first, or write to another folder")
        if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
            raise error("WM512", f"cannot write `{out}`: its parent folder does not exist")
        return DCPFolderSink(out, inv, model, group)
    assert model is not None
    if not any(True for _ in sharded_entries(model)) and dist.get_world_size(group) > 1:
        raise error("WM522", "the target model has no DTensor parameters: every rank would hold the whole model",
                    hint="shard it first (fully_shard(model, mesh=...) or parallelize_module), or use wmap.apply")
    return DTensorModelSink(model, inv)


def apply(spec: Spec | str | os.PathLike[str], source: Endpoint = None, target: Endpoint = None, out: str | None = None,
          *, config: ConfigLike = None, group: ProcessGroup | None = None) -> DistributedReport:
    """Run `spec` on every rank of `group` (default: the world) into a sharded target, atomically.

    `source`, `target`, `config` as for `wmap.apply`; sources must be safetensors (one file or an
    index with shards). `target`: a model whose parameters are DTensors, materialised (not on meta);
    or, with `out` (a folder that does not exist yet), anything `wmap.apply` takes as a target, whose
    tensors are written as a DCP checkpoint (DTensor targets keep their placement, others are sharded
    along dim 0). Call it on every rank with the same arguments. Returns this rank's report; raises
    WmapError on every rank if any rank fails, after which no rank has written anything."""
    from wmap.formats.dcp_reader import SafetensorsRangeReader

    if not (dist.is_available() and dist.is_initialized()):
        raise error("WM522", "no process group: a distributed apply runs on every rank of one",
                    hint="start it with torchrun (`wmap apply --distributed`), or call "
                         "torch.distributed.init_process_group first")
    group = group if group is not None else dist.group.WORLD
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    readers: dict[str, TensorSource] = {}
    failure: BaseException | None = None
    digest = None
    try:
        plan, readers, inv = _open(spec, source, target, config)
        storage = SafetensorsRangeReader(readers)
        sink = _sink(plan, inv, out, group)
        planner = _Planner(shard_plan(plan, {t.name: sink.box(t) for t in plan.targets}), plan, sink, get_ops("torch"))
        digest = plan_digest(plan)
    except BaseException as e:  # reported to every rank below, so none waits for this one
        failure = e
    try:
        digests = _agree(group, "planning", failure, digest)
        if len(set(digests)) != 1:
            differ = [r for r, d in enumerate(digests) if d != digests[0]]
            raise error("WM605", f"rank(s) {differ} compiled a different plan from rank 0", None,
                        "every rank must see the same spec, files and wmap version; nothing was read")
    except BaseException:
        for r in readers.values():
            r.close()
        raise
    failure = None
    try:
        _load(storage, planner, group, rank)
        planner.finish()
    except BaseException as e:
        failure = e if not isinstance(e, _ElsewhereError) else None
    finally:
        storage.close()
        for r in readers.values():
            r.close()
    try:
        _agree(group, "staging its part", failure)
    except BaseException:
        sink.abort()
        raise
    sink.commit()
    notes = sink.finish(set(plan.frozen), dict(plan.options))
    gathered = tuple(Gathered(s.index, s.step.rule_text, tuple(t.name for t in s.step.targets), s.reason,
                              s.gather_bytes()) for s in planner.steps.values() if s.mode == "gather")
    return DistributedReport(plan, rank, world, sink.result, storage.bytes_read, storage.header_bytes,
                             sink.staged_bytes, planner.peak,
                             sum(1 for s in planner.steps.values() if s.mode == "region"), gathered,
                             notes, planner.warnings)


class _ElsewhereError(Exception):
    """DCP failed because another rank did; that rank reports it."""


def _load(storage: SafetensorsRangeReader, planner: _Planner, group: ProcessGroup | None, rank: int) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        dcp.load({}, storage_reader=storage, planner=planner, process_group=group)
    except CheckpointException as e:
        own = planner.failure or storage.failure
        if rank in e.failures:
            if own is not None:
                raise own from None
            exc, _ = e.failures[rank]
            raise error("WM601", f"reading through torch.distributed.checkpoint failed: {_describe(exc)}") from None
        raise _ElsewhereError(str(e)) from None


@contextlib.contextmanager
def init_from_env(backend: str | None = None) -> Iterator[tuple[int, int]]:
    """A process group from the environment `torchrun` sets (RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT), destroyed on exit; yields (rank, world size). `backend`: gloo or nccl (default:
    nccl when CUDA is available, else gloo). Already initialised: used as it is."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if dist.is_initialized():
        yield dist.get_rank(), dist.get_world_size()
        return
    if missing:
        raise error("WM522", f"--distributed needs a process group, and {', '.join(missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} not set",
                    hint="start it under torchrun: torchrun --nproc-per-node 2 -m wmap apply SPEC --distributed "
                         "--out DIR")
    chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if chosen == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(chosen)
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()
