"""Read leases on memory-mapped sources: another process changing one becomes a clean refusal.

wmap maps checkpoints instead of copying them. If another process truncates a mapped file, the
next read of a page past the new end is a SIGBUS, which no Python code can catch: the process
dies mid-transfer. A Linux read lease (`fcntl(F_SETLEASE, F_RDLCK)`) turns that into a notice:
an `open` for writing or a `truncate` of the file by anyone else blocks (or fails, with
O_NONBLOCK) until we release the lease, and we get SIGIO. Our handler raises `SourceChanged`
in the main thread; the transfer aborts as on Ctrl-C (nothing written), the readers close,
the leases go, and the writer proceeds. While a sink commits, a break is held back (the values
being written were read before the change, the writer waits for the commit).

Not every file can be leased: Linux only, the caller must own the file (or have CAP_LEASE),
no process may have it open for writing, and some file systems (NFS) refuse. Then the file is
mapped without one, as before (README, Limits). The kernel breaks a lease by force after
/proc/sys/fs/lease-break-time (45 s by default); a single tensor copy that outlasts it is not
covered.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

_held: dict[int, str] = {}   # lease fd -> the file's path
_deferred = False
_pending: list[str] = []


class SourceChanged(KeyboardInterrupt):
    """Another process opened a mapped source for writing (or truncated it) during a transfer.

    A KeyboardInterrupt, so every abort path that handles Ctrl-C handles it; the CLI reports it
    as WM505."""

    def __init__(self, path: str):
        super().__init__(path)
        self.path = path


def _on_sigio(signum: int, frame: Any) -> None:
    import fcntl
    for fd, path in list(_held.items()):
        try:
            state = fcntl.fcntl(fd, fcntl.F_GETLEASE)
        except OSError:
            continue
        if state != fcntl.F_RDLCK:  # being broken: F_GETLEASE says what it is being downgraded to
            if _deferred:
                _pending.append(path)
                return
            raise SourceChanged(path)


def take(path: str) -> int | None:
    """A read lease on `path` (its descriptor), or None where one cannot be had."""
    if not hasattr(signal, "SIGIO") or threading.current_thread() is not threading.main_thread():
        return None  # the notice is a signal, delivered to the main thread only
    import fcntl
    if not hasattr(fcntl, "F_SETLEASE"):
        return None
    current = signal.getsignal(signal.SIGIO)
    if current not in (signal.SIG_DFL, _on_sigio):
        return None  # someone else handles SIGIO in this process: leave it to them
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        signal.signal(signal.SIGIO, _on_sigio)  # before the lease: an unhandled SIGIO would kill us
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except (OSError, ValueError):
        os.close(fd)
        return None
    _held[fd] = path
    return fd


def release_with(owner: object, fd: int | None) -> Callable[[], object]:
    """What releases `fd`: call it on close; it also runs if `owner` (a reader nobody closed) is
    garbage-collected. Once only, so a descriptor number reused by a later lease is never released."""
    if fd is None:
        return lambda: None
    import weakref
    return weakref.finalize(owner, release, fd)


def release(fd: int | None) -> None:
    if fd is None or _held.pop(fd, None) is None:
        return
    import fcntl
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    with contextlib.suppress(OSError):
        os.close(fd)


@contextlib.contextmanager
def held_back() -> Iterator[None]:
    """While a sink commits: a lease break waits (the writer is blocked until we release)."""
    global _deferred
    outer = _deferred
    _deferred = True
    try:
        yield
    finally:
        _deferred = outer
        _pending.clear()
