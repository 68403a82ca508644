"""`wmap init --source S --target T [-o spec.wmap]`: write a starting spec from two inventories.

Exit codes: 0 when every tensor found a match (the spec plans as written), 2 when the spec was
written with `unresolved` entries that a person must decide (`wmap check` fails until then),
1 on errors (unreadable checkpoints, an existing file without --force).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from wmap.commands.common import Output, add_format, refuse_clashes

if TYPE_CHECKING:
    from wmap.recipes.recognise import RecipeMatch
    from wmap.scaffold.propose import InitResult

FRAMEWORK_CHOICES = ["torch", "keras", "tf", "numpy", "safetensors"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "init", help="write a starting spec by matching a source to a target",
        description="Match the tensors of SOURCE to those of TARGET (checkpoints or `module:callable` "
                    "factories) by name, wrapper prefix, framework renames and shape+order, fold repeated "
                    "layers into pattern rules, and write a spec whose every rule says how sure the match "
                    "is. What cannot be matched is written as `unresolved`, which `wmap check` rejects until "
                    "a person decides. Exit 0 when complete, 2 when unresolved entries remain.")
    p.add_argument("--source", "-s", required=True, metavar="PATH|module:callable", help="the source")
    p.add_argument("--target", "-t", required=True, metavar="PATH|module:callable", help="the target")
    for side in ("source", "target"):
        p.add_argument(f"--{side}-framework", choices=FRAMEWORK_CHOICES,
                       help=f"the {side}'s framework, if the file does not say (default: detect)")
    p.add_argument("-o", "--out", metavar="SPEC", help="write the spec here (.wmap, or .yaml without the "
                   "comments); default: print it")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--no-recipe", action="store_true", help="match tensors even when a recipe from the library "
                   "ports this pair (by default wmap init proposes the recipe: `wmap recipes`)")
    add_format(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.core.errors import error
    from wmap.lang import syntax_for
    from wmap.run.resolve import read_inventory
    from wmap.scaffold.propose import init_spec
    from wmap.scaffold.rules import relative_location

    refuse_clashes({"-o": args.out}, {"--source": args.source, "--target": args.target})
    if args.out and os.path.exists(args.out) and not args.force:
        raise error("WM521", f"`{args.out}` exists; wmap init does not overwrite a spec",
                    hint="pass --force to replace it, or choose another --out")
    if not args.no_recipe:
        from wmap.recipes.recognise import recognise
        match = recognise(args.source, args.target)
        if match is not None:
            return _propose(match, args, out)
    source = read_inventory(args.source, args.source_framework)
    target = read_inventory(args.target, args.target_framework)
    result = init_spec(source, target, relative_location(args.source, args.out),
                       relative_location(args.target, args.out), args.source_framework, args.target_framework,
                       syntax_for(args.out) if args.out else "wmap")
    if args.out:
        from wmap.core.atomic import write_text_atomic
        write_text_atomic(args.out, result.text)
    if out.fmt == "json":
        out.json(_json(result, args.out))
    else:
        if not args.out:
            out.print(result.text)
        out.err(_summary(result, args.out))
        if result.problems:
            out.diagnostics(result.problems)
        if not args.no_recipe:
            _mention_recipes(args.source, out)
    return 0 if result.complete else 2


def _mention_recipes(source: str, out: Output) -> None:
    """A source the library knows, with a target it did not recognise: say which recipes read it."""
    from wmap.lang import load_spec
    from wmap.recipes import for_model_type
    from wmap.recipes.recognise import model_type_of

    found = model_type_of(source)
    model_type = found[0] if found else ""
    for r in for_model_type(model_type) if model_type else []:
        factory = load_spec(r.path).target
        out.err(f"note: recipe {r.name} ports Hugging Face `{model_type}` checkpoints into {r.target}"
                + (f"; `--target {factory.location}` proposes it" if factory and factory.location else ""))


def _propose(match: RecipeMatch, args: argparse.Namespace, out: Output) -> int:
    """Write the recipe, endpoints filled, after planning it against this very pair."""
    import wmap
    from wmap.lang import format_spec, parse_spec, syntax_for
    from wmap.recipes.recognise import with_endpoints
    from wmap.scaffold.rules import relative_location

    text = with_endpoints(match, relative_location(args.source, args.out), relative_location(args.target, args.out))
    spec = parse_spec(text, path=os.path.abspath(args.out) if args.out else None)
    plan = wmap.plan(spec, source=args.source, target=args.target)  # a recipe that does not fit fails here
    if args.out:
        from wmap.core.atomic import write_text_atomic
        syntax = syntax_for(args.out)
        write_text_atomic(args.out, text if syntax == "wmap" else format_spec(spec, syntax))
    r = match.recipe
    if out.fmt == "json":
        out.json({"format_version": 1, "path": args.out, "complete": True, "spec": text,
                  "recipe": {"name": r.name, "family": r.family, "model_type": match.model_type,
                             "target_class": match.target_class, "proven": list(r.proven)},
                  "targets": len(plan.targets)})
        return 0
    if not args.out:
        out.print(text)
    out.err("\n".join([
        f"{'wrote ' + args.out if args.out else 'spec above'}: recipe {r.name} ({r.family}), recognised from "
        f"model_type `{match.model_type}` in the source's config.json and a {match.target_class} target",
        *(f"  proven: {p}" for p in r.proven),
        f"it plans cleanly for this pair: {len(plan.targets)} targets; next: "
        f"`wmap plan {args.out or 'SPEC'}` (or `wmap init --no-recipe` to match tensors instead)"]))
    return 0


def _summary(result: InitResult, path: str | None) -> str:
    from wmap.lang import syntax_for
    from wmap.scaffold.propose import GUESS

    m = result.matching
    counts: dict[str, int] = {}
    for p in m.proposals:
        counts[p.how] = counts.get(p.how, 0) + 1
    how = ", ".join(f"{n} {k}" for k, n in counts.items()) or "none"
    where = f"wrote {path}" if path else "spec above"
    lines = [f"{where}: {len(m.proposals)} tensors matched ({how}), {len(m.drops)} dropped, "
             f"{len(m.zero_inits)} zero-initialised"]
    if path and syntax_for(path) == "yaml":
        lines.append("YAML cannot carry comments, so how each rule was matched is not in the file; "
                     "`--format json` lists it")
    unresolved = len(m.sources) + len(m.targets)
    if unresolved:
        lines.append(f"{unresolved} unresolved ({len(m.sources)} source, {len(m.targets)} target): "
                     "`wmap check` fails until you decide them (search for `unresolved`)")
    elif result.problems:
        lines.append("the generated spec does not plan cleanly (below); this is a bug in wmap init, "
                     "please report it")
    else:
        guesses = counts.get(GUESS, 0)
        lines.append("every tensor is matched; " + (f"review the {guesses} `guess` matches, then " if guesses
                                                     else "next: ") + f"`wmap plan {path or 'SPEC'}`")
    return "\n".join(lines)


def _json(result: InitResult, path: str | None) -> dict[str, object]:
    m = result.matching
    return {
        "format_version": 1,
        "path": path,
        "complete": result.complete,
        "spec": result.text,
        "proposals": [{"source": p.source, "target": p.target, "via": [c.name for c in p.via], "how": p.how}
                      for p in m.proposals],
        "dropped": list(m.drops),
        "zero_initialised": list(m.zero_inits),
        "unresolved": {
            "sources": [{"name": x.name, "candidate": x.candidate, "note": x.note} for x in m.sources],
            "targets": [{"name": x.name, "candidate": x.candidate, "note": x.note} for x in m.targets],
        },
        "problems": [d.to_json() for d in result.problems],
    }
