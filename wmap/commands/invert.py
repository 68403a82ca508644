"""`wmap invert SPEC [-o back.wmap]`: the spec that moves the weights back."""

from __future__ import annotations

import argparse

from wmap.commands.common import Output, add_spec, refuse_clashes, spec_path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("invert", help="write the reverse of a spec (target -> source)",
                       description="Turn SPEC around: its target becomes the source and its source the target, "
                                   "every rule reversed and every transform replaced by its inverse (sizes stay "
                                   "`$name`s from the config). Refuses, naming the rule, where a step cannot run "
                                   "backwards (prune, lerp, cast, init, reshape without the shape it came from). "
                                   "A spec that `use`s others is inverted whole: the reverse has their rules written out (inlined), "
                                   "since the used files run forwards. "
                                   "`wmap apply SPEC --reverse` runs the reverse without writing it.")
    add_spec(p)
    p.add_argument("-o", "--out", metavar="BACK.wmap", help="write the reverse spec here (default: print it)")
    p.add_argument("--to", choices=("wmap", "yaml"), default=None,
                   help="syntax of the reverse spec (default: from -o's suffix, else wmap)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.api import invert
    from wmap.lang.fmt import to_wmap, to_yaml

    given = spec_path(args)
    refuse_clashes({"-o": args.out}, {"SPEC": given})
    back = invert(given)
    from wmap.lang import load_spec
    uses = load_spec(given, names=False, includes=False).uses
    if uses:  # the used specs run forwards: the reverse cannot `use` them, so it has their rules written out
        out.err(f"note: the reverse inlines what the spec uses ({', '.join(u.path for u in uses)}): "
                "their rules are written out, reversed")
    syntax = args.to or ("yaml" if args.out and args.out.endswith((".yaml", ".yml")) else "wmap")
    text = to_yaml(back) if syntax == "yaml" else to_wmap(back)
    if args.out:
        from wmap.core.atomic import write_text_atomic
        write_text_atomic(args.out, text)
    else:
        out.print(text, raw=True)
    return 0
