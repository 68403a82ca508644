"""ArrayOps for torch tensors; bf16/fp16 stay native, layout ops return views where torch can.

Imported only by `get_ops("torch")`, so `import wmap` never imports torch.
Reductions and interpolation run in float64 and round once, matching NumpyOps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from wmap.core.inventory import Shape

if TYPE_CHECKING:
    from wmap.transforms.ops_numpy import NDArray

_DTYPES: dict[str, torch.dtype] = {
    "bool": torch.bool, "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float32": torch.float32, "float64": torch.float64, "complex64": torch.complex64,
    "complex128": torch.complex128,
}
for _name in ("uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2"):
    if hasattr(torch, _name):
        _DTYPES[_name] = getattr(torch, _name)
_NAMES = {v: k for k, v in _DTYPES.items()}
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_MODES = {"nearest": "nearest", "linear": "linear", "bilinear": "bilinear", "bicubic": "bicubic"}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"torch has no dtype {name!r}") from None


class TorchOps:
    name = "torch"

    def dtype_name(self, x: torch.Tensor) -> str:
        return _NAMES[x.dtype]

    def shape(self, x: torch.Tensor) -> Shape:
        return tuple(int(d) for d in x.shape)

    def transpose(self, x: torch.Tensor, perm: Sequence[int]) -> torch.Tensor:
        return x.permute(tuple(perm))

    def reshape(self, x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        return x.reshape(tuple(shape))

    def concat(self, xs: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
        return torch.cat(list(xs), dim=dim)

    def stack(self, xs: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
        return torch.stack(list(xs), dim=dim)

    def split(self, x: torch.Tensor, sizes: Sequence[int], dim: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.split(x, list(sizes), dim=dim))

    def slice(self, x: torch.Tensor, dim: int, start: int, stop: int, step: int) -> torch.Tensor:
        idx: list[slice] = [slice(None)] * x.dim()
        idx[dim] = slice(start, stop, step)
        return x[tuple(idx)]

    def pad(self, x: torch.Tensor, widths: Sequence[tuple[int, int]], fill: float) -> torch.Tensor:
        flat: list[int] = []
        for lo, hi in reversed(list(widths)):
            flat += [lo, hi]
        return F.pad(x, flat, mode="constant", value=fill)

    def cast(self, x: torch.Tensor, dtype: str) -> torch.Tensor:
        return x.to(torch_dtype(dtype))

    def _acc(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float64) if x.dtype in _FLOATS else x.to(torch.int64)

    def sum(self, x: torch.Tensor, dim: int, keepdim: bool) -> torch.Tensor:
        return self._acc(x).sum(dim=dim, keepdim=keepdim).to(x.dtype)

    def mean(self, x: torch.Tensor, dim: int, keepdim: bool) -> torch.Tensor:
        return self._acc(x).mean(dim=dim, keepdim=keepdim).to(x.dtype)

    def repeat(self, x: torch.Tensor, repeats: int, dim: int) -> torch.Tensor:
        return torch.repeat_interleave(x, repeats, dim=dim)

    def tile(self, x: torch.Tensor, reps: Sequence[int]) -> torch.Tensor:
        return x.repeat(tuple(reps))

    def where_abs_below(self, x: torch.Tensor, threshold: float, inclusive: bool = False) -> torch.Tensor:
        # compared in x's own dtype, as `w.abs() < t` is (a Python float takes the tensor's dtype)
        mag = x.abs()
        # x * 0, not 0: a pruned negative entry is -0.0, as `w * mask` and torch.nn.utils.prune give it
        return torch.where(mag <= threshold if inclusive else mag < threshold, x * 0, x)

    def flip(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return torch.flip(x, dims=(dim,))

    def interpolate(self, x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
        """Resize the last len(size) dims; leading dims are folded into the channel dim."""
        k = len(size)
        lead = tuple(x.shape[: x.dim() - k])
        flat = x.to(torch.float64).reshape(1, -1, *x.shape[x.dim() - k:])
        extra: dict[str, bool] = {} if mode == "nearest" else {"align_corners": False}
        out = F.interpolate(flat, size=tuple(size), mode=_MODES[mode], **extra)
        return out.reshape(*lead, *size).to(x.dtype)

    def rearrange(self, x: torch.Tensor, pattern: str, **axes: int) -> torch.Tensor:
        import einops  # only `rearrange` uses it; every transfer imports this backend
        return einops.rearrange(x, pattern, **axes)

    def full(self, shape: Sequence[int], value: float, dtype: str, like: torch.Tensor | None) -> torch.Tensor:
        device = like.device if isinstance(like, torch.Tensor) else None
        return torch.full(tuple(shape), value, dtype=torch_dtype(dtype), device=device)

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)

    def add(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    def mul(self, x: torch.Tensor, c: float) -> torch.Tensor:
        return x * c

    def multiply(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.mul(a, b)

    def lookup(self, x: torch.Tensor, table: NDArray) -> torch.Tensor:
        return self.asarray(table, x)[x.long()]

    def same_bits(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        # compared as bytes: NaN payloads and signed zeros count, as in a checksum
        return bool(torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)))

    def contiguous(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous()

    def asarray(self, values: NDArray, like: torch.Tensor | None) -> torch.Tensor:
        """numpy -> torch; ml_dtypes arrays (bfloat16, float8) travel as raw bits."""
        arr = np.asarray(values)
        if not arr.flags.c_contiguous:  # np.ascontiguousarray would turn a 0-d array into 1-d
            arr = np.ascontiguousarray(arr)
        name = str(arr.dtype)
        device = like.device if isinstance(like, torch.Tensor) else None
        if name == "bfloat16" or name.startswith("float8"):
            bits = arr.view(np.int16 if arr.dtype.itemsize == 2 else np.uint8)
            return torch.from_numpy(bits).view(torch_dtype(name)).to(device)
        return torch.from_numpy(arr).to(device)

    def to_numpy(self, x: torch.Tensor) -> NDArray:
        """torch -> numpy, keeping bfloat16/float8 through ml_dtypes (not part of ArrayOps)."""
        from wmap.transforms.ops_numpy import np_dtype

        t = x.detach().cpu().contiguous()
        name = _NAMES[t.dtype]
        if name == "bfloat16" or name.startswith("float8"):
            size = t.element_size()
            raw = t.view(torch.int16 if size == 2 else torch.uint8).numpy()
            return raw.view(np_dtype(name))
        return np.asarray(t.numpy())
