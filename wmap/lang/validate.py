"""Structural and name checks shared by both syntaxes, so they report identical diagnostics.

`assemble` turns parsed statements into a Spec (version, duplicates, options, patterns);
`check_names` resolves names against the registries (transforms, initialisers, sources).
Both collect every problem before raising.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wmap.core.errors import Diagnostic, DiagnosticBag, Span, did_you_mean
from wmap.core.frameworks import FRAMEWORKS, unknown_hint
from wmap.core.values import refs_in
from wmap.lang import patterns as P
from wmap.lang.spec import (
    DEFAULT_SOURCE,
    DTYPE_POLICIES,
    FUNCTIONS,
    NONFINITE_POLICIES,
    OPTIONS,
    Ack,
    BinOp,
    Call,
    ConfigDecl,
    Expr,
    Fn,
    Init,
    Let,
    LrScale,
    Name,
    Neg,
    Option,
    PatternStmt,
    Rule,
    SourceDecl,
    Spec,
    TargetDecl,
    Use,
)
from wmap.lang.statements import Statement, StatementList, VersionLine

SUPPORTED_VERSIONS = (1,)
UNRESOLVED = "unresolved"
"""The marker `wmap init` writes where it could not decide (`x -> y | unresolved`, `init y = unresolved`):
never a transform or an initialiser, so a spec holding one fails `wmap check` until a person decides."""


PartSpans = Mapping[Span, Sequence[Span]]
"""A statement's span -> its parts' spans, so that diagnostics point at the part that is wrong
(both syntaxes record them while parsing). A rule: its source patterns, then its target
template. An option: its name, then its value."""


def assemble(statements: Sequence[tuple[Statement, list[str]]], trailing: Sequence[str], path: str | None,
             text: str | None, bag: DiagnosticBag, *, names: bool = False,
             part_spans: PartSpans | None = None) -> Spec:
    """Statements (in file order, with their comments) -> a checked Spec.

    With `names`, transform and initialiser names are resolved too, so one run reports the
    structural and the name problems together, in file order.
    """
    version: object = None
    version_span: Span | None = None
    sources: list[SourceDecl] = []
    target: TargetDecl | None = None
    options: list[Option] = []
    config: ConfigDecl | None = None
    lets: list[Let] = []
    rules: list[Rule] = []
    uses: list[Use] = []
    lists: dict[str, list[Any]] = {"drop": [], "init": [], "keep": [], "freeze": [], "lr": [], "ack": []}
    for node, comments in statements:
        cm = tuple(comments)
        if isinstance(node, VersionLine):
            if version is not None:
                bag.add("WM107", "the version line appears twice", node.span, "keep the first `wmap 1`")
            version, version_span = node.number, node.span
            continue
        if isinstance(node, StatementList):
            items = list(node.items)
            if items:
                items[0] = _with_comments(items[0], cm)
            lists[node.kind].extend(items)
            continue
        node = _with_comments(node, cm)
        if isinstance(node, SourceDecl):
            first = next((s for s in sources if s.name == node.name), None)
            if first is not None:
                bag.add("WM107", f"source `{node.name}` is declared twice", node.span,
                        f"{_first_at('declared', first.span)}give each source its own name: "
                        "`source base \"a\"` and `source tuned \"b\"`")
            sources.append(node)
        elif isinstance(node, TargetDecl):
            if target is not None:
                bag.add("WM107", "a spec has one target; this is the second", node.span,
                        f"{_first_at('declared', target.span)}keep one")
            else:
                target = node
        elif isinstance(node, Option):
            prev = next((o for o in options if o.name == node.name), None)
            if prev is not None:
                bag.add("WM107", f"option `{node.name}` is set twice", node.span,
                        f"{_first_at('set', prev.span)}keep one")
            options.append(node)
        elif isinstance(node, ConfigDecl):
            if config is not None:
                bag.add("WM107", "a spec has one config; this is the second", node.span,
                        f"{_first_at('declared', config.span)}keep one")
            else:
                config = node
        elif isinstance(node, Let):
            prev_let = next((x for x in lets if x.name == node.name), None)
            if prev_let is not None:
                bag.add("WM107", f"`let {node.name}` is bound twice", node.span,
                        f"{_first_at('bound', prev_let.span)}give the second value another name")
            lets.append(node)
        elif isinstance(node, Rule):
            rules.append(node)
        elif isinstance(node, Use):
            uses.append(node)
    if version is None and not statements:
        what = "has only comments" if text and text.strip() else "is empty"
        bag.add("WM110", f"the spec {what}", Span(path, 1, 1), "start with `wmap 1`, then say where the weights "
                "come from: `source torch \"model.safetensors\"`")
    elif version is None:
        bag.add("WM102", "the spec does not say which language version it uses", Span(path, 1, 1),
                "start the file with `wmap 1` (YAML: `wmap: 1`)")
    elif version not in SUPPORTED_VERSIONS:
        bag.add("WM102", f"wmap language version {version} is not supported", version_span,
                "this wmap reads version 1")
    # acks grouped by code (stable): the order YAML's `ack: {CODE: [...]}` mapping can say, so both
    # syntaxes give the same AST; what an ack means does not depend on its place
    spec = Spec(
        version=version if isinstance(version, int) else 1, sources=tuple(sources), target=target, options=tuple(options),
        config=config, lets=tuple(lets),
        rules=tuple(rules), drop=tuple(lists["drop"]), init=tuple(lists["init"]), keep=tuple(lists["keep"]),
        freeze=tuple(lists["freeze"]), lr=tuple(lists["lr"]), ack=tuple(sorted(lists["ack"], key=lambda a: a.code)), uses=tuple(uses),
        path=path, text=text, trailing_comments=tuple(trailing),
    )
    # A spec that uses others may name their sources and `let`s: those checks wait for the merged spec
    # (wmap/lang/include.py); everything that needs only this file is checked now.
    check_structure(spec, bag, part_spans, declared=not uses)
    if names:
        check_names_into(spec, bag)
    sort_diagnostics(bag)
    bag.raise_if_errors()
    return spec


def _first_at(verb: str, span: Span) -> str:
    return f"first {verb} on line {span.line}; " if span.line else ""


def sort_diagnostics(bag: DiagnosticBag) -> None:
    """File order (stable): a report reads top to bottom like the spec."""
    def key(d: Diagnostic) -> tuple[int, int]:
        return (d.span.line, d.span.column) if d.span is not None else (0, 0)
    bag.items.sort(key=key)


def _with_comments(node: Any, comments: tuple[str, ...]) -> Any:
    if not comments:
        return node
    import dataclasses
    return dataclasses.replace(node, comments=comments) if hasattr(node, "comments") else node


def check_bindings(spec: Spec, bag: DiagnosticBag) -> None:
    """`config` names an endpoint the spec has; each `let` uses earlier names and known functions;
    every `$name` in an argument or a template is a `let`. (Config *keys* are checked when the config
    is read: `wmap check` has no config unless the spec's file is at hand.)"""
    c = spec.config
    if c is not None and c.endpoint is not None:
        known = [*spec.source_names, "target"] if spec.sources else [DEFAULT_SOURCE, "target"]
        if c.endpoint not in known:
            bag.add("WM112", f"`config {c.endpoint}`: the spec has no source `{c.endpoint}`", c.span,
                    did_you_mean(c.endpoint, known) or "write `config SOURCE` (the config.json beside that source's "
                    "checkpoint), `config target`, or `config \"path/config.json\"`")
    bound: list[str] = []
    for let in spec.lets:
        for node in walk_expr(let.expr):
            if isinstance(node, Name) and node.name not in bound:
                hint = (f"`{node.name}` is bound below; move this `let` after it" if
                        any(x.name == node.name for x in spec.lets) else
                        did_you_mean(node.name, bound) or "use an earlier `let` name, a number, or `config.KEY`")
                bag.add("WM118", f"`let {let.name}` uses `{node.name}`, which is not bound before it",
                        node.span if node.span.line else let.span, hint)
            elif isinstance(node, Fn) and node.name not in FUNCTIONS:
                bag.add("WM119", f"`let {let.name}` calls `{node.name}`, which is no function", node.span or let.span,
                        did_you_mean(node.name, FUNCTIONS) or "functions: " + ", ".join(FUNCTIONS))
            elif isinstance(node, Fn) and (not node.args or (node.name == "int" and len(node.args) != 1)):
                bag.add("WM119", f"`let {let.name}`: `{node.name}` takes "
                        f"{'one argument' if node.name == 'int' else 'one or more arguments'}", node.span or let.span,
                        "e.g. `min(config.a, config.b)`, `int(config.x / 2)`")
        bound.append(let.name)
    names = [x.name for x in spec.lets]
    for where, call, span in _calls(spec):
        for ref in refs_in(tuple(call.args) + tuple(v for _, v in call.kwargs)):
            if ref.name not in names:
                bag.add("WM118", f"{where}: `${ref.name}` is not bound by a `let`", ref.span if ref.span.line else span,
                        did_you_mean(ref.name, names) or "bind it first: `let NAME = config.KEY`")
    for rule in spec.rules:
        for used in P.template_refs(rule.target):
            if used not in names:
                bag.add("WM118", f"rule `{', '.join(rule.sources)} -> {rule.target}`: `${used}` is not bound by a `let`",
                        rule.span, did_you_mean(used, names) or "bind it first: `let NAME = config.KEY`")


def _calls(spec: Spec) -> list[tuple[str, Call, Span]]:
    out = [(f"rule `{', '.join(r.sources)} -> {r.target}`", c, r.span) for r in spec.rules for c in r.via]
    return out + [(f"`init {i.pattern}`", i.call, i.span) for i in spec.init]


def walk_expr(e: Expr) -> list[Expr]:
    """Every node of an expression, outermost first."""
    out: list[Expr] = []
    todo = [e]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, BinOp):
            todo += [node.right, node.left]
        elif isinstance(node, Neg):
            todo.append(node.operand)
        elif isinstance(node, Fn):
            todo += reversed(node.args)
    return out


