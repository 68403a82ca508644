"""`layout(auto)` picks the preset from layer kinds, roles and frameworks, and refuses to guess."""

from __future__ import annotations

import pytest

from wmap.core.inventory import TensorMeta
from wmap.transforms import ArrayMeta, InferContext, TransformError, build

Spec = tuple[str, tuple[int, ...], str | None]  # name, shape, kind


def _metas(specs: list[Spec], attrs: tuple[tuple[str, object], ...] = ()) -> tuple[TensorMeta, ...]:
    return tuple(TensorMeta(n, s, "float32", kind=k, attrs=attrs) for n, s, k in specs)


def _pick(src: list[Spec], tgt: list[Spec], fw: tuple[str | None, str | None] = ("torch", "keras"),
          attrs: tuple[tuple[str, object], ...] = ()) -> str:
    ctx = InferContext(_metas(src, attrs), _metas(tgt), fw[0], fw[1])
    resolved, outs = build("layout", [], []).infer([ArrayMeta(s, "float32") for _, s, _ in src], ctx)
    assert [o.shape for o in outs] == [s for _, s, _ in tgt], resolved.describe()
    return resolved.NAME


T, K = ("torch", "keras"), ("keras", "torch")
CASES: list[tuple[str, list[Spec], list[Spec], tuple[str | None, str | None], str]] = [
    ("linear", [("fc.weight", (10, 64), "Linear")], [("fc.kernel", (64, 10), "Dense")], T, "linear_to_dense"),
    ("linear bias", [("fc.bias", (10,), "Linear")], [("fc.bias", (10,), "Dense")], T, "identity"),
    ("dense", [("fc.kernel", (64, 10), "Dense")], [("fc.weight", (10, 64), "Linear")], K, "dense_to_linear"),
    ("conv1d", [("c.weight", (8, 3, 5), "Conv1d")], [("c.kernel", (5, 3, 8), "Conv1D")], T, "conv_to_keras"),
    ("conv2d", [("c.weight", (8, 3, 3, 3), "Conv2d")], [("c.kernel", (3, 3, 3, 8), "Conv2D")], T,
     "conv_to_keras"),
    ("conv3d back", [("c.kernel", (1, 3, 3, 3, 8), "Conv3D")], [("c.weight", (8, 3, 1, 3, 3), "Conv3d")], K,
     "conv_from_keras"),
    ("grouped", [("c.weight", (8, 2, 3, 3), "Conv2d")], [("c.kernel", (3, 3, 2, 8), "Conv2D")], T,
     "conv_to_keras"),
    ("conv transpose", [("u.weight", (8, 4, 2, 2), "ConvTranspose2d")],
     [("u.kernel", (2, 2, 4, 8), "Conv2DTranspose")], T, "conv_transpose_to_keras"),
    ("conv transpose back", [("u.kernel", (2, 2, 4, 8), "Conv2DTranspose")],
     [("u.weight", (8, 4, 2, 2), "ConvTranspose2d")], K, "conv_transpose_from_keras"),
    ("bn gamma", [("bn.weight", (8,), "BatchNorm2d")], [("bn.gamma", (8,), "BatchNormalization")], T, "identity"),
    ("bn var", [("bn.running_var", (8,), "BatchNorm2d")], [("bn.moving_variance", (8,), "BatchNormalization")],
     T, "identity"),
    ("layernorm", [("ln.gamma", (8,), "LayerNormalization")], [("ln.weight", (8,), "LayerNorm")], K, "identity"),
    ("embedding", [("e.weight", (100, 8), "Embedding")], [("e.embeddings", (100, 8), "Embedding")], T, "identity"),
    ("lstm ih", [("l.weight_ih_l0", (16, 3), "LSTM")], [("l.cell.kernel", (3, 16), "LSTMCell")], T,
     "lstm_kernel_to_keras"),
    ("lstm hh", [("l.weight_hh_l0", (16, 4), "LSTM")], [("l.cell.recurrent_kernel", (4, 16), "LSTM")], T,
     "lstm_kernel_to_keras"),
    ("lstm bias", [("l.bias_ih_l0", (16,), "LSTM"), ("l.bias_hh_l0", (16,), "LSTM")],
     [("l.cell.bias", (16,), "LSTM")], T, "lstm_bias_to_keras"),
    ("lstm bias back", [("l.cell.bias", (16,), "LSTM")],
     [("l.bias_ih_l0", (16,), "LSTM"), ("l.bias_hh_l0", (16,), "LSTM")], K, "lstm_bias_from_keras"),
    ("lstm reverse dir", [("l.weight_ih_l0_reverse", (16, 3), "LSTM")], [("b.kernel", (3, 16), "LSTM")], T,
     "lstm_kernel_to_keras"),
    ("gru ih", [("g.weight_ih_l0", (12, 3), "GRU")], [("g.kernel", (3, 12), "GRU")], T, "gru_kernel_to_keras"),
    ("gru back", [("g.recurrent_kernel", (4, 12), "GRU")], [("g.weight_hh_l0", (12, 4), "GRU")], K,
     "gru_kernel_from_keras"),
    ("gru bias", [("g.bias_ih_l0", (12,), "GRU"), ("g.bias_hh_l0", (12,), "GRU")], [("g.bias", (2, 12), "GRU")],
     T, "gru_bias_to_keras"),
    ("mha in", [("a.in_proj_weight", (24, 8), "MultiheadAttention")],
     [(f"m.{p}.kernel", (8, 2, 4), "EinsumDense") for p in ("query", "key", "value")], T, "mha_in_to_keras"),
    ("mha in bias", [("a.in_proj_bias", (24,), "MultiheadAttention")],
     [(f"m.{p}.bias", (2, 4), "MultiHeadAttention") for p in ("query", "key", "value")], T,
     "mha_in_bias_to_keras"),
    ("mha in back", [(f"m.{p}.kernel", (8, 2, 4), "MultiHeadAttention") for p in ("query", "key", "value")],
     [("a.in_proj_weight", (24, 8), "MultiheadAttention")], K, "mha_in_from_keras"),
    ("mha out (NDQ linear)", [("a.out_proj.weight", (8, 8), "NonDynamicallyQuantizableLinear")],
     [("m.attention_output.kernel", (2, 4, 8), "EinsumDense")], T, "mha_out_to_keras"),
    ("mha out (MHA kind)", [("a.out_proj.weight", (8, 8), "MultiheadAttention")],
     [("m.attention_output.kernel", (2, 4, 8), "MultiHeadAttention")], T, "mha_out_to_keras"),
    ("mha out bias", [("a.out_proj.bias", (8,), "MultiheadAttention")],
     [("m.attention_output.bias", (8,), "MultiHeadAttention")], T, "identity"),
    ("q proj linear", [("a.q.weight", (8, 6), "Linear")], [("m.query.kernel", (6, 2, 4), "EinsumDense")], T,
     "mha_proj_to_keras"),
    ("q proj bias", [("a.q.bias", (8,), "Linear")], [("m.query.bias", (2, 4), "EinsumDense")], T,
     "mha_proj_to_keras"),
    ("q proj back", [("m.query.kernel", (6, 2, 4), "EinsumDense")], [("a.q.weight", (8, 6), "Linear")], K,
     "mha_proj_from_keras"),
    ("prelu", [("p.weight", (8,), "PReLU")], [("p.alpha", (1, 1, 8), "PReLU")], T, "prelu_to_keras"),
    ("hf conv1d -> linear", [("h.c_attn.weight", (8, 24), "Conv1D")], [("l.weight", (24, 8), "Linear")],
     ("torch", "torch"), "transpose"),
    ("hf conv1d -> dense", [("h.c_attn.weight", (8, 24), "Conv1D")], [("d.kernel", (8, 24), "Dense")], T,
     "identity"),
    ("same kind", [("fc.weight", (10, 64), "Linear")], [("head.weight", (10, 64), "Linear")], ("torch", "torch"),
     "identity"),
    ("frameworks from kinds", [("c.weight", (8, 3, 3, 3), "Conv2d")], [("c.kernel", (3, 3, 3, 8), "Conv2D")],
     (None, None), "conv_to_keras"),
    ("frameworks from roles", [("l.weight_ih_l0", (16, 3), "LSTM")], [("l.kernel", (3, 16), "LSTM")],
     ("safetensors", None), "lstm_kernel_to_keras"),
]


