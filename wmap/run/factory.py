"""`module:callable` factories: how a spec names a model to build.

The module is imported with the current directory on `sys.path` (specs name project
modules such as `examples.models:resnet18`), then the callable is called with no
arguments. Torch modules are built under `torch.device("meta")` by default, so planning
allocates and initialises nothing; torch is entered only if the factory's module already
imported it (a Keras factory never pays for importing torch). Keras models are used as
returned and must be built. Any failure (import, missing attribute, exception in the
factory) is WM511 carrying the original error text.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TypeGuard

from wmap.core.bulk import collector_as_caller_left_it
from wmap.core.errors import WmapError
from wmap.core.names import is_factory_syntax
from wmap.formats._common import canonical_framework, fail


def is_factory_spec(text: str) -> bool:
    """`pkg.module:callable` (callable may be dotted, e.g. `models:Net.tiny`)."""
    return is_factory_syntax(text)


def is_factory(obj: object) -> TypeGuard[str]:
    """A `module:callable` reference rather than a path: the syntax matches and no such file exists
    (a checkpoint may be called `a:b` on POSIX; the file wins)."""
    import os
    return isinstance(obj, str) and is_factory_spec(obj) and not os.path.exists(obj)


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    added = "" not in sys.path
    if added:
        sys.path.insert(0, "")
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove("")


def _takes_config(fn: Callable[..., object]) -> bool:
    try:
        return "config" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no introspectable signature
        return False


def resolve_factory(spec: str) -> Callable[..., object]:
    """Import `module` and return the object at `callable` (not yet called)."""
    if not is_factory_spec(spec):
        raise fail("WM511", f"`{spec}` is not a factory reference",
                   hint="write `module:callable`, e.g. `examples.models:resnet18`")
    module_name, _, attr = spec.partition(":")
    try:
        with _cwd_on_path(), collector_as_caller_left_it():
            obj: object = importlib.import_module(module_name)
    except Exception as exc:
        raise fail("WM511", f"cannot import `{module_name}` for factory `{spec}`: {type(exc).__name__}: {exc}",
                   hint="run from the project root, or install the package that defines the model") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise fail("WM511", f"factory `{spec}`: `{obj.__name__ if hasattr(obj, '__name__') else obj}` has "
                       f"no attribute `{part}`", hint="check the name after the colon") from None
        obj = getattr(obj, part)
    if not callable(obj):
        raise fail("WM511", f"factory `{spec}` is a {type(obj).__name__}, not a callable",
                   hint="point at a function or class that returns the model")
    return obj


@dataclass(frozen=True, eq=False)
class Built:
    """A target model wmap built from a `module:callable` for this call. It is planned against and
    then written into, so a factory runs once per apply (Keras numbers the layers it names, and a
    second build would name them differently), and since it is wmap's own, writing a Keras file from
    it needs no private copy."""

    model: object  # a torch nn.Module or a Keras model: narrowed where it is used
    factory: str
    framework: str | None
    config: Mapping[str, object] | None = None


@contextlib.contextmanager
def _keras_seeded(seed: int) -> Iterator[None]:
    """Keras' initialisers seeded for one build. `keras.utils.set_random_seed` also seeds Python's and
    NumPy's global generators, which are the caller's: their states are put back afterwards. (It sets
    TensorFlow's global seed too, which TensorFlow offers no way to read back.)"""
    import random

    import keras
    import numpy as np

    py, npy = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


@contextlib.contextmanager
def _torch_seeded(torch: ModuleType, seed: int) -> Iterator[None]:
    """torch's default generator seeded for one build, and put back afterwards (`fork_rng`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_factory(spec: str, device: str | None = "meta", framework: str | None = None,
                  config: Mapping[str, object] | None = None, seed: int | None = None) -> object:
    """Import and call a factory; torch models are built on `device` (None: torch's default).

    `framework="torch"` imports torch up front, for factories that import it lazily. A factory with
    a `config` parameter is given the model config the spec names (`config hf`: the checkpoint's
    config.json), so one factory builds every size of a family.

    `seed`: a Keras model's initial values are drawn when it is built; with a seed (the spec's `option
    seed`) they are the same in every run, so what `keep` keeps from a fresh model is reproducible.
    """
    fn = resolve_factory(spec)
    kwargs: dict[str, object] = {}
    if _takes_config(fn):
        if config is None:
            raise fail("WM511", f"factory `{spec}` builds the model from its config, but there is none",
                       hint="say where it is in the spec (`config SOURCE`, `config \"config.json\"`) or pass --config")
        kwargs["config"] = dict(config)
    torch = sys.modules.get("torch")
    if torch is None and canonical_framework(framework) == "torch":
        import torch as torch_module

        torch = torch_module
    ctx: contextlib.AbstractContextManager[object] = (
        torch.device(device) if torch is not None and device is not None else contextlib.nullcontext()
    )
    fw = canonical_framework(framework)
    try:
        with _cwd_on_path(), ctx, contextlib.ExitStack() as seeded, collector_as_caller_left_it():
            if seed is not None and torch is not None and device != "meta" and fw != "keras":
                seeded.enter_context(_torch_seeded(torch, seed))  # real values: seed torch's draws
            if seed is not None and fw != "torch" and ("keras" in sys.modules or fw == "keras"):
                seeded.enter_context(_keras_seeded(seed))
            return fn(**kwargs)
    except WmapError:
        raise
    except Exception as exc:
        raise fail("WM511", f"factory `{spec}` raised {type(exc).__name__}: {exc}",
                   hint="call it yourself to see the full traceback") from None
