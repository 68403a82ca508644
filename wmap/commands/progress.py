"""A progress bar on a terminal for transfers that take a while; silent otherwise."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

MIN_SECONDS = 1.0


@contextlib.contextmanager
def progress_bar(total_bytes: int, show: bool | None = None) -> Iterator[Callable[[int], None] | None]:
    """Yields an `advance(nbytes)` callback; the bar appears only on a TTY, after MIN_SECONDS."""
    if show is None:
        show = sys.stderr.isatty()
    if not show or total_bytes <= 0:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    start = time.monotonic()
    state: dict[str, object] = {}

    def advance(n: int) -> None:
        if "bar" not in state and time.monotonic() - start >= MIN_SECONDS:
            bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                           TransferSpeedColumn(), transient=True)
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task("transfer", total=total_bytes)
            state["done"] = 0
        if "bar" in state:
            state["bar"].update(state["task"], advance=n)  # type: ignore[attr-defined]

    try:
        yield advance
    finally:
        if "bar" in state:
            state["bar"].stop()  # type: ignore[attr-defined]
