"""Packaging and the public surface: what a user installs and imports."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import paths

ROOT = paths.ROOT


def test_import_wmap_and_check_do_not_import_frameworks(tmp_path: Path) -> None:
    spec = tmp_path / "s.wmap"
    spec.write_text("wmap 1\nfc.weight -> head.kernel | linear_to_dense\n")
    code = (
        "import sys, wmap\n"
        "from wmap.cli import main\n"
        f"rc = main(['check', {str(spec)!r}])\n"
        "spec = wmap.load_spec(" + repr(str(spec)) + ")\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]\n"
        "print(rc, bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []"


def test_public_api_is_locked() -> None:
    import wmap
    assert sorted(wmap.__all__) == sorted([
        "ApplyReport", "Diagnostic", "Inventory", "Plan", "Span", "Spec", "TensorMeta", "WmapError",
        "__version__", "apply", "inventory_of", "load_plan", "load_spec", "parse_spec", "plan", "verify",
    ])
    for name in wmap.__all__:
        assert getattr(wmap, name) is not None
    assert callable(wmap.plan) and callable(wmap.verify) and callable(wmap.apply)


def test_packaged_grammar_and_schema_are_the_sources_of_truth() -> None:
    from importlib import resources
    grammar = (resources.files("wmap") / "grammar" / "wmap.lark").read_text()
    assert grammar == (ROOT / "grammar" / "wmap.lark").read_text()
    schema = json.loads((resources.files("wmap") / "schema" / "wmap.schema.json").read_text())
    assert schema == json.loads((ROOT / "specs" / "wmap.schema.json").read_text())


@pytest.mark.slow
def test_built_wheel_carries_grammar_and_schema(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {out.stderr[-300:]}")
    wheel = next(tmp_path.glob("wmap-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "wmap/grammar/wmap.lark" in names and "wmap/schema/wmap.schema.json" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_every_script_and_module_the_makefile_runs_exists() -> None:
    """`make bench`/`demo`/`fuzz` are run by hand, not by CI: a renamed file must fail here instead."""
    import importlib.util
    import re

    text = (ROOT / "Makefile").read_text()
    modules = re.findall(r"\$\(PY\) -m ([\w.]+)", text)
    scripts = re.findall(r"\$\(PY\) ([\w/]+\.py)", text)
    ours = [m for m in modules if m.split(".")[0] in ("wmap", "bench", "tests")]
    assert "bench.bench_torch" in ours and "wmap.demo" in ours and scripts
    for m in ours:
        assert importlib.util.find_spec(m) is not None, f"Makefile runs `-m {m}`, which does not exist"
    for s in scripts:
        assert (ROOT / s).is_file(), f"Makefile runs `{s}`, which does not exist"
