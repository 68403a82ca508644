"""`wmap diff A B`: do two specs (or saved plans) put the same thing in every target?

Exit codes follow Terraform's `plan -detailed-exitcode`, so a script can tell "different"
from "broken": 0 when every target receives the same, 2 when they differ, 1 when either
side has errors (it cannot be planned or read), 64 for usage errors.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from wmap.commands.common import Output, add_endpoints, add_format, parse_sources

if TYPE_CHECKING:
    from wmap.planning.plan import Plan

EXIT_EQUAL, EXIT_DIFFERENT = 0, 2


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "diff", help="compare two specs or saved plans by what each target receives",
        description="Plan both sides (a spec against --source/--target or its own endpoints; a .json plan "
                    "as saved) and compare what each target tensor receives: targets added or removed, a "
                    "different source, transforms, initialiser or seed, freeze and lr. Exit 0 when equal, "
                    "2 when different, 1 on errors.")
    p.add_argument("a", metavar="A", help="a spec (.wmap/.yaml) or a saved plan (.json)")
    p.add_argument("b", metavar="B", help="a spec (.wmap/.yaml) or a saved plan (.json)")
    add_endpoints(p)
    add_format(p)
    p.set_defaults(run=run)


def _load(path: str, args: argparse.Namespace) -> Plan:
    from wmap.api import load_plan, plan

    if path.endswith(".json"):
        return load_plan(path)
    return plan(path, parse_sources(args.source), args.target)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.core.errors import Diagnostic, WmapError
    from wmap.planning.diff import diff_plans, render_text

    plans: list[Plan] = []
    diags: list[Diagnostic] = []
    sources: dict[str, str] = {}
    for path in (args.a, args.b):  # report both sides' errors in one run
        try:
            plans.append(_load(path, args))
        except WmapError as e:
            diags.extend(e.diagnostics)
            sources.update(e.sources)
    if diags:
        raise WmapError(diags, sources)
    d = diff_plans(plans[0], plans[1])
    if out.fmt == "json":
        out.json({"format_version": 1, "a": args.a, "b": args.b, **d.to_json()})
    else:
        out.print(render_text(d, os.path.basename(args.a), os.path.basename(args.b)))
    return EXIT_EQUAL if d.equal else EXIT_DIFFERENT
