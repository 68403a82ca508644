"""The sink interface: where computed target values land.

Execution is two-phase so a failure never half-applies a transfer:
`stage` takes each computed value (may fail: reads, transforms, checks), and `commit`
makes them all visible at once (cannot fail short of the process dying, or of a source file
that could not be leased failing under a sink that reads it at commit: WM505, which says so).
`abort` discards everything staged. A sink may also offer `stage_span(meta, span)`: a plain
copy handed over as its bytes in a file (`formats/base.ByteSpan`), for the sink to read into
its own memory at commit; it returns False to take the value through `stage` instead.
Keeping "what to read" (TensorSource) apart from "where it lands" (TargetSink) is what lets
a sharded/distributed sink slot in later: a rank's sink stages only the byte ranges it owns.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from wmap.core.inventory import Inventory, TensorMeta
from wmap.formats.base import Array, ArrayKind

# Copies at least this large (1 MiB of float32) may run on worker threads: a strided
# (transposing) copy runs on one core in torch's blocked kernel, so several at once use
# the machine. Contiguous copies are limited by memory bandwidth and stay where they are.
PARALLEL_MIN_ELEMENTS = 1 << 18


def fresh_copy(t: Any) -> Any:
    """A C-contiguous copy of torch tensor `t` that shares memory with nothing.

    Large copies land in memory of their own anonymous mapping rather than the C heap: once a
    program has allocated and freed big buffers (building a Keras model does), glibc raises its
    mmap threshold and serves 16 MB requests from heaps that grow and trim on the way, which
    measured 3-4x slower to fill here. A mapping is faulted in fresh and unmapped when the last
    tensor (or a TensorFlow tensor sharing it through DLPack) lets go of it."""
    import torch

    if t.numel() < PARALLEL_MIN_ELEMENTS:
        return t.contiguous() if not t.is_contiguous() else t.clone()
    buf = mmap.mmap(-1, t.numel() * t.element_size(), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    out = torch.frombuffer(buf, dtype=t.dtype, count=t.numel()).view(t.shape)  # keeps `buf` alive
    out.copy_(t)
    return out


def pool_size() -> int:
    """How many threads `worker_pool` runs: the cores, up to 4 (memory bandwidth is shared beyond)."""
    return max(1, min(4, os.cpu_count() or 1))


def worker_pool(prefix: str) -> ThreadPoolExecutor:
    """A small thread pool for large copies, reads and NaN/Inf scans (torch, numpy and preadv release
    the GIL)."""
    return ThreadPoolExecutor(pool_size(), thread_name_prefix=prefix)


Check = Callable[[Array], bool]
"""A value check the executor may hand to `stage`: True when the value holds NaN or Inf."""
Verdict = Callable[[], bool]
"""A check's result, settled by the executor (in plan order) before `commit`."""
LandedReader = Callable[[TensorMeta], Array]


class TargetSink(Protocol):
    """Where a plan's values land: an in-memory model, or files. Two-phase, so a failure never
    half-applies: `stage` takes each value (and may fail), `commit` makes them all visible at once,
    `abort` discards what was staged. Every sink in `sinks/` satisfies this (mypy checks it where
    `run/resolve.py` hands one out)."""

    @property
    def array_kind(self) -> ArrayKind:
        """What the executor should compute in: `torch` tensors or `numpy` arrays."""
        ...

    @property
    def framework(self) -> str | None:
        """`torch`/`keras` for a model that already holds what `keep` keeps; None for files."""
        ...

    @property
    def checks_while_staging(self) -> bool:
        """True for a sink that copies every value it stages anyway (Keras): the executor then hands
        `stage` its NaN/Inf check, the sink runs it on its own fresh copy while it is in cache, and
        returns the verdict. Otherwise the executor scans values itself and `stage` returns None."""
        ...

    def inventory(self) -> Inventory: ...

    def read_current(self, meta: TensorMeta) -> Array:
        """The target's current value (for `keep` into files and for `verify`)."""
        ...

    def stage(self, meta: TensorMeta, value: Array, check: Check | None = None) -> Verdict | None:
        """Take one computed value (with `check`, see `checks_while_staging`)."""
        ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def finish(self, frozen: set[str], options: dict[str, object]) -> list[str]:
        """After commit: freezing and the like. Returns notes for the report."""
        ...

    def landed(self) -> AbstractContextManager[LandedReader]:
        """After commit: a reader of what landed, open for the whole block, so a report that
        checksums every tensor opens the output once (not once per tensor)."""
        ...

    @property
    def result(self) -> Any:
        """What apply returns as the target (the model, or the output path)."""
        ...


V = TypeVar("V")


@dataclass(eq=False)  # a sink's own buffer, never compared
class StagedValues(Generic[V]):
    """Values staged for commit, in plan order (a sink's own form of them: tensors, or pending copies)."""

    items: list[tuple[TensorMeta, V]] = field(default_factory=list)

    def add(self, meta: TensorMeta, value: V) -> None:
        self.items.append((meta, value))

    def clear(self) -> None:
        self.items.clear()


@contextlib.contextmanager
def defer_sigint() -> Iterator[None]:
    """Ctrl-C (and SIGTERM, SIGHUP) during commit is delivered after it, so the model or the output
    is never half-written; a source's lease break waits too (its writer is blocked until we release)."""
    from wmap.core import lease
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[Any] = []
    signums = [s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
               if s is not None]
    old = {s: signal.signal(s, lambda *a: pending.append(a)) for s in signums}
    try:
        with lease.held_back():
            yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if pending:
            signum = pending[0][0]
            handler = old.get(signum)
            if signum != signal.SIGINT:
                if callable(handler):
                    handler(signum, None)  # the CLI's TERM/HUP handler raises its own interrupt
                elif handler == signal.SIG_DFL:
                    signal.raise_signal(signum)  # what it would have done, after the commit
            raise KeyboardInterrupt
