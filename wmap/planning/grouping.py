"""A rule's claims grouped by the target names they land on, in the natural order of their indices.

A fan-in (`experts.{e:int}.w1 -> experts.w1 | stack(0)`) takes its inputs in the order of their
captures, never the names' string order (experts 0, 1, 2, ..., 10, 11), and says what orders them
(`{e} = 0..11`) for the plan; a fan-out (`w1 -> experts.{e:int}.w1 | unstack(0)`) enumerates the
target names its free indices match, in the same order. A gap, an index spelled twice, a missing
alternation option or an incomplete grid of two indices is an error (WM211), as is a target a
multi-source rule gets no input for (WM203).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import Final, Protocol

from wmap.core.errors import DiagnosticBag
from wmap.core.inventory import TensorMeta
from wmap.core.names import fold_text, natural_key, ranges_text
from wmap.lang import patterns as P
from wmap.lang.spec import Rule
from wmap.planning.hints import target_missing_hint
from wmap.planning.plan import SourceRef

# A source tensor a rule claimed: (which of the rule's source patterns matched it, the raw match, whose
# captures are extracted only where needed, and its reference). A tuple rather than a dataclass: a
# million-tensor compile makes one per tensor and reads each once or twice.
Claim = tuple[int, P.NameMatch, SourceRef]
PAT: Final = 0
M: Final = 1
REF: Final = 2
MATCH: Final = operator.itemgetter(M)  # a claim's raw match, read in C


class Context(Protocol):
    """What grouping reads and reports to: the compiler's state."""

    bag: DiagnosticBag
    tgt_names: dict[str, TensorMeta]  # rule-visible target names
    filled: dict[str, str]  # target name -> what fills it (a rejected group's targets count as attempted)


def group(st: Context, rule: Rule, text: str, claims: list[Claim], rendered: list[tuple[str, ...]] | None = None
          ) -> tuple[dict[tuple[str, ...], list[Claim]], dict[tuple[str, ...], str]] | None:
    """Claims grouped by the target names they render to, each group in its fan-in order, and
    for each fan-in group the text saying what orders it (`{e} = 0..11`). `rendered`: what
    the compiler's one pass rendered of the claims, if it did; `text`: the rule as messages quote it."""
    template = P.parse(rule.target, template=True)
    pats = [P.parse(s) for s in rule.sources]
    free = P.free_captures(template, pats)
    groups: dict[tuple[str, ...], list[Claim]] = {}
    orders: dict[tuple[str, ...], str] = {}
    if free:
        return _group_fan_out(st, rule, text, claims, template, pats, free)
    renders = [P.match_renderer(template, p) for p in pats]
    one = renders[0] if len(renders) == 1 else None
    if one is not None:  # one pattern: render all, and when no two claims share a target, file them in C
        try:
            rendered = rendered if rendered is not None else list(map(one, map(MATCH, claims)))
        except P.TemplateError:
            rendered = []  # reported by the loop below, at the claim that fails
        if rendered:
            groups = dict(zip(rendered, [[c] for c in claims]))
            if len(groups) != len(claims):  # a fan-in: its claims filed together, in order
                groups = {}
                for names, c in zip(rendered, claims):
                    members = groups.get(names)
                    if members is None:
                        groups[names] = [c]
                    else:
                        members.append(c)
    for c in claims if not groups else ():
        try:
            names = one(c[M]) if one is not None else renders[c[PAT]](c[M])
        except P.TemplateError as e:
            st.bag.add("WM109", f"rule `{text}`: {e} (source `{c[REF].name}`)", rule.span, None)
            return None
        members = groups.get(names)
        if members is None:
            groups[names] = [c]
        else:
            members.append(c)
    pieces = [P.order_pieces(template, p) for p in pats]
    readers = [P.order_reader(ps, p) for ps, p in zip(pieces, pats)]
    # Layers repeat: a rule's fan-in groups (256 experts x 3 projections x 58 layers) mostly see the
    # same index values in the same order, so the sort and the range check run once per distinct one.
    seen: dict[tuple[tuple[int, tuple[str | int, ...]], ...], tuple[list[int], str, tuple[str, str] | None]] = {}
    bad: list[tuple[str, ...]] = []
    # one source pattern and one claim per target: no fan-in to order, no input to miss
    for names, members in () if len(groups) == len(claims) and len(pats) == 1 else groups.items():
        if len(members) > 1:
            rows = tuple([(c[PAT], readers[c[PAT]](c[M])) for c in members])
            known = seen.get(rows)
            if known is None:
                # the order is the captures', never the names' string order: experts 0, 1, 2, ..., 10, 11
                perm = sorted(range(len(rows)), key=lambda j: (rows[j][0], _order_key(rows[j][1])))
                known = seen[rows] = (perm, *_fan_in_order(pieces, [rows[j] for j in perm]))
            perm, text, problem = known
            members[:] = [members[j] for j in perm]
            if problem is not None:
                st.bag.add("WM211", f"rule `{text}`: the inputs of `{names[0]}` are ordered by "
                           f"{problem[0]}", rule.span, problem[1])
                bad.append(names)
            elif text:
                orders[names] = text
        if len(rule.sources) > 1:
            have = {c[PAT] for c in members}
            lacking = [rule.sources[k] for k in range(len(rule.sources)) if k not in have]
            if lacking:
                st.bag.add("WM203", f"rule `{text}`: target `{names[0]}` has no input from "
                           f"{', '.join(f'`{x}`' for x in lacking)}", rule.span,
                           f"it has {', '.join(f'`{c[REF].source}:{c[REF].name}`' for c in members)}; each source "
                           "pattern must supply one tensor per target")
    for names in bad:  # reported once: the targets count as attempted, not as unfilled (WM401)
        del groups[names]
        for n in names:
            if n in st.tgt_names:
                st.filled.setdefault(st.tgt_names[n].name, f"rule `{text}` (line {rule.span.line})")
    return groups, orders


