"""Spec + inventories -> Plan: matching, exactly-once accounting and shape algebra.

Order of claims: `drop` first (a dropped tensor is invisible to rules), then rules in
file order (the first rule that matches a source claims it), then `init` and `keep`
for targets no rule fills. Every problem is collected and grouped by cause, then raised
once; nothing here reads weight data.
"""

from __future__ import annotations

import itertools
import operator
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, cast

from wmap.core.bulk import collector_paused, new_frozen
from wmap.core.errors import Diagnostic, DiagnosticBag, Span
from wmap.core.inventory import Inventory, TensorMeta
from wmap.core.names import fold_text
from wmap.core.record import Record
from wmap.core.values import refs_in
from wmap.lang import patterns as P
from wmap.lang.spec import DEFAULT_SOURCE, OPTIONS, Rule, Spec
from wmap.planning.checks import coverage_errors, dtype_check, shape_mismatch_diag, trap_warnings
from wmap.planning.grouping import MATCH as _MATCH
from wmap.planning.grouping import PAT as _PAT
from wmap.planning.grouping import REF as _REF
from wmap.planning.grouping import Claim as _Claim
from wmap.planning.grouping import group
from wmap.planning.hints import no_match_hint, target_missing_hint
from wmap.planning.plan import Dropped, Plan, SourceRef, Step, TargetFlags, source_refs, spec_digest
from wmap.transforms import ArrayMeta, InferContext, Transform, TransformError, build

if TYPE_CHECKING:
    from wmap.lang.bindings import ConfigData
    from wmap.transforms.initializers import Initializer

# Imported where a spec uses them, not with this module: `let` bindings (wmap.lang.bindings), `init`
# statements (wmap.transforms.initializers) and layout(auto)'s missing-kinds message
# (wmap.transforms.auto). A plain transfer plans without any of them.



@dataclass(eq=False)  # one per compile, never compared: no generated __eq__ to build at import
class _State:
    """What one compile works from: the spec, the inventories, and what it has decided so far."""

    spec: Spec
    sources: Mapping[str, Inventory]
    target: Inventory
    bag: DiagnosticBag
    options: dict[str, Any]
    primary: str
    # rules-visible source names per source -> SourceRef
    src_names: dict[str, dict[str, SourceRef]] = field(default_factory=dict)
    tgt_names: dict[str, TensorMeta] = field(default_factory=dict)
    dropped: list[Dropped] = field(default_factory=list)
    claimed: set[tuple[str, str]] = field(default_factory=set)
    filled: dict[str, str] = field(default_factory=dict)  # target name -> what fills it (for collisions)
    order: dict[str, int] = field(default_factory=dict)  # target name -> its place in the target inventory
    steps: list[Step] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    # rules whose `layout(auto)` met a side without layer kinds: one WM304 for the spec
    no_kinds: list[tuple[Rule, str]] = field(default_factory=list)
    # the tensor names each warning is about: what an `ack CODE PATTERN` is matched against
    subjects: dict[int, tuple[str, ...]] = field(default_factory=dict)
    freeze_re: Any = None
    lr_matcher: P.MultiMatcher | None = None

    def flags_for(self, targets: Sequence[TensorMeta]) -> tuple[TargetFlags, ...]:
        if self.freeze_re is None and self.lr_matcher is None:
            return _ONE_NO_FLAGS if len(targets) == 1 else tuple(_NO_FLAGS for _ in targets)
        out = []
        tp = _prefixes(self.options["target_strip_prefix"])
        for t in targets:
            name = _strip(t.name, tp)
            frozen = bool(self.freeze_re is not None and self.freeze_re.fullmatch(name))
            k = self.lr_matcher.first(name) if self.lr_matcher is not None else None
            out.append(TargetFlags(frozen, None if k is None else self.spec.lr[k].factor))
        return tuple(out)


_NO_FLAGS = TargetFlags()
_ONE_NO_FLAGS = (_NO_FLAGS,)


@dataclass(frozen=True, eq=False, repr=False)
class _AnyOf(Record):
    """A name matches when any of the patterns does."""

    patterns: tuple[P.Pattern, ...]

    def fullmatch(self, name: str) -> bool:
        return any(p.compiled.fullmatch(name) is not None for p in self.patterns)


def resolve_options(spec: Spec) -> dict[str, Any]:
    opts = {name: default for name, (_, default, _) in OPTIONS.items()}
    for o in spec.options:
        opts[o.name] = o.value
    return opts


def compile_plan(spec: Spec, sources: Mapping[str, Inventory], target: Inventory,
                 config: ConfigData | None = None) -> Plan:
    """Build and check a Plan; raise WmapError listing every problem (one per cause).

    `config`: the model config the spec's `let`s read (`config.KEY`); their values are bound into
    the spec's arguments and templates before anything else, and recorded in the plan."""
    with collector_paused():  # a few acyclic objects per tensor: see wmap/core/bulk.py
        return _compile(spec, sources, target, config)


