"""Malformed specs through the real CLI: every diagnostic exactly as a user reads it.

Each case in `tests/spec_corpus/` is a spec (`NN_name.wmap`, `.yaml` or `.yml`) with a golden
file `NN_name.expected`: what `wmap check NN_name.EXT` prints on stderr, run from the corpus
folder. Inputs too big or too odd to commit (a 5 MB spec, deep nesting, a directory) are built
by `GENERATED` into a temporary folder under the same name; their golden files are committed.

Rerun with `UPDATE_GOLDEN=1` to rewrite the golden files after an intended change, then read
the diff: every message, hint and caret column in there is something a user will see.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import paths
from wmap.cli import main

CORPUS = paths.TESTS / "spec_corpus"
INPUT_SUFFIXES = (".wmap", ".yaml", ".yml")


def _five_megabytes(p: Path) -> None:
    p.write_text("wmap 1\n" + "encoder.layers.0.attn.weight -> blocks.0.attn.weight\n" * 100_000)


def _deep_yaml(p: Path) -> None:
    p.write_text("wmap: 1\nsource: a.safetensors\noptions:\n  strip_prefix: " + "[" * 100 + "]" * 100 + "\n")


def _very_deep_yaml(p: Path) -> None:
    # deeper than the YAML library's own recursion allows: must still end in a diagnostic
    p.write_text("wmap: 1\nrules: " + "[" * 20_000 + "]" * 20_000 + "\n")


def _deep_wmap_list(p: Path) -> None:
    p.write_text("wmap 1\nsource \"a.safetensors\"\nw -> w | reshape(" + "[" * 2_000 + "]" * 2_000 + ")\n")


def _yaml_alias_bomb(p: Path) -> None:
    lines = ["wmap: 1", "source: a.safetensors", "x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 9)]
    p.write_text("\n".join(lines) + "\n")


GENERATED: dict[str, Callable[[Path], None]] = {
    "90_five_megabytes.wmap": _five_megabytes,
    "91_yaml_deep_nesting.yaml": _deep_yaml,
    "92_directory.wmap": lambda p: p.mkdir(),
    "93_missing_file.wmap": lambda p: None,
    "94_yaml_very_deep_nesting.yaml": _very_deep_yaml,
    "95_deep_list_in_call.wmap": _deep_wmap_list,
    "96_yaml_alias_bomb.yaml": _yaml_alias_bomb,
}


def _inputs() -> dict[str, str]:
    """stem -> input file name, committed or generated."""
    found = {p.stem: p.name for p in CORPUS.iterdir() if p.suffix in INPUT_SUFFIXES}
    for name in GENERATED:
        assert Path(name).stem not in found, f"{name} is both committed and generated"
        found[Path(name).stem] = name
    return dict(sorted(found.items()))


CASES = _inputs()


def _run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         *extra: str) -> tuple[int, str, str]:
    if name in GENERATED:
        GENERATED[name](tmp_path / name)
        monkeypatch.chdir(tmp_path)
    else:
        monkeypatch.chdir(CORPUS)
    monkeypatch.delenv("WMAP_DEBUG", raising=False)
    capsys.readouterr()
    code = main(["check", name, *extra])
    got = capsys.readouterr()
    return code, got.out, got.err


def _golden(stem: str, text: str) -> None:
    path = CORPUS / f"{stem}.expected"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no golden file {path.name}: run with UPDATE_GOLDEN=1 to create it"
    want = path.read_text(encoding="utf-8")
    assert text == want, f"`wmap check` output differs from {path.name} (UPDATE_GOLDEN=1 rewrites it):\n{text}"


@pytest.mark.parametrize("stem", list(CASES))
def test_corpus_case(stem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(CASES[stem], tmp_path, monkeypatch, capsys)
    assert code == 1, f"exit code {code}, stderr:\n{err}"
    assert out == ""
    assert "Traceback" not in err and "internal error" not in err
    assert re.search(r"error\[WM1\d\d\]", err), err
    assert re.search(r"^\d+ error\(s\), 0 warning\(s\)$", err.splitlines()[-1])
    _golden(stem, err)


@pytest.mark.parametrize("stem", list(CASES))
def test_corpus_case_as_json(stem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """`--format json` reports the same diagnostics as the text form, machine-readably."""
    code, out, err = _run(CASES[stem], tmp_path, monkeypatch, capsys, "--format", "json")
    assert code == 1 and err == ""
    data = json.loads(out)
    assert data["ok"] is False
    golden = (CORPUS / f"{stem}.expected").read_text(encoding="utf-8")
    heads = re.findall(r"^(?:(\S+):(\d+):(\d+): )?error\[(WM\d+)\]: (.*)$", golden, re.M)
    assert [(d["code"], d["message"]) for d in data["diagnostics"]] == [(h[3], h[4]) for h in heads]
    for d, h in zip(data["diagnostics"], heads, strict=True):
        assert d["severity"] == "error"
        if h[0]:
            assert (d["path"], d["line"], d["column"]) == (h[0], int(h[1]), int(h[2]))


def test_every_golden_file_has_a_case() -> None:
    stems = {p.stem for p in CORPUS.glob("*.expected")}
    assert stems == set(CASES), f"golden files without input: {sorted(stems - set(CASES))}; " \
                                f"inputs without golden file: {sorted(set(CASES) - stems)}"


def test_the_corpus_covers_both_syntaxes_broadly() -> None:
    wmap_cases = [n for n in CASES.values() if n.endswith(".wmap")]
    yaml_cases = [n for n in CASES.values() if n.endswith((".yaml", ".yml"))]
    assert len(CASES) >= 45 and len(wmap_cases) >= 25 and len(yaml_cases) >= 20
    codes = set()
    for p in CORPUS.glob("*.expected"):
        codes.update(re.findall(r"error\[(WM1\d\d)\]", p.read_text(encoding="utf-8")))
    # every spec-stage code the parser and validator emit
    assert {f"WM1{n:02d}" for n in range(0, 17)} <= codes, sorted(codes)


def test_every_located_diagnostic_shows_its_line_and_a_hint() -> None:
    """A diagnostic with a place in the file shows that line with a caret, and says what to do."""
    for p in sorted(CORPUS.glob("*.expected")):
        blocks = re.split(r"\n(?=\S)", p.read_text(encoding="utf-8").rstrip("\n"))
        assert len(blocks) >= 2
        for block in blocks[:-1]:  # the last one is the summary line
            where = re.match(r"^(\S+):(\d+):\d+: ", block)
            if where and where.group(1) not in GENERATED:
                lines = (CORPUS / where.group(1)).read_bytes().decode("utf-8").split("\n")
                if lines[int(where.group(2)) - 1].strip():
                    assert re.search(r"^\s+\d+ \| ", block, re.M), f"{p.name}: no source line in\n{block}"
                    assert re.search(r"^\s+\| *\^+$", block, re.M), f"{p.name}: no caret in\n{block}"
            assert "\n  hint: " in block, f"{p.name}: no hint in\n{block}"


@pytest.mark.parametrize("stem", ["42_several_errors", "47_binary", "79_yaml_several_errors"])
def test_corpus_case_in_a_subprocess(stem: str) -> None:
    """The installed entry point (`python -m wmap`) prints the same thing, with exit code 1."""
    name = CASES[stem]
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("WMAP_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "wmap", "check", name], cwd=CORPUS, capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr == (CORPUS / f"{stem}.expected").read_text(encoding="utf-8")
