"""The AST nodes' shared `__eq__`, `__hash__` and `__repr__` (`wmap.lang.spec.Node`) behave exactly as the
methods `dataclasses` generates for the same fields: each node class is compared with a twin that the
standard library's `@dataclass(frozen=True)` builds from the node's own field list."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from wmap.lang import spec

NODES = [c for _, c in inspect.getmembers(spec, inspect.isclass)
         if issubclass(c, spec.Node) and c is not spec.Node]


def _twin(cls: type) -> type:
    ns: dict[str, Any] = {"__annotations__": {f.name: f.type for f in dataclasses.fields(cls)},
                          "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    for f in dataclasses.fields(cls):
        kw: dict[str, Any] = {"compare": f.compare, "repr": f.repr}
        if f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        if f.default_factory is not dataclasses.MISSING:
            kw["default_factory"] = f.default_factory
        ns[f.name] = dataclasses.field(**kw)
    return dataclasses.dataclass(frozen=True)(type(cls.__name__, (), ns))


def _values(cls: type, variant: int, changed: str | None = None) -> dict[str, Any]:
    """One value per field (a tuple, so every node stays hashable); `changed` gets another one."""
    return {f.name: (f.name, variant if f.name == changed else 0) for f in dataclasses.fields(cls)}


def test_every_node_class_is_covered() -> None:
    assert {c.__name__ for c in NODES} >= {"Spec", "Rule", "Call", "Let", "BinOp", "Use"}
    assert len(NODES) == 20


@pytest.mark.parametrize("cls", NODES, ids=lambda c: c.__name__)
def test_a_node_compares_hashes_and_prints_as_a_generated_dataclass_would(cls: type) -> None:
    twin = _twin(cls)
    base = _values(cls, 0)
    assert repr(cls(**base)) == repr(twin(**base))
    assert hash(cls(**base)) == hash(twin(**base))
    assert cls(**base) == cls(**base) and twin(**base) == twin(**base)
    for f in dataclasses.fields(cls):
        other = _values(cls, 1, f.name)
        ours, theirs = cls(**base) == cls(**other), twin(**base) == twin(**other)
        assert ours == theirs, f.name  # a field without `compare` (span, comments) is ignored by both
        assert (hash(cls(**base)) == hash(cls(**other))) == (hash(twin(**base)) == hash(twin(**other))), f.name
        assert repr(cls(**other)) == repr(twin(**other)), f.name
    assert cls(**base).__eq__(twin(**base)) is NotImplemented  # another class: not equal, as dataclass says
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cls(**base), dataclasses.fields(cls)[0].name, 1)