def _compile(spec: Spec, sources: Mapping[str, Inventory], target: Inventory, config: ConfigData | None) -> Plan:
    bag = DiagnosticBag(sources=spec.texts())  # the used specs too: a rule may come from one
    bindings = None
    if spec.lets:
        from wmap.lang.bindings import bind, evaluate
        bindings = evaluate(spec, config, bag)
    original, spec = spec, bind(spec, bindings, bag) if bindings is not None else spec
    options = resolve_options(spec)
    primary = spec.sources[0].name if spec.sources else next(iter(sources), DEFAULT_SOURCE)
    st = _State(spec, sources, target, bag, options, primary)
    _flag_matchers(st)
    _index_names(st)
    st.order = dict(zip(map(_NAME, target.tensors), itertools.count()))
    _apply_drops(st)
    claims = _match_rules(st)
    # steps come out in the plan's order: map steps rule by rule, then init, then keep steps, each
    # run sorted into target order as it is finished (see _sort_run)
    _build_rule_steps(st, claims)
    _no_kinds_error(st)
    _build_init_keep(st)
    _apply_flags(st)
    unused, unfilled = _unused_sources(st), _unfilled_targets(st)
    before = len(st.warnings)
    coverage_errors(st.spec, st.bag, st.options["strict"], unused, unfilled, list(st.tgt_names), st.warnings)
    for d in st.warnings[before:]:  # non-strict coverage warnings: about the tensors they list
        st.subjects[id(d)] = tuple(m.name for m in unfilled) if d.code == "WM401" else \
            tuple(r.name for refs in unused.values() for r in refs)
    warnings, acknowledged = _acknowledge(st)
    bag.items.sort(key=lambda d: (d.span is None or not d.span.line, d.span.line if d.span else 0))
    bag.raise_if_errors()
    return Plan(
        steps=tuple(st.steps),
        dropped=tuple(st.dropped),
        spec_digest=spec_digest(original),
        source_fingerprints=tuple((n, inv.fingerprint()) for n, inv in sources.items()),
        target_fingerprint=target.fingerprint(),
        source_frameworks=tuple((n, _framework(spec, n, inv)) for n, inv in sources.items()),
        target_framework=(spec.target.framework if spec.target and spec.target.framework else target.framework),
        source_labels=tuple((n, inv.label) for n, inv in sources.items()),
        target_label=target.label,
        options=tuple(sorted((k, v) for k, v in options.items())),
        warnings=tuple(warnings),
        acknowledged=tuple(acknowledged),
        tied=target.tied,
        spec=original,
        config=bindings,
    )


_NAME = attrgetter("name")


def _place(order: Mapping[str, int], s: Step) -> int:
    """Where a step sits among its kind's (and a map step's rule's): at its first target."""
    ts = s.targets
    return order.get(ts[0].name, 0) if len(ts) == 1 else min(order.get(t.name, 0) for t in ts)


def _sort_run(steps: list[Step], start: int, places: Sequence[int]) -> None:
    """Put `steps[start:]` (one rule's steps, the init steps or the keep steps; `places[j]` where
    `steps[start + j]` sits) in target order, keeping the build order among equal places.

    Plans list their steps by kind (map, init, keep), a map step by its rule, then by target order.
    Steps are built in that order of kind and rule, so sorting each run as it is finished gives the
    plan's order; a run is mostly in order already (both sides list layers alike): then it is left."""
    if any(map(operator.gt, places, itertools.islice(places, 1, None))):
        steps[start:] = [steps[start + j] for j in sorted(range(len(places)), key=places.__getitem__)]


def _framework(spec: Spec, name: str, inv: Inventory) -> str | None:
    for s in spec.sources:
        if s.name == name and s.framework:
            return s.framework
    return inv.framework


def _strip(name: str, prefixes: Sequence[str]) -> str:
    at, changed = 0, True
    while changed:  # stacked wrappers: `module._orig_mod.x`; an offset, not a copy per prefix (linear)
        changed = False
        for p in prefixes:
            if p and name.startswith(p, at) and len(name) - at > len(p):
                at, changed = at + len(p), True
    return name[at:] if at else name


