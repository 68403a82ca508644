"""The registry's name table (`wmap/transforms/catalog.py`) against what the family modules register.

Name checks answer from the table without importing the families, so the table must list every
transform under the module that registers it, and nothing else.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

import pytest

from tests.support import paths
from wmap.transforms import REGISTRY, Transform, register
from wmap.transforms.catalog import FAMILIES, MODULE_OF


def _registered_by(module: str) -> dict[str, type[Transform]]:
    mod = importlib.import_module(module)
    return {cls.NAME: cls for _, cls in inspect.getmembers(mod, inspect.isclass)
            if issubclass(cls, Transform) and cls.__module__ == module and cls.NAME and REGISTRY[cls.NAME] is cls}


def test_the_catalog_lists_exactly_what_each_family_registers() -> None:
    for family, names in FAMILIES.items():
        module = f"wmap.transforms.{family}"
        assert set(_registered_by(module)) == set(names), module
    assert len(MODULE_OF) == sum(len(n) for n in FAMILIES.values())  # no name in two families
    assert {name: cls.__module__ for name, cls in REGISTRY.items()} == MODULE_OF


def test_every_module_that_registers_transforms_is_a_family_in_the_catalog() -> None:
    """A new family file nobody imports would otherwise hold transforms no spec can reach."""
    files = sorted(p.stem for p in (paths.ROOT / "wmap" / "transforms").glob("*.py") if "@register" in p.read_text())
    assert files == sorted(FAMILIES)


def test_a_transform_missing_from_the_catalog_is_refused_when_registered() -> None:
    @dataclass(frozen=True)
    class Stray(Transform):
        NAME = "stray_transform"

    with pytest.raises(ValueError, match="catalog.py"):
        register(Stray)
    assert "stray_transform" not in REGISTRY
