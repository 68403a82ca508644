"""`Record`: the `__eq__`, `__hash__` and `__repr__` of wmap's frozen value types, written once.

`@dataclass` writes these three methods for each class by compiling their source when the class is
made, about 0.1 ms apiece on Python 3.11: for the ~30 value types a fresh process builds on its way
to a first parse and transfer, several milliseconds of every `wmap check` and every script's first
`wmap.apply`. A class declared `@dataclass(frozen=True, eq=False, repr=False)` and derived from
`Record` gets the same methods from here instead: equality and hash over the fields with `compare`
set, in declaration order, equal only to an instance of the very same class (`NotImplemented`
otherwise); the repr over the fields with `repr` set. `tests/house/test_record.py` holds every
`Record` to a twin that the standard library's `@dataclass(frozen=True)` builds from its fields.

They are slower per call than generated ones (a loop over the field names instead of straight-line
code), so types compared or hashed in bulk while planning (`TensorMeta`, `SourceRef`, `Step`,
patterns, `Span`) keep the generated methods.
"""

from __future__ import annotations

import reprlib
from dataclasses import fields
from typing import Any


class Record:
    """Base of a frozen dataclass declared with `eq=False, repr=False` (see the module docstring)."""

    __slots__ = ()

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in _names(type(self), "compare"))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() == other._compared()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._compared())

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in _names(type(self), "repr"))
        return f"{type(self).__qualname__}({shown})"


_NAMES: dict[tuple[type, str], tuple[str, ...]] = {}


def _names(cls: type, flag: str) -> tuple[str, ...]:
    """The names of `cls`'s fields with `flag` (`compare` or `repr`) set, in declaration order."""
    got = _NAMES.get((cls, flag))
    if got is None:
        got = _NAMES[(cls, flag)] = tuple(f.name for f in fields(cls) if getattr(f, flag))  # type: ignore[arg-type]
    return got
