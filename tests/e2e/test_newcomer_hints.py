"""Hints a new user can run as written, and that are right: each WM301 fix is applied and the
ported model compared with the original (torch and Keras compute the reference, not wmap); the
same-size layout traps a shape check cannot see are warned at their step."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import wmap

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
from safetensors.torch import save_file  # noqa: E402


def _hint(spec: str, **kw: object) -> str:
    with pytest.raises(wmap.WmapError) as e:
        wmap.plan(wmap.parse_spec(spec), **kw)
    d = e.value.diagnostics[0]
    assert d.hint is not None, d
    return d.hint


def _suggested(hint: str) -> str:
    """The first `| transform` the hint tells the user to add, exactly as written."""
    m = re.search(r"`\| ([^`]+)`", hint)
    assert m, hint
    return m.group(1)


def test_the_conv_layout_hint_runs_as_written_and_is_right(tmp_path: Path) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3)  # (5, 3, 3, 3): three orders of the 3s give the target's shape
    path = str(tmp_path / "conv.safetensors")
    save_file({"conv.weight": conv.weight.detach(), "conv.bias": conv.bias.detach()}, path)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(5, 3)])
    spec = "wmap 1\nsource torch \"s\"\nconv.weight -> conv2d.kernel{via}\nconv.bias -> conv2d.bias\n"
    hint = _hint(spec.format(via=""), source=path, target=model)
    assert "conv_to_keras" in hint and "permute([2, 3, 1, 0])" in hint, hint  # not permute(1, 2, 3, 0)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    want = conv(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().permute(0, 2, 3, 1).numpy()
    for via in (_suggested(hint), "permute([2, 3, 1, 0])"):
        wmap.apply(wmap.parse_spec(spec.format(via=f" | {via}")), source=path, target=model)
        np.testing.assert_allclose(model(x).numpy(), want, atol=1e-5)


def test_a_hidden_width_mismatch_is_not_called_a_vocabulary_delta(tmp_path: Path) -> None:
    path = str(tmp_path / "m.safetensors")
    save_file({"fc1.weight": torch.zeros(20, 10), "embed.weight": torch.zeros(20, 8)}, path)
    model = torch.nn.ModuleDict({"fc1": torch.nn.Linear(10, 32, bias=False), "embed": torch.nn.Embedding(32, 8)})
    hint = _hint("wmap 1\nfc1.weight -> fc1.weight\ndrop embed.weight\nkeep embed.weight\n", source=path,
                 target=model)
    assert "vocabulary" not in hint and "pad" not in hint and "width" in hint, hint
    hint = _hint("wmap 1\nembed.weight -> embed.weight\ndrop fc1.weight\nkeep fc1.weight\n", source=path,
                 target=model)
    assert "vocabulary" in hint and "pad(0)" in hint, hint


def _q_proj_case(tmp_path: Path) -> tuple[str, object, object, np.ndarray]:
    torch.manual_seed(0)
    q = torch.nn.Linear(32, 32, bias=False)  # 2 heads of 16, as LLaMA's q_proj
    path = str(tmp_path / "q.safetensors")
    save_file({"q_proj.weight": q.weight.detach()}, path)
    dense = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 16), name="query")
    model = keras.Sequential([keras.Input((4, 32)), dense])
    x = np.random.default_rng(1).standard_normal((1, 4, 32)).astype(np.float32)
    want = q(torch.from_numpy(x)).detach().numpy().reshape(1, 4, 2, 16)
    return path, model, want, x


def test_the_rank_hint_across_frameworks_does_not_lead_into_the_reshape_trap(tmp_path: Path) -> None:
    path, model, want, x = _q_proj_case(tmp_path)
    spec = "wmap 1\nsource torch \"s\"\nq_proj.weight -> query.kernel{via}\n"
    hint = _hint(spec.format(via=""), source=path, target=model)
    assert "reshape(32, 2, 16)`" not in hint and "transpose" in hint, hint
    # the trap itself: a bare reshape plans (same size), is wrong, and now warns at its step
    p = wmap.plan(wmap.parse_spec(spec.format(via=" | reshape(32, 2, 16)")), source=path, target=model)
    assert [(d.code, d.line) for d in p.warnings] == [("WM310", 3)]
    p.apply()
    assert np.abs(model(x).numpy() - want).max() > 0.1
    p = wmap.plan(wmap.parse_spec(spec.format(via=" | transpose | reshape(32, 2, 16)")), source=path, target=model)
    assert p.warnings == ()
    p.apply()
    np.testing.assert_allclose(model(x).numpy(), want, atol=1e-5)


def test_a_class_token_is_not_a_same_shape_trap(tmp_path: Path) -> None:
    path = str(tmp_path / "v.safetensors")
    save_file({"class_token": torch.zeros(1, 1, 64), "pos": torch.zeros(1, 5, 5)}, path)
    tpl = str(tmp_path / "t.safetensors")
    save_file({"cls": torch.zeros(1, 1, 64), "pos": torch.zeros(1, 5, 5)}, tpl)
    p = wmap.plan(wmap.parse_spec('wmap 1\nsource torch "s"\ntarget keras "t"\nclass_token -> cls\npos -> pos\n'),
                  source=path, target=tpl)
    assert [(d.code, d.message.split("`")[1]) for d in p.warnings] == [("WM310", "pos")]


def test_layout_auto_from_a_checkpoint_is_one_error_naming_the_cure(tmp_path: Path) -> None:
    path = str(tmp_path / "m.safetensors")
    save_file({"a.weight": torch.zeros(3, 4), "a.bias": torch.zeros(3), "b.weight": torch.zeros(2, 3)}, path)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
                              keras.layers.Dense(2, use_bias=False, name="b")])
    with pytest.raises(wmap.WmapError) as e:
        wmap.plan(wmap.parse_spec('wmap 1\nsource torch "s"\na.weight -> a.kernel | layout(auto)\n'
                                  "a.bias -> a.bias | layout(auto)\nb.weight -> b.kernel | layout(auto)\n"),
                  source=path, target=model)
    diags = e.value.diagnostics
    assert [d.code for d in diags] == ["WM304"], [d.render() for d in diags]
    d = diags[0]
    assert "layer kinds" in d.message and "line 3, 4, 5" in d.message and len(d.hint or "") < 400
    assert "--source pkg.models:build" in (d.hint or "") and "linear_to_dense" in (d.hint or "")


def test_a_dense_after_a_flatten_is_warned_at_its_step() -> None:
    torch.manual_seed(0)
    src = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.Flatten(), torch.nn.Linear(48, 5))
    tgt = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 1), keras.layers.Flatten(),
                            keras.layers.Dense(5)])
    spec = ("wmap 1\n0.{{weight,bias}} -> conv2d.{{kernel,bias}} | layout(auto)\n"
            "2.weight -> dense.kernel | {via}\n2.bias -> dense.bias\n")
    p = wmap.plan(wmap.parse_spec(spec.format(via="layout(auto)")), source=src, target=tgt)
    assert [(d.code, d.line) for d in p.warnings] == [("WM314", 3)]
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 2)).astype(np.float32)
    want = src(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    p.apply()
    assert np.abs(tgt(x).numpy() - want).max() > 0.05  # the warning is about a real error
    p = wmap.plan(wmap.parse_spec(spec.format(via="flatten_dense_to_keras(3, 4, 4)")), source=src, target=tgt)
    assert p.warnings == ()
    p.apply()
    np.testing.assert_allclose(tgt(x).numpy(), want, atol=1e-5)
