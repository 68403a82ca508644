"""`wmap verify SPEC|PLAN.json --target FILE`: prove a file holds exactly what the plan puts there."""

from __future__ import annotations

import argparse

from wmap.commands.common import Output, add_endpoints, add_format, add_spec, parse_sources, spec_path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("verify", help="check that a checkpoint holds what a plan produces",
                       description="Recompute every mapped and initialised tensor from the sources and compare "
                                   "it byte for byte with the checkpoint given as --target.")
    add_spec(p, "SPEC|PLAN.json")
    add_endpoints(p)
    p.add_argument("--against", metavar="FILE", help="the checkpoint to verify (default: --target)")
    add_format(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.api import load_plan, plan
    from wmap.run.verify import verify_plan

    sources = parse_sources(args.source)
    given = spec_path(args)
    p = load_plan(given) if given.endswith(".json") else plan(given, sources, args.target, args.config)
    report = verify_plan(p, source=sources, target=args.against or args.target)
    if out.fmt == "json":
        out.json(report.to_json())
    else:
        out.print(report.render())
    return 0 if report.ok else 1