def check_structure(spec: Spec, bag: DiagnosticBag, part_spans: PartSpans | None = None, *,
                    declared: bool = True) -> None:
    """`declared`: the spec declares everything it names (sources, `let`s), so names are checked too;
    False for a spec with `use`s before they are merged in."""
    named = spec if declared else None
    decls: list[SourceDecl | TargetDecl] = [*spec.sources, *([spec.target] if spec.target else [])]
    for decl in decls:
        parts = (part_spans or {}).get(decl.span)
        check_endpoint(decl, bag, parts[0] if parts else None)
    for opt in spec.options:
        check_option(opt, bag, (part_spans or {}).get(opt.span))
    for rule in spec.rules:
        _check_rule(rule, named, bag, (part_spans or {}).get(rule.span))
    for group in (spec.drop, spec.keep, spec.freeze):
        for st in group:
            _pattern(st.pattern, st.span, bag, named)
    for init in spec.init:
        _pattern(init.pattern, init.span, bag, named)
    if declared:
        check_bindings(spec, bag)
    for lr in spec.lr:
        _pattern(lr.pattern, lr.span, bag, named)
        check_lr_factor(lr, bag)
    # YAML writes init and lr as mappings keyed by pattern, so a pattern may appear once in each
    for ack in spec.ack:
        check_ack_code(ack, bag)
        _pattern(ack.pattern, ack.span, bag, named)
    for kind, items in (("init", spec.init), ("lr", spec.lr)):
        first: dict[str, Span] = {}
        for it in items:
            if it.pattern in first:
                bag.add("WM107", f"`{kind} {it.pattern}` appears twice", it.span,
                        f"{_first_at('given', first[it.pattern])}keep one")
            first.setdefault(it.pattern, it.span)


