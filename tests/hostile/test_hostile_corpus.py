"""Every hostile case ends in its stable WM code, with no traceback and nothing changed.

For each case in `cases.py`: run it (through `wmap.cli.main`, or the API for an in-memory
target) and require exit code 1, `error[WMxxx]` with the expected message fragment, no
"Traceback" anywhere, no output file (or the old one byte-identical), no temporary files
left in the output folder, an in-memory target's checksums unchanged, and the case's own
post-condition (e.g. a pickle payload's marker file does not exist).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.cases import CASES, CATEGORIES, Case, Payload, Setup, Work
from wmap.cli import main
from wmap.core.errors import WmapError

ROOT = Path(__file__).resolve().parents[2]


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _checksums(model: Any) -> dict[str, str]:
    from wmap.core.checksum import checksum
    return {k: checksum(v) for k, v in model.state_dict().items()}


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def _state(path: Path | None) -> object:
    """What is at a path: nothing, a file's bytes, or a directory's files and their bytes."""
    if path is None or not path.exists():
        return None
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return path.read_bytes()


def _prepare(c: Case, tmp_path: Path) -> Setup:
    for module in c.needs:
        if not _available(module):
            pytest.skip(f"needs {module}")
    return c.build(Work(tmp_path, c.id))


def _run(setup: Setup, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    if setup.argv is not None:
        code = main(setup.argv)
        got = capsys.readouterr()
        return code, got.out, got.err
    assert setup.call is not None
    try:
        setup.call()
    except WmapError as e:  # the API's boundary: render as the CLI would
        got = capsys.readouterr()
        return 1, got.out, got.err + e.render() + "\n"
    got = capsys.readouterr()
    return 0, got.out, got.err


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile_case(c: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    setup = _prepare(c, tmp_path)
    before_out = _state(setup.out)
    listings = {f: _listing(f) for f in setup.watch}
    sums = _checksums(setup.model) if setup.model is not None else None
    modules = set(sys.modules)
    if setup.cwd is not None:
        monkeypatch.chdir(setup.cwd)
    if setup.patch is not None:
        setup.patch(monkeypatch)
    try:
        code, out, err = _run(setup, capsys)
    finally:
        monkeypatch.undo()
        for name in set(sys.modules) - modules:  # factories written by the cases
            if name.startswith("hostile_"):
                del sys.modules[name]

    text = out + err
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    assert code == 1, f"exit code {code}\n{text}"
    assert f"error[{c.code}]" in text, f"expected error[{c.code}], got:\n{text}"
    assert c.text in text, f"expected {c.text!r} in the message:\n{text}"
    if setup.out is not None:
        if before_out is None:
            assert not setup.out.exists(), f"{setup.out} was created"
        else:
            assert _state(setup.out) == before_out, f"{setup.out} was changed"
    for folder, names in listings.items():
        assert _listing(folder) == names, f"files left in {folder}: {sorted(set(_listing(folder)) ^ set(names))}"
    if sums is not None:
        assert _checksums(setup.model) == sums, "the in-memory target changed"
    if setup.check is not None:
        setup.check()


def test_the_corpus_is_large_and_codes_are_known() -> None:
    from wmap.core.codes import CODES
    assert len(CASES) >= 60, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(c.code in CODES for c in CASES), [c.code for c in CASES if c.code not in CODES]
    assert len(CATEGORIES) >= 10, CATEGORIES


# -- the pickle payload, proven live -----------------------------------------------------------------


@pytest.mark.skipif(not _available("torch"), reason="needs torch")
def test_pickled_code_is_refused_and_never_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A `.pt` whose unpickling creates a marker file: wmap refuses it (WM508) and the marker never
    appears. Then a plain `torch.load(weights_only=False)` does create it: the payload was live."""
    import numpy as np
    import torch

    w = Work(tmp_path, "pickle")
    marker = w.marker
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "evil": Payload(marker)}, path)
    tgt = w.target({"b.bias": np.zeros(2, np.float32)})
    spec = w.spec("wmap 1\nw -> b.bias\n")
    for argv in (["plan", str(spec), "-s", str(path), "-t", str(tgt)],
                 ["apply", str(spec), "-s", str(path), "-t", str(tgt), "-o", str(tmp_path / "o.safetensors")]):
        capsys.readouterr()
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "error[WM508]" in err and "exec" in err, err
        assert not marker.exists()
    with pytest.raises(WmapError) as e:
        import wmap
        wmap.inventory_of(str(path))
    assert e.value.diagnostics[0].code == "WM508"
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the unsafe load this guards against
    assert marker.exists(), "control: the payload should run under an unsafe load"


