"""`wmap diff A B`: compares what each target receives; 0 equal, 2 different, 1 errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli_fixtures import PORT, Cap, golden, wmap, write

pytestmark = pytest.mark.torch

CHANGED = PORT.replace("blocks.{i:int}.0.weight -> stage.{i}.conv.weight",
                       "blocks.{i:int}.0.weight -> stage.{i}.conv.weight | scale(0.5)") \
    .replace("classifier.{p}          -> head.{p}\n",
             "classifier.weight -> head.weight\ndrop classifier.bias\ninit head.bias = zeros\n") \
    .replace("freeze stem_conv.*", "freeze stem_conv.*, stem_bn.*").replace("lr head.* * 10", "lr head.* * 5")


def test_same_transfer_written_differently_is_equal(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "diff", "port.wmap", "explicit.wmap")
    assert r.code == 0
    assert r.out == ("wmap diff  port.wmap -> explicit.wmap\n\n"
                     "no differences: every target receives the same in both\n")
    j = wmap(capsys, "diff", "port.wmap", "explicit.wmap", "--format", "json")
    data = json.loads(j.out)
    assert j.code == 0 and data["equal"] is True and data["changed"] == [] and data["format_version"] == 1


def test_differences_are_folded_by_cause(capsys: Cap, in_cli_work: Path) -> None:
    write(in_cli_work / "changed.wmap", CHANGED)
    r = wmap(capsys, "diff", "port.wmap", "changed.wmap")
    assert r.code == 2 and r.err == ""
    golden("diff_port_changed.txt", r.out)


def test_diff_json(capsys: Cap, in_cli_work: Path) -> None:
    write(in_cli_work / "changed.wmap", CHANGED)
    r = wmap(capsys, "diff", "port.wmap", "changed.wmap", "--format", "json")
    data = json.loads(r.out)
    assert r.code == 2 and data["equal"] is False
    assert data["summary"] == {"added": 0, "removed": 0, "changed": 10, "dropped_added": 1,
                               "dropped_removed": 0}
    by_target = {(c["target"], c["field"]): (c["old"], c["new"]) for c in data["changed"]}
    assert by_target[("stage.1.conv.weight", "transforms")] == ("", "scale(a=0.5)")
    assert by_target[("head.bias", "receives")] == ("<- classifier.bias lr=x10", "init zeros lr=x5")
    assert by_target[("stem_bn.running_var", "frozen")] == ("no", "yes")
    assert data["dropped"] == {"added": ["classifier.bias"], "removed": []}


def test_added_and_removed_targets(capsys: Cap, in_cli_work: Path) -> None:
    grown = PORT.replace("tests.support.cli_fixtures:renamed_cnn", "tests.support.cli_fixtures:grown_cnn")
    grown = grown.replace("classifier.{p}          -> head.{p}\n",
                          "drop classifier.*\ninit head.*, extra.* = zeros\n")
    write(in_cli_work / "grown.wmap", grown)
    r = wmap(capsys, "diff", "port.wmap", "grown.wmap", "--format", "json")
    data = json.loads(r.out)
    assert r.code == 2 and [a["target"] for a in data["added"]] == ["extra.weight", "extra.bias"]
    changes = {(c["target"], c["field"]): (c["old"], c["new"]) for c in data["changed"]}
    assert changes[("head.weight", "shape")] == ("(10, 8) float32", "(5, 8) float32")
    assert changes[("head.weight", "receives")] == ("<- classifier.weight lr=x10", "init zeros lr=x10")
    text = wmap(capsys, "diff", "port.wmap", "grown.wmap").out
    assert "targets only in grown.wmap (2):\n  + extra.weight, extra.bias  init zeros  x2" in text


def test_saved_plan_against_spec(capsys: Cap, in_cli_work: Path) -> None:
    wmap(capsys, "plan", "port.wmap", "-o", "port.plan.json")
    assert wmap(capsys, "diff", "port.plan.json", "explicit.wmap").code == 0
    write(in_cli_work / "changed.wmap", CHANGED)
    assert wmap(capsys, "diff", "port.plan.json", "changed.wmap").code == 2


def test_errors_on_either_side_exit_1_and_are_all_shown(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "diff", "broken.wmap", "missing.json")
    assert r.code == 1 and "error[WM103]" in r.err and "error[WM520]" in r.err
    j = wmap(capsys, "diff", "port.wmap", "broken.wmap", "--format", "json")
    assert j.code == 1 and json.loads(j.out)["ok"] is False
    assert wmap(capsys, "diff", "port.wmap").code == 64