def check_ack_code(ack: Ack, bag: DiagnosticBag) -> None:
    """An ack names a code the compiler can warn with; anything else would acknowledge nothing, forever."""
    from wmap.core.codes import ACKNOWLEDGEABLE, CODES
    if ack.code in ACKNOWLEDGEABLE:
        return
    what = "is an error, which cannot be acknowledged" if ack.code in CODES else "is not a wmap code"
    bag.add("WM140", f"`ack {ack.code}`: {ack.code} {what}", ack.span,
            "ack names a plan warning: " + ", ".join(sorted(ACKNOWLEDGEABLE)))


def check_lr_factor(lr: LrScale, bag: DiagnosticBag) -> None:
    f = lr.factor
    if f >= 0 and f != float("inf"):
        return
    why = "is not a number" if f != f else "is infinite" if f == float("inf") else "is negative"
    bag.add("WM106", f"lr multiplier {_number(f)} for `{lr.pattern}` {why}", lr.span,
            "use a factor >= 0 (0 = no updates)")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)  # is_integer() is False for inf and nan


def check_endpoint(decl: SourceDecl | TargetDecl, bag: DiagnosticBag, framework_span: Span | None = None) -> None:
    what = f"source `{decl.name}`" if isinstance(decl, SourceDecl) else "the target"
    if decl.framework is not None and decl.framework not in FRAMEWORKS:
        bag.add("WM110", f"unknown framework `{decl.framework}` for {what}", framework_span or decl.span,
                unknown_hint(decl.framework))
    if isinstance(decl, SourceDecl) and decl.framework is None and decl.name in FRAMEWORKS:
        # `source torch "x"` means framework torch, so this source could not be written in .wmap
        bag.add("WM110", f"source `{decl.name}` is named like a framework but has none", decl.span,
                f"name it otherwise, or give its framework: `{decl.name}: {{framework: ..., path: ...}}`")
    # no location: the spec is a template (a recipe), and the location comes when planning


