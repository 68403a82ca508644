"""Packaging and the public surface: what a user installs and imports."""

from __future__ import annotations

import json
import shutil
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
    import inspect

    import wmap
    assert sorted(wmap.__all__) == sorted([
        "ApplyReport", "Diagnostic", "Inventory", "Plan", "Span", "Spec", "TensorMeta", "WmapError",
        "__version__", "apply", "inventory_of", "invert", "load_plan", "load_spec", "parse_spec", "plan", "verify",
    ])
    kinds = {name: "class" if inspect.isclass(getattr(wmap, name)) else
             "function" if inspect.isfunction(getattr(wmap, name)) else type(getattr(wmap, name)).__name__
             for name in wmap.__all__}
    assert kinds == {**{n: "class" for n in ("ApplyReport", "Diagnostic", "Inventory", "Plan", "Span", "Spec",
                                             "TensorMeta", "WmapError")},
                     **{n: "function" for n in ("apply", "inventory_of", "invert", "load_plan", "load_spec", "parse_spec",
                                                "plan", "verify")}, "__version__": "str"}
    from wmap.core.version import VERSION
    assert wmap.__version__ == VERSION
    assert {"apply", "param_groups", "render", "dumps"} <= set(dir(wmap.Plan))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel `pip` builds from this checkout: what a user installs."""
    out_dir = tmp_path_factory.mktemp("wheel")
    # built from a copy of what the wheel is made of: setuptools builds in the tree's own `build/`, and two
    # test workers building one checkout at once trip over each other there
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("wmap", "grammar", "specs"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(out_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return zipfile.ZipFile(next(out_dir.glob("wmap-*.whl")))


def test_the_wheel_carries_the_grammar_and_the_schema_of_this_checkout(wheel: zipfile.ZipFile) -> None:
    """Read from the built wheel, not through the source tree's `wmap/grammar -> ../grammar` symlink
    (comparing the symlinked file with itself could not fail)."""
    assert wheel.read("wmap/grammar/wmap.lark").decode() == (ROOT / "grammar" / "wmap.lark").read_text()
    assert json.loads(wheel.read("wmap/schema/wmap.schema.json")) == json.loads(
        (ROOT / "specs" / "wmap.schema.json").read_text())
    # the parser generated from that grammar (tests/lang/test_grammar_shipped.py checks it is current)
    assert wheel.read("wmap/lang/_parser.py") == (ROOT / "wmap" / "lang" / "_parser.py").read_bytes()


def test_the_wheel_holds_every_module_its_version_and_the_cli(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "wmap").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    from wmap.core.version import VERSION
    assert f"\nVersion: {VERSION}\n" in wheel.read(meta).decode()
    entry = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "wmap = wmap.cli:main" in entry


def test_an_installed_wheel_parses_a_spec_with_its_own_grammar(wheel: zipfile.ZipFile, tmp_path: Path) -> None:
    """Unpacked somewhere else and imported from there: the grammar and schema resources resolve
    inside the installed package, so a spec parses in both syntaxes."""
    site = tmp_path / "site"
    wheel.extractall(site)
    code = ("import wmap, sys; assert wmap.__file__.startswith(sys.argv[1]), wmap.__file__; "
            "wmap.parse_spec('wmap 1\\na -> b | transpose\\n'); "
            "wmap.parse_spec('wmap: 1\\nrules: [{from: a, to: b}]\\n', 'yaml'); print('ok')")
    out = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


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
