"""`wmap inspect`: folded listing, module tree, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli_fixtures import Cap, golden, wmap
from wmap.commands.inspect import build_tree, groups, human_bytes, human_count
from wmap.core.inventory import Inventory, TensorMeta

pytestmark = pytest.mark.torch


def test_inspect_checkpoint(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "inspect", "wrapped.safetensors")
    assert r.code == 0 and r.err == ""
    golden("inspect_wrapped.txt", r.out)


def test_inspect_factory_tree(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "inspect", "tests.support.cli_fixtures:renamed_cnn", "--tree")
    assert r.code == 0
    golden("inspect_renamed_tree.txt", r.out)


def test_inspect_json(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "inspect", "cnn.safetensors", "--format", "json", "--tree")
    data = json.loads(r.out)
    assert r.code == 0 and data["format_version"] == 1 and data["label"] == "safetensors"
    assert data["summary"]["tensors"] == len(data["tensors"]) == 27
    assert data["summary"]["params"] == sum(g["count"] * _numel(g["shape"]) for g in data["groups"])
    assert {g["pattern"] for g in data["groups"]} >= {"blocks.{0..2}.1.running_var", "classifier.weight"}
    assert data["tree"]["tensors"] == 27
    assert sorted(c["name"] for c in data["tree"]["children"]) == ["blocks", "classifier", "features"]


def test_inspect_errors(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "inspect", "missing.safetensors")
    assert r.code == 1 and "error[WM500]" in r.err
    j = wmap(capsys, "inspect", "missing.safetensors", "--format", "json")
    assert j.code == 1 and json.loads(j.out)["diagnostics"][0]["code"] == "WM500"
    f = wmap(capsys, "inspect", "tests.support.cli_fixtures:nothing_here")
    assert f.code == 1 and "error[WM511]" in f.err
    assert wmap(capsys, "inspect", "x", "--framework", "jax").code == 64


def test_grouping_and_tree_fold_repeats() -> None:
    metas = [TensorMeta(f"layers.{i}.{p}", (4, 4) if p == "w" else (4,), "bfloat16")
             for i in range(32) for p in ("w", "b")] + [TensorMeta("head", (2, 4), "float32")]
    inv = Inventory.from_metas(metas, label="fixture")
    gs = groups(inv)
    assert [(g.pattern, g.count) for g in gs] == [("layers.{0..31}.w", 32), ("layers.{0..31}.b", 32),
                                                  ("head", 1)]
    tree = build_tree(inv.tensors)
    assert tree.tensors == 65 and tree.children["layers"].params == 32 * 20
    from wmap.commands.inspect import render_tree
    text = render_tree(inv)
    assert "{0..31}/  2 tensors, 20 params each  x32" in text and "head  (2, 4) float32" in text


def test_human_units() -> None:
    assert human_bytes(999) == "999 B" and human_bytes(13_500_000_000) == "13.5 GB"
    assert human_count(6_738_415_616) == "6.74B" and human_count(512) == "512"


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_inspect_escapes_names_a_terminal_would_obey(tmp_path: Path) -> None:
    """A `.pt` may hold any str key (a lone surrogate, an OSC title, a clear-screen); on a real
    UTF-8 stdout `inspect` prints them escaped instead of crashing (exit 3) or obeying them."""
    import os
    import subprocess
    import sys

    import torch

    path = tmp_path / "names.pt"
    torch.save({"\ud800x": torch.ones(2), "a\x1b]0;pwned\x07\x1b[2Jb": torch.ones(1), "ok.ü": torch.ones(1)}, path)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run([sys.executable, "-m", "wmap", "inspect", str(path)], capture_output=True, env=env,
                          timeout=120)
    out = proc.stdout.decode("utf-8")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in out and "\x07" not in out
    names = ["\\ud800x", "a\\x1b]0;pwned\\x07\\x1b[2Jb", "ok.ü"]  # aligned as escaped
    assert out.splitlines()[2:5] == [f"  {n:<25}  ({d}) float32" for n, d in zip(names, (2, 1, 1), strict=True)]