def check_option(opt: Option, bag: DiagnosticBag, parts: Sequence[Span] | None = None) -> None:
    name_span, value_span = parts if parts is not None and len(parts) == 2 else (opt.span, opt.span)
    if opt.name not in OPTIONS:
        bag.add("WM105", f"unknown option `{opt.name}`", name_span,
                did_you_mean(opt.name, OPTIONS) or "known options: " + ", ".join(sorted(OPTIONS)))
        return
    typ, _, _ = OPTIONS[opt.name]
    v = opt.value
    ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
    if opt.name in ("strip_prefix", "target_strip_prefix") and isinstance(v, tuple):
        ok = all(isinstance(x, str) for x in v)
    if not ok:
        wants: dict[object, str] = {bool: "true or false", int: "a whole number", str: "a string"}
        want = wants.get(typ, "a string or a list of strings")
        bag.add("WM106", f"option `{opt.name}` must be {want}, not `{_value(v)}`", value_span, OPTIONS[opt.name][2])
        return
    choices = {"dtype": DTYPE_POLICIES, "nonfinite": NONFINITE_POLICIES}.get(opt.name)
    if choices and v not in choices:
        bag.add("WM106", f"option `{opt.name}` cannot be `{_value(v)}`", value_span,
                did_you_mean(str(v), choices) or "choose one of: " + ", ".join(choices))
    if opt.name == "shard_size":
        try:
            parse_size(str(v))
        except ValueError:
            bag.add("WM106", f"option `shard_size` cannot be `{_value(v)}`", value_span,
                    "write a size such as `2GB` or `500MB`")


def _value(v: Any) -> str:
    """A value as the spec would write it (`"zero"`, `[1, 2]`, `true`)."""
    from wmap.lang.fmt import quote, value_text
    try:
        return quote(v) if isinstance(v, str) else value_text(v)
    except (TypeError, ValueError):
        return repr(v)


