"""Plan rendering for review: text (terminal), markdown (a PR comment).

Deterministic: no timestamps, no absolute paths (spans show the spec's file name), and
repeats folded (`layers.{0..31}.q.weight x32`), so plans diff cleanly in review.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from wmap.core.bulk import collector_paused
from wmap.core.errors import Diagnostic, Span
from wmap.core.names import fold, fold_runs, numbered_run, split_runs, template_of
from wmap.lang.fmt import value_text
from wmap.planning.plan import Plan, Step
from wmap.transforms.base import Transform

LEGEND = "legend: = copy   ~ transformed   + initialised   . kept   - dropped   * frozen   lr=x multiplier"


def span_text(span: Span | None) -> str:
    if span is None or not span.line:
        return ""
    return f"{os.path.basename(span.path or '<spec>')}:{span.line}"


def _shape(s: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, s)) + ")"


def _mark(step: Step) -> str:
    return {"init": "+", "keep": "."}.get(step.kind, "=" if step.is_copy else "~")


@dataclass(frozen=True)
class Block:
    header: str
    where: str
    lines: tuple[str, ...]


def _fold_names(rows: Iterable[str]) -> str:
    folded = fold(rows)
    return ", ".join(f for f, _ in folded)


@functools.lru_cache(maxsize=4096)
def _describe(t: Transform) -> str:
    return t.describe()  # resolved transforms are shared across a rule's steps: describe each once


# attribute readers that iterate in C: a render reads every source of a 90k-tensor plan
_NAME, _META, _REF_META = attrgetter("name"), attrgetter("shape", "dtype"), attrgetter("meta")


def _runs(names: list[str]) -> tuple[str, list[str]] | tuple[str, ...]:
    """A step's names as `split_runs` gives them (its templates, joined, and digit runs), or their
    templates one by one when a name defeats that (NUL or braces in it)."""
    return (len(names) > 1 and _numbered_runs(names)) or split_runs(names) or tuple(template_of(n)[0] for n in names)


def _numbered_runs(names: list[str]) -> tuple[str, list[str]] | None:
    """`split_runs(names)` for names that are one numbered run (`prefix + str(k) + suffix`, a fan-in's
    experts), from the prefix and suffix alone rather than a regex pass over every name: each name's
    template is the prefix's, `{}`, the suffix's (the run's number is a whole digit run), and its
    digit runs the prefix's, the number, the suffix's."""
    run = numbered_run(names)
    if run is None:
        return None
    prefix, first, suffix = run
    head, tail = split_runs([prefix]), split_runs([suffix])
    if head is None or tail is None:  # NUL or braces: what split_runs refuses
        return None
    n, columns = len(names), (*head[1], None, *tail[1])  # None: the run's own number
    digits: list[str] = [""] * (n * len(columns))
    for i, d in enumerate(columns):  # name k's digit runs sit at k * len(columns) + i: fill by column
        digits[i::len(columns)] = [d] * n if d is not None else list(map(str, range(first, first + n)))
    return "\x00".join([head[0] + "{}" + tail[0]] * n), digits


def _signature(metas: list[Any]) -> tuple[object, ...]:
    """What a step's metas contribute to its line's key: each (shape, dtype), or, when they are all
    alike (a fan-in's experts), that one and how many (tagged: no list of pairs looks like it)."""
    if len(metas) < 2:  # (one-to-one steps: as cheap as can be)
        return tuple(map(_META, metas))
    shape, dtype = metas[0].shape, metas[0].dtype
    if all(m.shape == shape and m.dtype == dtype for m in metas):
        return ("alike", shape, dtype, len(metas))
    return tuple(map(_META, metas))


def _fold_runs(runs: Sequence[tuple[str, list[str]] | tuple[str, ...]], names: Iterable[str]) -> str:
    """The folded names of several steps, from their `_runs` (the names, if one lacks them)."""
    if all(len(r) == 2 and isinstance(r[1], list) for r in runs):
        folded = fold_runs("\x00".join(str(r[0]) for r in runs), [d for r in runs for d in r[1]])
        return ", ".join(f for f, _ in folded)
    return _fold_names(list(names))


def _fold_steps(steps: Sequence[Step]) -> list[str]:
    # What folds steps into one line: the templates of their names, their metas, transforms and
    # flags. Each step's names are split into templates and digit runs once, in one regex pass (a
    # fan-in of 256 experts is one call, not 256), and the same runs then fold the line's names.
    groups: dict[tuple[object, ...], list[tuple[Step, Any, Any]]] = {}
    for s in steps:
        t_runs = _runs(list(map(_NAME, s.targets)))
        metas = list(map(_REF_META, s.sources))  # one pass over the step's sources for names and metas
        s_runs = _runs(list(map(_NAME, metas)))
        key = (
            t_runs[0] if t_runs and isinstance(t_runs[-1], list) else t_runs,
            s_runs[0] if s_runs and isinstance(s_runs[-1], list) else s_runs,
            _signature(list(s.targets)),
            _signature(metas),
            tuple([_describe(t) for t in s.transforms]),
            s.flags,
            s.kind,
            s.order,
        )
        members = groups.get(key)
        if members is None:
            groups[key] = [(s, t_runs, s_runs)]
        else:
            members.append((s, t_runs, s_runs))
    lines: list[str] = []
    for group in groups.values():
        s0 = group[0][0]
        n = len(group)
        if s0.order and len(s0.targets) > 1:  # a fan-out over an index: its targets fold into one range
            tnames = _fold_runs([r for _, r, _ in group], [t.name for m, _, _ in group for t in m.targets])
        elif len(s0.targets) == 1:
            tnames = _fold_runs([r for _, r, _ in group], [m.targets[0].name for m, _, _ in group])
        else:
            tnames = ", ".join(_fold_names([m.targets[i].name for m, _, _ in group]) for i in range(len(s0.targets)))
        tmeta = " ".join(f"{_shape(t.shape)} {t.dtype}" for t in s0.targets[:1])
        flags = ""
        if any(f.frozen for f in s0.flags):
            flags += " *"
        lrs = {f.lr for f in s0.flags if f.lr is not None}
        if lrs:
            flags += " lr=x" + "/".join(f"{x:g}" for x in sorted(lrs))
        count = f"  x{n}" if n > 1 else ""
        line = f"  {_mark(s0)} {tnames} {tmeta}{flags}{count}"
        if s0.sources:
            if s0.order:  # a fan-in over an index: its inputs fold into one range, and the plan says what orders them
                snames = _fold_runs([r for _, _, r in group], [r.meta.name for m, _, _ in group for r in m.sources])
            elif len(s0.sources) == 1:
                snames = _fold_runs([r for _, _, r in group], [m.sources[0].meta.name for m, _, _ in group])
            else:
                snames = ", ".join(_fold_names([m.sources[i].meta.name for m, _, _ in group])
                                   for i in range(len(s0.sources)))
            srcs = {r.source for r in s0.sources}
            prefix = "" if srcs == {"src"} else ",".join(sorted(srcs)) + ":"
            line += f"\n      <- {prefix}{snames} {_shape(s0.sources[0].meta.shape)} {s0.sources[0].meta.dtype}"
            if s0.order:
                line += f"\n      {_order_verb(s0)} {s0.order}"
        lines.append(line)
        for t, hist in zip(s0.transforms, s0.chain):
            outs = _shapes([sh for sh, _ in hist])
            lines.append(f"      | {_describe(t)} -> {outs}")
    return lines


_VERBS = {"stack": "stacked over", "concat": "concatenated over", "average": "averaged over",
          "unstack": "unstacked over", "split": "split over", "chunk": "chunked over"}


def _order_verb(step: Step) -> str:
    """How a step's index orders it: the fan-in transform (first) or the fan-out one (last)."""
    if len(step.targets) > 1 and step.transforms:
        return _VERBS.get(step.transforms[-1].NAME, "ordered by")
    return _VERBS.get(step.transforms[0].NAME if step.transforms else "", "ordered by")


def _shapes(shapes: Sequence[Sequence[int]]) -> str:
    """`(2, 3) x16` for sixteen equal parts; each shape otherwise."""
    if len(shapes) > 2 and all(tuple(s) == tuple(shapes[0]) for s in shapes):
        return f"{_shape(shapes[0])} x{len(shapes)}"
    return ", ".join(_shape(s) for s in shapes)


def blocks(plan: Plan) -> list[Block]:
    by_rule: dict[tuple[str, int | None, str], list[Step]] = {}
    for s in plan.steps:
        by_rule.setdefault((s.kind, s.rule, s.rule_text), []).append(s)
    out: list[Block] = []
    for (kind, r, text), steps in by_rule.items():
        header = f"rule {r + 1}  {text}" if kind == "map" and r is not None else text
        out.append(Block(header, span_text(steps[0].span), tuple(_fold_steps(steps))))
    drops: dict[str, list[str]] = {}
    spans: dict[str, Span | None] = {}
    for d in plan.dropped:
        drops.setdefault(d.statement, []).append(d.source.name)
        spans.setdefault(d.statement, d.span)
    for stmt, names in drops.items():
        folded = fold(names)
        lines = tuple(f"  - {f}" + (f"  x{c}" if c > 1 else "") for f, c in folded)
        out.append(Block(stmt, span_text(spans[stmt]), lines))
    return out


def summary_line(plan: Plan) -> str:
    c = plan.summary()
    parts = [f"{c['copied']} copied", f"{c['transformed']} transformed"]
    if c["initialised"]:
        parts.append(f"{c['initialised']} initialised")
    if c["kept"]:
        parts.append(f"{c['kept']} kept")
    tail = [f"{c['sources_used']} source tensors used", f"{c['dropped']} dropped"]
    if c["frozen"]:
        tail.append(f"{c['frozen']} frozen")
    if plan.tied:
        tail.append(f"{len(plan.tied)} tied")
    warn = f" · {len(plan.warnings)} warning(s)" if plan.warnings else ""
    if plan.acknowledged:
        warn += f" · {len(plan.acknowledged)} acknowledged"
    return f"Plan: {c['targets']} targets ({', '.join(parts)}) · {' · '.join(tail)}{warn}"


def _header(plan: Plan) -> list[str]:
    srcs = ", ".join(f"{n} ({label})" for n, label in plan.source_labels) or "no source (init and keep only)"
    out = [f"wmap plan  spec {plan.spec_digest}", f"  from {srcs}", f"  into {plan.target_label}"]
    if plan.config is not None:
        out.append(f"  with {bindings_text(plan)}")
    return out


def bindings_text(plan: Plan) -> str:
    """`heads = 12, head_dim = 64 (from config.json beside src)`: what the spec's lets are bound to."""
    assert plan.config is not None
    values = ", ".join(f"{n} = {value_text(v)}" for n, v in plan.config.values) or "no values"
    return values + (f" (from {plan.config.label})" if plan.config.label else "")


def _diag_line(d: Diagnostic) -> str:
    where = span_text(d.span)
    text = f"{where + ': ' if where else ''}{d.severity}[{d.code}]: {d.message}"
    if d.hint:
        text += f"\n    hint: {d.hint}"
    return text


def _ack_line(d: Diagnostic) -> str:
    where = span_text(d.span)
    return f"{where + ': ' if where else ''}{d.code}: {d.message}"


def render_text(plan: Plan) -> str:
    out = _header(plan) + ["", LEGEND, ""]
    for b in blocks(plan):
        out.append(f"{b.header}" + (f"    ({b.where})" if b.where else ""))
        out.extend(b.lines)
        out.append("")
    if plan.tied:
        out.append("tied (written once):")
        out.extend(f"  {a} -> {c}" for a, c in plan.tied)
        out.append("")
    if plan.warnings:
        out.append("warnings:")
        out.extend("  " + _diag_line(d) for d in plan.warnings)
        out.append("")
    if plan.acknowledged:
        out.append("acknowledged in the spec (`ack`):")
        out.extend(f"  {_ack_line(d)}" for d in plan.acknowledged)
        out.append("")
    out.append(summary_line(plan))
    return "\n".join(out) + "\n"


def render_markdown(plan: Plan) -> str:
    c = plan.summary()
    out = ["### wmap plan", ""]
    if plan.warnings:
        out.append(f"**{len(plan.warnings)} warning(s)**")
        out.append("")
        out.extend(f"- `{d.code}` {d.message}" + (f" — _{d.hint}_" if d.hint else "") for d in plan.warnings)
        out.append("")
    if plan.acknowledged:
        out.append(f"{len(plan.acknowledged)} warning(s) acknowledged in the spec (`ack`)")
        out.append("")
        out.extend(f"- `{d.code}` {d.message}" for d in plan.acknowledged)
        out.append("")
    out += ["| coverage | tensors |", "|---|---:|"]
    for key in ("targets", "copied", "transformed", "initialised", "kept", "sources_used", "dropped", "frozen"):
        out.append(f"| {key.replace('_', ' ')} | {c[key]} |")
    out += ["", f"Spec `{plan.spec_digest}` · from {', '.join(label for _, label in plan.source_labels) or 'no source'} "
            f"into {plan.target_label}" + (f" · with {bindings_text(plan)}" if plan.config is not None else ""),
            "", "<details><summary>Steps</summary>", "", "```text"]
    for b in blocks(plan):
        out.append(f"{b.header}" + (f"    ({b.where})" if b.where else ""))
        out.extend(b.lines)
    out += ["```", "", "</details>", "", summary_line(plan)]
    return "\n".join(out) + "\n"


def render_plan(plan: Plan, fmt: str = "text", color: bool = False) -> str:
    # folding a 90k-tensor plan builds a few short-lived objects per tensor, none in a cycle: the
    # collector's full passes over the plan would find nothing (see core/bulk.py)
    with collector_paused():
        if fmt == "text":
            return render_text(plan)
        if fmt in ("markdown", "md"):
            return render_markdown(plan)
    if fmt == "json":
        return plan.dumps()
    raise ValueError(f"unknown plan format {fmt!r}: use text, markdown or json")
