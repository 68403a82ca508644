"""Initialisers for `init PATTERN = name(...)`: real, reproducible values.

Values are drawn with numpy from a generator seeded by (spec seed, target name), so the
same spec gives the same weights whatever the backend, the order of steps, or which
other targets exist. Fan-in/fan-out follow each framework's layout: PyTorch weights are
(out, in, *kernel), Keras kernels are (*kernel, in, out).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wmap.core.inventory import Shape
from wmap.core.values import Value

if TYPE_CHECKING:
    from wmap.transforms.ops_numpy import NDArray


class InitError(ValueError):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Initializer:
    """A resolved initialiser: its name and parameters (JSON-able), as the plan records it."""

    name: str
    params: tuple[tuple[str, Value], ...] = ()

    def param(self, key: str) -> Value:
        return dict(self.params)[key]

    def describe(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={_shown(v)}" for k, v in self.params) + ")"

    @property
    def source(self) -> str | None:
        """For `copy(name)`: the source tensor it reads."""
        return str(self.param("name")) if self.name == "copy" else None

    def generate(self, shape: Shape, seed: int, target_name: str, framework: str | None) -> NDArray:
        """The values, as float32 (cast to the target dtype on landing)."""
        from wmap.transforms.init_values import generate  # numpy: only when values are made, not checked
        return generate(self.name, dict(self.params), shape, _seed_for(seed, target_name), framework)


def _shown(v: Value, limit: int = 80) -> str:
    """A parameter as a spec writes it: lists in brackets, long literals cut (the plan shows the shape)."""
    if not isinstance(v, tuple):
        return repr(v)

    def text(x: Value) -> str:
        return "[" + ", ".join(text(y) for y in x) + "]" if isinstance(x, tuple) else repr(x)
    full = text(v)
    return full if len(full) <= limit else full[:limit - 5] + " ...]"


def _seed_for(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}\x00{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def fans(shape: Shape, framework: str | None) -> tuple[int, int]:
    if len(shape) < 2:
        n = shape[0] if shape else 1
        return n, n
    if framework == "keras":
        receptive = math.prod(shape[:-2])
        return shape[-2] * receptive, shape[-1] * receptive
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _gain(nonlinearity: Value, a: float) -> float:
    gains = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0),
             "leaky_relu": math.sqrt(2.0 / (1 + a * a)), "selu": 0.75}
    return gains.get(nonlinearity, 1.0) if isinstance(nonlinearity, str) else 1.0


Params = Mapping[str, Value]


def _num(p: Params, key: str, default: float | None = None) -> float:
    """A numeric parameter as a float (`make_initializer` checked it is a number); no default: required."""
    v = p[key] if default is None else p.get(key, default)
    if not isinstance(v, (int, float, str)):  # only from a hand-edited plan file
        raise TypeError(f"initialiser parameter `{key}` must be a number, not {v!r}")
    return float(v)


def _kaiming_std(shape: Shape, p: Params, fw: str | None) -> float:
    fan_in, fan_out = fans(shape, fw)
    fan = fan_in if p.get("mode", "fan_in") == "fan_in" else fan_out
    return _gain(p.get("nonlinearity", "leaky_relu"), _num(p, "a", 0.0)) / math.sqrt(max(fan, 1))


def literal_shape(value: Value) -> tuple[int, ...] | None:
    """The shape of a nested list of numbers (`[[1, 2], [3, 4]]` -> (2, 2)); None when it is not one
    (ragged, empty, or holding something other than numbers); () for a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return ()
    if not isinstance(value, (tuple, list)) or not value:
        return None
    inner = [literal_shape(x) for x in value]
    if inner[0] is None or any(s != inner[0] for s in inner):
        return None
    return (len(value), *inner[0])


