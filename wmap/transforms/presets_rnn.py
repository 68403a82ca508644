"""LSTM and GRU presets: PyTorch (gates stacked on dim 0, (G*H, in)) <-> Keras
(gates on the last dim, (in, G*H)).

LSTM gate order is the same in both (torch i,f,g,o = Keras i,f,c,o); Keras keeps one bias,
the sum of torch's two. GRU: torch r,z,n vs Keras z,r,h, and with `reset_after=True` Keras
keeps both biases as a (2, 3H) matrix. A missing gate swap has the right shapes and gives
errors of ~0.45, so these presets exist to make the swap impossible to forget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wmap.transforms import _util as U
from wmap.transforms.base import A, ArrayMeta, ArrayOps, InferContext, Transform, TransformError, register
from wmap.transforms.gates import reorder_blocks

_GRU_SWAP = (1, 0, 2)  # r,z,n <-> z,r,h: its own inverse


def _gate_rows(m: ArrayMeta, n: int, dim: int, name: str, what: str) -> None:
    if m.shape[dim] % n:
        raise TransformError(f"`{name}`: {U.fmt(m.shape)} does not hold {n} equal gate blocks on dim {dim}",
                             f"expected {what}")


@register
@dataclass(frozen=True)
class LstmKernelToKeras(Transform):
    """PyTorch LSTM weight_ih/weight_hh (4H, in) -> Keras kernel/recurrent_kernel (in, 4H): `W.T`
    (gate order i,f,g,o is Keras' i,f,c,o).

    Example: `lstm.weight_ih_l0 -> lstm.cell.kernel | lstm_kernel_to_keras`  (128, 16) -> (16, 128)
    """

    NAME = "lstm_kernel_to_keras"
    VIEW = True
    INVERTIBLE = True
    GATES = 4
    TORCH = True

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (2,), self.NAME, "an RNN weight matrix")
        _gate_rows(m, self.GATES, 0 if self.TORCH else 1, self.NAME,
                   f"{'(G*H, in)' if self.TORCH else '(in, G*H)'} with G = {self.GATES}")
        return self, (ArrayMeta((m.shape[1], m.shape[0]), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.transpose(xs[0], (1, 0)),)

    def inverse(self) -> Transform:
        return LstmKernelFromKeras()


@register
@dataclass(frozen=True)
class LstmKernelFromKeras(LstmKernelToKeras):
    """Keras LSTM kernel/recurrent_kernel (in, 4H) -> PyTorch weight_ih/weight_hh (4H, in): `K.T`.

    Example: `lstm.cell.kernel -> lstm.weight_ih_l0 | lstm_kernel_from_keras`  (16, 128) -> (128, 16)
    """

    NAME = "lstm_kernel_from_keras"
    TORCH = False

    def inverse(self) -> Transform:
        return LstmKernelToKeras()


@register
@dataclass(frozen=True)
class LstmBiasToKeras(Transform):
    """Fan-in: PyTorch LSTM bias_ih + bias_hh (4H,) each -> Keras LSTM bias (4H,). The sum is
    what the cell uses, so nothing is lost for inference; the split is not recoverable
    (the reverse, lstm_bias_from_keras, puts the sum in bias_ih and zeros in bias_hh).

    Example: `lstm.bias_{ih,hh}_l0 -> lstm.cell.bias | lstm_bias_to_keras`  2 x (128,) -> (128,)
    """

    NAME = "lstm_bias_to_keras"
    ARITY = "n:1"

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.exactly(ins, 2, self.NAME, "bias_ih, bias_hh")
        for m in ins:
            U.rank_in(m, (1,), self.NAME, "LSTM biases (4H,)")
            _gate_rows(m, 4, 0, self.NAME, "(4H,)")
        if ins[0].shape != ins[1].shape:
            raise TransformError(f"`{self.NAME}`: bias_ih {U.fmt(ins[0].shape)} and bias_hh {U.fmt(ins[1].shape)} "
                                 "differ")
        return self, (ArrayMeta(ins[0].shape, U.promote([m.dtype for m in ins], self.NAME)),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        dtype = U.promote([ops.dtype_name(x) for x in xs], self.NAME)
        return (U.downcast(ops.add(U.upcast(xs[0], ops, dtype), U.upcast(xs[1], ops, dtype)), ops, dtype),)


@register
@dataclass(frozen=True)
class LstmBiasFromKeras(Transform):
    """Fan-out: Keras LSTM bias (4H,) -> PyTorch bias_ih = bias and bias_hh = zeros. The cell
    adds the two, so outputs are identical; only their split is a convention.

    Example: `lstm.cell.bias -> lstm.bias_{ih,hh}_l0 | lstm_bias_from_keras`  (128,) -> 2 x (128,)
    """

    NAME = "lstm_bias_from_keras"
    ARITY = "1:n"
    INVERTIBLE = True

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (1,), self.NAME, "a Keras LSTM bias (4H,)")
        _gate_rows(m, 4, 0, self.NAME, "(4H,)")
        return self, (m, m)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        x = xs[0]
        return (x, ops.full(ops.shape(x), 0.0, ops.dtype_name(x), x))

    def inverse(self) -> Transform:
        return LstmBiasToKeras()


@register
@dataclass(frozen=True)
class GruKernelToKeras(Transform):
    """PyTorch GRU weight_ih/weight_hh (3H, in), gates r,z,n -> Keras kernel/recurrent_kernel
    (in, 3H), gates z,r,h: swap the first two gate blocks, then transpose.

    Example: `gru.weight_ih_l0 -> gru.cell.kernel | gru_kernel_to_keras`  (96, 16) -> (16, 96)
    """

    NAME = "gru_kernel_to_keras"
    INVERTIBLE = True
    TORCH = True

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        U.rank_in(m, (2,), self.NAME, "a GRU weight matrix")
        _gate_rows(m, 3, 0 if self.TORCH else 1, self.NAME, "(3H, in)" if self.TORCH else "(in, 3H)")
        return self, (ArrayMeta((m.shape[1], m.shape[0]), m.dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        if self.TORCH:
            return (ops.transpose(reorder_blocks(xs[0], _GRU_SWAP, 0, ops), (1, 0)),)
        return (reorder_blocks(ops.transpose(xs[0], (1, 0)), _GRU_SWAP, 0, ops),)

    def inverse(self) -> Transform:
        return GruKernelFromKeras()


@register
@dataclass(frozen=True)
class GruKernelFromKeras(GruKernelToKeras):
    """Keras GRU kernel/recurrent_kernel (in, 3H), gates z,r,h -> PyTorch (3H, in), gates r,z,n.

    Example: `gru.cell.kernel -> gru.weight_ih_l0 | gru_kernel_from_keras`  (16, 96) -> (96, 16)
    """

    NAME = "gru_kernel_from_keras"
    TORCH = False

    def inverse(self) -> Transform:
        return GruKernelToKeras()


@register
@dataclass(frozen=True)
class GruBiasToKeras(Transform):
    """Fan-in: PyTorch GRU bias_ih, bias_hh (3H,) -> Keras GRU(reset_after=True) bias (2, 3H) =
    [b_ih; b_hh], each with the r,z gate blocks swapped.

    Example: `gru.bias_{ih,hh}_l0 -> gru.cell.bias | gru_bias_to_keras`  2 x (96,) -> (2, 96)
    """

    NAME = "gru_bias_to_keras"
    ARITY = "n:1"
    INVERTIBLE = True

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        U.exactly(ins, 2, self.NAME, "bias_ih, bias_hh")
        for m in ins:
            U.rank_in(m, (1,), self.NAME, "GRU biases (3H,)")
            _gate_rows(m, 3, 0, self.NAME, "(3H,)")
        if ins[0] != ins[1]:
            raise TransformError(f"`{self.NAME}`: bias_ih {ins[0]} and bias_hh {ins[1]} differ")
        return self, (ArrayMeta((2, ins[0].shape[0]), ins[0].dtype),)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (ops.stack([reorder_blocks(x, _GRU_SWAP, 0, ops) for x in xs], 0),)

    def inverse(self) -> Transform:
        return GruBiasFromKeras()


@register
@dataclass(frozen=True)
class GruBiasFromKeras(Transform):
    """Fan-out: Keras GRU(reset_after=True) bias (2, 3H) -> PyTorch bias_ih, bias_hh (3H,),
    swapping the z,r gate blocks back to r,z.

    Example: `gru.cell.bias -> gru.bias_{ih,hh}_l0 | gru_bias_from_keras`  (2, 96) -> 2 x (96,)
    """

    NAME = "gru_bias_from_keras"
    ARITY = "1:n"
    INVERTIBLE = True

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        if len(m.shape) != 2 or m.shape[0] != 2:
            raise TransformError(f"`{self.NAME}`: expected a (2, 3H) bias, got {U.fmt(m.shape)}",
                                 "PyTorch's GRU matches Keras GRU(reset_after=True); reset_after=False has "
                                 "one (3H,) bias and different maths")
        _gate_rows(m, 3, 1, self.NAME, "(2, 3H)")
        part = ArrayMeta((m.shape[1],), m.dtype)
        return self, (part, part)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        n = ops.shape(xs[0])[1]
        rows = ops.split(xs[0], [1, 1], 0)
        return tuple(reorder_blocks(ops.reshape(r, (n,)), _GRU_SWAP, 0, ops) for r in rows)

    def inverse(self) -> Transform:
        return GruBiasToKeras()
