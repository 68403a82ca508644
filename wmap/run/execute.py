"""Execution: runs a checked plan, streaming one step at a time, atomically.

For every step: read the source tensors (lazily, memory-mapped where the format allows),
run the resolved transforms, cast to the target dtype, check what will land for NaN/Inf per
the `nonfinite` option, and stage the value in the sink. Only when every step has succeeded does
the sink commit. Any failure (an I/O error, an exception in a transform, Ctrl-C) aborts:
an in-memory target is unchanged and no output file appears.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from wmap.core.errors import Diagnostic, WmapError, error
from wmap.core.inventory import Inventory, TensorMeta
from wmap.core.record import Record
from wmap.core.values import Endpoint, OutPath
from wmap.formats.base import Array, ArrayKind, ByteSpan, TensorSource
from wmap.planning.plan import Plan, Step
from wmap.sinks.base import LandedReader, TargetSink
from wmap.transforms import ArrayOps, get_ops
from wmap.transforms.base import Transform

StepHook = Callable[[int, Step], None]
A = TypeVar("A")  # the array type of the backend a transfer computes in
Advance = Callable[[int], None]
Progress = Callable[[int], AbstractContextManager[Advance | None]]


@dataclass(frozen=True, eq=False, repr=False)
class Landed(Record):
    """What one target received: its step, and (lazily) a checksum of the landed bytes."""

    target: str
    kind: str
    rule: str
    sources: tuple[str, ...]
    transforms: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str


@dataclass
class ApplyReport:
    """What an apply did: the plan, every landed target, the result (the model or the written path), notes and warnings."""

    plan: Plan
    landed: tuple[Landed, ...]
    result: Any
    notes: list[str] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    _landed: Callable[[], AbstractContextManager[LandedReader]] | None = None
    _checksums: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> Any:
        return self.result

    def checksums(self) -> dict[str, str]:
        """sha256 (first 16 hex digits) of each landed tensor's bytes, computed on first use."""
        if not self._checksums and self._landed is not None:
            from wmap.core.checksum import checksum
            metas = {t.name: t for s in self.plan.steps for t in s.targets}
            with self._landed() as read:  # one open of the output for every tensor
                for entry in self.landed:
                    self._checksums[entry.target] = checksum(read(metas[entry.target]))
        return dict(self._checksums)

    def to_json(self, with_checksums: bool = True) -> dict[str, Any]:
        from wmap.core.version import VERSION
        sums = self.checksums() if with_checksums else {}
        return {
            "format_version": 1,
            "wmap_version": VERSION,
            "spec_digest": self.plan.spec_digest,
            "sources": {n: fp for n, fp in self.plan.source_fingerprints},
            "target_fingerprint": self.plan.target_fingerprint,
            "landed": [{**e.__dict__, "shape": list(e.shape), "sources": list(e.sources),
                        "transforms": list(e.transforms), "checksum": sums.get(e.target)} for e in self.landed],
            "notes": self.notes,
            "warnings": [w.to_json() for w in self.warnings],
            "acknowledged": [w.to_json() for w in self.plan.acknowledged],
        }


def compute_step(step: Step, readers: Mapping[str, TensorSource], ops: ArrayOps[Any], plan: Plan,
                 read_target: Callable[[TensorMeta], Array] | None) -> tuple[Array, ...]:
    """The values a step produces, in its targets' order (no writes)."""
    kind: ArrayKind = "torch" if ops.name == "torch" else "numpy"
    if step.kind == "keep":
        if read_target is None:
            raise error("WM602", "keep needs the target's current values")
        return tuple(read_target(t) for t in step.targets)
    if step.kind == "init":
        assert step.init is not None
        t = step.targets[0]
        if step.init.source is not None:
            ref = step.sources[0]
            return (_read(readers[ref.source], ref.read_name, kind),)
        values = step.init.generate(t.shape, int(plan.option("seed")), t.name, plan.target_framework)
        return (ops.asarray(values, None) if kind == "torch" else values,)
    xs = tuple(_read(readers[r.source], r.read_name, kind) for r in step.sources)
    return apply_chain(step.transforms, xs, ops, None if read_target is None else lambda: read_target(step.targets[0]))


def _read(reader: TensorSource, name: str, kind: ArrayKind) -> Array:
    """A source tensor's values; a meta tensor (a model built for its shapes only) has none."""
    x = reader.read(name, kind)
    if getattr(getattr(x, "device", None), "type", None) == "meta":
        raise error("WM503", f"source tensor `{name}` is on the meta device and has no data",
                    hint="apply from a checkpoint, or a model built on a real device, not a `module:callable`")
    return x


