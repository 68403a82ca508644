"""Quantised storage formats, read back to floats: what a checkpoint stores packed and a model computes
with unpacked (gpt-oss ships its experts as MXFP4; keras-hub and transformers dequantize them on load).

Dequantizing is exact: every stored code times its power-of-two scale is a float32 value, so numpy and
torch give the same bits, and so does any converter that multiplies the same two float32 numbers. It
has no inverse: a float tensor generally has no exact MXFP4 encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wmap.transforms import _util as U
from wmap.transforms.base import A, ArrayMeta, ArrayOps, InferContext, Transform, TransformError, register

# OCP Microscaling (MX) v1.0: an E2M1 code is sign, two exponent bits (bias 1) and one mantissa bit;
# exponent 0 is subnormal (0, 0.5). Code 8 is -0.0, kept as such: a converter that computes
# sign * magnitude lands -0.0 there too.
_E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
                 dtype=np.float32)
_BYTES = np.arange(256)
_LOW = _E2M1[_BYTES & 0xF]    # a byte's first value is its low nibble
_HIGH = _E2M1[_BYTES >> 4]
# E8M0 is a bare exponent, 2^(s - 127); 2^-127 is a float32 subnormal, exact. The spec makes 255 NaN
# (decoders differ there: transformers' ldexp reads it as 2^128 and stays finite, keras-hub's
# float32 power overflows to inf); released checkpoints never store it.
_E8M0 = np.ldexp(np.float32(1.0), _BYTES[:255] - 127).astype(np.float32)
_E8M0 = np.append(_E8M0, np.float32(np.nan))


@register
@dataclass(frozen=True)
class DequantMxfp4(Transform):
    """MXFP4 blocks and their scales -> float32: each byte of `blocks` (..., n, 16) holds two E2M1
    values (low nibble first), each block of 32 values shares one E8M0 scale from `scales` (..., n),
    2^(s - 127) (255 is NaN, as the OCP MX spec says). The result is (..., n * 32). Exact, and
    one-way (no inverse).

    Example: `mlp.experts.gate_up_proj_{blocks,scales} -> experts.gate_up_proj | dequant_mxfp4 | permute([0, 2, 1])`
    """

    NAME = "dequant_mxfp4"
    ARITY = "n:1"

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.exactly(ins, 2, self.NAME, "blocks, scales")
        blocks, scales = ins
        if blocks.dtype != "uint8" or scales.dtype != "uint8":
            raise TransformError(f"`{self.NAME}` reads uint8 blocks and scales, got {blocks.dtype} and "
                                 f"{scales.dtype}", "list the sources as `{blocks,scales}`: packed codes first, "
                                 "then their scales")
        if len(blocks.shape) < 2 or blocks.shape[:-1] != scales.shape:
            raise TransformError(f"`{self.NAME}`: blocks {U.fmt(blocks.shape)} and scales {U.fmt(scales.shape)} "
                                 "do not pair: one scale per block, blocks (..., n, bytes), scales (..., n)",
                                 "the blocks come first, then the scales")
        *lead, n, width = blocks.shape
        return self, (ArrayMeta((*lead, n * width * 2), "float32"),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        blocks, scales = xs
        *lead, n, width = ops.shape(blocks)
        pairs = ops.stack([ops.lookup(blocks, _LOW), ops.lookup(blocks, _HIGH)], -1)   # (..., n, width, 2)
        values = ops.reshape(pairs, (*lead, n, width * 2))
        scaled = ops.multiply(values, ops.reshape(ops.lookup(scales, _E8M0), (*lead, n, 1)))
        return (ops.reshape(scaled, (*lead, n * width * 2)),)
