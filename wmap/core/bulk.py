"""Building many small objects at once: planning a 90k-tensor checkpoint, loading its saved plan.

CPython's cyclic garbage collector runs a full pass over every tracked object each time the
number of live objects has grown by a quarter. Planning allocates a few objects per tensor on
top of inventories that already hold hundreds of thousands, none of them in reference cycles,
so those passes find nothing and cost about 40% of a DeepSeek-V3-sized compile (and 75% of
loading its plan). Reference counting frees everything as usual while the collector is paused;
any cycle created meanwhile is collected by the first pass after it resumes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause automatic garbage collection inside the block; leave it as it was found afterwards
    (a caller that had disabled it keeps it disabled, and nested blocks resume it only once)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