def apply_chain(transforms: Sequence[Transform], xs: tuple[A, ...], ops: ArrayOps[A],
                current: Callable[[], A] | None = None) -> tuple[A, ...]:
    """Run resolved transforms; a 1:1 transform after a fan-out applies to each part. `current` gives
    the target's value, for a transform that keeps part of it (`READS_TARGET`: `splice`)."""
    for tr in transforms:
        if tr.READS_TARGET:
            if current is None:
                raise error("WM602", f"`{tr.NAME}` keeps part of the target, and this target has no values to keep",
                            hint="give a target with values: the model in hand, or a template checkpoint with --out")
            xs = tuple(tr.apply((*xs, current()), ops))
        elif tr.ARITY == "1:1" and len(xs) > 1:
            xs = tuple(tr.apply((x,), ops)[0] for x in xs)
        else:
            xs = tuple(tr.apply(xs, ops))
    return xs


def _nonfinite(ops: ArrayOps[Any], x: Array) -> bool:
    """True when x holds NaN or Inf. A sum propagates both and runs at memory speed; only a
    non-finite sum (which finite values can also reach by overflow) is confirmed exactly.
    float32/float64 torch tensors are summed through a zero-copy numpy view: numpy's sum is
    single-threaded, so scans run side by side on worker threads (`_Scans`) without torch's
    OpenMP threads spinning against the sink's copy workers."""
    import numpy as np
    if ops.name == "torch":
        import torch
        if not isinstance(x, torch.Tensor):  # the executor computes in its sink's array kind
            raise TypeError(f"a {type(x).__name__} where a torch tensor was computed")
        if not x.is_floating_point() or x.numel() == 0:
            return False
        if x.dtype in (torch.float32, torch.float64) and x.device.type == "cpu":
            arr = x.detach().numpy()
            return not math.isfinite(float(arr.sum())) and not bool(np.isfinite(arr).all())
        if math.isfinite(float(x.sum(dtype=torch.float32))):
            return False
        return not bool(torch.isfinite(x).all())
    if not isinstance(x, np.ndarray):
        raise TypeError(f"a {type(x).__name__} where a numpy array was computed")
    if x.dtype.kind not in "fc" and "float" not in str(x.dtype):
        return False
    arr = np.asarray(x, dtype=np.float32) if x.dtype.itemsize < 4 else x
    if np.isfinite(arr.sum()):
        return False
    return not bool(np.isfinite(arr).all())


class _Scans:
    """NaN/Inf verdicts, settled in plan order before `run_steps` returns.

    A sink that copies every value it stages (`checks_while_staging`, the Keras sink) runs the
    check on its own fresh copy, on its copy workers, while the copy is still in cache; the
    verdicts come back as callables. Otherwise the scans run here on worker threads, at most
    `ahead` values in front of staging, which bounds the memory they keep alive. Either way
    every verdict is in before the commit, so a failed check writes nothing."""

    def __init__(self, ops: ArrayOps[Any], policy: str, ahead: int = 8):
        from collections import deque
        self.ops, self.policy, self.ahead = ops, policy, ahead
        self._pool: ThreadPoolExecutor | None = None
        self.pending: deque[tuple[Callable[[], bool], TensorMeta, Step]] = deque()
        self.warnings: list[Diagnostic] = []

    def check(self, value: Array) -> bool:
        """True when `value` holds NaN or Inf (what a sink runs on its own copy)."""
        return _nonfinite(self.ops, value)

    def submit(self, value: Array, meta: TensorMeta, step: Step) -> None:
        if self._pool is None:
            from wmap.sinks.base import worker_pool
            self._pool = worker_pool("wmap-scan")
        self.pending.append((self._pool.submit(_nonfinite, self.ops, value).result, meta, step))
        while len(self.pending) > self.ahead:
            self._settle_oldest()

    def track(self, verdict: Callable[[], bool], meta: TensorMeta, step: Step) -> None:
        """A verdict the sink computes on its own copy; it holds that copy anyway, so no bound."""
        self.pending.append((verdict, meta, step))

    def _settle_oldest(self) -> None:
        verdict, meta, step = self.pending.popleft()
        if not verdict():
            return
        msg = f"`{meta.name}` receives NaN or Inf from {', '.join(r.name for r in step.sources)}"
        if self.policy == "error":
            raise error("WM603", msg, step.span, "set `option nonfinite = \"warn\"` (or \"allow\") to load it anyway")
        self.warnings.append(Diagnostic("WM603", "warning", msg, step.span))

    def finish(self) -> list[Diagnostic]:
        while self.pending:
            self._settle_oldest()
        return self.warnings

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def run_steps(plan: Plan, readers: Mapping[str, TensorSource], sink: TargetSink, on_step: StepHook | None = None,
              progress: Callable[[int], None] | None = None) -> list[Diagnostic]:
    """Stage every step's values in the sink; raises on the first failure (the caller aborts)."""
    ops = get_ops(sink.array_kind)
    policy = plan.option("nonfinite")
    scans = _Scans(ops, policy) if policy != "allow" else None
    fused = sink.checks_while_staging
    # A plain copy needs no values in hand: a sink that takes a tensor's bytes straight from the file
    # is given where they are (not when every value is to be scanned for NaN/Inf first).
    stage_span: Callable[[TensorMeta, ByteSpan], bool] | None = (
        getattr(sink, "stage_span", None) if scans is None else None)
    try:
        for i, step in enumerate(plan.steps):
            if on_step is not None:
                on_step(i, step)
            if step.kind == "keep" and sink.framework is not None:
                continue  # an in-memory model already holds what `keep` keeps
            try:
                if stage_span is not None and _staged_as_span(step, readers, stage_span):
                    if progress is not None:
                        progress(step.nbytes)
                    continue
                values = compute_step(step, readers, ops, plan, sink.read_current)
            except (WmapError, KeyboardInterrupt, MemoryError):
                raise
            except Exception as e:  # a transform failing on real data: report it with the step
                raise error("WM601", f"step {i + 1} (`{step.rule_text}`) failed: {type(e).__name__}: {e}",
                            step.span, "nothing was written; this is a bug in the transform or corrupt source data"
                            ) from e
            for meta, v in zip(step.targets, values):
                if ops.dtype_name(v) != meta.dtype:
                    v = ops.cast(v, meta.dtype)
                if scans is None or step.kind != "map":
                    sink.stage(meta, v)
                elif fused:
                    verdict = sink.stage(meta, v, check=scans.check)
                    assert verdict is not None, "a sink that checks while staging returns its verdict"
                    scans.track(verdict, meta, step)
                else:
                    scans.submit(v, meta, step)  # what lands is checked: a narrowing cast's overflow too
                    sink.stage(meta, v)
            if progress is not None:
                progress(step.nbytes)
        return scans.finish() if scans is not None else []
    finally:
        if scans is not None:
            scans.close()


