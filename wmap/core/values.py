"""The values a spec can write (numbers, strings, booleans, null, and lists of them): what
options hold and what transforms and initialisers take as parameters. Here, below both the
language and the transforms, so neither depends on the other for it."""

from __future__ import annotations

from typing import Union

Scalar = Union[int, float, str, bool, None]  # noqa: UP007 (runtime alias, recursive below)
Value = Union[Scalar, tuple["Value", ...]]  # noqa: UP007 (a string forward reference needs Union)
