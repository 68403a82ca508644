"""Atomic small-file writes: a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import os
import tempfile

from wmap.core.errors import error


def write_text_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".wmap-", suffix=".tmp", dir=folder)
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
