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
from typing import TypeVar

# More new objects than this left by a block: they are handed to the oldest generation (below).
# A DeepSeek-V3-sized compile (92k tensors) leaves about 200k; a 128-tensor one a few hundred.
PROMOTE_AFTER = 50_000

# How many collector_paused blocks currently hold the collector off (0 or more; only blocks that
# found it enabled count, so a caller who disabled it themselves is never overridden).
_held = 0


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause automatic garbage collection inside the block; leave it as it was found afterwards
    (a caller that had disabled it keeps it disabled, and nested blocks resume it only once).

    A block that leaves many new objects behind (a million-step plan leaves six million) hands
    them to the oldest generation as it resumes, with `gc.freeze()` then `gc.unfreeze()` (which
    "put them back into the oldest generation", in O(1)). Left young, the first allocations after
    the block would trace all of them once per younger generation: 8 s after planning 1M tensors,
    for objects that are the result and live on (the plan). They are traced at the next full
    collection, like every long-lived object; what the promotion costs is that a reference cycle
    made in the block, or young before it, waits for that collection too. Not done when someone
    else has frozen objects (a pre-fork server): unfreezing would hand theirs back as well."""
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
            if gc.get_count()[0] > PROMOTE_AFTER and gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
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


_T = TypeVar("_T")
_new = object.__new__
_set = object.__setattr__


def new_frozen(cls: type[_T], fields: dict[str, object]) -> _T:
    """An instance of the frozen (non-slots) dataclass `cls` holding `fields`, made without running
    its `__init__`: that writes each field through `object.__setattr__` (about 1.4 us for a plan
    `Step`'s eleven, most of a million-step compile's per-step cost), where this adopts a dict the
    caller has filled, typically a copy of an instance's `__dict__` with a few fields changed.

    The caller guarantees `fields` names every field of `cls` and nothing else, and that `cls` has
    no `__post_init__`: the result then equals, hashes and prints as `cls(**fields)` would."""
    obj = _new(cls)
    _set(obj, "__dict__", fields)
    return obj
