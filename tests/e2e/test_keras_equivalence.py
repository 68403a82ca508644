"""PyTorch <-> Keras equivalence, proven by equal outputs: the example specs on the twin models.

The twins (wmap/examples/models.py) hold one layer of every family with a cross-framework
rule: Conv2d, BatchNorm, PReLU, depthwise conv, ConvTranspose, MaxPool, Flatten -> Linear,
LSTM, GRU, MultiheadAttention. Every weight is random (BatchNorm statistics and PReLU slopes
too), so a wrong layout, gate order or flatten permutation shows up as a large output error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
st = pytest.importorskip("safetensors.torch")

import wmap  # noqa: E402
from tests.support.keras_models import (  # noqa: E402
    KERAS_TO_TORCH,
    TOL,
    TORCH_TO_KERAS,
    TORCH_TO_KERAS_AUTO,
    images,
    keras_cnn,
    keras_cnn_keras_eps,
    keras_out,
    keras_weights,
    random_keras,
    random_torch,
    torch_out,
    torch_state,
)

pytestmark = [pytest.mark.tf, pytest.mark.torch,
              # Keras 3.15's own `np.array(variable)` under numpy 2; not ours to fix
              pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")]

# Every PyTorch <-> Keras layer family of the README's preset table, by the Keras class that holds it.
FAMILIES = {"Conv2D", "BatchNormalization", "PReLU", "DepthwiseConv2D", "Conv2DTranspose", "Dense", "LSTMCell",
            "GRUCell", "EinsumDense"}


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    model = random_torch(seed=0)
    path = str(tmp_path_factory.mktemp("twin") / "twin_cnn.safetensors")
    st.save_file(model.state_dict(), path)
    return model, path


def _max_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


def test_twins_cover_every_layer_family_and_differ_before_transfer(torch_file: tuple[Any, str]) -> None:
    model, _ = torch_file
    kinds = {t.kind for t in wmap.inventory_of(keras_cnn())}
    assert kinds >= FAMILIES, FAMILIES - kinds
    x = images()
    assert _max_err(torch_out(model, x), keras_out(keras_cnn(), x)) > 0.1  # the check below is not vacuous


def test_torch_to_keras_outputs_match(torch_file: tuple[Any, str]) -> None:
    """torch safetensors file -> the spec's `module:callable` Keras target, built by wmap."""
    model, path = torch_file
    plan = wmap.plan(TORCH_TO_KERAS, source=path)
    assert not [w for w in plan.warnings if w.code in ("WM310", "WM312", "WM313")]
    report = wmap.apply(plan, source=path)
    assert len(report.landed) == len(report.target.weights) == 29
    x = images()
    assert _max_err(torch_out(model, x), keras_out(report.target, x)) < TOL
    assert not wmap.verify(plan, source=path, target=report.target).mismatches


def test_keras_to_torch_outputs_match() -> None:
    """An in-memory Keras model -> the spec's PyTorch factory target (built on meta by wmap)."""
    km = random_keras(seed=1)
    report = wmap.apply(KERAS_TO_TORCH, source=km)
    tm = report.target
    assert isinstance(tm, torch.nn.Module) and not any(p.is_meta for p in tm.parameters())
    x = images()
    assert _max_err(torch_out(tm, x), keras_out(km, x)) < TOL


def test_layout_auto_picks_the_explicit_presets_and_outputs_match(torch_file: tuple[Any, str]) -> None:
    model, path = torch_file  # layout(auto) reads layer kinds: the source is the model, not its file
    auto = wmap.plan(TORCH_TO_KERAS_AUTO, source=model)
    explicit = wmap.plan(TORCH_TO_KERAS, source=path)
    picked = {t.name: tuple(x.NAME for x in s.transforms) for s in auto.steps for t in s.targets}
    assert picked["dw.kernel"] == ("depthwise_to_keras",)
    assert picked["gru.gru_cell.bias"] == ("gru_bias_to_keras",)
    assert picked["attn.query.kernel"] == ("mha_in_to_keras",)
    assert picked["act.alpha"] == ("prelu_to_keras",)
    km_auto = wmap.apply(auto, source=model).target
    km_explicit = wmap.apply(explicit, source=path).target
    a, e = keras_weights(km_auto), keras_weights(km_explicit)
    assert a.keys() == e.keys() and all(np.array_equal(a[k], e[k]) for k in a)
    x = images()
    assert _max_err(torch_out(model, x), keras_out(km_auto, x)) < TOL


def test_batchnorm_epsilon_mismatch_warns_wm313(torch_file: tuple[Any, str]) -> None:
    model, _ = torch_file  # epsilon is a layer setting: the model has it, a checkpoint file does not
    plan = wmap.plan(TORCH_TO_KERAS, source=model, target=keras_cnn_keras_eps())
    [w] = [w for w in plan.warnings if w.code == "WM313"]
    assert "0.001" in w.message and "1e-05" in w.message and "bn1" in w.message
    assert not [w for w in wmap.plan(TORCH_TO_KERAS, source=model).warnings if w.code == "WM313"]
    km = wmap.apply(plan, source=model).target
    assert _max_err(torch_out(model, images()), keras_out(km, images())) > TOL  # the warning is deserved


def test_torch_keras_torch_is_bit_identical(torch_file: tuple[Any, str]) -> None:
    """Every tensor returns bit for bit. The one exception is by design: Keras keeps one LSTM bias
    (b_ih + b_hh), which returns as b_ih = sum, b_hh = 0; their sum is bit-identical."""
    model, _ = torch_file
    km = wmap.apply(TORCH_TO_KERAS, source=model, target=keras_cnn()).target
    back = wmap.apply(KERAS_TO_TORCH, source=km, target=random_torch(seed=9)).target
    before, after = torch_state(model), torch_state(back)
    assert before.keys() == after.keys()
    lstm_bias = {"lstm.bias_ih_l0", "lstm.bias_hh_l0"}
    for k in before.keys() - lstm_bias - {"bn1.num_batches_tracked"}:
        assert before[k].tobytes() == after[k].tobytes(), k
    total = (torch.from_numpy(before["lstm.bias_ih_l0"]) + torch.from_numpy(before["lstm.bias_hh_l0"])).numpy()
    assert after["lstm.bias_ih_l0"].tobytes() == total.tobytes()
    assert not after["lstm.bias_hh_l0"].any()
    assert after["bn1.num_batches_tracked"] == 0  # `init ... = zeros` in the reverse spec
    assert np.array_equal(torch_out(back, images()), torch_out(model, images()))


def test_keras_torch_keras_is_bit_identical() -> None:
    km = random_keras(seed=2)
    tm = wmap.apply(KERAS_TO_TORCH, source=km).target
    back = wmap.apply(TORCH_TO_KERAS, source=tm, target=random_keras(seed=3)).target
    before, after = keras_weights(km), keras_weights(back)
    assert before.keys() == after.keys()
    for k in before:
        assert before[k].tobytes() == after[k].tobytes(), k


def test_example_specs_have_yaml_twins_with_the_same_ast() -> None:
    from wmap.lang import load_spec

    for wm in (TORCH_TO_KERAS, KERAS_TO_TORCH, TORCH_TO_KERAS_AUTO):
        yml = Path(str(wm).removesuffix(".wmap") + ".yaml")
        assert yml.exists(), f"{yml.name}: run `python -m wmap fmt --to yaml {wm.name}`"
        assert load_spec(wm) == load_spec(yml), yml.name
