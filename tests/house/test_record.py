"""`Record`'s shared `__eq__`, `__hash__` and `__repr__` behave exactly as the methods `dataclasses`
generates for the same fields: each value type derived from it is compared with a twin that the
standard library's `@dataclass(frozen=True)` builds from the type's own field list."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

import wmap.api  # noqa: F401  (every module whose types derive from Record)
import wmap.formats.safetensors_file  # noqa: F401
import wmap.lang.statements  # noqa: F401
import wmap.planning.compiler  # noqa: F401
import wmap.run.execute  # noqa: F401
from wmap.core.inventory import TensorMeta
from wmap.core.record import Record
from wmap.lang import spec


def _all(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_all(sub))]


NODES = sorted(_all(Record), key=lambda c: f"{c.__module__}.{c.__qualname__}")


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


# Fields whose type's own __post_init__ reads them: a value of the right kind.
MADE: dict[tuple[str, str], Any] = {("Inventory", "tensors"): lambda v: (TensorMeta(f"t{v}", (1,), "float32"),)}


def _values(cls: type, variant: int, changed: str | None = None) -> dict[str, Any]:
    """One value per field (a tuple, so every node stays hashable); `changed` gets another one."""
    out = {}
    for f in dataclasses.fields(cls):
        v = variant if f.name == changed else 0
        make = MADE.get((cls.__name__, f.name))
        out[f.name] = make(v) if make else (f.name, v)
    return out


def test_every_ast_node_and_the_cold_value_types_are_records() -> None:
    ast = [c for _, c in inspect.getmembers(spec, inspect.isclass) if dataclasses.is_dataclass(c)
           and c.__module__ == spec.__name__]
    assert len(ast) == 20 and set(ast) <= set(NODES)
    assert {c.__name__ for c in NODES} >= {"Diagnostic", "Inventory", "Plan", "Landed", "StatementList", "Header"}
    for cls in NODES:  # declared so that dataclass leaves the three methods to Record
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen and not params.eq and not params.repr, cls


@pytest.mark.parametrize("cls", NODES, ids=lambda c: c.__qualname__)
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
