"""Keras files end to end: files Keras wrote feed a transfer (outputs match), and files wmap writes
through Keras (`--out x.weights.h5 | x.keras | x.h5`) load back into Keras with the right outputs.

How each format names its variables is tested in test_formats_keras.py; here the question is
whether a transfer through the file gives the same function.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
st = pytest.importorskip("safetensors.torch")

import wmap  # noqa: E402
from tests.support.keras_models import (  # noqa: E402
    KERAS_TO_TORCH,
    TOL,
    TORCH_TO_KERAS,
    images,
    keras_cnn,
    keras_out,
    keras_weights,
    random_keras,
    random_torch,
    torch_out,
)
from wmap.core.errors import WmapError  # noqa: E402
from wmap.lang import parse_spec  # noqa: E402

pytestmark = [pytest.mark.tf, pytest.mark.torch,
              # Keras 3.15's own `np.array(variable)` under numpy 2; not ours to fix
              pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")]

# A TF object-graph checkpoint names variables by position in the model (`model.operations.4`)
# and by private attribute (`query_dense`), not by layer name: the spec says which is which.
TF_CHECKPOINT_TO_TORCH = """wmap 1
source keras "ckpt/model"
target torch "wmap.examples.models:torch_cnn"
model.operations.1.kernel -> conv1.weight | conv_from_keras
model.operations.2.{gamma,beta,moving_mean,moving_variance} -> bn1.{weight,bias,running_mean,running_var}
model.operations.3.alpha -> act.weight | prelu_from_keras
model.operations.4.kernel -> dw.weight | depthwise_from_keras
model.operations.6.kernel -> up.weight | conv_transpose_from_keras
model.operations.{1,4,6,14,15}.bias -> {conv1,dw,up,fc,head}.bias
model.operations.14.kernel -> fc.weight | flatten_dense_from_keras(c=8, h=4, w=4)
model.operations.15.kernel -> head.weight | dense_to_linear
model.operations.9.cell.kernel -> lstm.weight_ih_l0 | lstm_kernel_from_keras
model.operations.9.cell.recurrent_kernel -> lstm.weight_hh_l0 | lstm_kernel_from_keras
model.operations.9.cell.bias -> lstm.bias_{ih,hh}_l0 | lstm_bias_from_keras
model.operations.10.cell.kernel -> gru.weight_ih_l0 | gru_kernel_from_keras
model.operations.10.cell.recurrent_kernel -> gru.weight_hh_l0 | gru_kernel_from_keras
model.operations.10.cell.bias -> gru.bias_{ih,hh}_l0 | gru_bias_from_keras
model.operations.11.{query,key,value}_dense.kernel -> attn.in_proj_weight | mha_in_from_keras
model.operations.11.{query,key,value}_dense.bias -> attn.in_proj_bias | mha_in_bias_from_keras
model.operations.11.output_dense.kernel -> attn.out_proj.weight | mha_out_from_keras
model.operations.11.output_dense.bias -> attn.out_proj.bias
init bn1.num_batches_tracked = zeros
"""


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    model = random_torch(seed=10)
    path = str(tmp_path_factory.mktemp("src") / "twin_cnn.safetensors")
    st.save_file(model.state_dict(), path)
    return model, path


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The Keras twin with random weights, saved by Keras in every format it writes."""
    model = random_keras(seed=11)
    d = tmp_path_factory.mktemp("keras")
    model.save_weights(d / "twin.weights.h5")
    model.save(d / "twin.keras")
    model.save(d / "twin.h5")
    tf.train.Checkpoint(model=model).write(str(d / "ckpt" / "model"))
    return model, d


def _listing(folder: Path) -> set[str]:
    return set(os.listdir(folder))


# -- files Keras wrote, as sources ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["twin.weights.h5", "twin.keras", "twin.h5", "ckpt/model"])
def test_keras_written_file_as_source_gives_the_same_outputs(keras_files: tuple[Any, Path], name: str) -> None:
    km, d = keras_files
    spec: Any = KERAS_TO_TORCH if name != "ckpt/model" else parse_spec(TF_CHECKPOINT_TO_TORCH)
    tm = wmap.apply(spec, source=str(d / name)).target
    x = images()
    assert np.abs(torch_out(tm, x) - keras_out(km, x)).max() < TOL


# -- files wmap writes through Keras -------------------------------------------------------------------


def _load(out: Path) -> Any:
    if out.name.endswith(".weights.h5"):
        model = keras_cnn()
        model.load_weights(out)
        return model
    return keras.saving.load_model(out, compile=False)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras", ".h5"])
def test_output_file_loads_back_into_keras_with_the_same_outputs(torch_file: tuple[Any, str], tmp_path: Path,
                                                                 suffix: str) -> None:
    tm, path = torch_file
    out = tmp_path / f"twin{suffix}"
    report = wmap.apply(TORCH_TO_KERAS, source=path, out=str(out))
    assert report.target == str(out)
    assert _listing(tmp_path) == {out.name}  # no temporary file left behind
    mask = os.umask(0o022)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    assert any("saved with Keras" in n for n in report.notes)
    km = _load(out)
    x = images()
    assert np.abs(keras_out(km, x) - torch_out(tm, x)).max() < TOL
    assert wmap.inventory_of(str(out)).fingerprint() == wmap.inventory_of(keras_cnn()).fingerprint()
    # the file holds exactly what an in-memory apply lands
    direct = keras_weights(wmap.apply(TORCH_TO_KERAS, source=path, target=keras_cnn()).target)
    loaded = keras_weights(km)
    assert loaded.keys() == direct.keys() and all(np.array_equal(loaded[k], direct[k]) for k in direct)


