"""`wmap fmt`: canonical form of either syntax; `--to` converts, `--check` exits 1 on changes."""

from __future__ import annotations

import argparse
import os

from wmap.commands.common import Output


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fmt", help="format specs, or convert between .wmap and YAML",
                       description="Print each spec in canonical form. Comments are kept in .wmap output; YAML "
                                   "output cannot carry them.")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--to", choices=["wmap", "yaml"], help="convert to this syntax (default: keep the file's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="exit 1 if any file would change; write nothing")
    g.add_argument("--write", "-w", action="store_true", help="rewrite files in place (atomically)")
    p.add_argument("--format", choices=["text", "json"], default="text", help=argparse.SUPPRESS)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.core.atomic import write_text_atomic
    from wmap.lang import format_spec, load_spec, syntax_for

    changed: list[str] = []
    for path in args.specs:
        spec = load_spec(path, names=False, includes=False)  # the file as written: `use`s stay `use`s
        syntax = args.to or syntax_for(path)
        text = format_spec(spec, syntax)
        if args.check:
            if syntax != syntax_for(path) or text != spec.text:
                changed.append(path)
        elif args.write:
            dest = path if syntax == syntax_for(path) else os.path.splitext(path)[0] + (
                ".yaml" if syntax == "yaml" else ".wmap")
            if text != spec.text or dest != path:
                write_text_atomic(dest, text)
                changed.append(dest)
        else:
            out.print(text, raw=True)  # the spec itself, as it would be written to the file
    if args.check:
        for c in changed:
            out.err(f"would reformat {c}")
        return 1 if changed else 0
    if args.write:
        for c in changed:
            out.err(f"formatted {c}")
    return 0
