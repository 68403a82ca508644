"""The folders of `wmap/` are layers, and a module imports only its own layer and those below.

Imports are read from the source (the AST), so the ones inside functions, which keep
frameworks lazy, count as much as those at the top: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from tests.support import paths

ROOT = paths.ROOT
PACKAGE = ROOT / "wmap"

# Bottom to top. Each entry is a layer: a folder of `wmap/`, or the faces (the package itself,
# its public API, the CLI with its commands and progress bar, and the demo), which may import
# anything and each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("formats",),
    ("transforms",),
    ("lang",),
    ("planning",),
    ("sinks",),
    ("run",),
    ("scaffold",),
    ("recipes",),
    ("", "api", "commands", "cli", "__main__", "demo", "examples"),
)
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """`wmap.lang.patterns` -> `lang`; `wmap` and `wmap.api` -> their own names (faces)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) for every `wmap...` import in the file, wherever it is written."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "wmap"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] != "wmap":
                continue
            if name == "wmap":  # `from wmap import x`: x may be a subpackage or a face's name
                found += [(node.lineno, f"wmap.{a.name}" if f"wmap.{a.name}".split(".")[1] in RANK else "wmap")
                          for a in node.names]
            else:
                found.append((node.lineno, name))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import in `package` (the `wmap/` folder) that goes up a layer."""
    out = []
    root = package.parent
    for path in sorted(package.rglob("*.py")):
        me = module_name(path, root)
        mine = layer_of(me)
        assert mine in RANK, f"{me} lives in `{mine}/`, which is no layer: add it to LAYERS"
        for line, target in imports(path, root):
            theirs = layer_of(target)
            assert theirs in RANK, f"{me}:{line} imports {target}, which is in no layer"
            if RANK[theirs] > RANK[mine]:
                out.append(f"{path.relative_to(root)}:{line}: {mine or 'wmap'} imports {target} "
                           f"({theirs or 'the faces'} is above {mine or 'the faces'})")
    return out


def test_every_module_imports_only_its_layer_and_those_below() -> None:
    found = violations()
    assert not found, "imports that go up a layer:\n" + "\n".join(found)


def test_the_reader_sees_lazy_imports_and_every_folder_is_a_layer(tmp_path: Path) -> None:
    """The check itself can fail: an import inside a function is found, relative imports resolve."""
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(RANK), f"folders that are no layer: {folders - set(RANK)}"
    # a copy of the package with one bad module, so the real tree (which other tests read) is never touched
    copy = tmp_path / "wmap"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.lalr", "*.json", "*.lark"))
    (copy / "core" / "_probe_for_layer_test.py").write_text(
        "def f():\n    from wmap.run.execute import apply_plan\n    from ..planning import plan\n")
    found = violations(copy)
    assert any("_probe_for_layer_test.py:2: core imports wmap.run.execute" in v for v in found)
    assert any("_probe_for_layer_test.py:3: core imports wmap.planning" in v for v in found)


@pytest.mark.parametrize("module", ["wmap.lang.patterns", "wmap.core.errors"])
def test_module_names_map_to_layers(module: str) -> None:
    assert layer_of(module) in RANK