def test_keras_template_target_and_frozen_layers_are_saved(torch_file: tuple[Any, str], tmp_path: Path) -> None:
    """A `.keras` target is a template: Keras rebuilds it; `freeze` lands in the saved config."""
    tm, path = torch_file
    template = tmp_path / "template.keras"
    keras_cnn().save(template)
    spec = parse_spec(TORCH_TO_KERAS.read_text() + "\nfreeze conv1.**, bn1.**\n")
    out = tmp_path / "ported.keras"
    report = wmap.apply(spec, source=path, target=str(template), out=str(out))
    assert any("compile the Keras model again" in n for n in report.notes)
    km = keras.saving.load_model(out, compile=False)
    assert not km.get_layer("conv1").trainable and not km.get_layer("bn1").trainable
    assert km.get_layer("fc").trainable
    assert np.abs(keras_out(km, images()) - torch_out(tm, images())).max() < TOL


def test_in_memory_target_is_copied_not_changed(torch_file: tuple[Any, str], tmp_path: Path) -> None:
    tm, path = torch_file
    target = random_keras(seed=12)
    before = keras_weights(target)
    out = tmp_path / "copy.weights.h5"
    wmap.apply(TORCH_TO_KERAS, source=path, target=target, out=str(out))
    after = keras_weights(target)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert np.abs(keras_out(_load(out), images()) - torch_out(tm, images())).max() < TOL


def test_weights_only_template_cannot_build_a_keras_output(torch_file: tuple[Any, str], tmp_path: Path) -> None:
    _, path = torch_file
    template = tmp_path / "template.weights.h5"
    keras_cnn().save_weights(template)
    with pytest.raises(WmapError) as e:
        wmap.apply(TORCH_TO_KERAS, source=path, target=str(template), out=str(tmp_path / "x.keras"))
    d = e.value.diagnostics[0]
    assert d.code == "WM521" and "no architecture" in d.message and "factory" in (d.hint or "")
    assert not (tmp_path / "x.keras").exists()


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_fault_leaves_no_output_and_an_old_file_untouched(torch_file: tuple[Any, str], tmp_path: Path,
                                                          where: str) -> None:
    _, path = torch_file
    plan = wmap.plan(TORCH_TO_KERAS, source=path)
    at = {"first": 0, "middle": len(plan.steps) // 2, "last": len(plan.steps) - 1}[where]
    out = tmp_path / "twin.keras"

    def hook(i: int, step: Any) -> None:
        if i == at:
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError):
        wmap.apply(plan, source=path, out=str(out), on_step=hook)
    assert _listing(tmp_path) == set()
    out.write_bytes(b"old")
    with pytest.raises(OSError):
        wmap.apply(plan, source=path, out=str(out), on_step=hook)
    assert _listing(tmp_path) == {out.name} and out.read_bytes() == b"old"


def test_failed_save_leaves_nothing(torch_file: tuple[Any, str], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = torch_file

    def broken(self: Any, *a: Any, **k: Any) -> None:
        Path(a[0]).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", broken)
    out = tmp_path / "twin.keras"
    with pytest.raises(WmapError) as e:
        wmap.apply(TORCH_TO_KERAS, source=path, out=str(out))
    assert e.value.diagnostics[0].code == "WM512" and "No space left" in str(e.value)
    assert _listing(tmp_path) == set()
    with pytest.raises(WmapError) as e2:
        wmap.apply(TORCH_TO_KERAS, source=path, out=str(tmp_path / "missing" / "twin.weights.h5"))
    assert e2.value.diagnostics[0].code == "WM512"


def test_nan_in_the_source_leaves_an_old_keras_file_untouched(torch_file: tuple[Any, str], tmp_path: Path) -> None:
    """The example port opts into `nonfinite = "error"`: the check runs on the staged copies, all
    before Keras saves anything."""
    model, _ = torch_file
    bad = {k: v.clone() for k, v in model.state_dict().items()}
    bad["fc.weight"][0, 0] = float("nan")  # a rule half-way down: the ones before it are staged already
    src = tmp_path / "src" / "bad.safetensors"
    src.parent.mkdir()
    st.save_file(bad, str(src))
    out = tmp_path / "out" / "twin.weights.h5"
    out.parent.mkdir()
    out.write_bytes(b"old")
    with pytest.raises(WmapError) as e:
        wmap.apply(TORCH_TO_KERAS, source=str(src), out=str(out))
    assert e.value.diagnostics[0].code == "WM603" and "fc.weight" in e.value.diagnostics[0].message
    assert _listing(out.parent) == {out.name} and out.read_bytes() == b"old"
