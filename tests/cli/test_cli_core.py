"""`wmap check | plan | apply | verify | fmt` through the real entry point: output, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli_fixtures import Cap, golden, wmap, write

pytestmark = pytest.mark.torch
COMMANDS = ("check", "plan", "apply", "verify", "fmt", "inspect", "diff", "explain", "init", "completion")


# -- check ---------------------------------------------------------------------------------------


def test_check_ok(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "check", "port.wmap", "explicit.wmap")
    assert (r.code, r.out, r.err) == (0, "ok: 2 spec(s) checked\n", "")


def test_check_reports_every_error_with_codes(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "check", "broken.wmap")
    assert r.code == 1 and r.out == ""
    golden("check_broken.txt", r.err)


def test_check_json(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "check", "broken.wmap", "--format", "json")
    data = json.loads(r.out)
    assert r.code == 1 and data["ok"] is False
    assert [d["code"] for d in data["diagnostics"]] == ["WM105", "WM103", "WM113"]
    assert data["diagnostics"][1]["hint"] == "did you mean `transpose`?"
    ok = wmap(capsys, "check", "port.wmap", "--format", "json")
    assert ok.code == 0 and json.loads(ok.out) == {"ok": True, "diagnostics": []}


def test_check_full_plans_against_the_spec_endpoints(capsys: Cap, in_cli_work: Path) -> None:
    assert wmap(capsys, "check", "--full", "port.wmap").code == 0
    r = wmap(capsys, "check", "--full", "port.wmap", "--target", "tests.support.cli_fixtures:grown_cnn")
    assert r.code == 1 and "error[WM301]" in r.err and "error[WM401]" in r.err


def test_check_missing_file(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "check", "nope.wmap")
    assert r.code == 1 and "error[WM115]: spec file `nope.wmap` does not exist" in r.err


@pytest.mark.parametrize("argv", [[], ["check"], ["nosuch"], ["plan", "x.wmap", "--format", "xml"],
                                  ["fmt", "--check", "--write", "x.wmap"], ["completion", "tcsh"]])
def test_usage_errors_exit_64(capsys: Cap, argv: list[str]) -> None:
    r = wmap(capsys, *argv)
    assert r.code == 64 and "usage: wmap" in r.err and "wmap: error:" in r.err


def test_help_and_version_exit_0(capsys: Cap) -> None:
    assert wmap(capsys, "--version").out.startswith("wmap ")
    r = wmap(capsys, "--help")
    assert r.code == 0
    for cmd in COMMANDS:
        assert cmd in r.out


# -- plan ----------------------------------------------------------------------------------------


def test_plan_text(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "plan", "port.wmap")
    assert r.code == 0 and r.err == ""
    golden("plan_port.txt", r.out)


def test_plan_markdown(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "plan", "port.wmap", "--format", "markdown")
    assert r.code == 0
    golden("plan_port.md", r.out)


def test_plan_json_and_save(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "plan", "port.wmap", "--format", "json", "-o", "port.plan.json")
    data = json.loads(r.out)
    assert r.code == 0 and data["format_version"] == 2
    assert data["summary"]["targets"] == 27 and data["summary"]["frozen"] == 2
    assert json.loads((in_cli_work / "port.plan.json").read_text()) == data


def test_plan_detailed_exitcode(capsys: Cap, in_cli_work: Path) -> None:
    assert wmap(capsys, "plan", "port.wmap", "--detailed-exitcode").code == 0
    r = wmap(capsys, "plan", "loose.wmap", "--detailed-exitcode")
    assert r.code == 2 and "warning[WM402]" in r.out and "warning[WM401]" in r.out
    assert wmap(capsys, "plan", "loose.wmap").code == 0


def test_plan_errors_exit_1(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "plan", "port.wmap", "--source", "wrapped.safetensors")
    assert r.code == 1 and "WM201" in r.err and "module." in r.err
    j = wmap(capsys, "plan", "port.wmap", "--source", "wrapped.safetensors", "--format", "json")
    assert j.code == 1 and json.loads(j.out)["ok"] is False


# -- apply and verify ----------------------------------------------------------------------------


def test_apply_then_verify(capsys: Cap, in_cli_work: Path) -> None:
    from safetensors.numpy import load_file

    r = wmap(capsys, "apply", "port.wmap", "--out", "out.safetensors", "--report", "report.json")
    assert r.code == 0
    golden("apply_port.txt", r.out)
    out, src = load_file("out.safetensors"), load_file("cnn.safetensors")
    np.testing.assert_array_equal(out["stage.2.norm.running_var"], src["blocks.2.1.running_var"])
    np.testing.assert_array_equal(out["head.weight"], src["classifier.weight"])
    report = json.loads((in_cli_work / "report.json").read_text())
    assert all(e["checksum"] for e in report["landed"]) and len(report["landed"]) == 27

    v = wmap(capsys, "verify", "port.wmap", "--against", "out.safetensors")
    assert v.code == 0
    golden("verify_port.txt", v.out)
    vj = wmap(capsys, "verify", "port.wmap", "--against", "out.safetensors", "--format", "json")
    assert vj.code == 0 and json.loads(vj.out)["ok"] is True


def test_verify_catches_a_different_file(capsys: Cap, in_cli_work: Path) -> None:
    from safetensors.numpy import load_file, save_file

    wmap(capsys, "apply", "port.wmap", "--out", "good.safetensors")
    tensors = load_file("good.safetensors")
    tensors["head.bias"] = tensors["head.bias"] + 1
    save_file(tensors, "bad.safetensors")
    r = wmap(capsys, "verify", "port.wmap", "--against", "bad.safetensors", "--format", "json")
    data = json.loads(r.out)
    assert r.code == 1 and data["ok"] is False and [m["target"] for m in data["mismatches"]] == ["head.bias"]


def test_apply_saved_plan(capsys: Cap, in_cli_work: Path) -> None:
    wmap(capsys, "plan", "port.wmap", "-o", "saved.json")
    r = wmap(capsys, "apply", "saved.json", "--source", "cnn.safetensors", "--target",
             "tests.support.cli_fixtures:renamed_cnn", "--out", "from_plan.safetensors", "--format", "json")
    assert r.code == 0 and json.loads(r.out)["format_version"] == 1


def test_apply_needs_out(capsys: Cap, in_cli_work: Path) -> None:
    r = wmap(capsys, "apply", "port.wmap")
    assert r.code == 1 and "error[WM521]" in r.err and "--out" in r.err
    j = wmap(capsys, "apply", "port.wmap", "--format", "json")
    assert j.code == 1 and json.loads(j.out)["diagnostics"][0]["code"] == "WM521"


# -- fmt -----------------------------------------------------------------------------------------


def test_fmt_check_write_and_convert(capsys: Cap, in_cli_work: Path) -> None:
    assert wmap(capsys, "fmt", "--check", "port.wmap").code == 0
    messy = write(in_cli_work / "messy.wmap",
                  "wmap 1\nsource torch \"cnn.safetensors\"\n  a.{p}->b.{p}|transpose\n")
    r = wmap(capsys, "fmt", "--check", messy.name)
    assert r.code == 1 and r.err == "would reformat messy.wmap\n"
    assert wmap(capsys, "fmt", "--write", "messy.wmap").code == 0
    assert wmap(capsys, "fmt", "--check", "messy.wmap").code == 0
    y = wmap(capsys, "fmt", "--to", "yaml", "port.wmap")
    assert y.code == 0
    golden("fmt_port.yaml", y.out)


def test_apply_from_a_factory_source_is_an_error_not_a_crash(capsys: Cap, in_cli_work: Path) -> None:
    """A `module:callable` source is built on the meta device: shapes for planning, no values to copy."""
    r = wmap(capsys, "apply", "port.wmap", "--source", "tests.support.cli_fixtures:cnn", "--out", "meta.safetensors")
    assert r.code == 1 and "error[WM503]" in r.err and "meta device" in r.err
    assert not (in_cli_work / "meta.safetensors").exists()


def test_report_checksums_are_of_what_landed_not_the_template(capsys: Cap, in_cli_work: Path) -> None:
    from safetensors.numpy import load_file

    from tests.support.cli_fixtures import renamed_cnn, save
    from wmap.core.checksum import checksum

    save(renamed_cnn(), in_cli_work / "template.safetensors")  # a template target with other values
    r = wmap(capsys, "apply", "port.wmap", "--target", "template.safetensors", "--out", "landed.safetensors",
             "--report", "landed.json")
    assert r.code == 0
    landed = load_file("landed.safetensors")
    report = json.loads((in_cli_work / "landed.json").read_text())
    sums = {e["target"]: e["checksum"] for e in report["landed"]}
    assert sums == {k: checksum(v) for k, v in landed.items()}