def _prefixes(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _index_names(st: _State) -> None:
    sp = _prefixes(st.options["strip_prefix"])
    for src, inv in st.sources.items():
        names: dict[str, SourceRef] = {}
        if not sp and len(inv.index) == len(inv.tensors):  # the common case, one SourceRef per tensor
            # a source meta's `native` is its name in the file, and a SourceRef's meta has none when
            # that is the name rules see (read_name says it)
            st.src_names[src] = source_refs(src, (m if m.native != m.name else TensorMeta(
                m.name, m.shape, m.dtype, None, m.kind, m.attrs) for m in inv.tensors))
            continue
        for m in inv.tensors:
            visible = _strip(m.name, sp)
            if visible in names:
                st.bag.add("WM210", f"stripping {sp} makes two source tensors both `{visible}` "
                           f"(`{names[visible].read_name}` and `{m.name}`)", _opt_span(st.spec, "strip_prefix"),
                           "strip a longer prefix, or address the tensors by their full names")
                continue
            if visible == m.name and m.native in (None, m.name):
                meta = m if m.native is None else TensorMeta(m.name, m.shape, m.dtype, None, m.kind, m.attrs)
            else:
                native = m.native or m.name
                meta = TensorMeta(visible, m.shape, m.dtype, None if native == visible else native, m.kind, m.attrs)
            names[visible] = SourceRef(src, meta, m.name)
        st.src_names[src] = names
    tp = _prefixes(st.options["target_strip_prefix"])
    aliases = {a for a, _ in st.target.tied}
    if not tp and not aliases:
        st.tgt_names.update(st.target.index)  # the same pairs, name by name (a copy made in C)
        return
    for m in st.target.tensors:
        if m.name in aliases:
            continue  # a tied alias is written through its canonical tensor
        st.tgt_names[_strip(m.name, tp)] = m


def _opt_span(spec: Spec, name: str) -> Span | None:
    return next((o.span for o in spec.options if o.name == name), None)


def _source_of(st: _State, pat: P.Pattern) -> str:
    return pat.source or st.primary


def _unknown_source(st: _State, pat: P.Pattern, span: Span) -> bool:
    src = _source_of(st, pat)
    if src in st.src_names:
        return False
    st.bag.add("WM112", f"pattern `{pat.text}` reads source `{src}`, which was not given", span,
               "given sources: " + ", ".join(f"`{n}`" for n in st.src_names))
    return True


def _apply_drops(st: _State) -> None:
    for stmt in st.spec.drop:
        pat = P.parse(stmt.pattern)
        if _unknown_source(st, pat, stmt.span):
            continue
        src = _source_of(st, pat)
        hits = [ref for n, ref in st.src_names[src].items() if (src, n) not in st.claimed and pat.compiled.fullmatch(n)]
        for ref in hits:
            st.claimed.add((src, ref.name))
            st.dropped.append(Dropped(ref, f"drop {stmt.pattern}", stmt.span))
        if not hits and not pat.optional:
            st.bag.add("WM202", f"`drop {stmt.pattern}` matched no source tensor", stmt.span,
                       no_match_hint(pat, list(st.src_names[src]), st.claimed, src, "drop"))


def _match_rules(st: _State) -> dict[int, list[_Claim]]:
    claims: dict[int, list[_Claim]] = defaultdict(list)
    per_source: dict[str, list[tuple[int, int, P.Pattern]]] = defaultdict(list)
    for r, rule in enumerate(st.spec.rules):
        for k, text in enumerate(rule.sources):
            pat = P.parse(text)
            if _unknown_source(st, pat, rule.span):
                continue
            per_source[_source_of(st, pat)].append((r, k, pat))
    for src, entries in per_source.items():
        first_match = P.MultiMatcher(tuple(p for _, _, p in entries)).first_match
        taken = {n for s, n in st.claimed if s == src}  # dropped: the rules never see them
        hits: list[str] = []
        for name, ref in st.src_names[src].items():
            if name in taken:
                continue
            hit = first_match(name)
            if hit is None:
                continue
            i, m = hit
            r, k, _ = entries[i]
            hits.append(name)
            claims[r].append((k, m, ref))
        st.claimed.update(zip(itertools.repeat(src), hits))
    for r, rule in enumerate(st.spec.rules):
        if claims.get(r) or rule.optional:
            continue
        for text in rule.sources:
            pat = P.parse(text)
            src = _source_of(st, pat)
            if src not in st.src_names:
                continue
            if not any(c[_PAT] == rule.sources.index(text) for c in claims.get(r, [])):
                st.bag.add("WM201", f"rule `{_rule_text(rule)}` matched 0 source tensors", rule.span,
                           no_match_hint(pat, list(st.src_names[src]), st.claimed, src, "rule",
                                         _claimed_by(st, pat, src, claims)))
                break
    return claims


def _claimed_by(st: _State, pat: P.Pattern, src: str, claims: Mapping[int, list[_Claim]]) -> str | None:
    """Which earlier rule or drop took the tensors this pattern would have matched."""
    hit = P.MultiMatcher((pat,))  # the name index: only claimed names carrying the pattern's anchor
    for r, cl in sorted(claims.items()):
        for c in cl:
            if c[_REF].source == src and hit.first(c[_REF].name) is not None:
                rule = st.spec.rules[r]
                return f"rule `{_rule_text(rule)}` (line {rule.span.line}) claimed them first"
    for d in st.dropped:
        if d.source.source == src and pat.compiled.fullmatch(d.source.name):
            return f"`{d.statement}` (line {d.span.line if d.span else '?'}) dropped them"
    return None


def _rule_text(rule: Rule) -> str:
    via = "".join(f" | {c.name}" for c in rule.via)
    return f"{', '.join(rule.sources)} -> {rule.target}{via}"


def _build_rule_steps(st: _State, claims: Mapping[int, list[_Claim]]) -> None:
    for r, rule in enumerate(st.spec.rules):
        cl = claims.get(r)
        if not cl:
            continue
        chain = _build_chain(st, rule)
        rendered = _render_one(rule, cl)
        if chain is not None and rendered is not None and _one_to_one(st, r, rule, chain, cl, rendered):
            continue
        grouped = group(st, rule, _rule_text(rule), cl, rendered)
        if grouped is None:
            continue
        groups, orders = grouped
        if chain is None:  # reported once where the chain is wrong: its targets count as attempted
            for tnames in groups:
                for n in tnames:
                    if n in st.tgt_names:
                        st.filled.setdefault(st.tgt_names[n].name, f"rule `{_rule_text(rule)}`")
            continue
        mismatches: list[tuple[tuple[str, ...], Any]] = []
        infer_errors: dict[str, tuple[TransformError, str]] = {}
        missing: list[str] = []
        cache: dict[Any, _Inferred] = {}
        rule_text = _rule_text(rule)
        here = f"rule `{rule_text}` (line {rule.span.line})"
        tgt, filled, steps, order = st.tgt_names, st.filled, st.steps, st.order
        start, places = len(steps), []
        flagged = st.freeze_re is not None or st.lr_matcher is not None
        # Per signature, the fields of the rule's first one-to-one step that came out whole: another
        # tensor with that signature gets the same step but for its target, source, flags and order
        # (shape inference is cached per signature too, in _infer_step; this skips the rest per step).
        protos: dict[object, dict[str, object]] = {}
        # The signature's name roles (each side's last name segment) are fixed for the whole rule when
        # every source pattern and the template end in a literal segment: the key then leaves them out.
        fixed = _fixed_roles(st, rule)
        for tnames, members in groups.items():
            if len(tnames) == 1:  # one target (most rules): the checks below, without their loops
                meta = tgt.get(tnames[0])
                if meta is None:
                    missing.append(tnames[0])
                    continue
                tmetas: tuple[TensorMeta, ...] = (meta,)
                tname = meta.name
                if tname not in filled:
                    filled[tname] = here
                elif not _check_collisions(st, here, rule, tmetas):
                    continue
                if len(members) == 1:
                    k, _, ref = members[0]
                    inputs = (ref,)
                    sm = ref.meta
                    # the pattern fixes the source's name (within it, the role) and the template the target's
                    key: object = (k, sm.shape, sm.dtype, sm.kind, sm.attrs, meta.shape, meta.dtype, meta.kind,
                                   meta.attrs) if fixed else _signature(inputs, tmetas)
                    try:
                        proto = protos.get(key)
                    except TypeError:  # unhashable attrs: _infer_step keys its cache by their text
                        key, proto = None, None
                    if proto is not None:
                        steps.append(_like(proto, tmetas, inputs, st.flags_for(tmetas) if flagged else None,
                                           orders.get(tnames, "") if orders else None))
                        places.append(order.get(tname, 0))
                        continue
                    step = _infer_step(st, r, rule, rule_text, chain, tmetas, list(inputs), mismatches,
                                       infer_errors, cache, orders.get(tnames, ""))
                    if step is not None:
                        steps.append(step)
                        places.append(order.get(tname, 0))
                        if key is not None:
                            protos[key] = step.__dict__
                    continue
            else:
                metas = [tgt.get(n) for n in tnames]
                absent = [n for n, m in zip(tnames, metas) if m is None]
                if absent:
                    missing.extend(absent)
                    continue
                tmetas = tuple(m for m in metas if m is not None)
                if not _check_collisions(st, here, rule, tmetas):
                    continue
            step = _infer_step(st, r, rule, rule_text, chain, tmetas, [c[_REF] for c in members], mismatches,
                               infer_errors, cache, orders.get(tnames, ""))
            if step is not None:
                steps.append(step)
                places.append(_place(order, step))
        _sort_run(steps, start, places)
        if missing:
            st.bag.add("WM204", f"rule `{_rule_text(rule)}` writes {len(missing)} tensor(s) the target does not "
                       f"have: {fold_text(missing)}", rule.span, target_missing_hint(missing, list(st.tgt_names)))
        _report_inference(st, rule, infer_errors, mismatches, len(groups))


def _report_inference(st: _State, rule: Rule, infer_errors: Mapping[str, tuple[TransformError, str]],
                      mismatches: list[tuple[tuple[str, ...], Any]], n_groups: int) -> None:
    """A rule's transform errors (one per kind of message) and its shape mismatches (one diagnostic)."""
    if infer_errors:
        from wmap.transforms.auto import NO_KIND
    for err, example in infer_errors.values():
        if err.code == "WM304" and NO_KIND in err.message:
            st.no_kinds.append((rule, "source" if "source `" in err.message else "target"))
            continue
        st.bag.add(err.code, f"rule `{_rule_text(rule)}`: {err.message}", rule.span, err.hint,
                   notes=(f"first seen at `{example}`",) if example else ())
    if mismatches:
        src_fw = _framework(st.spec, st.primary, st.sources[st.primary]) if st.primary in st.sources else None
        tgt_fw = st.spec.target.framework if st.spec.target and st.spec.target.framework else st.target.framework
        st.bag.items.append(shape_mismatch_diag(rule, _rule_text(rule), mismatches, n_groups, (src_fw, tgt_fw)))


_FIRST = operator.itemgetter(0)
_CLAIMED_REF = operator.itemgetter(_REF)
_META = attrgetter("meta")
# what a transform may see of a tensor when the rule fixes its name's role (see _fixed_roles)
_ROLE_FREE = attrgetter("shape", "dtype", "kind", "attrs")


def _render_one(rule: Rule, claims: list[_Claim]) -> list[tuple[str, ...]] | None:
    """The target names of each claim of a one-pattern rule without fan-out indices (most rules),
    rendered in one pass; None for other rules, or when a claim fails to render (which `_group`
    then reports at that claim)."""
    if len(rule.sources) != 1:
        return None
    template, pat = P.parse(rule.target, template=True), P.parse(rule.sources[0])
    if P.free_captures(template, [pat]):
        return None
    try:
        return list(map(P.match_renderer(template, pat), map(_MATCH, claims)))
    except P.TemplateError:
        return None


def _one_to_one(st: _State, r: int, rule: Rule, chain: tuple[Transform, ...], claims: list[_Claim],
                rendered: list[tuple[str, ...]]) -> bool:
    """Build the steps of a rule in which each claimed tensor fills one target of its own: the
    shape of nearly every rule, and of all 50 rules of a 1M-tensor plan. False, having changed
    nothing, when that is not so or when something is wrong (a target the inventory lacks, one
    another rule filled, a fan-in): the general path then builds the rule and reports it.

    What makes it cheaper than the general path at 1M tensors: a rule's claims are every 50th
    tensor of both inventories, so each per-tensor lookup in a million-entry dict misses the CPU's
    caches. The lookups, the collision check and the accounting run as C loops over the whole
    rule (map, isdisjoint, update), leaving one Python iteration per step, to copy its fields."""
    if not _fixed_roles(st, rule) or max(map(len, rendered)) != 1:
        return False
    names = list(map(_FIRST, rendered))
    if len(set(names)) != len(names):
        return False  # a fan-in: _group orders its inputs
    found = list(map(st.tgt_names.get, names))
    if any(map(operator.is_, found, itertools.repeat(None))):
        return False  # WM204, reported by the general path
    metas = cast("list[TensorMeta]", found)
    # without a target_strip_prefix (see _fixed_roles) every key of tgt_names is its meta's name,
    # so distinct names are distinct targets
    tnames = list(map(_NAME, metas))
    filled = st.filled
    if not filled.keys().isdisjoint(tnames):
        return False  # WM205
    rule_text = _rule_text(rule)
    filled.update(zip(tnames, itertools.repeat(f"rule `{rule_text}` (line {rule.span.line})")))
    refs = list(map(_CLAIMED_REF, claims))
    keys = zip(map(_ROLE_FREE, map(_META, refs)), map(_ROLE_FREE, metas))
    steps, start = st.steps, len(st.steps)
    flagged = st.freeze_re is not None or st.lr_matcher is not None
    protos: dict[object, dict[str, object]] = {}
    mismatches: list[tuple[tuple[str, ...], Any]] = []
    infer_errors: dict[str, tuple[TransformError, str]] = {}
    cache: dict[Any, _Inferred] = {}
    failed = False
    key: object
    for key, meta, ref in zip(keys, metas, refs):
        try:
            proto = protos.get(key)
        except TypeError:  # unhashable attrs: _infer_step keys its cache by their text
            key, proto = None, None
        if proto is not None:
            steps.append(_like(proto, (meta,), (ref,), st.flags_for((meta,)) if flagged else None, None))
            continue
        step = _infer_step(st, r, rule, rule_text, chain, (meta,), [ref], mismatches, infer_errors, cache)
        if step is None:
            failed = True  # reported; the plan will not be made, but keep `places` beside `steps`
            continue
        steps.append(step)
        if key is not None:
            protos[key] = step.__dict__
    places = [_place(st.order, s) for s in steps[start:]] if failed else \
        list(map(st.order.get, tnames, itertools.repeat(0)))
    _sort_run(steps, start, places)
    _report_inference(st, rule, infer_errors, mismatches, len(names))
    return True


def _like(proto: dict[str, object], targets: tuple[TensorMeta, ...], sources: tuple[SourceRef, ...],
          flags: tuple[TargetFlags, ...] | None, order: str | None) -> Step:
    """The step whose fields are `proto` (a rule's first step of a signature) for other targets and
    sources, and flags and order where given: no inference and no dataclass constructor per step."""
    fields = proto.copy()
    fields["targets"], fields["sources"] = targets, sources
    if flags is not None:
        fields["flags"] = flags
    if order is not None:
        fields["order"] = order
    return new_frozen(Step, fields)


def _fixed_roles(st: _State, rule: Rule) -> bool:
    """Whether the rule fixes each side's name role (the last name segment, which transforms may
    read): so when every source pattern and the template end in a literal segment, and no
    target_strip_prefix makes a target's name differ from its key. Steps' signatures then leave
    the names out."""
    return not _prefixes(st.options["target_strip_prefix"]) and \
        _leaf(P.parse(rule.target, template=True)) is not None and \
        all(_leaf(P.parse(t)) is not None for t in rule.sources)


def _leaf(pat: P.Pattern) -> str | None:
    """The literal last segment every name the pattern matches (or renders) ends in, if it has one."""
    last = pat.segments[-1] if pat.segments else ()
    if len(last) == 1 and last[0].kind == "lit" and "." not in last[0].text:
        return last[0].text
    return None


def _no_kinds_error(st: _State) -> None:
    """One WM304 for every `layout(auto)` that met tensors without layer kinds: the cause is the
    endpoint (a checkpoint file records names and shapes, not the Linear or Conv2d that owns them),
    so it is said once, with the two ways to give the kinds, instead of once per rule."""
    if not st.no_kinds:
        return
    sides = sorted({side for _, side in st.no_kinds})
    decl = next((d for d in st.spec.sources if d.name == st.primary and d.location), None)
    src_label = decl.location if decl is not None else st.sources[st.primary].label if st.primary in st.sources \
        else "the source"
    labels = [src_label] if "source" in sides else []
    labels += [st.spec.target.location if st.spec.target and st.spec.target.location else st.target.label] \
        if "target" in sides else []
    lines = sorted({r.span.line for r, _ in st.no_kinds if r.span.line})
    rules = f"{len(st.no_kinds)} rule(s) (line {', '.join(map(str, lines))})" if lines else f"{len(st.no_kinds)} rule(s)"
    st.bag.add("WM304", f"`layout(auto)` in {rules} needs the layer kinds (Linear, Conv2d, Dense, ...) of the "
               f"{' and '.join(sides)}, and {' and '.join(f'`{x}`' for x in labels)} does not record them "
               "(a checkpoint file holds names and shapes only)", st.no_kinds[0][0].span,
               f"give the {' and '.join(sides)} as a model: `--{sides[0]} pkg.models:build` (a `module:callable`), "
               f"or in Python `{sides[0]}=model`; or name the preset in each rule instead of `layout(auto)` "
               "(`| linear_to_dense`, `| conv_to_keras`, ...; `wmap explain layout` lists them)")


def _build_chain(st: _State, rule: Rule) -> tuple[Transform, ...] | None:
    chain: list[Transform] = []
    for call in rule.via:
        if refs_in(tuple(call.args) + tuple(v for _, v in call.kwargs)):
            return None  # a `let` it uses did not evaluate: reported where the let is
        try:
            chain.append(build(call.name, call.args, call.kwargs))
        except TransformError as e:
            st.bag.add(e.code, e.message, call.span if call.span.line else rule.span, e.hint)
            return None
    return tuple(chain)


def _check_collisions(st: _State, here: str, rule: Rule, tmetas: Sequence[TensorMeta]) -> bool:
    ok = True
    for m in tmetas:
        prev = st.filled.get(m.name)
        if prev is not None:
            if prev != here:
                st.bag.add("WM205", f"target `{m.name}` is written twice: by {prev} and by {here}", rule.span,
                           "make the patterns disjoint, or drop one source")
            else:
                st.bag.add("WM205", f"{here} writes target `{m.name}` from two groups of sources", rule.span,
                           "several sources land on one target: add an alternation and concat/stack, "
                           "or make the target template use every capture")
            ok = False
        else:
            st.filled[m.name] = here
    return ok


_Inferred = tuple[str, Any]  # ("ok", (resolved, history)) | ("error", TransformError) | ("mismatch", info) | ...


def _signature(inputs: Sequence[SourceRef], targets: Sequence[TensorMeta]) -> tuple[object, ...]:
    """Everything a transform may look at: shapes, dtypes, layer kinds, attrs and the param role."""
    if len(inputs) == 1 and len(targets) == 1:  # the same, flat: a 1:1 step is built a million times
        i, m, t = inputs[0], inputs[0].meta, targets[0]
        return (i.source, m.shape, m.dtype, m.kind, m.name.rpartition(".")[2], m.attrs,
                t.shape, t.dtype, t.kind, t.name.rpartition(".")[2], t.attrs)
    return (tuple([(i.source, i.meta.shape, i.meta.dtype, i.meta.kind, i.meta.name[i.meta.name.rfind(".") + 1:],
                    i.meta.attrs) for i in inputs]),
            tuple([(t.shape, t.dtype, t.kind, t.name[t.name.rfind(".") + 1:], t.attrs) for t in targets]))


def _infer_step(st: _State, r: int, rule: Rule, rule_text: str, chain: tuple[Transform, ...],
                targets: tuple[TensorMeta, ...], inputs: list[SourceRef],
                mismatches: list[tuple[tuple[str, ...], Any]], infer_errors: dict[str, tuple[TransformError, str]],
                cache: dict[Any, _Inferred], order: str = "") -> Step | None:
    """One step; inference runs once per distinct signature in a rule (layers repeat)."""
    key: object = _signature(inputs, targets)
    try:
        fresh = key not in cache
    except TypeError:  # unhashable attrs: fall back to their text
        key = repr(key)
        fresh = key not in cache
    if fresh:
        cache[key] = _infer_chain(st, chain, targets, inputs)
    status, data = cache[key]
    if status == "error":
        _note(infer_errors, data, targets[0].name)
        return None
    if status == "mismatch":
        mismatches.append((tuple(t.name for t in targets), data))
        return None
    if status == "dtype":
        if fresh:
            name, problem, dtype = data
            st.bag.add("WM302", f"rule `{rule_text}`: `{targets[0].name}` {problem}", rule.span,
                       f"add `| cast({dtype})` to the chain, or `option dtype = \"target\"` to cast every tensor "
                       "to the target's dtype")
        return None
    resolved, history = data
    step = Step("map", targets, tuple(inputs), resolved, history, r, rule_text, rule.span,
                flags=st.flags_for(targets), order=order)
    if fresh:
        src_fw, tgt_fw = _frameworks(st, inputs)
        for d in trap_warnings(step, rule, src_fw, tgt_fw, st.warnings):
            st.warnings.append(d)
            st.subjects[id(d)] = tuple(t.name for t in step.targets)
    return step


def _frameworks(st: _State, inputs: Sequence[SourceRef]) -> tuple[str | None, str | None]:
    src_fw = _framework(st.spec, inputs[0].source, st.sources[inputs[0].source])
    tgt_fw = st.spec.target.framework if st.spec.target and st.spec.target.framework else st.target.framework
    return src_fw, tgt_fw


def _infer_chain(st: _State, chain: tuple[Transform, ...], targets: tuple[TensorMeta, ...],
                 inputs: list[SourceRef]) -> _Inferred:
    n_in, n_out = len(inputs), len(targets)
    src_fw, tgt_fw = _frameworks(st, inputs)
    # Several sources meet in a fan-in transform; 1:1 transforms before it apply to each source
    # (`{q,k,v}.kernel -> qkv.weight | transpose | concat(0)`, what the reverse of a split reads).
    head = next((t for t in chain if t.ARITY != "1:1" or t.DISPATCH), None)
    if n_in > 1 and (head is None or (head.ARITY != "n:1" and not head.DISPATCH)):
        return ("error", TransformError(
            f"{n_in} source tensors land on one target ({', '.join(i.name for i in inputs[:4])}"
            f"{', ...' if n_in > 4 else ''})", "put a fan-in transform in the chain: concat, stack, add, "
            "sub, lerp, average or lora (1:1 transforms before it apply to each source)", code="WM206"))
    if n_out > 1 and not any(t.ARITY == "1:n" or t.DISPATCH for t in chain):  # layout(auto): its preset's arity
        return ("error", TransformError(f"the target template expands to {n_out} tensors",
                                        "add a fan-out transform: split, chunk, unstack, or a fan-out preset",
                                        code="WM207"))
    metas = tuple(ArrayMeta(i.meta.shape, i.meta.dtype) for i in inputs)
    src_metas = tuple(i.meta for i in inputs)
    resolved: list[Transform] = []
    history: list[tuple[tuple[tuple[int, ...], str], ...]] = []
    for k, t in enumerate(chain):
        last = k == len(chain) - 1
        try:
            if t.ARITY == "1:1" and len(metas) > 1 and not (t.DISPATCH and k == 0):  # layout(auto) fan-in
                t2, metas = _infer_each(t, metas, src_metas, targets, src_fw, tgt_fw, last)
            else:
                t2, metas = t.infer(metas, InferContext(src_metas, targets, src_fw, tgt_fw, is_last=last))
        except TransformError as e:
            return ("error", e)
        resolved.append(t2)
        history.append(tuple((m.shape, m.dtype) for m in metas))
    if len(metas) != n_out:
        return ("error", TransformError(f"the chain yields {len(metas)} tensor(s) for {n_out} target(s)",
                                        code="WM207"))
    if any(m.shape != tm.shape for m, tm in zip(metas, targets)):
        return ("mismatch", {"inputs": src_metas, "history": history, "chain": resolved, "targets": targets})
    for m, tm in zip(metas, targets):
        problem = dtype_check(m.dtype, tm.dtype, st.options["dtype"])
        if problem:
            return ("dtype", (tm.name, problem, tm.dtype))
    return ("ok", (tuple(resolved), tuple(history)))


def _infer_each(t: Transform, metas: tuple[ArrayMeta, ...], src_metas: tuple[TensorMeta, ...],
                targets: tuple[TensorMeta, ...], src_fw: str | None, tgt_fw: str | None, last: bool
                ) -> tuple[Transform, tuple[ArrayMeta, ...]]:
    """A 1:1 transform after a fan-out applies to each part; it must resolve the same for all."""
    resolved: list[Transform] = []
    outs: list[ArrayMeta] = []
    for j, m in enumerate(metas):
        tj = (targets[j],) if len(targets) == len(metas) else targets
        t2, o = t.infer((m,), InferContext(src_metas, tj, src_fw, tgt_fw, is_last=last))
        resolved.append(t2)
        outs.extend(o)
    if any(r != resolved[0] for r in resolved):
        raise TransformError(f"`{t.NAME}` after a fan-out resolves differently for each part "
                             f"({', '.join(r.describe() for r in resolved)})",
                             "apply it before the split, or give its parameters explicitly", code="WM207")
    return resolved[0], tuple(outs)


def _note(errors: dict[str, tuple[TransformError, str]], e: TransformError, example: str) -> None:
    from wmap.core.names import template_of
    key = template_of(e.message)[0]
    errors.setdefault(key, (e, example))


def _build_init_keep(st: _State) -> None:
    if st.spec.init:
        from wmap.transforms.initializers import literal_shape, make_initializer
    start = len(st.steps)
    for i, init in enumerate(st.spec.init):
        pat = P.parse(init.pattern)
        try:
            initializer = make_initializer(init.call.name, init.call.args, init.call.kwargs)
        except ValueError as e:  # already reported by check_names when parsed from text
            st.bag.add("WM113", str(e), init.span)
            continue
        hits = _free_targets(st, pat, f"init {init.pattern} (line {init.span.line})", init.span)
        if not hits and not pat.optional:
            st.bag.add("WM202", f"`init {init.pattern}` matched no target tensor that is still unfilled", init.span,
                       no_match_hint(pat, list(st.tgt_names), set(), None, "init", _filled_by(st, pat)))
        for m in hits:
            sources: tuple[SourceRef, ...] = ()
            if initializer.source is not None:
                ref = _copy_source(st, initializer, init.span)
                if ref is None:
                    continue
                if ref.meta.shape != m.shape:
                    st.bag.add("WM301", f"`init {m.name} = copy(\"{ref.name}\")`: shapes differ, "
                               f"{ref.meta.shape} -> {m.shape}", init.span, "copy needs equal shapes")
                    continue
                sources = (ref,)
            value = initializer.param("value") if initializer.name == "constant" else None
            if isinstance(value, tuple) and literal_shape(value) != tuple(m.shape):
                st.bag.add("WM301", f"`init {m.name} = constant([...])`: the values have shape "
                           f"{literal_shape(value)}, the target {tuple(m.shape)}", init.span,
                           "write one number per element, nested as the target's shape, or one number to fill it")
                continue
            st.steps.append(Step("init", (m,), sources, (), (), i, f"init {init.pattern} = "
                                 f"{initializer.describe()}", init.span, init=initializer, flags=st.flags_for((m,))))
    _sort_run(st.steps, start, [_place(st.order, s) for s in st.steps[start:]])
    start = len(st.steps)
    for stmt in st.spec.keep:
        pat = P.parse(stmt.pattern)
        hits = _free_targets(st, pat, f"keep {stmt.pattern} (line {stmt.span.line})", stmt.span)
        if not hits and not pat.optional:
            st.bag.add("WM202", f"`keep {stmt.pattern}` matched no target tensor that is still unfilled", stmt.span,
                       no_match_hint(pat, list(st.tgt_names), set(), None, "keep", _filled_by(st, pat)))
        for m in hits:
            st.steps.append(Step("keep", (m,), rule_text=f"keep {stmt.pattern}", span=stmt.span,
                                 flags=st.flags_for((m,))))
    _sort_run(st.steps, start, [_place(st.order, s) for s in st.steps[start:]])


def _free_targets(st: _State, pat: P.Pattern, what: str, span: Span) -> list[TensorMeta]:
    hits = []
    for name, m in st.tgt_names.items():
        if not pat.compiled.fullmatch(name):
            continue
        prev = st.filled.get(m.name)
        if prev is not None:
            if not prev.startswith(("init", "keep")):
                st.bag.add("WM208", f"`{what.split(' (')[0]}` also matches `{m.name}`, which {prev} fills",
                           span, "narrow the pattern: init and keep are for targets no rule fills")
            continue
        st.filled[m.name] = what
        hits.append(m)
    return hits


def _filled_by(st: _State, pat: P.Pattern) -> str | None:
    for name, what in st.filled.items():
        if pat.compiled.fullmatch(name):
            return f"`{name}` is already filled by {what}"
    return None


def _copy_source(st: _State, init: Initializer, span: Span) -> SourceRef | None:
    text = init.source or ""
    src, _, name = text.rpartition(":") if ":" in text else (st.primary, "", text)
    ref = st.src_names.get(src, {}).get(name)
    if ref is None:
        from wmap.core.names import nearest
        near = nearest(name, list(st.src_names.get(src, {})))
        st.bag.add("WM207", f"`copy(\"{text}\")`: source `{src}` has no tensor `{name}`", span,
                   ("did you mean " + " or ".join(f"`{n}`" for n in near) + "?") if near else None)
        return None
    st.claimed.add((src, name))
    return ref


def _flag_matchers(st: _State) -> None:
    """One combined regex for `freeze`, a first-wins matcher for `lr`: flags cost one match per target."""
    if st.spec.freeze:  # any of them: names are untrusted, so each pattern's own linear-time matcher
        st.freeze_re = _AnyOf(tuple(P.parse(f.pattern) for f in st.spec.freeze))
    if st.spec.lr:
        st.lr_matcher = P.MultiMatcher(tuple(P.parse(x.pattern) for x in st.spec.lr))


def _apply_flags(st: _State) -> None:
    """Flags were set as steps were built; here, a freeze/lr pattern that matched nothing is an error."""
    if not st.spec.freeze and not st.spec.lr:
        return
    tp = _prefixes(st.options["target_strip_prefix"])
    placed = [_strip(t.name, tp) for s in st.steps for t in s.targets]
    for kind, stmts in (("freeze", st.spec.freeze), ("lr", st.spec.lr)):
        for stmt in stmts:
            pat = P.parse(stmt.pattern)
            if pat.optional or any(pat.compiled.fullmatch(n) for n in placed):
                continue
            st.bag.add("WM202", f"`{kind} {stmt.pattern}` matched no target tensor", stmt.span,
                       no_match_hint(pat, list(st.tgt_names), set(), None, kind))
    _frozen_lr(st)


def _frozen_lr(st: _State) -> None:
    """`lr` on a frozen tensor does nothing: an error when all of a statement's tensors are frozen (it
    can have no effect at all), a warning naming them when some are (those get no multiplier)."""
    if st.lr_matcher is None or st.freeze_re is None:
        return
    tp = _prefixes(st.options["target_strip_prefix"])
    hit: dict[int, tuple[list[str], list[str]]] = {}
    for s in st.steps:
        for t, f in zip(s.targets, s.flags):
            k = st.lr_matcher.first(_strip(t.name, tp)) if f.lr is not None else None
            if k is not None:
                hit.setdefault(k, ([], []))[0 if f.frozen else 1].append(t.name)
    for k, (frozen, live) in sorted(hit.items()):
        if not frozen:
            continue
        stmt = st.spec.lr[k]
        text = f"lr {stmt.pattern} * {stmt.factor:g}"
        if not live:
            st.bag.add("WM213", f"`{text}` applies only to frozen tensors ({fold_text(frozen)}), which do not train",
                       stmt.span, "drop the `lr` statement, or the `freeze` if these tensors should train")
        else:
            d = Diagnostic("WM213", "warning", f"`{text}` also matches {len(frozen)} frozen tensor(s), which do "
                           f"not train and get no multiplier: {fold_text(frozen)}", stmt.span,
                           "narrow the lr pattern, or `ack WM213 PATTERN` if that is intended")
            st.warnings.append(d)
            st.subjects[id(d)] = tuple(frozen)


def _acknowledge(st: _State) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """Split the warnings into those still open and those an `ack CODE PATTERN` marks as reviewed.

    A warning is acknowledged when an ack of its code matches every tensor it is about (after
    `target_strip_prefix`, as freeze and lr see names). An ack that acknowledges nothing is a
    warning itself (WM212), like a rule that matches nothing, so it cannot outlive its reason and
    then hide the next warning of that code."""
    if not st.spec.ack:
        return list(st.warnings), []
    tp = _prefixes(st.options["target_strip_prefix"])
    pats = [P.parse(a.pattern) for a in st.spec.ack]
    used = [False] * len(pats)
    open_: list[Diagnostic] = []
    acked: list[Diagnostic] = []
    for d in st.warnings:
        names = [_strip(n, tp) for n in st.subjects.get(id(d), ())]
        hits = [i for i, a in enumerate(st.spec.ack) if a.code == d.code and names
                and all(pats[i].compiled.fullmatch(n) for n in names)]
        for i in hits:
            used[i] = True
        (acked if hits else open_).append(d)
    for a, pat, u in zip(st.spec.ack, pats, used):
        if not u and not pat.optional:
            open_.append(Diagnostic("WM212", "warning", f"`ack {a.code} {a.pattern}` acknowledges no warning of "
                                    "this plan", a.span, f"delete it, or correct the code or the pattern (the "
                                    f"plan has {sum(1 for d in st.warnings if d.code == a.code)} {a.code} warning(s))"))
    return open_, acked


def _unused_sources(st: _State) -> dict[str, list[SourceRef]]:
    out: dict[str, list[SourceRef]] = {}
    if len(st.claimed) == sum(len(names) for names in st.src_names.values()):
        return out  # every claim is of a visible source name, so all of them are claimed
    for src, names in st.src_names.items():
        left = [ref for n, ref in names.items() if (src, n) not in st.claimed]
        if left:
            out[src] = left
    return out


def _unfilled_targets(st: _State) -> list[TensorMeta]:
    if len(st.filled) == len(st.tgt_names):
        return []  # only targets' names are ever filled (each once), so all of them are
    return [m for m in st.tgt_names.values() if m.name not in st.filled]
