"""Atomic files: every file wmap writes appears complete, or not at all.

A file is written to a hidden temporary beside its destination, fsynced, then renamed over
it (a rename within one folder is atomic on POSIX). Every writer (plans, reports, specs,
safetensors shards and their index, Keras files) takes its temporaries from `temp_file`, so
they share one naming scheme: `.<name>.wmap-<pid>-<random><suffix>`. The process id lets a
later run tell a temporary abandoned by a process that died (SIGKILL, a power cut) from one
that another run is writing right now; `sweep` removes only the first kind.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

from wmap.core.errors import error

_MARK = ".wmap-"
_TEMP = re.compile(r"^\.(?P<name>.+)\.wmap-(?P<pid>[0-9]+)-[A-Za-z0-9_]+\.(tmp|old|h5|keras|weights\.h5)$")


def new_file_mode() -> int:
    """What `open()` would give a new file: 0666 less the umask (mkstemp makes 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temp_file(dest: str, suffix: str = ".tmp") -> tuple[int, str]:
    """An open descriptor and the path of a new hidden temporary beside `dest`, with the
    permissions an ordinary new file would get. The caller writes, fsyncs and renames it."""
    folder = os.path.dirname(os.path.abspath(dest))
    fd, path = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}{_MARK}{os.getpid()}-", suffix=suffix, dir=folder)
    try:
        os.fchmod(fd, new_file_mode())
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, path


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str) -> None:
    """Make renames in `folder` durable (not every platform can fsync a directory)."""
    with contextlib.suppress(OSError):
        fsync_path(folder)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return True
    return True


def sweep(folder: str) -> list[str]:
    """Remove the temporaries in `folder` whose writing process is gone; returns their names.

    Runs before a write into `folder`, so a temporary left by a killed run (up to the size of a
    checkpoint shard) does not outlive the next run. A temporary whose process still runs is left
    alone: another wmap may be writing it at this moment."""
    removed: list[str] = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return removed
    for name in names:
        m = _TEMP.match(name)
        if m is None or _alive(int(m.group("pid"))):
            continue
        with contextlib.suppress(OSError):
            os.remove(os.path.join(folder, name))
            removed.append(name)
    return removed


def write_text_atomic(path: str, text: str) -> None:
    """Write a small text file (a plan, a report, a spec) atomically; WM512 when it cannot be."""
    sweep(os.path.dirname(os.path.abspath(path)))
    try:
        fd, tmp = temp_file(path)
    except OSError as e:
        raise error("WM512", f"cannot write `{path}`: {e.strerror}", hint="check the folder exists and is writable") \
            from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise error("WM512", f"cannot write `{path}`: {e.strerror}") from None
    except BaseException:
        os.unlink(tmp)
        raise