def parse_size(text: str) -> int:
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    s = text.strip().upper().replace(" ", "")
    num = s.rstrip("KMGTIB")
    unit = s[len(num):]
    if unit not in units or not num:
        raise ValueError(text)
    try:
        value = int(float(num) * units[unit])
    except OverflowError:  # `1e999GB`: infinity is not a size
        raise ValueError(text) from None
    if value <= 0:
        raise ValueError(text)
    return value


def _pattern(text: str, span: Span, bag: DiagnosticBag, spec: Spec | None = None,
             template: bool = False) -> P.Pattern | None:
    try:
        pat = P.parse(text, template=template)
    except P.PatternError as e:
        col = span.column + e.offset if span.line else 0
        where = Span(span.path, span.line, col, span.line, col + 1) if span.line else span
        bag.add("WM108", f"bad {'target template' if template else 'pattern'} `{text}`: {e}", where,
                "patterns are dotted names with `*`, `**`, `{x}`, `{x:int}`, `{x:**}` and `{a,b,c}`")
        return None
    if spec is not None and pat.source is not None and spec.sources and pat.source not in spec.source_names:
        start = span.column + (1 if text.startswith("?") else 0)
        where = Span(span.path, span.line, start, span.line, start + len(pat.source)) if span.line else span
        bag.add("WM112", f"pattern `{text}` names source `{pat.source}`, which the spec does not declare", where,
                did_you_mean(pat.source, spec.source_names) or
                "declared sources: " + ", ".join(f"`{n}`" for n in spec.source_names))
    return pat


def _fans_out(rule: Rule) -> bool:
    """Whether the rule's chain may fan out (so a target capture no source binds is an index)."""
    from wmap.transforms import REGISTRY
    for call in rule.via:
        cls = REGISTRY.get(call.name)
        if cls is not None and (cls.ARITY == "1:n" or cls.DISPATCH):
            return True
    return False


# Bounds on what one rule may expand to (WM124): planning time grows with both, and `check` must
# refuse what `plan` would spend hours on.
MAX_FANOUT = 4096      # target names one source tensor's match renders to (product of alternations)
MAX_CHAIN = 256        # transforms in one rule's chain


def _too_big(rule: Rule, bag: DiagnosticBag) -> bool:
    if len(rule.via) > MAX_CHAIN:
        bag.add("WM124", f"rule `{', '.join(rule.sources)} -> {rule.target}` chains {len(rule.via):,} transforms, "
                f"more than {MAX_CHAIN}", rule.span, "a preset or `layout(...)` does in one step what a long chain "
                "spells out; split the rule if it really needs more")
        return True
    return False


def _check_rule(rule: Rule, spec: Spec | None, bag: DiagnosticBag, spans: Sequence[Span] | None = None) -> None:
    if spans is None or len(spans) != len(rule.sources) + 1:
        spans = [rule.span] * (len(rule.sources) + 1)
    _too_big(rule, bag)
    srcs = [_pattern(s, sp, bag, spec) for s, sp in zip(rule.sources, spans, strict=False)]
    tmpl = _pattern(rule.target, spans[-1], bag, None, template=True)
    optional = [sp for s, sp in zip(srcs, spans, strict=False) if s is not None and s.optional]
    if optional:
        at = optional[0]
        where = Span(at.path, at.line, at.column, at.line, at.column + 1) if at.line else at
        bag.add("WM108", "`?` marks drop/keep/freeze/init/lr patterns as optional; a rule uses `optional`",
                where, f"write `optional {', '.join(x.lstrip('?') for x in rule.sources)} -> {rule.target}`")
    if tmpl is None or any(s is None for s in srcs):
        return
    for s in srcs:
        if s is None:
            continue
        fanout = 1
        for alt in tmpl.alternations[len(s.alternations):]:
            fanout *= len(alt.options)
        if fanout > MAX_FANOUT:
            bag.add("WM124", f"rule `{', '.join(rule.sources)} -> {rule.target}`: the target template's "
                    f"alternations render {fanout:,} names for each source tensor, more than {MAX_FANOUT:,}",
                    spans[-1], "write the varying part with a capture the source binds (`{x}`), or split the rule")
            return
    for problem, hint in P.template_problems(tmpl, tuple(s for s in srcs if s is not None), _fans_out(rule)):
        bag.add("WM109", f"rule `{', '.join(rule.sources)} -> {rule.target}`: {problem}", spans[-1], hint)