def _group_fan_out(st: Context, rule: Rule, text: str, claims: list[Claim], template: P.Pattern,
                   pats: list[P.Pattern], free: tuple[str, ...]
                   ) -> tuple[dict[tuple[str, ...], list[Claim]], dict[tuple[str, ...], str]]:
    """A rule whose target has fan-out indices (`w1 -> experts.{e:int}.weight | unstack(0)`): each
    source tensor lands on the target names its indices enumerate, in their natural order."""
    enumerated = P.enumerate_targets(template, free, st.tgt_names)
    keyed = P.fan_out_key_template(template, free)
    groups: dict[tuple[str, ...], list[Claim]] = {}
    orders: dict[tuple[str, ...], str] = {}
    absent: list[str] = []
    labels = [f"{{{f}}}" for f in free]
    for c in claims:
        keys = P.render_match(keyed, pats[c[PAT]], c[M])
        varying, alts = _fan_out_order(template, pats[c[PAT]], free)
        # an index beside a target alternation (`experts.{e:int}.{gate,up}`): the targets are ordered by
        # the template's pieces from left to right (e0.gate, e0.up, e1.gate, ...), as a fan-in's sources are
        combos = list(itertools.product(*(range(len(opts)) for _, opts in alts)))
        rows = [(vals + tuple(alts[a][1][j] for a, j in enumerate(combos[k])), name,
                 tuple(natural_key(vals[i]) if kind == "cap" else (combos[k][i],) for kind, i in varying))
                for k, key in enumerate(keys) for vals, name in enumerated.get(key, ())]
        hits = [(v, n) for v, n, _ in sorted(rows, key=lambda r: r[2])]
        if not hits:
            absent.extend(_show_free(k, labels) for k in keys)
            continue
        names = tuple(n for _, n in hits)
        problem = _index_problem(labels + [label for label, _ in alts], [v for v, _ in hits])
        if problem is not None:
            st.bag.add("WM211", f"rule `{text}`: the targets of `{c[REF].name}` are enumerated by "
                       f"{problem[0]}", rule.span, problem[1])
            for n in names:
                st.filled.setdefault(st.tgt_names[n].name, f"rule `{text}` (line {rule.span.line})")
            continue
        groups.setdefault(names, []).append(c)
        orders[names] = "; ".join([_values_text(lab, [v[i] for v, _ in hits]) for i, lab in enumerate(labels)]
                                  + [label for label, _ in alts])
    if absent:
        st.bag.add("WM204", f"rule `{text}` fans out over {', '.join(labels)}, but the target has no "
                   f"tensor matching {fold_text(absent)}", rule.span,
                   target_missing_hint([a.replace("{", "").replace("}", "") for a in absent], list(st.tgt_names)))
    return groups, orders


