"""RNN gate blocks: fused LSTM/GRU tensors hold one equal block per gate, and frameworks
disagree on the order. A wrong order has the right shape and gives wrong outputs with
no error, so the order is always spelled out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wmap.transforms import _util as U
from wmap.transforms.base import A, ArrayMeta, ArrayOps, InferContext, Transform, TransformError, register

# Letters naming the same gate in different conventions: LSTM cell candidate g (torch)
# = c (Keras); GRU new gate n (torch) = h (Keras).
_ALIASES = {"c": "g", "h": "n"}


def _gates(order: str) -> list[str]:
    letters = [c for c in order.lower() if c not in ", "]
    return [_ALIASES.get(c, c) for c in letters]


def gate_perm(order_from: str, order_to: str) -> tuple[int, ...]:
    """For each output block, the input block it comes from."""
    src, dst = _gates(order_from), _gates(order_to)
    if not src or len(set(src)) != len(src) or sorted(src) != sorted(dst):  # no gate at all: nothing to reorder
        raise TransformError(f"`reorder_gates`: {order_from!r} and {order_to!r} must name the same gates once each",
                             "one letter per gate: torch LSTM \"ifgo\", Keras LSTM \"ifco\", torch GRU \"rzn\", "
                             "Keras GRU \"zrh\" (g=c and n=h name the same gate)")
    return tuple(src.index(g) for g in dst)


def reorder_blocks(x: A, perm: Sequence[int], dim: int, ops: ArrayOps[A]) -> A:
    if list(perm) == list(range(len(perm))):
        return x
    size = ops.shape(x)[dim] // len(perm)
    blocks = ops.split(x, [size] * len(perm), dim)
    return ops.concat([blocks[i] for i in perm], dim)


@register
@dataclass(frozen=True)
class ReorderGates(Transform):
    """Reorder the equal gate blocks along `dim` from `order_from` to `order_to`.

    One letter per gate; g = c (LSTM cell) and n = h (GRU candidate) are the same gate,
    so "ifgo" -> "ifco" is a no-op and "rzn" -> "zrh" swaps the first two blocks.
    Example: `gru.weight_ih_l0 -> gru.w | reorder_gates("rzn", "zrn")`  (3H, in): [r; z; n] -> [z; r; n]
    """

    NAME = "reorder_gates"
    INVERTIBLE = True
    order_from: str
    order_to: str
    dim: int = 0

    def __post_init__(self) -> None:
        gate_perm(self.order_from, self.order_to)

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        m = U.one(ins, self.NAME)
        d = U.norm_dim(self.dim, len(m.shape), self.NAME)
        n = len(_gates(self.order_from))
        if m.shape[d] % n:
            raise TransformError(f"`reorder_gates`: dim {d} of {U.fmt(m.shape)} does not hold {n} equal gate blocks",
                                 "LSTM tensors hold 4 blocks, GRU 3; Keras kernels hold them on the last dim")
        return ReorderGates(self.order_from, self.order_to, d), (m,)

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        return (reorder_blocks(xs[0], gate_perm(self.order_from, self.order_to), self.dim, ops),)

    def inverse(self) -> Transform:
        return ReorderGates(self.order_to, self.order_from, self.dim)
