"""`wmap recipes [NAME]`: the recipe library, with what each recipe reads, builds and was proven against."""

from __future__ import annotations

import argparse

from wmap.commands.common import Output, add_format


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("recipes", help="list the recipes for real architecture pairs",
                       description="The specs wmap ships for real architecture pairs (Hugging Face -> "
                                   "keras-hub, ...), each proven against the converter it replaces. Use one with "
                                   "`wmap apply --recipe NAME --source CHECKPOINT --out OUT`; with NAME, print it.")
    p.add_argument("name", nargs="?", metavar="NAME", help="print this recipe's spec")
    add_format(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.recipes import catalog, path

    if args.name:
        with open(path(args.name), encoding="utf-8") as f:
            out.print(f.read(), raw=True)
        return 0
    recipes = catalog()
    if out.fmt == "json":
        out.json([{"name": r.name, "family": r.family, "reads": list(r.model_types), "builds": r.target,
                   "direction": r.direction, "proven": list(r.proven)} for r in recipes])
        return 0
    width = max((len(r.name) for r in recipes), default=4)
    lines = [f"{'recipe'.ljust(width)}  family, Hugging Face model_type -> target"]
    for r in recipes:
        lines.append(f"{r.name.ljust(width)}  {r.family} ({', '.join(r.model_types)}) -> {r.target}")
        lines += [f"{''.ljust(width)}    proven: {p}" for p in r.proven]
    lines.append(f"\n{len(recipes)} recipe(s); `wmap recipes NAME` prints one, `wmap apply --recipe NAME ...` runs it")
    out.print("\n".join(lines) + "\n")
    return 0