def _fan_out_order(template: P.Pattern, source: P.Pattern, free: tuple[str, ...]
                   ) -> tuple[list[tuple[str, int]], list[tuple[str, tuple[str, ...]]]]:
    """What varies across one source's fan-out targets, in the template's order: each fan-out index
    (`("cap", its place in free)`) and each target alternation the source does not pair (`("alt", k)`),
    with those alternations' labels and options in the order `render_match` expands them."""
    varying: list[tuple[str, int]] = []
    alts: list[tuple[str, tuple[str, ...]]] = []
    seen: set[str] = set()
    k = 0
    for p in template.pieces:
        if p.kind == "alt":
            if k >= len(source.alternations):
                varying.append(("alt", len(alts)))
                alts.append(("{" + ",".join(p.options) + "}", tuple(p.options)))
            k += 1
        elif p.kind in ("cap", "int", "path") and p.text in free and p.text not in seen:
            seen.add(p.text)
            varying.append(("cap", free.index(p.text)))
    return varying, alts


def _show_free(key: str, labels: Sequence[str]) -> str:
    for lab in labels:
        key = key.replace(P.FREE_MARK, lab, 1)
    return key


def _index_problem(labels: Sequence[str], rows: Sequence[tuple[str, ...]]) -> tuple[str, str] | None:
    """A gap, two spellings of one index, or an incomplete grid among enumerated index values."""
    distinct = 1
    for i, lab in enumerate(labels):
        col = sorted({r[i] for r in rows}, key=natural_key)
        distinct *= len(col)
        if not all(s.isascii() and s.isdigit() for s in col):
            continue
        nums: dict[int, list[str]] = {}
        for s in col:
            nums.setdefault(int(s), []).append(s)
        clash = next((v for v in nums.values() if len(v) > 1), None)
        if clash is not None:
            return (f"{lab}, which spells one index twice: {' and '.join(f'`{s}`' for s in clash)}",
                    "each index must appear once; rename or drop one of the two tensors")
        gaps = [k for k in range(min(nums), max(nums) + 1) if k not in nums]
        if gaps:
            shown = ", ".join(map(str, gaps[:8])) + (", ..." if len(gaps) > 8 else "")
            return (f"{lab}, which has a gap: no {shown} (found {ranges_text(col)})",
                    "every index from the first to the last must be present; is the target complete?")
    if distinct != len(rows):
        return (f"{', '.join(labels)}, whose values do not form a full grid ({len(rows)} targets for {distinct} "
                "combinations)", "every combination of the indices must be present once")
    return None


def _order_key(values: tuple[str | int, ...]) -> tuple[object, ...]:
    return tuple(v if isinstance(v, int) else natural_key(v) for v in values)


def _fan_in_order(pieces: Sequence[Sequence[P.OrderPiece]], rows: Sequence[tuple[int, tuple[str | int, ...]]]
                  ) -> tuple[str, tuple[str, str] | None]:
    """What orders a fan-in group (`{e} = 0..11`), or (what, hint) when its index is not a clean
    range: a gap, two spellings of one index (`01` beside `1`), a missing alternation option, or
    inputs that do not fill the grid of two indices. `rows`: (source pattern, order values)."""
    by_pattern: dict[int, list[tuple[str | int, ...]]] = {}
    for k, row in rows:
        by_pattern.setdefault(k, []).append(row)
    texts: list[str] = []
    for k, values in by_pattern.items():
        ps = pieces[k]
        if not ps:
            continue
        for i, piece in enumerate(ps):
            if piece.slot == "alt":
                have = {v[i] for v in values}
                absent = [o for j, o in enumerate(piece.options) if j not in have]
                if absent:
                    return "", (f"{piece.label}, which has no input for {', '.join(f'`{o}`' for o in absent)}",
                                "each option of a fan-in alternation must match one source tensor")
        labels = [p.label for p in ps]
        shown = [tuple(p.options[int(v[i])] if p.slot == "alt" else str(v[i]) for i, p in enumerate(ps))
                 for v in values]
        problem = _index_problem(labels, shown)
        if problem is not None:
            return "", problem
        texts += [p.label if p.slot == "alt" else _values_text(p.label, [r[i] for r in shown])
                  for i, p in enumerate(ps)]
    return "; ".join(texts), None


def _values_text(label: str, values: Sequence[str]) -> str:
    """`{e} = 0..11` for an index, `{x} = a, b, c, ...` for other text, in natural order."""
    uniq = sorted(set(values), key=natural_key)
    if all(s.isascii() and s.isdigit() for s in uniq):
        return f"{label} = {ranges_text(uniq)}"
    return f"{label} = " + ", ".join(uniq[:4]) + (", ..." if len(uniq) > 4 else "")