@pytest.mark.parametrize("label,src,tgt,fw,want", CASES, ids=[c[0] for c in CASES])
def test_layout_auto_picks(label: str, src: list[Spec], tgt: list[Spec], fw: tuple[str | None, str | None],
                           want: str) -> None:
    assert _pick(src, tgt, fw) == want


def test_depthwise_uses_groups_and_target_kind() -> None:
    src = [("dw.weight", (16, 1, 3, 3), "Conv2d")]
    assert _pick(src, [("dw.kernel", (3, 3, 8, 2), "DepthwiseConv2D")], attrs=(("groups", 8),)) \
        == "depthwise_to_keras"
    assert _pick([("dw.kernel", (3, 3, 8, 2), "DepthwiseConv2D")], [("dw.weight", (16, 1, 3, 3), "Conv2d")], K) \
        == "depthwise_from_keras"
    with pytest.raises(TransformError, match=r"groups=2\) is not depthwise"):
        _pick([("c.weight", (16, 4, 3, 3), "Conv2d")], [("c.kernel", (3, 3, 8, 2), "DepthwiseConv2D")],
              attrs=(("groups", 2),))


@pytest.mark.parametrize("src,tgt,fw,match", [
    ([("fc.weight", (10, 64), None)], [("fc.kernel", (64, 10), "Dense")], T, "has no layer kind"),
    ([("b.weight", (3, 3), "Bilinear")], [("b.kernel", (3, 3), "Dense")], T, "`Bilinear` (torch) has no known"),
    ([("l.bias", (16,), "LSTM")], [("l.bias", (16,), "LSTM")], (None, None), "cannot tell the framework"),
    ([("l.bias_hh_l0", (16,), "LSTM"), ("l.bias_ih_l0", (16,), "LSTM")], [("l.bias", (16,), "LSTM")], T,
     "list bias_ih before bias_hh"),
    ([("l.bias_ih_l0", (16,), "LSTM")], [("l.bias", (16,), "LSTM")], T, "no rule maps"),
    ([("g.bias_ih_l0", (12,), "GRU"), ("g.bias_hh_l0", (12,), "GRU")], [("g.bias", (12,), "GRU")], T,
     "reset_after=False"),
    ([("a.in_proj_weight", (24, 8), "MultiheadAttention")],
     [(f"m.{p}.kernel", (8, 2, 4), "EinsumDense") for p in ("key", "query", "value")], T, "listed as key, query"),
    ([("fc.weight", (10, 64), "Linear")], [("c.kernel", (1, 1, 64, 10), "Conv2D")], T, "no rule maps"),
    ([("fc.weight", (10, 64), "Linear")], [("m.query.kernel", (5, 2, 4), "EinsumDense")], T, "fit neither"),
    ([("fc.weight", (10, 64), "Linear")], [("c.weight", (10, 64, 1), "Conv1d")], ("torch", "torch"),
     "no rule maps"),
])
def test_layout_auto_refuses_to_guess(src: list[Spec], tgt: list[Spec], fw: tuple[str | None, str | None],
                                      match: str) -> None:
    with pytest.raises(TransformError) as e:
        _pick(src, tgt, fw)
    assert match in e.value.message
    assert "linear_to_dense" in (e.value.hint or ""), "the hint names the explicit presets"


def test_layout_auto_reports_the_picked_preset_when_it_does_not_fit() -> None:
    with pytest.raises(TransformError, match="picked `conv_to_keras`"):
        _pick([("c.weight", (8, 3), "Conv2d")], [("c.kernel", (3, 8), "Conv2D")])


def test_layout_must_be_last() -> None:
    ctx = InferContext(_metas([("fc.weight", (10, 64), "Linear")]), _metas([("fc.kernel", (64, 10), "Dense")]),
                       "torch", "keras", is_last=False)
    with pytest.raises(TransformError, match="last transform"):
        build("layout", [], []).infer([ArrayMeta((10, 64), "float32")], ctx)


def test_undecided_uses_the_catalogued_code() -> None:
    with pytest.raises(TransformError) as e:
        _pick([("fc.weight", (10, 64), None)], [("fc.kernel", (64, 10), "Dense")])
    assert e.value.code == "WM304"  # "`layout(auto)` cannot decide"