# name -> (positional parameter names, allowed parameters, required parameters)
INITIALIZERS: dict[str, tuple[tuple[str, ...], frozenset[str], frozenset[str]]] = {
    "zeros": ((), frozenset(), frozenset()),
    "ones": ((), frozenset(), frozenset()),
    "eye": ((), frozenset(), frozenset()),
    "constant": (("value",), frozenset({"value"}), frozenset({"value"})),
    "normal": (("mean", "std"), frozenset({"mean", "std"}), frozenset()),
    "trunc_normal": (("std",), frozenset({"mean", "std", "a", "b"}), frozenset()),
    "uniform": (("a", "b"), frozenset({"a", "b"}), frozenset()),
    "xavier_uniform": (("gain",), frozenset({"gain"}), frozenset()),
    "xavier_normal": (("gain",), frozenset({"gain"}), frozenset()),
    "kaiming_uniform": (("a",), frozenset({"a", "mode", "nonlinearity"}), frozenset()),
    "kaiming_normal": (("a",), frozenset({"a", "mode", "nonlinearity"}), frozenset()),
    "copy": (("name",), frozenset({"name"}), frozenset({"name"})),
}

DOCS: dict[str, str] = {
    "zeros": "All zeros. `init head.bias = zeros`",
    "ones": "All ones. `init norm.weight = ones`",
    "eye": "Identity matrix (2-D). `init adapter.weight = eye`",
    "constant": "Every element = value, or the values themselves as a nested list of the target's shape. "
                "`init gate.bias = constant(1.0)`, `init fc.weight = constant([[0.1, 0.2, 0.3]])`",
    "normal": "Normal(mean, std). `init cls.** = normal(std=0.02)`",
    "trunc_normal": "Normal(mean, std) resampled into [a, b] (absolute bounds, torch semantics).",
    "uniform": "Uniform on [a, b). `init x = uniform(-0.1, 0.1)`",
    "xavier_uniform": "Glorot uniform, fans from the target framework's layout.",
    "xavier_normal": "Glorot normal, fans from the target framework's layout.",
    "kaiming_uniform": "He uniform (torch's default for Linear/Conv when a=sqrt(5)).",
    "kaiming_normal": "He normal; mode fan_in|fan_out, nonlinearity relu|leaky_relu|linear|tanh.",
    "copy": 'A copy of a source tensor (it may also feed a rule): `init lm_head.weight = copy("embed.weight")`',
}


def make_initializer(name: str, args: Sequence[Value] = (), kwargs: Sequence[tuple[str, Value]] = ()) -> Initializer:
    """The initialiser `name(args..., key=value...)`, its parameters checked (InitError otherwise)."""
    if name not in INITIALIZERS:
        raise InitError(f"unknown initialiser `{name}`")
    positional, allowed, required = INITIALIZERS[name]
    if len(args) > len(positional):
        raise InitError(f"`{name}` takes at most {len(positional)} positional argument(s)",
                        f"use keywords: {', '.join(sorted(allowed)) or 'none'}")
    params: dict[str, Value] = dict(zip(positional, args))
    for k, v in kwargs:
        if k not in allowed:
            raise InitError(f"`{name}` has no parameter `{k}`", f"parameters: {', '.join(sorted(allowed)) or 'none'}")
        params[k] = v
    missing = required - params.keys()
    if missing:
        raise InitError(f"`{name}` needs {', '.join(sorted(missing))}", DOCS.get(name))
    for k, v in params.items():
        if k in ("mode", "nonlinearity", "name"):
            if not isinstance(v, str):
                raise InitError(f"`{name}`: `{k}` must be a string")
        elif name == "constant" and isinstance(v, (tuple, list)):
            if literal_shape(v) is None:
                raise InitError("`constant`: a list value must be numbers in a rectangular nest, "
                                "e.g. `constant([[0.1, 0.2], [0.3, 0.4]])`")
        elif not isinstance(v, (int, float)) or isinstance(v, bool):
            raise InitError(f"`{name}`: `{k}` must be a number, not {v!r}")
    if name in ("normal", "trunc_normal") and _num(params, "std", 1.0) < 0:
        raise InitError(f"`{name}`: std must be >= 0")
    return Initializer(name, tuple(sorted(params.items())))