# -- no traceback reaches a real terminal ------------------------------------------------------------


SUBPROCESS_CASES = ["st_huge_declared_header", "spec_not_utf8", "plan_json_garbage"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_python_m_wmap_prints_no_traceback(case_id: str, tmp_path: Path) -> None:
    c = next(c for c in CASES if c.id == case_id)
    setup = c.build(Work(tmp_path, c.id))
    assert setup.argv is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("WMAP_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "wmap", *setup.argv], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"error[{c.code}]" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert setup.out is None or not setup.out.exists()


# -- the nonfinite policy (the passing side of WM603) ------------------------------------------------


@pytest.mark.parametrize("policy", ["warn", "allow"])
def test_nonfinite_policy_lets_values_through(policy: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from tests.hostile.cases import SRC
    from wmap.formats.safetensors_file import SafetensorsFile

    w = Work(tmp_path, "nonfinite")
    weight = SRC["a.weight"].copy()
    weight[0, 1] = np.nan
    weight[1, 1] = np.inf
    src = w.source({"a.weight": weight, "a.bias": SRC["a.bias"]})
    spec = w.spec(f'wmap 1\noption nonfinite = "{policy}"\na.{{x}} -> b.{{x}}\n')
    capsys.readouterr()
    assert main(["apply", str(spec), "-s", str(src), "-t", str(w.target()), "-o", str(w.out)]) == 0
    text = "".join(capsys.readouterr())
    assert ("warning[WM603]" in text) == (policy == "warn"), text
    with SafetensorsFile(w.out) as f:
        got = np.array(f.read("b.weight"))
    np.testing.assert_array_equal(got, weight)  # NaN and Inf land exactly where they were


# -- a spec is read as data until it is planned ------------------------------------------------------


def test_check_never_imports_factories(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`wmap check SPEC` reads syntax, schema and names only: the `module:callable` endpoints a spec
    names are imported (project code runs) only when planning against them (`--full`, plan, apply)."""
    w = Work(tmp_path, "check_imports")
    ref = w.factory(f"open({str(w.marker)!r}, 'w').close()\n\ndef build():\n    raise RuntimeError('built')\n")
    spec = w.spec(f'wmap 1\nsource "src.safetensors"\ntarget torch "{ref}"\na.{{x}} -> b.{{x}}\n')
    w.source()
    monkeypatch.chdir(tmp_path)
    try:
        capsys.readouterr()
        assert main(["check", str(spec)]) == 0, capsys.readouterr().err
        assert not w.marker.exists(), "`wmap check` imported the factory module"
        assert main(["check", "--full", str(spec)]) == 1
        assert "error[WM511]" in capsys.readouterr().err and w.marker.exists()  # control: --full does import it
    finally:
        sys.modules.pop(ref.partition(":")[0], None)


def test_every_fuzz_finding_stays_fixed() -> None:
    """Each input the parser fuzzer saved parses to a Spec or a WmapError (never another exception),
    and a Spec prints back to text that parses to the same Spec."""
    from wmap.lang import format_spec, parse_spec

    findings = sorted((ROOT / "tests" / "fuzz" / "findings").glob("found-*"))
    assert findings, "the fuzz findings are kept as regression inputs"
    for path in findings:
        syntax = "yaml" if path.suffix == ".yaml" else "wmap"
        text = path.read_text(encoding="utf-8")
        try:
            spec = parse_spec(text, syntax)  # type: ignore[arg-type]
        except WmapError as e:
            assert e.diagnostics, path.name
            continue
        assert parse_spec(format_spec(spec, syntax), syntax) == spec, path.name  # type: ignore[arg-type]
