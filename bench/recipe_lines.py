"""How much smaller the recipes are than the converters they replace.

    python -m bench.recipe_lines

The converters are the keras-hub modules the recipes' headers name: `# proven: keras-hub convert_gpt2
...` (keras_hub/src/utils/transformers/convert_gpt2.py) and, where a recipe was also proven against
keras-hub's exporter (`# proven: keras-hub's Gemma exporter ...`), that exporter's module
(keras_hub/src/utils/transformers/export/gemma.py): the recipe runs backwards too, so it replaces
that code as well. Each module is counted once, however many recipes name it (gemma and gemma2 share
convert_gemma.py). The recipes are every `.wmap` file under wmap/recipes/, the shared parts that
recipes `use` included, each counted once.

Two figures:
- whole modules (the issue's basis): every line of each module;
- weights only: each module without its top-level functions whose names contain `config` or
  `tokenizer`, since the recipes use keras-hub's `convert_backbone_config` (wmap/recipes/keras_hub.py)
  and do not replace `convert_tokenizer`: what is left is the code that moves weights.

Both sides are counted the same way: lines that are neither blank nor only a comment, with a Python
module's docstrings counted as code (they are part of what a reviewer reads). Needs keras-hub installed.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from collections.abc import Iterable

from wmap.recipes import Recipe, catalog

_CONVERTER = re.compile(r"keras-hub (convert_\w+)")
_EXPORTER = re.compile(r"keras-hub's (\S+) exporter")
_NOT_WEIGHTS = ("config", "tokenizer")


def code_lines(path: str, comment: str, skip: Iterable[int] = ()) -> int:
    """Lines that are neither blank nor only a comment; `skip`: line numbers (1-based) left out."""
    skipped = set(skip)
    with open(path, encoding="utf-8") as f:
        return sum(1 for n, line in enumerate(f, 1)
                   if n not in skipped and line.strip() and not line.strip().startswith(comment))


def not_weight_lines(path: str) -> set[int]:
    """The lines of the module's top-level functions named for configs or tokenizers (decorators too)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    out: set[int] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                any(w in node.name.lower() for w in _NOT_WEIGHTS):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            out.update(range(first, (node.end_lineno or node.lineno) + 1))
    return out


def _module(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    return spec.origin if spec is not None and spec.origin else None


def modules(recipe: Recipe) -> list[str]:
    """The keras-hub modules the recipe replaces: its converter, and its exporter if it was proven against one."""
    out: list[str] = []
    for proof in recipe.proven:
        m = _CONVERTER.search(proof)
        if m:
            found = _module(f"keras_hub.src.utils.transformers.{m.group(1)}")
            if found:
                out.append(found)
        m = _EXPORTER.search(proof)
        if m:  # `Qwen3.5` -> export/qwen3_5.py
            found = _module(f"keras_hub.src.utils.transformers.export.{m.group(1).lower().replace('.', '_')}")
            if found is None:
                raise SystemExit(f"{recipe.name}: no keras-hub exporter module for `{m.group(1)}`")
            out.append(found)
    return list(dict.fromkeys(out))


def main() -> int:
    from wmap.lang.include import recipe_files, recipes_root
    rows = []
    counted: set[str] = set()
    for r in catalog():
        mods = modules(r)
        if not mods:
            print(f"{r.name}: no keras-hub converter found (is keras-hub installed?)", file=sys.stderr)
            continue
        new = [m for m in mods if m not in counted]  # a module shared with an earlier recipe: counted there
        counted.update(new)
        whole = sum(code_lines(m, "#") for m in new)
        weights = sum(code_lines(m, "#", not_weight_lines(m)) for m in new)
        shown = ", ".join(("" if m in new else "(") + os.path.relpath(m, os.path.dirname(os.path.dirname(m)))
                          .replace("transformers/", "") + ("" if m in new else ")") for m in mods)
        rows.append((r.name, code_lines(r.path, "#"), whole, weights, shown))
    parts = [f for f in recipe_files() if f not in {r.path for r in catalog()}]
    root = recipes_root()
    for f in parts:
        rows.append((os.path.relpath(f, root)[:-5] + " (part)", code_lines(f, "#"), 0, 0, "used by recipes"))
    width = max((len(n) for n, *_ in rows), default=6)
    print(f"{'recipe'.ljust(width)}  recipe lines  converter lines  weights only  keras-hub modules "
          "(in parentheses: counted above)")
    for name, ours, whole, weights, shown in rows:
        print(f"{name.ljust(width)}  {ours:12d}  {whole:15d}  {weights:12d}  {shown}")
    ours_total = sum(r[1] for r in rows)
    whole_total, weights_total = sum(r[2] for r in rows), sum(r[3] for r in rows)
    if rows:
        print(f"{'total'.ljust(width)}  {ours_total:12d}  {whole_total:15d}  {weights_total:12d}  "
              f"{len(counted)} modules, each once")
        print(f"recipes are {100 * ours_total / whole_total:.1f}% of the converter modules' lines (whole modules), "
              f"{100 * ours_total / weights_total:.1f}% of their weight-moving lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
