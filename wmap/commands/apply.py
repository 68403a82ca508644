"""`wmap apply SPEC|PLAN.json --out OUT`: run a transfer into a file, atomically."""

from __future__ import annotations

import argparse
import os

from wmap.commands.common import (
    Interrupted,
    Output,
    add_endpoints,
    add_format,
    add_spec,
    parse_sources,
    refuse_clashes,
    spec_path,
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("apply", help="run a spec or a saved plan and write the result",
                       description="Execute SPEC (planned now) or PLAN.json (exactly as saved; refused if the "
                                   "spec or an inventory changed). The output appears only when complete.")
    add_spec(p, "SPEC|PLAN.json")
    add_endpoints(p, out=True)
    p.add_argument("--reverse", action="store_true",
                   help="run SPEC backwards (`wmap invert`): --source is what SPEC fills, --target what it reads")
    p.add_argument("--report", metavar="REPORT.json", help="also save the apply report (with checksums)")
    p.add_argument("--distributed", action="store_true",
                   help="run on every rank of a torchrun job: each rank reads only the byte ranges of its part "
                        "and --out is a new torch.distributed.checkpoint folder, written all or nothing")
    p.add_argument("--backend", choices=("gloo", "nccl"),
                   help="with --distributed: the process group backend (default: nccl with CUDA, else gloo)")
    add_format(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.api import apply, load_plan
    from wmap.core.errors import error
    from wmap.planning.render import span_text

    if not args.out:
        raise error("WM521", "`wmap apply` writes a file: say where with --out",
                    hint="e.g. --out ported.safetensors (from Python, apply into a model in memory)")
    if args.report and not os.path.isdir(os.path.dirname(os.path.abspath(args.report))):
        # checked first: once the output is committed, a report that cannot be written would be a
        # failure that nonetheless changed something
        raise error("WM512", f"cannot write the report `{args.report}`: its folder does not exist; nothing was "
                    "applied", hint="create the folder first, or drop --report")
    given = spec_path(args)
    sources = parse_sources(args.source)
    refuse_clashes({"--out": args.out, "--report": args.report},
                   {"SPEC": given, "--source": sources, "--target": args.target, "--config": args.config})
    if args.distributed:
        return _run_distributed(args, given, sources, out)
    spec = load_plan(given) if given.endswith(".json") else given
    report = apply(spec, source=sources, target=args.target, out=args.out, config=args.config,
                   reverse=args.reverse)
    try:  # the output is in place now: an interrupt from here on must not say nothing was written
        data = report.to_json()
        if args.report:
            _write_report(args.report, data)
    except KeyboardInterrupt:
        raise Interrupted(f"`{args.out}` was written in full; the report was not") from None
    if out.fmt == "json":
        out.json(data)
        return 0
    s = report.plan.summary()
    lines = [f"wrote {args.out}: {s['targets']} tensors ({s['copied']} copied, {s['transformed']} transformed, "
             f"{s['initialised']} initialised, {s['kept']} kept)"]
    lines += [f"note: {n}" for n in report.notes]
    for w in report.warnings:  # as `wmap plan` shows them: where, what, and the hint
        where = span_text(w.span)
        where += ": " if where else ""
        lines.append(f"{where}warning[{w.code}]: {w.message}" + (f"\n  hint: {w.hint}" if w.hint else ""))
    if report.plan.acknowledged:
        lines.append(f"{len(report.plan.acknowledged)} warning(s) acknowledged in the spec (`ack`)")
    out.print("\n".join(lines) + "\n")
    return 0


def _run_distributed(args: argparse.Namespace, given: str, sources: object, out: Output) -> int:
    """`--distributed`: every rank of the torchrun job runs this; rank 0 prints and writes the report
    (every rank's figures: bytes read, what it staged, which steps gathered)."""
    from wmap.core.errors import error
    from wmap.run import distributed

    if given.endswith(".json") or args.reverse:
        raise error("WM522", "--distributed runs a spec (every rank compiles it and the ranks compare digests)",
                    hint="pass the .wmap/.yaml spec rather than a saved plan, and invert it first for --reverse")
    with distributed.init_from_env(args.backend) as (rank, world):
        report = distributed.apply(given, source=sources, target=args.target, out=args.out, config=args.config)
        import torch.distributed as dist
        every: list[object] = [None] * world
        dist.all_gather_object(every, report.to_json())
    if rank != 0:
        return 0
    data = {"out": args.out, "world_size": world, "ranks": every}
    if args.report:
        _write_report(args.report, data)
    if out.fmt == "json":
        out.json(data)
        return 0
    s = report.plan.summary()
    lines = [f"wrote {args.out}: a DCP checkpoint of {s['targets']} tensors over {world} ranks ({s['copied']} copied, "
             f"{s['transformed']} transformed, {s['initialised']} initialised)"]
    for r in every:
        assert isinstance(r, dict)
        lines.append(f"rank {r['rank']}: read {r['bytes_read']:,} bytes of tensor data (+{r['header_bytes']:,} of "
                     f"headers), staged {r['staged_bytes']:,}, working set {r['peak_working_bytes']:,}")
    for g in report.gathered:
        lines.append(f"note: step {g.step + 1} (`{g.rule}`) read whole tensors ({g.reason}): {g.nbytes:,} bytes "
                     "at its peak on each rank")
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"warning[{w.code}]: {w.message}" for w in report.warnings]
    out.print("\n".join(lines) + "\n")
    return 0


def _write_report(path: str, data: object) -> None:
    """The `--report` JSON, written atomically (its folder was checked before anything ran)."""
    import json

    from wmap.core.atomic import write_text_atomic
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
