"""ArrayOps for numpy: the reference backend every other backend is tested against.

bfloat16 and float8 come from ml_dtypes. Reductions and interpolation compute in
float64 and round once to the input dtype, so results do not depend on the order of
accumulation (torch does the same, and the two agree to the last bit in practice).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from wmap.core.inventory import FLOAT_DTYPES, Shape

NDArray: TypeAlias = npt.NDArray[Any]
"""numpy's array type in wmap: any dtype, since bfloat16/float8 come from ml_dtypes, which numpy's
typing cannot name."""

_Reduction: TypeAlias = Callable[..., NDArray]  # np.sum / np.mean with axis, keepdims, dtype


def np_dtype(name: str) -> np.dtype[Any]:  # Any: the scalar type depends on `name`
    """numpy dtype for a canonical dtype name (ml_dtypes for bfloat16 / float8, imported only for them:
    its import is slow and a float32 transfer never needs it)."""
    if name.startswith(("bfloat", "float8")):
        import ml_dtypes
        if hasattr(ml_dtypes, name):
            return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


class NumpyOps:
    name = "numpy"

    def dtype_name(self, x: NDArray) -> str:
        return str(x.dtype)

    def shape(self, x: NDArray) -> Shape:
        return tuple(int(d) for d in x.shape)

    def transpose(self, x: NDArray, perm: Sequence[int]) -> NDArray:
        return np.transpose(x, tuple(perm))

    def reshape(self, x: NDArray, shape: Sequence[int]) -> NDArray:
        return np.reshape(x, tuple(shape))

    def concat(self, xs: Sequence[NDArray], dim: int) -> NDArray:
        return np.concatenate(list(xs), axis=dim)

    def stack(self, xs: Sequence[NDArray], dim: int) -> NDArray:
        return np.stack(list(xs), axis=dim)

    def split(self, x: NDArray, sizes: Sequence[int], dim: int) -> tuple[NDArray, ...]:
        cuts = np.cumsum(list(sizes))[:-1].tolist()
        return tuple(np.split(x, cuts, axis=dim))

    def slice(self, x: NDArray, dim: int, start: int, stop: int, step: int) -> NDArray:
        idx: list[slice] = [slice(None)] * x.ndim
        idx[dim] = slice(start, stop, step)
        return x[tuple(idx)]

    def pad(self, x: NDArray, widths: Sequence[tuple[int, int]], fill: float) -> NDArray:
        return np.pad(x, [tuple(w) for w in widths], mode="constant", constant_values=fill)

    def cast(self, x: NDArray, dtype: str) -> NDArray:
        return x.astype(np_dtype(dtype), copy=False)

    def _reduce(self, fn: _Reduction, x: NDArray, dim: int, keepdim: bool) -> NDArray:
        dt = str(x.dtype)
        acc = np.float64 if dt in FLOAT_DTYPES else np.int64
        return fn(x, axis=dim, keepdims=keepdim, dtype=acc).astype(x.dtype)

    def sum(self, x: NDArray, dim: int, keepdim: bool) -> NDArray:
        return self._reduce(np.sum, x, dim, keepdim)

    def mean(self, x: NDArray, dim: int, keepdim: bool) -> NDArray:
        return self._reduce(np.mean, x, dim, keepdim)

    def repeat(self, x: NDArray, repeats: int, dim: int) -> NDArray:
        return np.repeat(x, repeats, axis=dim)

    def tile(self, x: NDArray, reps: Sequence[int]) -> NDArray:
        return np.tile(x, tuple(reps))

    def where_abs_below(self, x: NDArray, threshold: float, inclusive: bool = False) -> NDArray:
        # compared in x's own dtype, as `np.abs(w) < t` is: the same entries as the mask written by hand
        mag, t = np.abs(x), np.asarray(threshold).astype(x.dtype)
        # x * 0, not 0: a pruned negative entry is -0.0, as `w * mask` and torch.nn.utils.prune give it
        return np.where(mag <= t if inclusive else mag < t, x * np.zeros((), x.dtype), x)

    def flip(self, x: NDArray, dim: int) -> NDArray:
        return np.flip(x, axis=dim)

    def interpolate(self, x: NDArray, size: Sequence[int], mode: str) -> NDArray:
        """Resize the last len(size) dims like torch F.interpolate(align_corners=False, antialias=False)."""
        out = x.astype(np.float64)
        k = len(size)
        for i, n in enumerate(size):
            ax = x.ndim - k + i
            w = interp_matrix(x.shape[ax], n, mode)
            out = np.moveaxis(np.moveaxis(out, ax, -1) @ w.T, -1, ax)
        return out.astype(x.dtype)

    def rearrange(self, x: NDArray, pattern: str, **axes: int) -> NDArray:
        import einops  # only `rearrange` uses it; every transfer imports this backend
        return einops.rearrange(x, pattern, **axes)

    def full(self, shape: Sequence[int], value: float, dtype: str, like: NDArray | None) -> NDArray:
        return np.full(tuple(shape), value, dtype=np_dtype(dtype))

    def matmul(self, a: NDArray, b: NDArray) -> NDArray:
        return np.matmul(a, b)

    def add(self, a: NDArray, b: NDArray) -> NDArray:
        return a + b

    def mul(self, x: NDArray, c: float) -> NDArray:
        return x * c

    def multiply(self, a: NDArray, b: NDArray) -> NDArray:
        with np.errstate(over="ignore", invalid="ignore"):  # IEEE inf/NaN, silently, as torch does
            return np.multiply(a, b)

    def lookup(self, x: NDArray, table: NDArray) -> NDArray:
        return np.asarray(table)[x]

    def same_bits(self, a: NDArray, b: NDArray) -> bool:
        a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()

    def contiguous(self, x: NDArray) -> NDArray:
        x = np.asarray(x)
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)  # keeps 0-d arrays 0-d

    def asarray(self, values: NDArray, like: NDArray | None) -> NDArray:
        return np.asarray(values)


_CUBIC_A = -0.75  # torch's bicubic kernel (PIL/OpenCV use -0.5)


def _cubic_weights(t: float) -> tuple[float, float, float, float]:
    a = _CUBIC_A

    def near(u: float) -> float:  # |u| <= 1
        return ((a + 2) * u - (a + 3)) * u * u + 1

    def far(u: float) -> float:  # 1 < |u| < 2
        return ((a * u - 5 * a) * u + 8 * a) * u - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def interp_matrix(n_in: int, n_out: int, mode: str) -> NDArray:
    """(n_out, n_in) weights reproducing torch's separable resampling along one axis."""
    w = np.zeros((n_out, n_in), dtype=np.float64)
    if mode == "nearest":  # torch computes the source index in float32
        scale32 = np.float32(n_in) / np.float32(n_out)
        for o in range(n_out):
            w[o, min(int(math.floor(np.float32(o) * scale32)), n_in - 1)] = 1.0
        return w
    scale = n_in / n_out
    for o in range(n_out):
        src: float = scale * (o + 0.5) - 0.5
        if mode in ("linear", "bilinear"):
            src = max(src, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        t = min(max(src - i0, 0.0), 1.0)
        if mode in ("linear", "bilinear"):
            w[o, i0] += 1 - t
            w[o, min(i0 + 1, n_in - 1)] += t
        elif mode == "bicubic":
            for j, c in enumerate(_cubic_weights(t)):
                w[o, min(max(i0 - 1 + j, 0), n_in - 1)] += c
        else:
            raise ValueError(f"unknown interpolation mode {mode!r}")
    return w
