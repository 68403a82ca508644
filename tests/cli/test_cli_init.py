"""`wmap init`: three pairs it must map fully (the spec plans with no errors, and the ported model
computes what the original does), and one it must leave unresolved (the spec fails `wmap check`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli_fixtures import Cap, cnn, golden, mlp, wmap
from wmap.core.inventory import Inventory, TensorMeta
from wmap.scaffold.propose import GUESS, Proposal
from wmap.scaffold.rules import cover, fold_rules

pytestmark = pytest.mark.torch


def _passes_every_check(capsys: Cap, spec: str) -> None:
    assert wmap(capsys, "fmt", "--check", spec).code == 0, "the generated spec is not in canonical form"
    full = wmap(capsys, "check", "--full", spec, "--format", "json")
    errors = [d for d in json.loads(full.out)["diagnostics"] if d["severity"] == "error"]
    assert full.code == 0 and not errors, errors
    assert wmap(capsys, "plan", spec).code == 0


def _torch_outputs_match(source: object, target: object, x: object) -> None:
    import torch

    with torch.no_grad():
        np.testing.assert_allclose(target(x).numpy(), source(x).numpy(), rtol=1e-5, atol=1e-6)  # type: ignore[operator]


def test_identical_architecture_behind_a_module_prefix(capsys: Cap, in_cli_work: Path) -> None:
    import torch
    from safetensors.torch import load_file

    r = wmap(capsys, "init", "-s", "wrapped.safetensors", "-t", "tests.support.cli_fixtures:cnn", "-o", "prefix.wmap")
    assert r.code == 0
    golden("init_prefix.wmap", (in_cli_work / "prefix.wmap").read_text())
    assert r.err == ("wrote prefix.wmap: 27 tensors matched (27 prefix), 0 dropped, 0 zero-initialised\n"
                     "every tensor is matched; next: `wmap plan prefix.wmap`\n")
    _passes_every_check(capsys, "prefix.wmap")
    assert wmap(capsys, "apply", "prefix.wmap", "--out", "prefix.safetensors").code == 0
    target = cnn()
    target.load_state_dict(load_file("prefix.safetensors"))
    _torch_outputs_match(cnn(), target, torch.randn(2, 3, 8, 8))


def test_renamed_reimplementation_by_shape_and_order(capsys: Cap, in_cli_work: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from tests.support.cli_fixtures import renamed_cnn

    r = wmap(capsys, "init", "-s", "cnn.pt", "-t", "tests.support.cli_fixtures:renamed_cnn", "-o", "renamed.wmap")
    assert r.code == 0 and "review the 27 `guess` matches" in r.err
    golden("init_renamed.wmap", (in_cli_work / "renamed.wmap").read_text())
    _passes_every_check(capsys, "renamed.wmap")
    assert wmap(capsys, "apply", "renamed.wmap", "--out", "renamed.safetensors").code == 0
    target = renamed_cnn()
    target.load_state_dict(load_file("renamed.safetensors"))
    _torch_outputs_match(cnn(), target, torch.randn(2, 3, 8, 8))


@pytest.mark.tf
def test_torch_mlp_into_keras_with_layout_presets(capsys: Cap, in_cli_work: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    pytest.importorskip("keras")
    import torch

    import wmap as wm
    from tests.support.cli_fixtures import keras_mlp

    r = wmap(capsys, "init", "-s", "tests.support.cli_fixtures:mlp", "-t", "tests.support.cli_fixtures:keras_mlp",
             "-o", "k.wmap")
    assert r.code == 0
    text = (in_cli_work / "k.wmap").read_text()
    golden("init_keras.wmap", text)
    assert "| linear_to_dense  # rename" in text and "drop bn.num_batches_tracked" in text
    _passes_every_check(capsys, "k.wmap")
    source, target = mlp(), keras_mlp()
    wm.apply("k.wmap", source=source, target=target)
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    with torch.no_grad():
        want = source(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(target(x)), want, rtol=1e-5, atol=1e-5)


def test_a_name_sorted_checkpoint_is_not_paired_by_order(capsys: Cap,
                                                          in_cli_work: Path) -> None:
    """safetensors stores names sorted: `blocks.*` before `features.*`. Pairing the four (8,) BatchNorm
    weights by that order would put block weights into the stem, so only unique shapes pair up."""
    r = wmap(capsys, "init", "-s", "cnn.safetensors", "-t", "tests.support.cli_fixtures:renamed_cnn",
             "--format", "json")
    data = json.loads(r.out)
    assert r.code == 2
    pairs = {(p["source"], p["target"]) for p in data["proposals"]}
    assert pairs == {("features.0.weight", "stem_conv.weight"), ("classifier.weight", "head.weight"),
                     ("classifier.bias", "head.bias")}
    note = data["unresolved"]["sources"][0]["note"]
    assert "sorted by name keeps no module order" in note


def test_unresolved_entries_fail_check_until_decided(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "init", "-s", "cnn.pt", "-t", "tests.support.cli_fixtures:grown_cnn", "-o", "grown.wmap")
    assert r.code == 2 and "6 unresolved (2 source, 4 target)" in r.err
    text = (in_cli_work / "grown.wmap").read_text()
    golden("init_grown.wmap", text)
    assert wmap(capsys, "fmt", "--check", "grown.wmap").code == 0
    c = wmap(capsys, "check", "grown.wmap", "--format", "json")
    codes = [d["code"] for d in json.loads(c.out)["diagnostics"]]
    assert c.code == 1 and codes == ["WM117"] * 6
    t = wmap(capsys, "check", "grown.wmap")
    assert "error[WM117]: source `classifier.weight` is marked `unresolved`" in t.err
    assert "error[WM117]: target `extra.bias` is marked `unresolved`" in t.err

    # a person decides: the old head is dropped, the new layers are initialised
    decided = text.replace("classifier.weight       -> head.weight | unresolved", "drop classifier.weight") \
        .replace("classifier.bias         -> head.bias | unresolved", "drop classifier.bias")
    decided = "\n".join(ln.replace("= unresolved", "= zeros") if ln.startswith("init ") else ln
                        for ln in decided.splitlines()) + "\n"
    (in_cli_work / "decided.wmap").write_text(decided)
    assert wmap(capsys, "check", "--full", "decided.wmap").code == 0


def test_init_prints_json_and_never_overwrites(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "init", "-s", "cnn.pt", "-t", "tests.support.cli_fixtures:grown_cnn", "--format", "json")
    data = json.loads(r.out)
    assert r.code == 2 and data["complete"] is False and data["path"] is None
    assert [x["name"] for x in data["unresolved"]["sources"]] == ["classifier.weight", "classifier.bias"]
    assert data["unresolved"]["sources"][0]["candidate"] == "head.weight"
    assert data["spec"].startswith("wmap 1\n") and len(data["proposals"]) == 25

    out = wmap(capsys, "init", "-s", "cnn.pt", "-t", "tests.support.cli_fixtures:renamed_cnn")
    assert out.code == 0 and out.out.startswith("wmap 1\n") and "spec above" in out.err
    (in_cli_work / "taken.wmap").write_text("keep me\n")
    r2 = wmap(capsys, "init", "-s", "cnn.safetensors", "-t", "tests.support.cli_fixtures:cnn", "-o", "taken.wmap")
    assert r2.code == 1 and "error[WM521]" in r2.err
    assert (in_cli_work / "taken.wmap").read_text() == "keep me\n"
    assert wmap(capsys, "init", "-s", "cnn.safetensors", "-t", "tests.support.cli_fixtures:cnn", "-o", "taken.wmap",
                "--force").code == 0
    assert wmap(capsys, "init", "-s", "missing.safetensors", "-t", "tests.support.cli_fixtures:cnn").code == 1
    assert wmap(capsys, "init", "-s", "cnn.safetensors").code == 64


def test_yaml_output_and_paths_relative_to_the_spec(capsys: Cap, in_cli_work: Path) -> None:
    (in_cli_work / "specs").mkdir(exist_ok=True)
    r = wmap(capsys, "init", "-s", "wrapped.safetensors", "-t", "tests.support.cli_fixtures:cnn",
             "-o", "specs/p.yaml", "--force")
    assert r.code == 0
    text = (in_cli_work / "specs" / "p.yaml").read_text()
    assert "path: ../wrapped.safetensors" in text and "strip_prefix: module." in text
    assert wmap(capsys, "check", "--full", "specs/p.yaml").code == 0


# -- folding is only written when provably equivalent --------------------------------------------


def _p(s: str, t: str) -> Proposal:
    return Proposal(s, t, (), GUESS)


def test_fold_needs_every_instance() -> None:
    props = [_p(f"layers.{i}.w", f"blocks.{i}.w") for i in range(3)]
    [rule] = fold_rules(props, [p.source for p in props])
    assert (rule.sources, rule.target) == (("layers.{i:int}.w",), "blocks.{i}.w")
    # a fourth layer the group does not cover: the pattern would claim it, so no folding
    rules = fold_rules(props, [p.source for p in props] + ["layers.3.w"])
    assert [r.sources[0] for r in rules] == ["layers.0.w", "layers.1.w", "layers.2.w"]


def test_fold_offsets_and_layers() -> None:
    props = [_p(f"h.{i}.{p}", f"blk{i + 1}.{p}") for i in range(4) for p in ("weight", "bias")]
    [rule] = fold_rules(props, [p.source for p in props])
    assert (rule.sources, rule.target) == (("h.{i:int}.{p}",), "blk{i+1}.{p}")
    odd = [_p("a.0.w", "b.0.w"), _p("a.1.w", "b.5.w")]  # no single offset: one rule each
    assert len(fold_rules(odd, ["a.0.w", "a.1.w"])) == 2


def test_cover_patterns() -> None:
    universe = ["bn1.num_batches_tracked", "l.0.bn.num_batches_tracked", "l.1.bn.num_batches_tracked", "fc.w"]
    assert cover(universe[:3], universe) == ["**.num_batches_tracked"]
    assert cover(universe[1:3], universe) == ["l.*.bn.num_batches_tracked"]
    assert cover(["fc.w"], universe + ["fc.w2"]) == ["fc.w"]


def test_matching_on_inventories_only() -> None:
    from wmap.scaffold.propose import init_spec

    src = Inventory.from_metas([TensorMeta("module.enc.0.w", (4, 4), "float32"),
                                TensorMeta("module.enc.1.w", (4, 4), "float32"),
                                TensorMeta("module.head.w", (2, 4), "float32")], framework="torch")
    tgt = Inventory.from_metas([TensorMeta("enc.0.w", (4, 4), "float32"),
                                TensorMeta("enc.1.w", (4, 4), "float32"),
                                TensorMeta("head.w", (2, 4), "bfloat16")], framework="torch")
    res = init_spec(src, tgt, "a.safetensors", "b.safetensors")
    assert res.complete and 'option strip_prefix = "module."' in res.text
    assert ("enc.{i:int}.w -> enc.{i}.w  # prefix\n"
            "head.w        -> head.w | cast(bfloat16)  # prefix\n") in res.text


def test_framework_guessed_from_parameter_names() -> None:
    from wmap.scaffold.propose import framework_of

    def inv(*names: str, fw: str | None = None) -> Inventory:
        return Inventory.from_metas([TensorMeta(n, (2,), "float32") for n in names], framework=fw)

    assert framework_of(inv("fc.weight", "fc.bias", "bn.running_var")) == "torch"
    assert framework_of(inv("fc.kernel", "fc.bias", "bn.gamma")) == "keras"
    assert framework_of(inv("fc.bias")) is None and framework_of(inv("a.kernel", "b.weight")) is None
    assert framework_of(inv("fc.kernel", fw="torch")) == "torch"
    assert framework_of(inv("x"), "keras") == "keras"
