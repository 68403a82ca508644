"""The one table of frameworks: the names a spec may write, their aliases, which tensor layout
each implies, and whether a framework is installed or already imported.

A spec names a source's or target's framework (`source torch "a.safetensors"`) so the compiler
knows which layouts meet: PyTorch's (Linear `(out, in)`, conv OIHW) or Keras/TensorFlow's (Dense
`(in, out)`, conv HWIO). `numpy` and `safetensors` are framework-neutral containers: they imply
no layout, so nothing warns about a move between them and either side.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Literal, Protocol

from wmap.core.errors import WmapError, did_you_mean, error

Layout = Literal["torch", "keras"]

# name -> the layout it implies (None: a neutral container)
_LAYOUT: dict[str, Layout | None] = {"torch": "torch", "keras": "keras", "tf": "keras", "numpy": None,
                                     "safetensors": None}
FRAMEWORKS: tuple[str, ...] = tuple(_LAYOUT)
"""What a spec may write after `source`/`target`."""
ALIASES: dict[str, str] = {"pytorch": "torch", "tensorflow": "tf", "np": "numpy", "st": "safetensors"}
"""Other spellings: accepted by the Python API, suggested (not accepted) in a spec."""


def canonical(name: str) -> str | None:
    """`name` as the spec spells it (`PyTorch` -> `torch`), or None when it names no framework."""
    low = name.lower()
    return low if low in _LAYOUT else ALIASES.get(low)


def unknown_hint(name: str) -> str:
    alias = ALIASES.get(name.lower())
    return (f"write `{alias}`" if alias else did_you_mean(name, FRAMEWORKS)) or "frameworks: " + ", ".join(FRAMEWORKS)


def layout_of(framework: str | None) -> Layout | None:
    """The layout a framework name implies (`tf` -> `keras`; `numpy` -> None); WM501 for a name
    that is no framework, so an API caller's typo is never silently framework-neutral."""
    if framework is None:
        return None
    name = canonical(framework)
    if name is None:
        raise unknown(framework)
    return _LAYOUT[name]


def unknown(framework: str) -> WmapError:
    return error("WM501", f"unknown framework `{framework}`", hint=unknown_hint(framework))


@functools.cache
def installed(module: str) -> bool:
    """Whether `module` (torch, tensorflow, keras) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ValueError, ImportError):  # a half-initialised module in sys.modules
        return module in sys.modules


def loaded(module: str) -> ModuleType | None:
    """The module if something already imported it. Objects of a framework are recognised this
    way: if torch was never imported, nothing in hand can be a torch tensor, and wmap never
    imports a framework just to ask."""
    return sys.modules.get(module)


class KerasVariable(Protocol):
    """What wmap uses of a Keras 3 variable (Keras ships no type information, so this is the contract,
    checked by mypy on wmap's side)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str:
        """`dense/kernel`: the layer path and the variable's name."""
        ...

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> object: ...

    @property
    def value(self) -> object: ...

    trainable: bool

    def numpy(self) -> object: ...

    def assign(self, value: object) -> object: ...


class KerasModel(Protocol):
    """What wmap uses of a Keras 3 model or layer: its name, whether it is built, its variables."""

    @property
    def name(self) -> str: ...

    @property
    def built(self) -> bool: ...

    @property
    def weights(self) -> list[KerasVariable]: ...

    trainable: bool

    def save(self, filepath: str, overwrite: bool = True) -> None: ...

    def save_weights(self, filepath: str, overwrite: bool = True) -> None: ...

    def _flatten_layers(self, include_self: bool = True, recursive: bool = True) -> Iterable[KerasModel]:
        """Keras' own walk of the layer tree, in its tracking order (private to Keras, but the one order
        its saving code uses, so wmap names and reads layers by it)."""
        ...
