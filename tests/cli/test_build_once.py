"""A `module:callable` target is built once per apply, from the model's config when it asks for it;
a spec may leave an endpoint's location to the call (a template, as recipes are)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from wmap.cli import main

FACTORY = '''
import keras
CALLS = []

def build():
    CALLS.append(1)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])  # unnamed: Keras numbers it

def sized(config):
    CALLS.append(config["width"])
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(config["width"])])
'''


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("keras")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kfactory.py").write_text(FACTORY)
    save_file({"fc.weight": np.ones((2, 3), np.float32), "fc.bias": np.zeros(2, np.float32)},
              str(tmp_path / "src.safetensors"))
    monkeypatch.delitem(__import__("sys").modules, "kfactory", raising=False)
    return tmp_path


def test_an_unnamed_keras_model_from_a_factory_applies_from_the_cli(work: Path) -> None:
    """It used to fail with WM604: building the target twice shifted Keras' names (dense -> dense_2)."""
    (work / "s.wmap").write_text('wmap 1\nsource torch "src.safetensors"\ntarget keras "kfactory:build"\n'
                                 "fc.weight -> dense.kernel | linear_to_dense\nfc.bias -> dense.bias\n")
    for out in ("o.weights.h5", "o.keras", "o.safetensors"):
        assert main(["apply", "s.wmap", "-o", out]) == 0, out
    import kfactory  # type: ignore[import-not-found]
    assert kfactory.CALLS == [1, 1, 1]  # once per apply


def test_a_factory_is_given_the_config_the_spec_names(work: Path) -> None:
    (work / "config.json").write_text(json.dumps({"width": 2}))
    (work / "s.wmap").write_text('wmap 1\nsource torch "src.safetensors"\ntarget keras "kfactory:sized"\n'
                                 "config src\nfc.weight -> dense.kernel | linear_to_dense\nfc.bias -> dense.bias\n")
    assert main(["apply", "s.wmap", "-o", "o.weights.h5"]) == 0
    import kfactory  # type: ignore[import-not-found]
    assert kfactory.CALLS == [2]


def test_a_factory_that_needs_a_config_says_so(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "s.wmap").write_text('wmap 1\nsource torch "src.safetensors"\ntarget keras "kfactory:sized"\n'
                                 "fc.weight -> dense.kernel | linear_to_dense\nfc.bias -> dense.bias\n")
    assert main(["plan", "s.wmap"]) == 1
    assert "error[WM511]: factory `kfactory:sized` builds the model from its config, but there is none" in \
        capsys.readouterr().err


def test_a_template_spec_takes_its_endpoints_from_the_call(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "t.wmap").write_text('wmap 1\n\nsource hf torch\ntarget keras "kfactory:build"\n\n'
                                 "fc.weight -> dense.kernel | linear_to_dense\nfc.bias   -> dense.bias\n")
    assert main(["check", "t.wmap"]) == 0
    assert main(["plan", "t.wmap"]) == 1
    err = capsys.readouterr().err
    assert "error[WM521]: source `hf` names no checkpoint or model: the spec leaves it to the call" in err
    assert main(["plan", "t.wmap", "--source", "src.safetensors"]) == 0
    assert main(["fmt", "--check", "t.wmap"]) == 0
