"""Reading the small files a user names (specs, saved plans, configs) without hanging on them.

A path given on the command line may be a FIFO or a device: `open()` on a FIFO blocks until a
writer comes, and `/dev/zero` never ends. So every such file is opened non-blocking, checked
with `fstat` on the open descriptor (not a `stat` of the path before it, which a swap between
the check and the open would defeat), and read only if it is a regular file no larger than the
caller's limit. The limit is checked against the real size and then enforced by reading at most
one byte past it, since a file can grow between the two.
"""

from __future__ import annotations

import os
import stat


class NotRegularFile(OSError):
    """The path is a FIFO, a device or a socket: reading it could block or never end."""


class FileTooLarge(OSError):
    """The file is larger than the caller reads; `size` is what it holds (at least)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them.

    Raises FileNotFoundError, IsADirectoryError, NotRegularFile, FileTooLarge or another OSError."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd)
        if stat.S_ISDIR(mode.st_mode):
            raise IsADirectoryError(21, "Is a directory", os.fspath(path))
        if not stat.S_ISREG(mode.st_mode):
            raise NotRegularFile(f"`{os.fspath(path)}` is not a regular file")
        if mode.st_size > limit:
            raise FileTooLarge(mode.st_size)
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise FileTooLarge(got)
        return b"".join(chunks)
    finally:
        os.close(fd)
