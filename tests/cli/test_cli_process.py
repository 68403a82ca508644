"""The `wmap` process: `python -m wmap`, plain output when piped or NO_COLOR, colour on a terminal,
exit codes for internal errors and interrupts, no framework import for `check`, and the pre-commit hooks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import paths
from tests.support.cli_fixtures import ANSI, Cap, wmap
from wmap import cli

ROOT = paths.ROOT


def _run(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    full.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=cwd, env=full,
                          timeout=120)


def test_python_dash_m_wmap(cli_work: Path) -> None:
    v = _run("-m", "wmap", "--version", cwd=cli_work)
    assert v.returncode == 0 and v.stdout.startswith("wmap ")
    u = _run("-m", "wmap", "frobnicate", cwd=cli_work)
    assert u.returncode == 64 and "invalid choice" in u.stderr


@pytest.mark.parametrize("env", [{}, {"NO_COLOR": "1"}])
def test_piped_output_has_no_ansi(cli_work: Path, env: dict[str, str]) -> None:
    ok = _run("-m", "wmap", "check", "port.wmap", cwd=cli_work, env=env)
    bad = _run("-m", "wmap", "check", "broken.wmap", cwd=cli_work, env=env)
    assert ok.returncode == 0 and ok.stdout == "ok: 1 spec(s) checked\n"
    assert bad.returncode == 1 and "error[WM103]" in bad.stderr
    for text in (ok.stdout, ok.stderr, bad.stdout, bad.stderr):
        assert not ANSI.search(text)


def test_check_imports_no_framework(cli_work: Path) -> None:
    prog = ("import sys; from wmap.cli import main; rc = main(['check', 'port.wmap', 'broken.wmap']); "
            "print(rc, sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    out = _run("-c", prog, cwd=cli_work)
    assert out.stdout.strip().splitlines()[-1] == "1 []", out.stderr


def test_colour_on_a_terminal_only(capsys: Cap, in_cli_work: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    r = wmap(capsys, "check", "broken.wmap")
    assert r.code == 1 and ANSI.search(r.err) and "WM103" in ANSI.sub("", r.err)
    monkeypatch.setenv("NO_COLOR", "1")
    r = wmap(capsys, "check", "broken.wmap")
    assert not ANSI.search(r.err)


def test_internal_error_exits_3_without_traceback(capsys: Cap,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from wmap.commands import explain

    def boom(*_: object) -> list[object]:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(explain, "all_entries", boom)
    monkeypatch.delenv("WMAP_DEBUG", raising=False)
    r = wmap(capsys, "explain")
    assert r.code == 3 and "internal error: RuntimeError: kaboom" in r.err and "Traceback" not in r.err
    monkeypatch.setenv("WMAP_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["explain"])


@pytest.mark.parametrize(("exc", "code"), [(KeyboardInterrupt, 130), (BrokenPipeError, 0)])
def test_interrupt_and_broken_pipe(capsys: Cap, monkeypatch: pytest.MonkeyPatch,
                                   exc: type[BaseException], code: int) -> None:
    from wmap.commands import explain

    def stop(*_: object) -> list[object]:
        raise exc()

    monkeypatch.setattr(explain, "all_entries", stop)
    r = wmap(capsys, "explain")
    assert r.code == code
    if code == 130:
        assert "interrupted" in r.err


def test_pre_commit_hooks() -> None:
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["wmap-fmt"]["entry"] == "wmap fmt --check" and hooks["wmap-check"]["entry"] == "wmap check"
    for h in hooks.values():
        files = re.compile(h["files"])
        assert h["language"] == "python"
        for path in ("port.wmap", "specs/port.yaml", "a/specs/b.yml", "port.wmap.yaml"):
            assert files.search(path), path
        for path in (".github/workflows/ci.yml", "docker-compose.yaml", "notes.wmap.txt", "mkdocs.yml"):
            assert not files.search(path), path
