"""The sink interface: where computed target values land.

Execution is two-phase so a failure never half-applies a transfer:
`stage` takes each computed value (may fail: reads, transforms, checks), and `commit`
makes them all visible at once (cannot fail short of the process dying). `abort`
discards everything staged. Keeping "what to read" (TensorSource) apart from "where it
lands" (TargetSink) is what lets a sharded/distributed sink slot in later: a rank's sink
stages only the byte ranges it owns.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from wmap.core.inventory import Inventory, TensorMeta
from wmap.formats.base import ArrayKind

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


def worker_pool(prefix: str) -> ThreadPoolExecutor:
    """A small thread pool for large copies and NaN/Inf scans (torch and numpy release the GIL)."""
    return ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)), thread_name_prefix=prefix)


class TargetSink(Protocol):
    array_kind: ArrayKind
    framework: str | None

    def inventory(self) -> Inventory: ...

    def read_current(self, meta: TensorMeta) -> Any:
        """The target's current value (for `keep` into files and for `verify`)."""
        ...

    def stage(self, meta: TensorMeta, value: Any) -> None:
        """Take one computed value. A sink that copies every value anyway may set
        `checks_while_staging = True`; the executor then calls `stage(meta, value, check=...)`
        and the sink runs `check` (NaN/Inf: True when found) on its own copy and returns the
        verdict as a zero-argument callable, which the executor settles before `commit`."""
        ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def finish(self, frozen: set[str], options: dict[str, Any]) -> list[str]:
        """After commit: freezing and the like. Returns notes for the report."""
        ...

    @property
    def result(self) -> Any:
        """What apply returns as the target (the model, or the output path)."""
        ...


@dataclass
class StagedValues:
    """Values staged for commit, in plan order."""

    items: list[tuple[TensorMeta, Any]] = field(default_factory=list)

    def add(self, meta: TensorMeta, value: Any) -> None:
        self.items.append((meta, value))

    def clear(self) -> None:
        self.items.clear()


@contextlib.contextmanager
def defer_sigint() -> Iterator[None]:
    """Ctrl-C during commit is delivered after it, so the model is never half-written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[Any] = []
    old = signal.signal(signal.SIGINT, lambda *a: pending.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if pending:
            raise KeyboardInterrupt
