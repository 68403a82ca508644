"""Values in and out without surprises: `.npy` read (pickles refused with a way out), literal values in
`init ... = constant([[...]])`, float64 NumPy arrays under the dtype option, source-less specs, output
paths that say what they get, nothing left behind by a failed apply, seeded `keep` from a factory,
and `prune` that says (and lets the spec choose) which side of the threshold it keeps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import wmap
from tests.support.cli_fixtures import Cap
from tests.support.cli_fixtures import wmap as run

torch = pytest.importorskip("torch")

FACTORY = '''
import torch

def lin():
    return torch.nn.Linear(5, 1)

def keras_lin():
    import keras
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
'''


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "vfac", raising=False)
    (tmp_path / "vfac.py").write_text(FACTORY)
    return tmp_path


# -- .npy ------------------------------------------------------------------------------------------


def test_a_plain_npy_is_read_by_its_file_name(work: Path) -> None:
    w = np.arange(5, dtype=np.float32).reshape(1, 5) / 10
    np.save("weight.npy", w)
    inv = wmap.inventory_of("weight.npy")
    assert [(t.name, t.shape, t.dtype) for t in inv] == [("weight", (1, 5), "float32")]
    model = torch.nn.Linear(5, 1)
    wmap.apply(wmap.parse_spec('wmap 1\nsource "weight.npy"\nweight -> weight\ninit bias = zeros\n'), target=model)
    assert torch.equal(model.weight.detach(), torch.from_numpy(np.load("weight.npy")))


def test_a_pickled_npy_is_refused_with_the_way_out_and_a_short_one_as_corrupt(work: Path, capsys: Cap) -> None:
    np.save("weights.npy", {"weight": np.ones((1, 5))}, allow_pickle=True)  # what seed-style code saves
    r = run(capsys, "inspect", "weights.npy")
    assert r.code == 1 and "error[WM508]" in r.err and "np.savez" in r.err and "Traceback" not in r.err
    np.save("w.npy", np.ones((3, 4), np.float32))
    Path("short.npy").write_bytes(Path("w.npy").read_bytes()[:-4])
    r = run(capsys, "inspect", "short.npy")
    assert r.code == 1 and "error[WM510]" in r.err and "declares 48" in r.err


def test_float64_numpy_arrays_follow_the_dtype_option(work: Path) -> None:
    np.save("weight.npy", np.random.default_rng(0).random((1, 5)))  # float64, as np.random.rand gives
    spec = 'wmap 1\nsource "weight.npy"\n{opt}weight -> weight\ninit bias = zeros\n'
    with pytest.raises(wmap.WmapError) as e:
        wmap.plan(wmap.parse_spec(spec.format(opt="")), target=torch.nn.Linear(5, 1))
    d = e.value.diagnostics[0]
    assert d.code == "WM302" and "NumPy's default" in d.message and 'option dtype = "target"' in (d.hint or "")
    model = torch.nn.Linear(5, 1)
    wmap.apply(wmap.parse_spec(spec.format(opt='option dtype = "target"\n')), target=model)
    assert torch.equal(model.weight.detach(), torch.from_numpy(np.load("weight.npy")).float())


# -- literals and source-less specs --------------------------------------------------------------


def test_literal_values_land_exactly_as_torch_writes_them(work: Path, capsys: Cap) -> None:
    spec = "wmap 1\ninit weight = constant([[0.1, 0.2, 0.3, 0.4, 0.5]])\ninit bias = constant([0.0])\n"
    model = torch.nn.Linear(5, 1)
    p = wmap.plan(wmap.parse_spec(spec), target=model)  # no source: none needed, none asked for
    assert "from no source" in p.render()
    p.apply()
    assert torch.equal(model.weight.detach(), torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]]))
    with pytest.raises(wmap.WmapError) as e:
        wmap.plan(wmap.parse_spec(spec.replace("0.4, 0.5", "0.4")), target=model)
    assert e.value.diagnostics[0].code == "WM301" and "(1, 4)" in e.value.diagnostics[0].message
    (work / "s.wmap").write_text('wmap 1\ntarget torch "vfac:lin"\n' + spec.split("\n", 1)[1])
    r = run(capsys, "apply", "s.wmap", "--out", "o.safetensors")
    assert r.code == 0, r.err
    from safetensors.torch import load_file
    assert torch.equal(load_file("o.safetensors")["weight"], torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]]))
    assert run(capsys, "plan", "s.wmap").out.splitlines()[1] == "  from no source (init and keep only)"
    # the literal survives a saved plan
    assert run(capsys, "plan", "s.wmap", "-o", "p.json").code == 0
    assert run(capsys, "apply", "p.json", "--target", "vfac:lin", "--out", "o2.safetensors").code == 0
    assert Path("o2.safetensors").read_bytes() == Path("o.safetensors").read_bytes()


# -- outputs ---------------------------------------------------------------------------------------


def test_an_output_suffix_wmap_does_not_write_is_refused_before_anything_exists(work: Path, capsys: Cap) -> None:
    (work / "s.wmap").write_text('wmap 1\ntarget torch "vfac:lin"\ninit weight = zeros\ninit bias = zeros\n')
    for out in ("x.pth", "out.npz"):
        r = run(capsys, "apply", "s.wmap", "--out", out)
        assert r.code == 1 and "error[WM512]" in r.err and ".safetensors" in r.err, r.err
        assert not Path(out).exists()


def test_a_failed_apply_into_a_new_folder_leaves_no_folder(work: Path, capsys: Cap) -> None:
    (work / "s.wmap").write_text('wmap 1\ntarget torch "vfac:lin"\ninit weight = zeros\nkeep bias\n')
    r = run(capsys, "apply", "s.wmap", "--out", "shards")
    assert r.code == 1 and "WM602" in r.err
    assert not Path("shards").exists()


def test_keep_from_a_keras_factory_is_seeded(work: Path, capsys: Cap) -> None:
    pytest.importorskip("keras")
    (work / "s.wmap").write_text('wmap 1\ntarget keras "vfac:keras_lin"\ninit dense.bias = zeros\nkeep dense.kernel\n')
    for out in ("a.weights.h5", "b.weights.h5"):
        assert run(capsys, "apply", "s.wmap", "--out", out).code == 0
    a, b = wmap.inventory_of("a.weights.h5"), wmap.inventory_of("b.weights.h5")
    from wmap.formats import open_source
    with open_source("a.weights.h5") as ra, open_source("b.weights.h5") as rb:  # type: ignore[attr-defined]
        assert a.names == b.names
        for n in a.names:
            assert np.array_equal(ra.read(n), rb.read(n)), n
        assert np.abs(ra.read("dense.kernel")).sum() > 0  # Keras' initial values, not zeros
    state = np.random.get_state()[1][:4].copy()
    assert run(capsys, "apply", "s.wmap", "--out", "c.weights.h5").code == 0
    assert np.array_equal(np.random.get_state()[1][:4], state)  # the caller's NumPy generator is untouched


# -- prune -------------------------------------------------------------------------------------------


def test_prune_says_which_side_it_keeps_and_the_spec_chooses(work: Path) -> None:
    w = np.array([[0.05, -0.1, 0.1, 0.2, -0.3]], np.float32)
    for keep, want in (("", w * (np.abs(w) >= np.float32(0.1))), (', keep="gt"', w * (np.abs(w) > np.float32(0.1)))):
        model = torch.nn.Linear(5, 1)
        p = wmap.plan(wmap.parse_spec(f"wmap 1\nweight -> weight | prune(0.1{keep})\ninit bias = zeros\n"),
                      source={"weight": w}, target=model)
        assert ('keep="gt"' if keep else 'keep="ge"') in p.render()
        assert json.loads(p.dumps())["steps"][0]["transforms"][0]["params"]["keep"] == ("gt" if keep else "ge")
        p.apply()
        np.testing.assert_array_equal(model.weight.detach().numpy(), want)
    with pytest.raises(wmap.WmapError) as e:
        wmap.plan(wmap.parse_spec('wmap 1\nweight -> weight | prune(0.1, keep="lt")\n'), source={"weight": w},
                  target=torch.nn.Linear(5, 1))
    assert e.value.diagnostics[0].code == "WM104"


def test_keep_from_a_torch_factory_built_in_memory_is_seeded(work: Path) -> None:
    """An in-memory apply from a `module:callable` that keeps tensors builds the model for real: its
    initial values come from torch's generator, seeded by `option seed` and then put back."""
    spec = wmap.parse_spec("wmap 1\ninit weight = zeros\nkeep bias\n")
    state = torch.random.get_rng_state()
    a = wmap.apply(spec, target="vfac:lin").target
    b = wmap.apply(spec, target="vfac:lin").target
    assert torch.equal(a.bias, b.bias) and float(a.bias.abs().sum()) > 0
    assert torch.equal(torch.random.get_rng_state(), state)
