"""Building many small objects at once: planning a 90k-tensor checkpoint, loading its saved plan,
and the first parse and transfer of a fresh process.

CPython's cyclic garbage collector runs a full pass over every tracked object each time the
number of live objects has grown by a quarter. Planning allocates a few objects per tensor on
top of inventories that already hold hundreds of thousands, none of them in reference cycles,
so those passes find nothing and cost about 40% of a DeepSeek-V3-sized compile (and 75% of
loading its plan). Reference counting frees everything as usual while the collector is paused;
any cycle created meanwhile is collected by the first pass after it resumes.

The same holds in a fresh process right after `import torch`: torch's import leaves a full pass
(~80 ms over its ~10^5 objects) due after a few thousand more allocations, and wmap's lazy imports
plus its first parse would trigger it inside `parse_spec` or `apply`, a pass that finds nothing of
ours (import wmap, a parse and two transfers leave ~40 unreachable objects, the baseline's
`load_state_dict` ~30). It stays due, to the next code that allocates enough, or to exit.

A model factory (`module:callable`) is the caller's code, not ours: `collector_as_caller_left_it`
runs it with the collector as the caller had it, so no claim about its garbage is needed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# How many collector_paused blocks currently hold the collector off (0 or more; only blocks that
# found it enabled count, so a caller who disabled it themselves is never overridden).
_held = 0


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause automatic garbage collection inside the block; leave it as it was found afterwards
    (a caller that had disabled it keeps it disabled, and nested blocks resume it only once)."""
    global _held
    was_enabled = gc.isenabled()
    gc.disable()
    if was_enabled:
        _held += 1
    try:
        yield
    finally:
        if was_enabled:
            _held -= 1
            gc.enable()


@contextmanager
def collector_as_caller_left_it() -> Iterator[None]:
    """Run the caller's code (a model factory, its module's import) with the collector as the caller
    had it before any `collector_paused` block: enabled again if only wmap paused it."""
    global _held
    held, _held = _held, 0
    resume = held > 0 and not gc.isenabled()
    if resume:
        gc.enable()
    try:
        yield
    finally:
        _held = held
        if resume:
            gc.disable()
