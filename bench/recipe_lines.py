"""How much smaller the recipes are than the converters they replace: lines of each recipe beside the
lines of the keras-hub converter module its header names (`# proven: keras-hub convert_gpt2 ...`).

    python -m bench.recipe_lines

Both sides are counted the same way: lines that are neither blank nor only a comment, with a Python
module's docstrings counted as code (they are part of what a reviewer reads). Needs keras-hub installed.
"""

from __future__ import annotations

import importlib.util
import re
import sys

from wmap.recipes import Recipe, catalog

_CONVERTER = re.compile(r"keras-hub (convert_\w+)")


def code_lines(path: str, comment: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip() and not line.strip().startswith(comment))


def converter_path(recipe: Recipe) -> str | None:
    for proof in recipe.proven:
        m = _CONVERTER.search(proof)
        if m:
            spec = importlib.util.find_spec(f"keras_hub.src.utils.transformers.{m.group(1)}")
            if spec is not None and spec.origin:
                return spec.origin
    return None


def main() -> int:
    rows = []
    for r in catalog():
        conv = converter_path(r)
        if conv is None:
            print(f"{r.name}: no keras-hub converter found (is keras-hub installed?)", file=sys.stderr)
            continue
        rows.append((r.name, code_lines(r.path, "#"), conv.rsplit("/", 1)[-1], code_lines(conv, "#")))
    width = max((len(n) for n, *_ in rows), default=6)
    print(f"{'recipe'.ljust(width)}  recipe lines  converter lines  converter")
    for name, ours, conv, theirs in rows:
        print(f"{name.ljust(width)}  {ours:12d}  {theirs:15d}  {conv}")
    ours_total, theirs_total = sum(r[1] for r in rows), sum(r[3] for r in rows)
    if rows:
        print(f"{'total'.ljust(width)}  {ours_total:12d}  {theirs_total:15d}  "
              f"recipes are {100 * ours_total / theirs_total:.1f}% of the converters' lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
