"""`wmap plan SPEC`: the reviewable plan, as text, markdown (a PR comment) or JSON (-o saves it)."""

from __future__ import annotations

import argparse

from wmap.commands.common import (
    Output,
    add_endpoints,
    add_format,
    add_spec,
    parse_sources,
    refuse_clashes,
    spec_path,
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plan", help="show what a spec would do, from metadata only",
                       description="Compile SPEC against its source(s) and target and print the plan. "
                                   "Nothing is read but headers and shapes.")
    add_spec(p)
    add_endpoints(p)
    add_format(p, ("text", "markdown", "json"))
    p.add_argument("-o", "--save", dest="save", metavar="PLAN.json",
                   help="save the plan as JSON; `wmap apply PLAN.json` runs exactly it")
    p.add_argument("--reverse", action="store_true",
                   help="run SPEC backwards (`wmap invert`): --source is what SPEC fills, --target what it reads")
    p.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when the plan has warnings")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.api import plan

    given, sources = spec_path(args), parse_sources(args.source)
    refuse_clashes({"-o": args.save}, {"SPEC": given, "--source": sources, "--target": args.target,
                                       "--config": args.config})
    p = plan(given, sources, args.target, args.config, reverse=args.reverse)
    if args.save:
        from wmap.core.atomic import write_text_atomic
        write_text_atomic(args.save, p.dumps())
    if out.fmt == "json":
        out.print(p.dumps())
    else:
        out.print(p.render(out.fmt))
    return 2 if args.detailed_exitcode and p.warnings else 0
