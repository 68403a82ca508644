"""The values of `init` (see `initializers`): numpy generators, imported only when values are made.

`initializers` holds the names, parameters and checks a spec needs; checking a spec must not pay
for numpy, so the generators that draw the values live here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from wmap.core.inventory import Shape
from wmap.transforms.initializers import InitError, Params, _kaiming_std, _num, fans
from wmap.transforms.ops_numpy import NDArray

Gen = Callable[[Shape, np.random.Generator, Params, "str | None"], NDArray]


def generate(name: str, params: Params, shape: Shape, seed: int, framework: str | None) -> NDArray:
    """`name`'s values for `shape` as float32, from a generator seeded with `seed`."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return np.asarray(_GENERATORS[name](shape, rng, params, framework), dtype=np.float32).reshape(shape)


def _trunc_normal(shape: Shape, rng: np.random.Generator, p: Params, fw: str | None) -> NDArray:
    mean, std = _num(p, "mean", 0.0), _num(p, "std", 0.02)
    lo, hi = _num(p, "a", -2.0), _num(p, "b", 2.0)  # absolute bounds, as torch's trunc_normal_
    out = rng.normal(mean, std, size=shape)
    bad = (out < lo) | (out > hi)
    while bad.any():  # resample out-of-range values; deterministic under the same generator
        out[bad] = rng.normal(mean, std, size=int(bad.sum()))
        bad = (out < lo) | (out > hi)
    return out


_GENERATORS: dict[str, Gen] = {
    "zeros": lambda s, r, p, f: np.zeros(s),
    "ones": lambda s, r, p, f: np.ones(s),
    "constant": lambda s, r, p, f: _constant(s, p),
    "normal": lambda s, r, p, f: r.normal(_num(p, "mean", 0.0), _num(p, "std", 1.0), size=s),
    "trunc_normal": _trunc_normal,
    "uniform": lambda s, r, p, f: r.uniform(_num(p, "a", 0.0), _num(p, "b", 1.0), size=s),
    "xavier_uniform": lambda s, r, p, f: r.uniform(-1, 1, size=s) * _num(p, "gain", 1.0)
    * math.sqrt(6.0 / max(sum(fans(s, f)), 1)),
    "xavier_normal": lambda s, r, p, f: r.normal(0, 1, size=s) * _num(p, "gain", 1.0)
    * math.sqrt(2.0 / max(sum(fans(s, f)), 1)),
    "kaiming_uniform": lambda s, r, p, f: r.uniform(-1, 1, size=s) * math.sqrt(3.0) * _kaiming_std(s, p, f),
    "kaiming_normal": lambda s, r, p, f: r.normal(0, 1, size=s) * _kaiming_std(s, p, f),
    "eye": lambda s, r, p, f: np.eye(s[0], s[1]) if len(s) == 2 else _raise_eye(s),
}


def _constant(shape: Shape, p: Params) -> NDArray:
    """`constant(0.5)` fills the tensor; `constant([[0.1, 0.2]])` is the tensor, written out."""
    v = p["value"]
    if isinstance(v, (tuple, list)):
        arr = np.asarray(v, dtype=np.float64)
        if arr.shape != tuple(shape):  # the compiler checks this first; only a hand-edited plan gets here
            raise InitError(f"`constant` holds {arr.shape} values for a {tuple(shape)} tensor")
        return arr
    return np.full(shape, _num(p, "value"))


def _raise_eye(shape: Shape) -> NDArray:
    raise InitError(f"`eye` needs a 2-D tensor, not {shape}")
