"""Conformance: every registered transform, on numpy (the oracle) and torch.

For each case: `infer` resolves every parameter; applying the resolved transform gives
exactly the shapes/dtypes `infer` promised; torch agrees with numpy (bit for bit unless
the case involves matmul or resampling); bf16 goes through both; the resolved parameters
round-trip through `build` (what a saved plan does); and invertible transforms undo
themselves bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from wmap.core.inventory import TensorMeta
from wmap.transforms import REGISTRY, ArrayMeta, InferContext, Transform, build, get_ops
from wmap.transforms.ops_numpy import np_dtype


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    ins: tuple[tuple[int, ...], ...] = ((3, 4),)
    targets: tuple[tuple[int, ...], ...] = ()
    approx: bool = False  # matmul / resampling: compare with a tolerance
    floats_only: bool = True
    kinds: tuple[str | None, str | None] = (None, None)
    frameworks: tuple[str | None, str | None] = (None, None)
    src_names: tuple[str, ...] = ()
    tgt_names: tuple[str, ...] = ()
    in_dtype: str | None = None  # inputs of this dtype whatever the run's (packed codes: "uint8")
    copies: bool = False  # every input holds the first one's values (`deduplicate` refuses anything else)

    @property
    def id(self) -> str:
        a = ",".join(map(str, self.args)) + "".join(f",{k}={v}" for k, v in self.kwargs.items())
        return f"{self.name}({a.lstrip(',')})" + "x".join(str(s) for s in self.ins)


C = Case
CASES = [
    C("transpose"), C("transpose", (0, 2), ins=((2, 3, 4),)), C("transpose", kwargs={"dims": [2, 0, 1]}, ins=((2, 3, 4),)),
    C("permute", ([2, 0, 1],), ins=((2, 3, 4),)),
    C("rearrange", ("(h d) e -> h d e",), {"h": 2}, ins=((6, 5),)),
    C("rearrange", ("a b c -> c (a b)",), ins=((2, 3, 4),)),
    C("rearrange", ("... (h d) -> ... h d",), {"d": 2}, ins=((2, 3, 4),)),
    C("reshape", ([-1, 4],), ins=((2, 3, 4),)), C("reshape", ins=((2, 3, 4),), targets=((6, 4),)),
    C("flip", (1,)), C("unsqueeze", (-1,)), C("squeeze", (1,), ins=((3, 1, 4),)),
    C("split", (0,), ins=((6, 4),), targets=((2, 4), (4, 4))), C("split", (1, [1, -1]), ins=((2, 4),)),
    C("chunk", kwargs={"dim": 0}, ins=((6, 4),), targets=((2, 4),) * 3),
    C("concat", (0,), ins=((2, 4), (3, 4))), C("stack", (1,), ins=((2, 3),) * 3),
    C("unstack", (0,), ins=((3, 2, 2),), targets=((2, 2),) * 3),
    C("slice", (0, 1, 5, 2), ins=((6, 3),)), C("slice", (1, -2), ins=((6, 3),)), C("slice", (0, 2), ins=((6, 3),)),
    C("select", (1, -1)),
    C("duplicate", ins=((3, 4),), targets=((3, 4),) * 2, floats_only=False), C("duplicate", (3,)),
    C("deduplicate", ins=((3, 4),) * 3, copies=True, floats_only=False),
    C("splice", (0, 2), ins=((4, 3),), targets=((6, 3),), floats_only=False),
    C("splice", (1, 1, 3), ins=((6, 2),), targets=((6, 5),)), C("splice", (0, -2), ins=((2, 3),), targets=((6, 3),)),
    C("pad", (0,), {"init": "mean"}, ins=((4, 3),), targets=((6, 3),)),
    C("pad", (0,), {"init": "normal", "seed": 3, "std": 0.5}, ins=((4, 3),), targets=((7, 3),)),
    C("pad", (1, 6), {"init": "constant", "value": 2.0, "side": "start"}, ins=((4, 3),)),
    C("pad", (0,), ins=((4, 3),), targets=((5, 3),), floats_only=False),
    C("truncate", (0,), ins=((6, 3),), targets=((4, 3),), floats_only=False),
    C("resize", kwargs={"prefix_tokens": 1}, ins=((1, 17, 8),), targets=((1, 37, 8),), approx=True),
    C("resize", kwargs={"mode": "bilinear"}, ins=((3, 5, 5),), targets=((3, 7, 6),), approx=True),
    C("resize", kwargs={"mode": "nearest"}, ins=((1, 4, 4, 3),), targets=((1, 6, 5, 3),), approx=True),
    C("resize", kwargs={"size": [2, 3], "from_grid": [4, 2], "layout": "tokens"}, ins=((8, 5),), approx=True),
    C("adapt_channels", ins=((4, 3, 3, 3),), targets=((4, 1, 3, 3),)),
    C("adapt_channels", ins=((4, 3, 3, 3),), targets=((4, 5, 3, 3),)),
    C("adapt_channels", kwargs={"mode": "zeros", "to": 4}, ins=((4, 3, 3, 3),)),
    C("adapt_channels", (2,), {"mode": "tile"}, ins=((3, 3, 3, 8),), targets=((3, 3, 7, 8),)),
    C("sum", (1,), ins=((4, 3, 2),)), C("mean", (0,), {"keepdim": False}, ins=((4, 3, 2),)),
    C("repeat", kwargs={"dim": 1}, ins=((2, 3),), targets=((2, 9),), floats_only=False),
    C("repeat", (2, 0), {"interleave": True}, ins=((2, 3),)),
    C("cast", ("bfloat16",)), C("cast", ("float16",)), C("cast", ("float64",)),
    C("scale", (0.37,)), C("prune", (0.5,)), C("identity", floats_only=False),
    C("add", ins=((3, 4),) * 3), C("add_row", ins=((5, 4), (2, 4))), C("add_row", (-1, 1), ins=((3, 4), (3, 2))), C("sub", ins=((3, 4),) * 2), C("lerp", (0.25,), ins=((3, 4),) * 2),
    C("average", kwargs={"weights": [1, 3]}, ins=((3, 4),) * 2), C("average", ins=((3, 4),) * 3),
    C("update", (0.1,), ins=((3, 4),) * 2),
    C("lora", (2.0,), ins=((6, 5), (2, 5), (6, 2)), approx=True),
    C("reorder_gates", ("rzn", "zrh"), ins=((6, 4),)), C("reorder_gates", ("ifgo", "oigf", -1), ins=((3, 8),)),
    C("linear_to_dense", ins=((3, 5),)), C("dense_to_linear", ins=((5, 3),)),
    C("conv_to_keras", ins=((4, 2, 3),)), C("conv_to_keras", ins=((4, 2, 3, 2),)),
    C("conv_to_keras", ins=((4, 2, 2, 3, 2),)), C("conv_from_keras", ins=((3, 2, 2, 4),)),
    C("conv_from_keras", ins=((3, 2, 4),)),
    C("conv_transpose_to_keras", ins=((4, 2, 3, 2),)), C("conv_transpose_from_keras", ins=((3, 2, 2, 4),)),
    C("depthwise_to_keras", ins=((6, 1, 3, 2),), targets=((3, 2, 3, 2),)),
    C("depthwise_to_keras", (1,), ins=((4, 1, 3),)), C("depthwise_from_keras", ins=((3, 2, 3, 2),)),
    C("prelu_to_keras", ins=((4,),), targets=((1, 1, 4),)), C("prelu_to_keras", ins=((4,),), targets=((2, 3, 4),)),
    C("prelu_from_keras", ins=((1, 1, 4),)),
    C("flatten_dense_to_keras", kwargs={"c": 2, "h": 3}, ins=((5, 24),)),
    C("flatten_dense_from_keras", kwargs={"c": 2, "h": 3, "w": 4}, ins=((24, 5),)),
    C("lstm_kernel_to_keras", ins=((8, 3),)), C("lstm_kernel_from_keras", ins=((3, 8),)),
    C("lstm_bias_to_keras", ins=((8,), (8,))), C("lstm_bias_from_keras", ins=((8,),)),
    C("gru_kernel_to_keras", ins=((6, 3),)), C("gru_kernel_from_keras", ins=((3, 6),)),
    C("gru_bias_to_keras", ins=((6,), (6,))), C("gru_bias_from_keras", ins=((2, 6),)),
    C("mha_in_to_keras", ins=((24, 8),), targets=((8, 2, 4),) * 3),
    C("mha_in_from_keras", ins=((8, 2, 4),) * 3),
    C("mha_in_bias_to_keras", ins=((24,),), targets=((2, 4),) * 3),
    C("mha_in_bias_from_keras", ins=((2, 4),) * 3),
    C("mha_out_to_keras", ins=((8, 8),), targets=((2, 4, 8),)), C("mha_out_from_keras", ins=((2, 4, 8),)),
    C("mha_proj_to_keras", ins=((8, 6),), targets=((6, 2, 4),)), C("mha_proj_to_keras", (4,), ins=((8,),)),
    C("mha_proj_from_keras", ins=((6, 2, 4),)), C("mha_proj_from_keras", ins=((2, 4),)),
    C("dequant_mxfp4", ins=((2, 3, 2, 16), (2, 3, 2)), in_dtype="uint8"),
    C("layout", ins=((4, 3, 2, 2),), targets=((2, 2, 3, 4),), kinds=("Conv2d", "Conv2D"),
      frameworks=("torch", "keras"), src_names=("c.weight",), tgt_names=("c.kernel",)),
]


def _ctx(case: Case, dtype: str) -> tuple[InferContext, list[ArrayMeta]]:
    dtype = case.in_dtype or dtype
    ins = [ArrayMeta(s, dtype) for s in case.ins]
    sn = case.src_names or tuple(f"s{i}.weight" for i in range(len(ins)))
    tn = case.tgt_names or tuple(f"t{i}.weight" for i in range(len(case.targets)))
    srcs = tuple(TensorMeta(n, m.shape, dtype, kind=case.kinds[0]) for n, m in zip(sn, ins, strict=True))
    tgts = tuple(TensorMeta(n, s, dtype, kind=case.kinds[1]) for n, s in zip(tn, case.targets, strict=True))
    return InferContext(srcs, tgts, case.frameworks[0], case.frameworks[1]), ins


def _inputs(case: Case, dtype: str, seed: int = 0) -> list[np.ndarray]:
    """The case's inputs, and for a transform that keeps part of its target, the target's current value last."""
    rng = np.random.default_rng(seed)
    if case.in_dtype == "uint8":  # every code, including the scale 255 (inf) and the nibble 8 (-0.0)
        return [rng.integers(0, 256, s).astype(np.uint8) for s in case.ins]
    shapes = case.ins + (case.targets[:1] if REGISTRY[case.name].READS_TARGET else ())
    if dtype.startswith("int"):
        xs = [rng.integers(-50, 50, s).astype(dtype) for s in shapes]
    else:
        xs = [rng.standard_normal(s).astype(np.float32).astype(np_dtype(dtype)) for s in shapes]
    return [xs[0].copy() for _ in xs] if case.copies else xs


def _resolve(case: Case, dtype: str) -> tuple[Transform, tuple[ArrayMeta, ...], InferContext]:
    t = build(case.name, case.args, list(case.kwargs.items()))
    ctx, ins = _ctx(case, dtype)
    resolved, outs = t.infer(ins, ctx)
    return resolved, outs, ctx


def _check_metas(arrays: tuple[Any, ...], outs: tuple[ArrayMeta, ...], ops: Any) -> None:
    assert len(arrays) == len(outs)
    for a, m in zip(arrays, outs, strict=True):
        assert ops.shape(a) == m.shape
        assert ops.dtype_name(a) == m.dtype


def test_every_transform_has_a_case() -> None:
    missing = set(REGISTRY) - {c.name for c in CASES}
    assert not missing, f"add conformance cases for: {sorted(missing)}"


def test_every_transform_documents_rule_and_example() -> None:
    for name, cls in REGISTRY.items():
        d = cls.__doc__ or ""
        assert "Example:" in d and name in d.split("Example:")[1], name


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_numpy_matches_infer_and_plan_roundtrip(case: Case) -> None:
    resolved, outs, _ = _resolve(case, "float32")
    ops = get_ops("numpy")
    got = resolved.apply(_inputs(case, "float32"), ops)
    _check_metas(got, outs, ops)
    again = build(resolved.NAME, [], list(resolved.params().items()))
    assert again == resolved, "resolved parameters must rebuild the same transform"
    assert not any(v is None for v in resolved.params().values())


def _to_numpy(x: Any) -> np.ndarray:
    return get_ops("torch").to_numpy(x)  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_torch_matches_numpy(case: Case, dtype: str) -> None:
    pytest.importorskip("torch")
    resolved, outs, _ = _resolve(case, dtype)
    nops, tops = get_ops("numpy"), get_ops("torch")
    xs = _inputs(case, dtype)
    want = resolved.apply(xs, nops)
    got = resolved.apply([tops.asarray(x, None) for x in xs], tops)
    _check_metas(got, outs, tops)
    for g, w in zip(got, want, strict=True):
        g_np = _to_numpy(g)
        assert g_np.dtype == w.dtype
        if case.approx:
            tol = 1e-2 if dtype == "bfloat16" else 1e-5
            np.testing.assert_allclose(g_np.astype(np.float64), w.astype(np.float64), rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(g_np.view(np.uint8), np.ascontiguousarray(w).view(np.uint8))


@pytest.mark.parametrize("case", [c for c in CASES if not c.floats_only], ids=lambda c: c.id)
def test_integer_inputs(case: Case) -> None:
    resolved, outs, _ = _resolve(case, "int32")
    got = resolved.apply(_inputs(case, "int32"), get_ops("numpy"))
    _check_metas(got, outs, get_ops("numpy"))


INVERTIBLE = [c for c in CASES if REGISTRY[c.name].INVERTIBLE or c.name == "layout"]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("case", INVERTIBLE, ids=lambda c: c.id)
def test_inverse_reproduces_input_bit_for_bit(case: Case, backend: str) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    resolved, outs, ctx = _resolve(case, "float32")
    if not resolved.INVERTIBLE:
        pytest.skip(f"{case.name} resolved to a non-invertible {resolved.NAME}")
    inv = resolved.inverse()
    if inv is None:  # only a Keras alpha broadcast over positions, and a strided slice, have no way back
        assert (resolved.NAME == "prelu_to_keras" and resolved.params()["keras_shape"][0] != 1
                or resolved.NAME == "slice" and resolved.params()["step"] != 1)
        return
    inv_ctx = InferContext(ctx.targets, ctx.sources, ctx.target_framework, ctx.source_framework)
    inv_resolved, back_metas = inv.infer(outs, inv_ctx)
    assert [m.shape for m in back_metas] == list(case.ins)
    ops = get_ops(backend)
    xs = [ops.asarray(x, None) for x in _inputs(case, "float32")]
    if resolved.READS_TARGET:  # what `splice` keeps comes back from the target: that is what it undoes
        outs_ = resolved.apply(xs, ops)
        back = inv_resolved.apply(outs_, ops)
        np.testing.assert_array_equal(np.asarray(_np(back[0])), np.asarray(_np(xs[0])))
        return
    fwd = resolved.apply(xs, ops)
    # the way back from a `slice` keeps the rest of its target, here the tensor it was cut from
    back = inv_resolved.apply((*fwd, *xs) if inv_resolved.READS_TARGET else fwd, ops)
    for b, x in zip(back, xs, strict=True):
        np.testing.assert_array_equal(np.asarray(_np(b)), np.asarray(_np(x)))


def _np(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else _to_numpy(x)


def test_bf16_arithmetic_rounds_once() -> None:
    """lerp on bf16 computes in float32 and rounds once, not after every operation."""
    a = np.array([1.0, 3.0], dtype=ml_dtypes.bfloat16)
    b = np.array([1.0078125, 2.0], dtype=ml_dtypes.bfloat16)
    (out,) = build("lerp", [0.5], []).apply([a, b], get_ops("numpy"))
    want = ((a.astype(np.float32) * 0.5) + (b.astype(np.float32) * 0.5)).astype(ml_dtypes.bfloat16)
    assert out.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(out.astype(np.float32), want.astype(np.float32))


OPS_CALLS: list[tuple[str, Any]] = [
    ("transpose", lambda o, x: o.transpose(x, (2, 0, 1))),
    ("reshape", lambda o, x: o.reshape(x, (6, 4))),
    ("concat", lambda o, x: o.concat([x, x], 1)),
    ("stack", lambda o, x: o.stack([x, x], 3)),
    ("split", lambda o, x: o.split(x, [1, 2], 1)),
    ("slice", lambda o, x: o.slice(x, 2, 1, 4, 2)),
    ("pad", lambda o, x: o.pad(x, [(0, 1), (2, 0), (1, 1)], 1.5)),
    ("cast", lambda o, x: o.cast(x, "float16")),
    ("sum", lambda o, x: o.sum(x, 1, False)),
    ("mean", lambda o, x: o.mean(x, -1, True)),
    ("repeat", lambda o, x: o.repeat(x, 2, 1)),
    ("tile", lambda o, x: o.tile(x, (1, 2, 3))),
    ("where_abs_below", lambda o, x: o.where_abs_below(x, 0.7)),
    ("flip", lambda o, x: o.flip(x, 2)),
    ("interpolate", lambda o, x: o.interpolate(x, (5, 2), "bicubic")),
    ("rearrange", lambda o, x: o.rearrange(x, "a b c -> (c a) b")),
    ("full", lambda o, x: o.full((2, 3), -2.0, o.dtype_name(x), x)),
    ("matmul", lambda o, x: o.matmul(o.cast(x, "float32"), o.cast(o.transpose(x, (0, 2, 1)), "float32"))),
    ("contiguous", lambda o, x: o.contiguous(o.transpose(x, (1, 0, 2)))),
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
@pytest.mark.parametrize("name,call", OPS_CALLS, ids=[c[0] for c in OPS_CALLS])
def test_array_ops_agree(name: str, call: Any, dtype: str) -> None:
    """Every ArrayOps method, numpy vs torch, on each float dtype (bf16 through ml_dtypes)."""
    pytest.importorskip("torch")
    nops, tops = get_ops("numpy"), get_ops("torch")
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32).astype(np_dtype(dtype))
    want, got = call(nops, x), call(tops, tops.asarray(x, None))
    want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
    for g, w in zip(got, want, strict=True):
        g = _to_numpy(g)
        assert g.dtype == w.dtype and g.shape == w.shape
        tol = {"bfloat16": 2e-2, "float16": 2e-3}.get(dtype, 1e-5) if name in ("interpolate", "matmul") else 0
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=tol, atol=tol)


ARITH_CALLS = [
    ("add", lambda o, x: o.add(x, o.flip(x, 0))),
    ("mul", lambda o, x: o.mul(x, 0.3)),
    ("multiply", lambda o, x: o.multiply(x, o.slice(x, 2, 1, 2, 1))),
    ("lookup", lambda o, x: o.lookup(o.asarray(np.arange(24, dtype=np.uint8).reshape(2, 3, 4) % 7, x),
                                     np.linspace(-3, 3, 7).astype(o.dtype_name(x)))),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,call", ARITH_CALLS, ids=[c[0] for c in ARITH_CALLS])
def test_array_ops_arithmetic_agree(name: str, call: Any, dtype: str) -> None:
    """`add` and `mul`, numpy vs torch, bit for bit in the working precisions transforms use them in."""
    pytest.importorskip("torch")
    nops, tops = get_ops("numpy"), get_ops("torch")
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(dtype)
    want, got = call(nops, x), _to_numpy(call(tops, tops.asarray(x, None)))
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_dequant_mxfp4_agrees_with_transformers_and_keeps_every_code() -> None:
    """Every byte and every scale through `dequant_mxfp4`, against transformers' own MXFP4 decoder
    (`convert_moe_packed_tensors`, float32) bit for bit: signed zeros, subnormal and infinite scales too."""
    torch = pytest.importorskip("torch")
    mxfp4 = pytest.importorskip("transformers.integrations.mxfp4")
    blocks = np.arange(256, dtype=np.uint8).reshape(1, 16, 1, 16).repeat(16, 0)  # every byte, 16 scales each
    scales = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    (ours,) = build("dequant_mxfp4", [], []).apply([blocks, scales], get_ops("numpy"))
    theirs = mxfp4.convert_moe_packed_tensors(torch.from_numpy(blocks), torch.from_numpy(scales),
                                              dtype=torch.float32).transpose(1, 2).numpy()
    assert ours.shape == theirs.shape == (16, 16, 32)
    # scales 0..254 (subnormal 2^-127 and overflowing products included): the same bits
    finite = scales[..., 0] < 255
    np.testing.assert_array_equal(ours.view(np.uint32)[finite], theirs.view(np.uint32)[finite])
    assert np.signbit(ours[0, 0, 16]) and ours[0, 0, 16] == 0   # byte 8: low nibble -0.0
    assert np.isnan(ours[15, 15]).all()                         # scale 255 is NaN in the MX spec
    assert build("dequant_mxfp4", [], []).inverse() is None
