"""Every PyTorch <-> Keras layout preset, checked against the real layers: a torch layer and a Keras
layer get the same weights through the preset, see the same input, and must agree to 1e-4.
The reverse preset must then give back the torch weights exactly.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from wmap.core.inventory import TensorMeta  # noqa: E402
from wmap.transforms import ArrayMeta, InferContext, build, get_ops  # noqa: E402

pytestmark = pytest.mark.tf
TOL = 1e-4


def convert(name: str, xs: list[np.ndarray], targets: list[tuple[int, ...]], **kw: Any) -> list[np.ndarray]:
    """Plan (infer from metadata) then execute one preset, as the compiler and executor do."""
    t = build(name, [], list(kw.items()))
    ctx = InferContext(tuple(TensorMeta(f"s{i}", x.shape, "float32") for i, x in enumerate(xs)),
                       tuple(TensorMeta(f"t{i}", s, "float32") for i, s in enumerate(targets)))
    resolved, outs = t.infer([ArrayMeta(x.shape, "float32") for x in xs], ctx)
    assert [o.shape for o in outs] == targets, resolved.describe()
    return [np.ascontiguousarray(y) for y in resolved.apply(xs, get_ops("numpy"))]


def tw(module: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def shapes(layer: Any) -> list[tuple[int, ...]]:
    return [tuple(w.shape) for w in layer.get_weights()]


def close(a: Any, b: Any) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=TOL, rtol=TOL)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def x_of(*shape: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


def test_linear_dense() -> None:
    lin = torch.nn.Linear(6, 4)
    dense = keras.layers.Dense(4)
    dense.build((None, 6))
    w = tw(lin)
    (k,) = convert("linear_to_dense", [w["weight"]], [shapes(dense)[0]])
    dense.set_weights([k, w["bias"]])
    x = x_of(3, 6)
    close(dense(x), lin(torch.from_numpy(x)).detach())
    np.testing.assert_array_equal(convert("dense_to_linear", [k], [(4, 6)])[0], w["weight"])


@pytest.mark.parametrize("nd,groups", [(1, 1), (2, 1), (2, 2), (3, 1)])
def test_conv(nd: int, groups: int) -> None:
    conv = [torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d][nd - 1](4, 6, 3, groups=groups)
    kconv = [keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D][nd - 1](6, 3, groups=groups)
    spatial = (5,) * nd
    kconv.build((None, *spatial, 4))
    w = tw(conv)
    (k,) = convert("conv_to_keras", [w["weight"]], [shapes(kconv)[0]])
    kconv.set_weights([k, w["bias"]])
    x = x_of(2, 4, *spatial)
    to_last = (0, *range(2, nd + 2), 1)
    close(kconv(x.transpose(to_last)), conv(torch.from_numpy(x)).detach().numpy().transpose(to_last))
    np.testing.assert_array_equal(convert("conv_from_keras", [k], [w["weight"].shape])[0], w["weight"])


def test_depthwise() -> None:
    conv = torch.nn.Conv2d(4, 8, 3, groups=4)  # depth multiplier 2
    dw = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)
    dw.build((None, 5, 5, 4))
    w = tw(conv)
    (k,) = convert("depthwise_to_keras", [w["weight"]], [shapes(dw)[0]])
    dw.set_weights([k, w["bias"]])
    x = x_of(2, 4, 5, 5)
    close(dw(x.transpose(0, 2, 3, 1)), conv(torch.from_numpy(x)).detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(convert("depthwise_from_keras", [k], [(8, 1, 3, 3)])[0], w["weight"])


def test_conv_transpose() -> None:
    up = torch.nn.ConvTranspose2d(4, 6, 3, stride=2)
    kup = keras.layers.Conv2DTranspose(6, 3, strides=2)
    kup.build((None, 5, 5, 4))
    w = tw(up)
    (k,) = convert("conv_transpose_to_keras", [w["weight"]], [shapes(kup)[0]])
    kup.set_weights([k, w["bias"]])
    x = x_of(2, 4, 5, 5)
    close(kup(x.transpose(0, 2, 3, 1)), up(torch.from_numpy(x)).detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(convert("conv_transpose_from_keras", [k], [w["weight"].shape])[0], w["weight"])


def test_lstm() -> None:
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    klstm = keras.layers.LSTM(4, return_sequences=True)
    klstm.build((None, 5, 3))
    w = tw(lstm)
    ks = shapes(klstm)
    (k,) = convert("lstm_kernel_to_keras", [w["weight_ih_l0"]], [ks[0]])
    (rk,) = convert("lstm_kernel_to_keras", [w["weight_hh_l0"]], [ks[1]])
    (b,) = convert("lstm_bias_to_keras", [w["bias_ih_l0"], w["bias_hh_l0"]], [ks[2]])
    klstm.set_weights([k, rk, b])
    x = x_of(2, 5, 3)
    want = klstm(x)
    close(want, lstm(torch.from_numpy(x))[0].detach())
    # Reverse: Keras -> torch with bias_hh = 0 gives the same outputs.
    back = torch.nn.LSTM(3, 4, batch_first=True)
    b_ih, b_hh = convert("lstm_bias_from_keras", [b], [(16,), (16,)])
    back.load_state_dict({"weight_ih_l0": torch.from_numpy(convert("lstm_kernel_from_keras", [k], [(16, 3)])[0]),
                          "weight_hh_l0": torch.from_numpy(convert("lstm_kernel_from_keras", [rk], [(16, 4)])[0]),
                          "bias_ih_l0": torch.from_numpy(b_ih), "bias_hh_l0": torch.from_numpy(b_hh)})
    close(want, back(torch.from_numpy(x))[0].detach())


def test_gru() -> None:
    gru = torch.nn.GRU(3, 4, batch_first=True)
    kgru = keras.layers.GRU(4, return_sequences=True, reset_after=True)
    kgru.build((None, 5, 3))
    w = tw(gru)
    ks = shapes(kgru)
    (k,) = convert("gru_kernel_to_keras", [w["weight_ih_l0"]], [ks[0]])
    (rk,) = convert("gru_kernel_to_keras", [w["weight_hh_l0"]], [ks[1]])
    (b,) = convert("gru_bias_to_keras", [w["bias_ih_l0"], w["bias_hh_l0"]], [ks[2]])
    kgru.set_weights([k, rk, b])
    x = x_of(2, 5, 3)
    close(kgru(x), gru(torch.from_numpy(x))[0].detach())
    np.testing.assert_array_equal(convert("gru_kernel_from_keras", [rk], [(12, 4)])[0], w["weight_hh_l0"])
    b_ih, b_hh = convert("gru_bias_from_keras", [b], [(12,), (12,)])
    np.testing.assert_array_equal(b_ih, w["bias_ih_l0"])
    np.testing.assert_array_equal(b_hh, w["bias_hh_l0"])


def test_gru_without_the_swap_is_wrong() -> None:
    """Guard for the test itself: a plain transpose (no gate swap) must not pass."""
    gru = torch.nn.GRU(3, 4, batch_first=True)
    kgru = keras.layers.GRU(4, return_sequences=True, reset_after=True)
    kgru.build((None, 5, 3))
    w = tw(gru)
    kgru.set_weights([w["weight_ih_l0"].T, w["weight_hh_l0"].T, np.stack([w["bias_ih_l0"], w["bias_hh_l0"]])])
    x = x_of(2, 5, 3)
    with pytest.raises(AssertionError):
        close(kgru(x), gru(torch.from_numpy(x))[0].detach())


def test_multihead_attention() -> None:
    e, nh = 8, 2
    attn = torch.nn.MultiheadAttention(e, nh, batch_first=True)
    mha = keras.layers.MultiHeadAttention(num_heads=nh, key_dim=e // nh)
    x = x_of(2, 5, e)
    mha(x, x)  # builds the sublayers
    w = tw(attn)
    ks = shapes(mha)  # q k, q b, k k, k b, v k, v b, out k, out b
    qk, kk, vk = convert("mha_in_to_keras", [w["in_proj_weight"]], [ks[0], ks[2], ks[4]])
    qb, kb, vb = convert("mha_in_bias_to_keras", [w["in_proj_bias"]], [ks[1], ks[3], ks[5]])
    (ok,) = convert("mha_out_to_keras", [w["out_proj.weight"]], [ks[6]])
    mha.set_weights([qk, qb, kk, kb, vk, vb, ok, w["out_proj.bias"]])
    xt = torch.from_numpy(x)
    close(mha(x, x), attn(xt, xt, xt, need_weights=False)[0].detach())
    np.testing.assert_array_equal(convert("mha_in_from_keras", [qk, kk, vk], [(3 * e, e)])[0], w["in_proj_weight"])
    np.testing.assert_array_equal(convert("mha_in_bias_from_keras", [qb, kb, vb], [(3 * e,)])[0], w["in_proj_bias"])
    np.testing.assert_array_equal(convert("mha_out_from_keras", [ok], [(e, e)])[0], w["out_proj.weight"])
    # Separate projections (HF-style q/k/v Linear) through mha_proj_to_keras give the same kernels.
    q_w, q_b = w["in_proj_weight"][:e], w["in_proj_bias"][:e]
    np.testing.assert_array_equal(convert("mha_proj_to_keras", [q_w], [ks[0]])[0], qk)
    np.testing.assert_array_equal(convert("mha_proj_to_keras", [q_b], [ks[1]])[0], qb)


def test_prelu() -> None:
    act = torch.nn.PReLU(4)
    with torch.no_grad():
        act.weight.copy_(torch.tensor([0.1, -0.3, 0.7, 2.0]))
    kact = keras.layers.PReLU(shared_axes=[1, 2])
    kact.build((None, 3, 3, 4))
    (alpha,) = convert("prelu_to_keras", [tw(act)["weight"]], [shapes(kact)[0]])
    kact.set_weights([alpha])
    x = x_of(2, 4, 3, 3)
    close(kact(x.transpose(0, 2, 3, 1)), act(torch.from_numpy(x)).detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(convert("prelu_from_keras", [alpha], [(4,)])[0], tw(act)["weight"])


def test_flatten_dense() -> None:
    c, h, wd, out = 3, 4, 5, 6
    tnet = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * h * wd, out))
    dense = keras.layers.Dense(out)
    dense.build((None, c * h * wd))
    w = tw(tnet[1])
    (k,) = convert("flatten_dense_to_keras", [w["weight"]], [shapes(dense)[0]], c=c, h=h)
    dense.set_weights([k, w["bias"]])
    x = x_of(2, c, h, wd)
    close(dense(keras.layers.Flatten()(x.transpose(0, 2, 3, 1))), tnet(torch.from_numpy(x)).detach())
    np.testing.assert_array_equal(convert("flatten_dense_from_keras", [k], [(out, c * h * wd)], h=h, w=wd)[0],
                                  w["weight"])
    # The silent mistake this preset exists for: a plain transpose has the right shape, wrong outputs.
    dense.set_weights([w["weight"].T, w["bias"]])
    with pytest.raises(AssertionError):
        close(dense(keras.layers.Flatten()(x.transpose(0, 2, 3, 1))), tnet(torch.from_numpy(x)).detach())
