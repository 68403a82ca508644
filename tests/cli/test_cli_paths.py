"""Path arguments that are not plain files: a FIFO or a device named as a spec, a saved plan or a
config is refused with its WM code before anything is read or written. Each runs as its own
process with a timeout, because the failure being guarded against is a read that never returns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import paths

SPEC = "wmap 1\na.weight -> a.weight\n"


def _wmap(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(paths.ROOT)}
    return subprocess.run([sys.executable, "-m", "wmap", *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo.wmap")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "port.wmap").write_text(SPEC)
    (tmp_path / "plan.json").write_text("{}")
    import numpy as np
    from safetensors.numpy import save_file
    for name in ("a", "b"):
        save_file({"a.weight": np.zeros((2, 2), np.float32)}, str(tmp_path / f"{name}.safetensors"))
    return tmp_path


@pytest.mark.parametrize(("argv", "code"), [
    (["check", "fifo.wmap"], "WM115"),
    (["check", "/dev/zero"], "WM115"),
    (["fmt", "fifo.wmap"], "WM115"),
    (["apply", "fifo.json", "--source", "a.safetensors", "--out", "b.safetensors"], "WM520"),
    (["diff", "fifo.json", "plan.json"], "WM520"),
    (["plan", "port.wmap", "--source", "a.safetensors", "--target", "b.safetensors", "--config", "fifo.json"],
     "WM515"),
], ids=["check", "check-device", "fmt", "apply-plan", "diff", "config"])
def test_a_fifo_or_device_is_refused_not_read(work: Path, argv: list[str], code: str) -> None:
    before = sorted(os.listdir(work))
    got = _wmap(*argv, cwd=work)
    assert got.returncode == 1, got.stderr
    assert f"error[{code}]" in got.stderr and "not a regular file" in got.stderr
    assert "Traceback" not in got.stderr
    assert sorted(os.listdir(work)) == before  # no output, no temporary


@pytest.mark.parametrize(("argv", "flags"), [
    (["apply", "port.wmap", "--source", "a.safetensors", "--out", "b2.safetensors", "--report", "b2.safetensors"],
     ("--report", "--out")),
    (["apply", "port.wmap", "--source", "a.safetensors", "--out", "b2.safetensors", "--report", "a.safetensors"],
     ("--report", "--source")),
    (["apply", "port.wmap", "--source", "a.safetensors", "--out", "b2.safetensors", "--report", "link.json"],
     ("--report", "--source")),
    (["apply", "port.wmap", "--source", "a.safetensors", "--out", "port.wmap"], ("--out", "SPEC")),
    (["plan", "port.wmap", "--source", "a.safetensors", "--target", "b.safetensors", "-o", "port.wmap"],
     ("-o", "SPEC")),
    (["plan", "port.wmap", "--source", "a.safetensors", "--target", "b.safetensors", "-o", "./b.safetensors"],
     ("-o", "--target")),
    (["invert", "port.wmap", "-o", "port.wmap"], ("-o", "SPEC")),
    (["init", "--source", "a.safetensors", "--target", "b.safetensors", "-o", "a.safetensors", "--force"],
     ("-o", "--source")),
], ids=["report=out", "report=source", "report=symlink-to-source", "out=spec", "plan-o=spec", "plan-o=target",
        "invert-o=spec", "init-o=source"])
def test_an_output_that_is_an_input_is_refused_before_anything_runs(
        work: Path, argv: list[str], flags: tuple[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from wmap.cli import main
    (work / "link.json").symlink_to(work / "a.safetensors")
    monkeypatch.chdir(work)
    before = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file() and not p.name.startswith("fifo")}
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error[WM521]" in err and f"{flags[0]} `" in err and f"is the same file as {flags[1]} `" in err, err
    after = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file() and not p.name.startswith("fifo")}
    assert after == before


def test_ctrl_c_after_the_output_is_in_place_says_so(work: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt while the report's checksums are computed (the output already replaced) must not
    claim that nothing was written: it says the output is complete and the report is not."""
    from wmap.cli import main
    from wmap.run.execute import ApplyReport

    def interrupted(self: ApplyReport) -> dict[str, str]:
        raise KeyboardInterrupt
    monkeypatch.setattr(ApplyReport, "checksums", interrupted)
    monkeypatch.chdir(work)
    code = main(["apply", "port.wmap", "--source", "a.safetensors", "--target", "b.safetensors",
                 "--out", "c.safetensors", "--report", "r.json"])
    err = capsys.readouterr().err
    assert code == 130
    assert "nothing was written" not in err and "`c.safetensors` was written in full; the report was not" in err
    assert (work / "c.safetensors").is_file() and not (work / "r.json").exists()
