"""A plan's warnings reach every face (CLI apply, the report JSON, the Python ApplyReport, markdown),
and `ack CODE PATTERN` marks reviewed ones, so a clean apply means something.

The models are files: a square torch Linear declared as going to Keras (a template checkpoint with
Keras' (in, out) names), the same-shape trap WM310 exists to catch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import wmap
from tests.support.cli_fixtures import Cap
from tests.support.cli_fixtures import wmap as run

SPEC = '''wmap 1
source torch "src.safetensors"
target keras "tpl.safetensors"
fc.weight -> dense.kernel
fc.bias -> dense.bias
'''


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    save_file({"fc.weight": rng.standard_normal((4, 4), np.float32), "fc.bias": np.zeros(4, np.float32)},
              "src.safetensors")
    save_file({"dense.kernel": np.zeros((4, 4), np.float32), "dense.bias": np.zeros(4, np.float32)},
              "tpl.safetensors")
    return tmp_path


def test_a_plan_warning_is_printed_by_apply_and_kept_in_the_report(work: Path, capsys: Cap) -> None:
    (work / "s.wmap").write_text(SPEC)
    r = run(capsys, "apply", "s.wmap", "--out", "o.safetensors", "--report", "r.json")
    assert r.code == 0
    assert "s.wmap:4: warning[WM310]" in r.out and "hint: check the layout" in r.out
    report = json.loads((work / "r.json").read_text())
    assert [w["code"] for w in report["warnings"]] == ["WM310"]
    assert report["warnings"][0]["line"] == 4
    api = wmap.apply("s.wmap", out="o2.safetensors")
    assert [w.code for w in api.warnings] == ["WM310"]
    assert "WM310" in api.plan.render("markdown")


def test_a_saved_plan_keeps_its_warnings_when_applied(work: Path, capsys: Cap) -> None:
    (work / "s.wmap").write_text(SPEC)
    assert run(capsys, "plan", "s.wmap", "-o", "p.json").code == 0
    r = run(capsys, "apply", "p.json", "--source", "src.safetensors", "--target", "tpl.safetensors",
            "--out", "o.safetensors")
    assert r.code == 0 and "warning[WM310]" in r.out


def test_an_ack_marks_the_warning_reviewed_in_every_face(work: Path, capsys: Cap) -> None:
    (work / "s.wmap").write_text(SPEC + "ack WM310 dense.kernel\n")
    r = run(capsys, "apply", "s.wmap", "--out", "o.safetensors", "--report", "r.json")
    assert r.code == 0 and "warning[" not in r.out
    assert "1 warning(s) acknowledged in the spec" in r.out
    report = json.loads((work / "r.json").read_text())
    assert report["warnings"] == [] and [w["code"] for w in report["acknowledged"]] == ["WM310"]
    p = wmap.plan("s.wmap")
    assert p.warnings == () and [d.code for d in p.acknowledged] == ["WM310"]
    assert "acknowledged in the spec" in p.render() and "acknowledged in the spec" in p.render("markdown")
    assert run(capsys, "plan", "s.wmap", "--detailed-exitcode").code == 0


def test_an_ack_that_matches_no_warning_is_reported(work: Path) -> None:
    (work / "s.wmap").write_text(SPEC.replace("dense.kernel\n", "dense.kernel | transpose\n") +
                                 "ack WM310 dense.kernel\n")
    p = wmap.plan("s.wmap")
    assert [(d.code, d.line) for d in p.warnings] == [("WM212", 6)]
    (work / "s.wmap").write_text(SPEC + "ack WM310 other.kernel\n")  # the right code, another tensor
    assert [d.code for d in wmap.plan("s.wmap").warnings] == ["WM310", "WM212"]


def test_an_ack_of_an_error_code_is_refused(work: Path, capsys: Cap) -> None:
    (work / "s.wmap").write_text(SPEC + "ack WM301 dense.kernel\n")
    r = run(capsys, "check", "s.wmap")
    assert r.code == 1 and "error[WM140]" in r.err


def test_ack_round_trips_through_yaml_and_fmt() -> None:
    from wmap.lang.fmt import to_wmap, to_yaml
    spec = wmap.parse_spec(SPEC + "ack WM310 dense.kernel, head.*\nack WM311 qkv.*\n")
    y = to_yaml(spec)
    assert "ack:" in y
    back = wmap.parse_spec(y, syntax="yaml")
    assert back == spec and [(a.code, a.pattern) for a in back.ack] == [
        ("WM310", "dense.kernel"), ("WM310", "head.*"), ("WM311", "qkv.*")]
    assert wmap.parse_spec(to_wmap(back)) == spec
