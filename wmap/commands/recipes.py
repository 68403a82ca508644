"""`wmap recipes [NAME]`: the recipe library, with what each recipe reads, builds and was proven against."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wmap.commands.common import Output, add_format

if TYPE_CHECKING:
    from wmap.recipes import Recipe


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("recipes", help="list the recipes for real architecture pairs",
                       description="The specs wmap ships for real architecture pairs (Hugging Face -> "
                                   "keras-hub, ...), each proven against the converter it replaces. Use one with "
                                   "`wmap apply --recipe NAME --source CHECKPOINT --out OUT`; with NAME, print it.")
    p.add_argument("name", nargs="?", metavar="NAME", help="print this recipe's spec")
    add_format(p, ("text", "json", "markdown"))
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.recipes import catalog, one_way, path

    if args.name:
        with open(path(args.name), encoding="utf-8") as f:
            out.print(f.read(), raw=True)
        return 0
    recipes = catalog()
    if out.fmt == "json":
        out.json([{"name": r.name, "family": r.family, "reads": list(r.model_types), "builds": r.target,
                   "direction": r.direction, "proven": list(r.proven), "one_way": list(one_way(r))}
                  for r in recipes])
        return 0
    if out.fmt == "markdown":
        out.print(markdown(recipes), raw=True)
        return 0
    width = max((len(r.name) for r in recipes), default=4)
    lines = [f"{'recipe'.ljust(width)}  family, Hugging Face model_type -> target"]
    for r in recipes:
        lines.append(f"{r.name.ljust(width)}  {r.family} ({', '.join(r.model_types)}) -> {r.target}")
        lines += [f"{''.ljust(width)}    proven: {p}" for p in r.proven]
    lines.append(f"\n{len(recipes)} recipe(s); `wmap recipes NAME` prints one, `wmap apply --recipe NAME ...` runs it")
    out.print("\n".join(lines) + "\n")
    return 0


def markdown(recipes: Sequence[Recipe]) -> str:
    """The library as a Markdown table (the README's): family, what it reads and builds, which ways it
    runs (from `wmap invert`, so it cannot drift from the specs) and what it was proven against."""
    from wmap.recipes import one_way

    rows = ["| recipe | family (`model_type`) | builds | runs | proven against |", "|---|---|---|---|---|"]
    for r in recipes:
        why = one_way(r)
        runs = "both ways" if not why else "one way: " + "; ".join(why)
        reads = ", ".join(f"`{t}`" for t in r.model_types)
        rows.append(f"| `{r.name}` | {r.family} ({reads}) | `{r.target}` | {runs} | {'<br>'.join(r.proven)} |")
    return "\n".join(rows) + "\n"
