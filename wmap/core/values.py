"""The values a spec can write (numbers, strings, booleans, null, lists of them, and `$name`
references to a `let` binding): what options hold and what transforms and initialisers take as
parameters. Here, below both the language and the transforms, so neither depends on the other.

A `Ref` lives only in the spec: planning replaces each one by its bound value (from the model's
config) before any transform is built, so transforms never see one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

from wmap.core.errors import Span
from wmap.core.record import Record


@dataclass(frozen=True, eq=False, repr=False)
class Ref(Record):
    """`$heads` in a transform or initialiser argument: the value of `let heads = ...`."""

    name: str
    span: Span = field(default=Span(None, 0, 0), compare=False, repr=False)


Scalar = Union[int, float, str, bool, None]  # noqa: UP007 (runtime alias, recursive below)
Value = Union[Scalar, Ref, tuple["Value", ...]]  # noqa: UP007 (a string forward reference needs Union)


def refs_in(v: Value) -> list[Ref]:
    """Every reference inside a value (lists included), in order."""
    if isinstance(v, Ref):
        return [v]
    if isinstance(v, tuple):
        return [r for x in v for r in refs_in(x)]
    return []


Endpoint = object
"""What a caller hands wmap as a source, a target or an output: a checkpoint path, a `module:callable`,
a state dict, a model (PyTorch or Keras), a mapping of named sources. It is checked where it is used
(a WM5xx diagnostic otherwise), so code narrows it (`isinstance`) before touching it: `object`, never
`Any`, so that mypy holds every use to that."""

OutPath = Union[str, "os.PathLike[str]", None]  # noqa: UP007 (a string forward reference needs Union)
"""Where `apply` writes its result when the target is a file: a path, or None for an in-memory target."""

ConfigLike = Union[str, "os.PathLike[str]", Mapping[str, object], None]  # noqa: UP007
"""A model config handed to a call: a JSON file's path or the parsed mapping (None: the spec's own)."""