def check_names(spec: Spec) -> None:
    """Resolve every transform and initialiser name; raise WmapError with all unknown names."""
    bag = DiagnosticBag(sources=spec.texts())
    check_names_into(spec, bag)
    bag.raise_if_errors()


def check_names_into(spec: Spec, bag: DiagnosticBag) -> None:
    """`check_names`, adding to `bag` instead of raising."""
    from wmap.transforms import REGISTRY

    for rule in spec.rules:
        if len(rule.via) > MAX_CHAIN:  # refused by check_structure (WM124); not built 200k times
            continue
        for call in rule.via:
            if call.name == UNRESOLVED:
                _unresolved(bag, f"source `{', '.join(rule.sources)}`", call.span if call.span.line else rule.span,
                            "map it to the right target and delete `| unresolved`, or replace the line with `drop`")
                continue
            _check_call(call, rule.span, bag)
    for use in spec.uses:  # the steps a `use` appends to every rule it brings in
        for call in use.via:
            _check_call(call, use.span, bag)
    for init in spec.init:
        if init.call.name == UNRESOLVED:
            _unresolved(bag, f"target `{init.pattern}`", init.span,
                        "map a source to it, give it an initialiser (`= zeros`, `= normal(std=0.02)`), or `keep` it")
            continue
        _check_init(init.call, init.span, bag, REGISTRY)


def _check_call(call: Call, span: Span, bag: DiagnosticBag) -> None:
    """One transform call of a chain: a known name, with parameters the transform accepts."""
    from wmap.transforms import REGISTRY, TransformError, build, signature
    from wmap.transforms.initializers import INITIALIZERS

    where = call.span if call.span.line else span
    if _has_refs(call):  # its values come from the config: checked in full when planning
        if call.name not in REGISTRY:
            bag.add("WM103", f"unknown transform `{call.name}`", where, did_you_mean(call.name, REGISTRY))
        return
    try:
        build(call.name, call.args, call.kwargs)
    except TransformError as e:
        hint = e.hint
        code = e.code
        if code == "WM103" and call.name in INITIALIZERS:
            hint = f"`{call.name}` is an initialiser: use it in `init PATTERN = {call.name}`"
        elif code != "WM103":
            code = "WM104"  # a parameter the transform rejects on construction, not a shape problem
            if hint is None and call.name in REGISTRY:
                hint = f"signature: {signature(REGISTRY[call.name])}"
        bag.add(code, e.message, where, hint)


def _has_refs(call: Call) -> bool:
    return bool(refs_in(tuple(call.args) + tuple(v for _, v in call.kwargs)))


def _unresolved(bag: DiagnosticBag, what: str, span: Span, hint: str) -> None:
    bag.add("WM117", f"{what} is marked `unresolved`: `wmap init` could not decide what it maps to", span, hint)


def _check_init(call: Call, span: Span, bag: DiagnosticBag, transforms: object) -> None:
    from wmap.transforms.initializers import DOCS, INITIALIZERS, InitError, make_initializer

    where = call.span if call.span.line else span
    if call.name not in INITIALIZERS:
        bag.add("WM113", f"unknown initialiser `{call.name}`", where,
                did_you_mean(call.name, INITIALIZERS) or "known: " + ", ".join(sorted(INITIALIZERS)))
        return
    if _has_refs(call):
        return
    try:
        make_initializer(call.name, call.args, call.kwargs)
    except InitError as e:
        bag.add("WM113", str(e), where, e.hint or DOCS.get(call.name))


__all__ = ["assemble", "check_names", "check_structure", "parse_size", "Init", "LrScale",
           "PatternStmt"]
