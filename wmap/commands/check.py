"""`wmap check SPEC`: syntax, schema and names, with no model; with --source/--target, every plan check."""

from __future__ import annotations

import argparse

from wmap.commands.common import Output, add_endpoints, add_format, parse_sources
from wmap.core.errors import Diagnostic, WmapError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check", help="check a spec (syntax, schema, names, config keys; plus shapes with --source/--target)",
                       description="Check specs without touching weights. With --source and/or --target (or "
                                   "--full to use what the spec names) every plan check runs too.")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    add_endpoints(p)
    p.add_argument("--full", action="store_true", help="also plan against the spec's own source and target")
    add_format(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.lang import load_spec

    diags: list[Diagnostic] = []
    sources: dict[str, str] = {}
    for path in args.specs:
        try:
            spec = load_spec(path)
            if args.full or args.source or args.target:
                from wmap.api import plan
                p = plan(spec, parse_sources(args.source), args.target, args.config)
                diags.extend(p.warnings)
            elif spec.lets:  # no model, but the config may be at hand: check the keys the lets read
                from wmap.run.config import check_lets
                check_lets(spec, args.config)
        except WmapError as e:
            diags.extend(e.diagnostics)
            sources.update(e.sources)
    errors = sum(1 for d in diags if d.severity == "error")
    if out.fmt == "json":
        out.json({"ok": errors == 0, "diagnostics": [d.to_json() for d in diags]})
    elif diags:
        out.diagnostics(diags, sources)
    else:
        out.print(f"ok: {len(args.specs)} spec(s) checked\n")
    return 1 if errors else 0
