"""Structural and name checks shared by both syntaxes, so they report identical diagnostics.

`assemble` turns parsed statements into a Spec (version, duplicates, options, patterns);
`check_names` resolves names against the registries (transforms, initialisers, sources).
Both collect every problem before raising.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wmap import patterns as P
from wmap.errors import DiagnosticBag, Span, WmapError, did_you_mean
from wmap.spec import (
    DTYPE_POLICIES,
    NONFINITE_POLICIES,
    OPTIONS,
    Call,
    Init,
    LrScale,
    Option,
    PatternStmt,
    Rule,
    SourceDecl,
    Spec,
    TargetDecl,
)

SUPPORTED_VERSIONS = (1,)


def assemble(statements: Sequence[tuple[Any, list[str]]], trailing: Sequence[str], path: str | None,
             text: str | None, bag: DiagnosticBag) -> Spec:
    """Statements (in file order, with their comments) -> a checked Spec."""
    version: int | None = None
    version_span: Span | None = None
    sources: list[SourceDecl] = []
    target: TargetDecl | None = None
    options: list[Option] = []
    rules: list[Rule] = []
    lists: dict[str, list[Any]] = {"drop": [], "init": [], "keep": [], "freeze": [], "lr": []}
    for node, comments in statements:
        cm = tuple(comments)
        if isinstance(node, tuple) and node[0] == "version":
            if version is not None:
                bag.add("WM107", "the version line appears twice", node[2], "keep the first `wmap 1`")
            version, version_span = node[1], node[2]
            continue
        if isinstance(node, tuple):
            kind, items = node
            if items:
                items[0] = _with_comments(items[0], cm)
            lists[kind].extend(items)
            continue
        node = _with_comments(node, cm)
        if isinstance(node, SourceDecl):
            if any(s.name == node.name for s in sources):
                bag.add("WM107", f"source `{node.name}` is declared twice", node.span,
                        "give each source its own name: `source base \"a\"` and `source tuned \"b\"`")
            sources.append(node)
        elif isinstance(node, TargetDecl):
            if target is not None:
                bag.add("WM107", "a spec has one target; this is the second", node.span,
                        f"the first is at line {target.span.line}")
            else:
                target = node
        elif isinstance(node, Option):
            if any(o.name == node.name for o in options):
                bag.add("WM107", f"option `{node.name}` is set twice", node.span, "keep one")
            options.append(node)
        elif isinstance(node, Rule):
            rules.append(node)
    if version is None:
        bag.add("WM102", "the spec does not say which language version it uses", Span(path, 1, 1),
                "start the file with `wmap 1` (YAML: `wmap: 1`)")
    elif version not in SUPPORTED_VERSIONS:
        bag.add("WM102", f"wmap language version {version} is not supported", version_span,
                "this wmap reads version 1")
    spec = Spec(
        version=version or 1, sources=tuple(sources), target=target, options=tuple(options),
        rules=tuple(rules), drop=tuple(lists["drop"]), init=tuple(lists["init"]), keep=tuple(lists["keep"]),
        freeze=tuple(lists["freeze"]), lr=tuple(lists["lr"]), path=path, text=text,
        trailing_comments=tuple(trailing),
    )
    check_structure(spec, bag)
    bag.raise_if_errors()
    return spec


def _with_comments(node: Any, comments: tuple[str, ...]) -> Any:
    if not comments:
        return node
    import dataclasses
    return dataclasses.replace(node, comments=comments) if hasattr(node, "comments") else node


def check_structure(spec: Spec, bag: DiagnosticBag) -> None:
    for opt in spec.options:
        _check_option(opt, bag)
    for rule in spec.rules:
        _check_rule(rule, spec, bag)
    for group in (spec.drop, spec.keep, spec.freeze):
        for st in group:
            _pattern(st.pattern, st.span, bag, spec)
    for st in spec.init:
        _pattern(st.pattern, st.span, bag, spec)
    for lr in spec.lr:
        _pattern(lr.pattern, lr.span, bag, spec)
        if not lr.factor >= 0:
            bag.add("WM106", f"lr multiplier {lr.factor} is negative", lr.span, "use a factor >= 0 (0 = no updates)")


def _check_option(opt: Option, bag: DiagnosticBag) -> None:
    if opt.name not in OPTIONS:
        bag.add("WM105", f"unknown option `{opt.name}`", opt.span,
                did_you_mean(opt.name, OPTIONS) or "known options: " + ", ".join(sorted(OPTIONS)))
        return
    typ, _, _ = OPTIONS[opt.name]
    v = opt.value
    ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
    if opt.name in ("strip_prefix", "target_strip_prefix") and isinstance(v, tuple):
        ok = all(isinstance(x, str) for x in v)
    if not ok:
        want = {bool: "true or false", int: "a whole number", str: "a string"}.get(typ, "a string or a list of strings")  # type: ignore[call-overload]
        bag.add("WM106", f"option `{opt.name}` must be {want}, not `{v!r}`", opt.span, OPTIONS[opt.name][2])
        return
    choices = {"dtype": DTYPE_POLICIES, "nonfinite": NONFINITE_POLICIES}.get(opt.name)
    if choices and v not in choices:
        bag.add("WM106", f"option `{opt.name}` cannot be `{v}`", opt.span,
                did_you_mean(str(v), choices) or "choose one of: " + ", ".join(choices))
    if opt.name == "shard_size":
        try:
            parse_size(str(v))
        except ValueError:
            bag.add("WM106", f"option `shard_size` cannot be `{v}`", opt.span, "write a size such as `2GB` or `500MB`")


def parse_size(text: str) -> int:
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    s = text.strip().upper().replace(" ", "")
    num = s.rstrip("KMGTIB")
    unit = s[len(num):]
    if unit not in units or not num:
        raise ValueError(text)
    value = int(float(num) * units[unit])
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
        bag.add("WM112", f"pattern `{text}` names source `{pat.source}`, which the spec does not declare", span,
                did_you_mean(pat.source, spec.source_names) or
                "declared sources: " + ", ".join(f"`{n}`" for n in spec.source_names))
    return pat


def _check_rule(rule: Rule, spec: Spec, bag: DiagnosticBag) -> None:
    srcs = [_pattern(s, rule.span, bag, spec) for s in rule.sources]
    tmpl = _pattern(rule.target, rule.span, bag, None, template=True)
    if tmpl is None or any(s is None for s in srcs):
        return
    for problem in P.check_template(tmpl, tuple(s for s in srcs if s is not None)):
        bag.add("WM109", f"rule `{' , '.join(rule.sources)} -> {rule.target}`: {problem}", rule.span,
                "every capture the target uses must be bound by each source pattern")
    if any(s is not None and s.optional for s in srcs):
        bag.add("WM108", "`?` marks drop/keep/freeze/init/lr patterns as optional; a rule uses `optional`",
                rule.span, f"write `optional {', '.join(x.lstrip('?') for x in rule.sources)} -> {rule.target}`")


def check_names(spec: Spec) -> None:
    """Resolve every transform and initialiser name; raise WmapError with all unknown names."""
    from wmap.initializers import INITIALIZERS
    from wmap.transforms import REGISTRY, TransformError, build

    bag = DiagnosticBag(sources={spec.path or "<spec>": spec.text or ""})
    for rule in spec.rules:
        for call in rule.via:
            try:
                build(call.name, call.args, call.kwargs)
            except TransformError as e:
                hint = e.hint
                if e.code == "WM103" and call.name in INITIALIZERS:
                    hint = f"`{call.name}` is an initialiser: use it in `init PATTERN = {call.name}`"
                bag.add(e.code, e.message, call.span if call.span.line else rule.span, hint)
    for init in spec.init:
        _check_init(init.call, init.span, bag, REGISTRY)
    bag.raise_if_errors()


def _check_init(call: Call, span: Span, bag: DiagnosticBag, transforms: object) -> None:
    from wmap.initializers import INITIALIZERS, InitError, make_initializer

    where = call.span if call.span.line else span
    if call.name not in INITIALIZERS:
        bag.add("WM113", f"unknown initialiser `{call.name}`", where,
                did_you_mean(call.name, INITIALIZERS) or "known: " + ", ".join(sorted(INITIALIZERS)))
        return
    try:
        make_initializer(call)
    except InitError as e:
        bag.add("WM113", str(e), where, e.hint)


def check_spec(spec: Spec) -> Spec:
    """Everything that can be checked without a model: names as well as structure."""
    check_names(spec)
    return spec


def raise_with_sources(err: WmapError, spec_text: str, path: str | None) -> WmapError:
    return WmapError(err.diagnostics, {path or "<spec>": spec_text, **err.sources})


__all__ = ["assemble", "check_names", "check_spec", "check_structure", "parse_size", "Init", "LrScale",
           "PatternStmt"]
