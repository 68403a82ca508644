"""Keras as a first-class target: optimizer groups say what fits Keras, `freeze` with `lr` on one
tensor is caught, and `wmap verify` reads back every Keras file `wmap apply` writes, by the plan's names."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import wmap
from tests.support.cli_fixtures import Cap
from tests.support.cli_fixtures import wmap as run

keras = pytest.importorskip("keras")

FACTORY = '''
import keras

class Tok(keras.layers.Layer):
    """A layer whose variable names live only in its class (as keras-hub's do)."""
    def build(self, shape):
        self.embeddings = self.add_weight(shape=(4, 4), name="embeddings")
    def call(self, x):
        return x @ self.embeddings

def build():
    return keras.Sequential([keras.Input((4,)), Tok(name="token_embedding"), keras.layers.Dense(2)])
'''
SPEC = '''wmap 1
source torch "src.safetensors"
target keras "kfac_custom:build"
tok.weight -> token_embedding.embeddings | transpose
fc.weight -> dense.kernel | linear_to_dense
fc.bias -> dense.bias
'''


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "kfac_custom", raising=False)
    (tmp_path / "kfac_custom.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    save_file({"tok.weight": rng.standard_normal((4, 4), np.float32),
               "fc.weight": rng.standard_normal((2, 4), np.float32), "fc.bias": np.ones(2, np.float32)},
              "src.safetensors")
    (tmp_path / "s.wmap").write_text(SPEC)
    return tmp_path


@pytest.mark.parametrize("out", ["o.weights.h5", "o.keras"])
def test_verify_reads_back_wmaps_own_keras_output_by_the_plans_names(work: Path, capsys: Cap, out: str) -> None:
    assert run(capsys, "apply", "s.wmap", "--out", out).code == 0
    r = run(capsys, "verify", "s.wmap", "--against", out)
    assert r.code == 0 and "verify OK: 3 target(s) checked, 0 mismatch(es)" in r.out, r.err
    # and it really compares: other source values are a mismatch on each tensor they change
    rng = np.random.default_rng(1)
    save_file({"tok.weight": rng.standard_normal((4, 4), np.float32),
               "fc.weight": rng.standard_normal((2, 4), np.float32), "fc.bias": np.ones(2, np.float32)},
              "other.safetensors")
    r = run(capsys, "verify", "s.wmap", "--source", "other.safetensors", "--against", out)
    assert r.code == 1 and "2 mismatch(es)" in r.out, r.out + r.err
    assert "mismatch: token_embedding.embeddings" in r.out


def test_param_groups_of_a_keras_model_is_a_clear_error(work: Path) -> None:
    p = wmap.plan("s.wmap")
    report = p.apply(out=str(work / "o.weights.h5"))
    assert report.target
    model = p.bound[1].model
    with pytest.raises(wmap.WmapError) as e:
        p.param_groups(model, base_lr=1e-3)
    d = e.value.diagnostics[0]
    assert d.code == "WM521" and "PyTorch-only" in d.message and "lr_scales" in (d.hint or "")


def test_lr_on_only_frozen_tensors_is_an_error_and_on_some_a_warning() -> None:
    sd = {"a.weight": np.zeros((2, 2), np.float32), "b.weight": np.zeros((2, 2), np.float32)}
    with pytest.raises(wmap.WmapError) as e:
        wmap.plan(wmap.parse_spec("wmap 1\n{p:**} -> {p}\nfreeze a.*\nlr a.* * 10\n"), source=sd, target=sd)
    assert [(d.code, d.line) for d in e.value.diagnostics] == [("WM213", 4)]
    p = wmap.plan(wmap.parse_spec("wmap 1\n{p:**} -> {p}\nfreeze a.*\nlr ** * 10\n"), source=sd, target=sd)
    assert [(d.code, d.severity) for d in p.warnings] == [("WM213", "warning")]
    assert "`a.weight`" in p.warnings[0].message
    p = wmap.plan(wmap.parse_spec("wmap 1\n{p:**} -> {p}\nfreeze a.*\nlr ** * 10\nack WM213 a.*\n"),
                  source=sd, target=sd)
    assert p.warnings == () and len(p.acknowledged) == 1
