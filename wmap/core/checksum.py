"""Checksums of tensor bytes, identical for numpy arrays and torch tensors of the same data."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def raw_bytes(x: Any) -> memoryview:
    if not isinstance(x, np.ndarray):
        import torch
        t = x.detach().cpu().contiguous()
        if t.dtype in (torch.bfloat16,) or str(t.dtype).startswith("torch.float8"):
            t = t.view(torch.uint8 if t.element_size() == 1 else torch.int16)
        x = t.numpy()
    return memoryview(np.ascontiguousarray(x)).cast("B")  # type: ignore[arg-type]


def checksum(x: Any) -> str:
    return "sha256:" + hashlib.sha256(raw_bytes(x)).hexdigest()[:16]