def _staged_as_span(step: Step, readers: Mapping[str, TensorSource],
                    stage_span: Callable[[TensorMeta, ByteSpan], bool]) -> bool:
    """Stage a plain copy as its source bytes (see `formats/base.ByteSpan`) when the reader has them
    exactly as the target holds them and the sink takes them; False: the step runs as usual."""
    if not step.is_copy or len(step.targets) != 1:
        return False
    ref, meta = step.sources[0], step.targets[0]
    span_of = getattr(readers[ref.source], "byte_span", None)
    if span_of is None:
        return False
    span: ByteSpan | None = span_of(ref.read_name, meta.shape, meta.dtype)
    return span is not None and stage_span(meta, span)


def apply_plan(plan: Plan, source: Endpoint = None, target: Endpoint = None, out: OutPath = None, *,
               on_step: StepHook | None = None, progress: Progress | None = None,
               opened: tuple[Mapping[str, TensorSource], Inventory] | None = None) -> ApplyReport:
    """Execute a checked plan. See `wmap.apply` for the arguments.

    `progress`: given the total bytes, a context manager yielding an `advance(nbytes)` callback (or
    None); the faces build it (a terminal bar), execution only reports to it.
    `opened`: the readers and target inventory the plan was compiled from just now (by
    `wmap.apply`); they are used as they are instead of being opened and checked again.
    """
    from wmap.run.resolve import open_sink, open_sources

    source = plan.bound[0] if source is None else source
    target = plan.bound[1] if target is None else target
    readers = open_sources(plan, source) if opened is None else dict(opened[0])
    try:
        sink = open_sink(plan, target, out, None if opened is None else opened[1])
    except BaseException:
        for r in readers.values():
            r.close()
        raise
    total = sum(s.nbytes for s in plan.steps)
    try:
        with (progress(total) if progress is not None else contextlib.nullcontext(None)) as advance:
            warnings = run_steps(plan, readers, sink, on_step, advance)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    finally:
        for r in readers.values():
            r.close()
    frozen = set(plan.frozen)
    notes = sink.finish(frozen, dict(plan.options))
    if plan.tied:
        notes.append(f"{len(plan.tied)} tied tensor(s) written once: " +
                     ", ".join(f"{a} = {c}" for a, c in plan.tied))
    landed = tuple(
        Landed(t.name, s.kind, s.rule_text, tuple(f"{r.source}:{r.name}" for r in s.sources),
               tuple(x.describe() for x in s.transforms), t.shape, t.dtype)
        for s in plan.steps for t in s.targets
    )
    # the plan's warnings (same-shape traps, a non-strict coverage gap) belong to every apply of it:
    # a clean report means the plan had none left unacknowledged, not that nobody printed them
    return ApplyReport(plan, landed, sink.result, notes, [*plan.warnings, *warnings], _landed=sink.landed)
