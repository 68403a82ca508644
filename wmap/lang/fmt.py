"""Print a Spec in canonical form, in either syntax.

Canonical order: version, uses, sources, target, options, rules (in file order), then drop,
init, keep, freeze and lr. A spec's `use`s are printed as written, never inlined: `fmt` works on
the file, not on what it adds up to. `.wmap` output keeps comments; YAML output cannot carry
them (YAML comments are not part of the document model), which the CLI says when
converting. `parse(print(spec)) == spec` for both syntaxes; tests prove it with
generated ASTs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wmap.core.frameworks import FRAMEWORKS
from wmap.core.names import is_factory_syntax
from wmap.lang.spec import DEFAULT_SOURCE, Call, Expr, Fn, Key, Name, Neg, Num, Ref, Spec, Text, Value
from wmap.lang.statements import KEYWORDS

if TYPE_CHECKING:
    import yaml

_PATTERN_RE = re.compile(r"\??([A-Za-z_][A-Za-z0-9_]*:)?([A-Za-z0-9_*/.]|-(?!>)|\{[^{}\n]*\})+")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ARROW_COLUMN_MAX = 44
LINE_MAX = 100


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def pattern_text(p: str) -> str:
    """A pattern as written in `.wmap`: bare when the lexer reads it back whole, quoted otherwise."""
    if _PATTERN_RE.fullmatch(p) and p not in KEYWORDS and not _is_number(p):
        return p
    return quote(p)


def _is_number(s: str) -> bool:
    return bool(re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", s))


def value_text(v: Value) -> str:
    if isinstance(v, Ref):
        return f"${v.name}"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if any(c in r for c in ".eE") else r + ".0"
    if isinstance(v, str):
        if _WORD_RE.fullmatch(v) and v not in ("true", "false", "null"):
            return v
        return quote(v)
    return "[" + ", ".join(value_text(x) for x in v) + "]"


# loosest first; `??` is right-associative, the others left
_PRECEDENCE = {"??": 1, "+": 2, "-": 2, "*": 3, "/": 3, "//": 3, "%": 3}


def expr_text(e: Expr, outer: int = 0, tie: bool = False) -> str:
    """An expression with the fewest parentheses that read back as the same tree. `tie`: this is the
    operand of an operator of `outer` precedence on the side where an equal one needs parentheses."""
    if isinstance(e, Num):
        return value_text(e.value) if e.value >= 0 else "-" + value_text(-e.value)
    if isinstance(e, Text):
        return quote(e.value)
    if isinstance(e, Key):
        return "config." + ".".join(e.path)
    if isinstance(e, Name):
        return e.name
    if isinstance(e, Fn):
        return f"{e.name}({', '.join(expr_text(a) for a in e.args)})"
    if isinstance(e, Neg):
        inner = expr_text(e.operand, 4)
        return f"-{inner}" if not inner.startswith("-") else f"-({inner})"
    p = _PRECEDENCE[e.op]
    assoc_right = e.op == "??"
    text = f"{expr_text(e.left, p, tie=assoc_right)} {e.op} {expr_text(e.right, p, tie=not assoc_right)}"
    tight = p < outer or (p == outer and tie)
    return f"({text})" if tight else text


def call_text(c: Call) -> str:
    if not c.args and not c.kwargs:
        return c.name
    parts = [value_text(a) for a in c.args] + [f"{k}={value_text(v)}" for k, v in c.kwargs]
    return f"{c.name}({', '.join(parts)})"


def _comment_lines(comments: Sequence[str]) -> tuple[list[str], str]:
    lead = [c for c in comments if not c.startswith(" ")]
    trail = " ".join(c.strip() for c in comments if c.startswith(" "))
    return lead, trail


def _emit(out: list[str], line: str, comments: Sequence[str]) -> None:
    lead, trail = _comment_lines(comments)
    out.extend(lead)
    out.append(f"{line}  {trail}" if trail else line)


def to_wmap(spec: Spec) -> str:
    out: list[str] = [f"wmap {spec.version}"]
    uses: list[str] = []
    for u in spec.uses:
        _emit(uses, f"use {quote(u.path)}" + "".join(f" | {call_text(c)}" for c in u.via), u.comments)
    if uses:
        out += [""] + uses
    header: list[str] = []
    for s in spec.sources:
        words = ["source"]
        if s.name != DEFAULT_SOURCE or (s.framework is None and s.name in FRAMEWORKS):
            words.append(s.name)
        if s.framework:
            words.append(s.framework)
        _emit(header, " ".join(words + ([quote(s.location)] if s.location else [])), s.comments)
    if spec.target:
        words = ["target"] + ([spec.target.framework] if spec.target.framework else [])
        _emit(header, " ".join(words + ([quote(spec.target.location)] if spec.target.location else [])),
              spec.target.comments)
    for o in spec.options:
        _emit(header, f"option {o.name} = {value_text(o.value)}", o.comments)
    if spec.config is not None:
        c = spec.config
        _emit(header, f"config {quote(c.path) if c.path is not None else c.endpoint}", c.comments)
    for let in spec.lets:
        _emit(header, f"let {let.name} = {expr_text(let.expr)}", let.comments)
    if header:
        out += [""] + header
    if spec.rules:
        out.append("")
        out += _rules(spec)
    tail: list[str] = []
    for kind in ("drop", "init", "keep", "freeze", "lr", "ack"):
        tail += _list_statements(spec, kind)
    if tail:
        out += [""] + tail
    if spec.trailing_comments:
        out += [""] + list(spec.trailing_comments)
    return "\n".join(out) + "\n"


def _rules(spec: Spec) -> list[str]:
    lefts = [("optional " if r.optional else "") + ", ".join(pattern_text(s) for s in r.sources) for r in spec.rules]
    width = min(max((len(x) for x in lefts), default=0), ARROW_COLUMN_MAX)
    out: list[str] = []
    for rule, left in zip(spec.rules, lefts, strict=True):
        head = f"{left.ljust(width)} -> {pattern_text(rule.target)}"
        calls = [call_text(c) for c in rule.via]
        one_line = head + "".join(f" | {c}" for c in calls)
        lead, trail = _comment_lines(rule.comments)
        out.extend(lead)
        if len(one_line) <= LINE_MAX or not calls:
            out.append(f"{one_line}  {trail}" if trail else one_line)
        else:
            out.append(f"{head}  {trail}" if trail else head)
            out.extend(f"    | {c}" for c in calls)
    return out


def _factor(f: float) -> float | int:
    """An lr multiplier as people write it: `10`, not `10.0` (it reads back as the same float)."""
    return int(f) if float(f).is_integer() and abs(f) < 1e15 else f


def _list_statements(spec: Spec, kind: str) -> list[str]:
    out: list[str] = []
    items: Sequence[Any] = getattr(spec, kind)
    if kind == "init":
        for it in items:
            _emit(out, f"init {pattern_text(it.pattern)} = {call_text(it.call)}", it.comments)
        return out
    if kind == "lr":
        for it in items:
            _emit(out, f"lr {pattern_text(it.pattern)} * {value_text(_factor(it.factor))}", it.comments)
        return out
    if kind == "ack":  # one line per pattern: each is a reviewed warning of its own
        for it in items:
            _emit(out, f"ack {it.code} {pattern_text(it.pattern)}", it.comments)
        return out
    # drop/keep/freeze: pack patterns on one line until a comment or the width forces a break
    line: list[str] = []
    comments: list[str] = []
    for it in items:
        text = pattern_text(it.pattern)
        cand = f"{kind} " + ", ".join(line + [text])
        if line and (it.comments or len(cand) > LINE_MAX):
            _emit(out, f"{kind} " + ", ".join(line), comments)
            line, comments = [], []
        line.append(text)
        comments.extend(it.comments)
    if line:
        _emit(out, f"{kind} " + ", ".join(line), comments)
    return out


# ---------------------------------------------------------------------------------------------


class _Flow(dict):  # type: ignore[type-arg]
    """A mapping printed on one line (`{from: a, to: b}`), as rules read best."""


_LINE_BREAKS = re.compile("[\x85\u2028\u2029\ufeff]")


@functools.lru_cache(maxsize=1)
def _dumper() -> type[yaml.SafeDumper]:
    """The YAML dumper, made on first use: PyYAML is imported for `to_yaml`, not by everything that
    prints a value in spec syntax (plans, diagnostics)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def _str(d: yaml.SafeDumper, v: str) -> yaml.ScalarNode:
        # PyYAML may write NEL and the Unicode line/paragraph separators raw inside single quotes,
        # where reading folds them into spaces; double quotes escape them (`\N`, `\L`, `\P`).
        return d.represent_scalar("tag:yaml.org,2002:str", v, style='"' if _LINE_BREAKS.search(v) else None)

    Dumper.add_representer(_Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True))
    Dumper.add_representer(tuple, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
    Dumper.add_representer(str, _str)
    return Dumper


def _yaml_value(v: Value) -> object:
    return list(_yaml_value(x) for x in v) if isinstance(v, tuple) else v


def _endpoint(location: str, framework: str | None) -> object:
    # the schema's `module:callable` (ASCII names; `\w` would also take other scripts' letters)
    key = "model" if is_factory_syntax(location) else "path"
    if framework is None and key == "path" and location:
        return location
    d: dict[str, object] = {}
    if framework:
        d["framework"] = framework
    if location:
        d[key] = location
    return _Flow(d)


def to_yaml(spec: Spec) -> str:
    import yaml
    text: str = yaml.dump(spec_document(spec), Dumper=_dumper(), sort_keys=False, allow_unicode=True,
                          width=LINE_MAX)
    return text


def spec_document(spec: Spec) -> dict[str, object]:
    """The spec as the YAML form's document (plain dicts, lists, tuples and scalars): what `to_yaml`
    prints, and what a plan's spec digest hashes (as JSON, so a digest needs no PyYAML)."""
    doc: dict[str, object] = {"wmap": spec.version}
    if spec.uses:
        doc["use"] = [u.path if not u.via else _Flow({"path": u.path, "via": call_text(u.via[0]) if len(u.via) == 1
                                                       else tuple(call_text(c) for c in u.via)}) for u in spec.uses]
    if len(spec.sources) == 1 and spec.sources[0].name == DEFAULT_SOURCE:
        doc["source"] = _endpoint(spec.sources[0].location, spec.sources[0].framework)
    elif spec.sources:
        doc["sources"] = {s.name: _endpoint(s.location, s.framework) for s in spec.sources}
    if spec.target:
        doc["target"] = _endpoint(spec.target.location, spec.target.framework)
    if spec.options:
        doc["options"] = {o.name: _yaml_value(o.value) for o in spec.options}
    if spec.config is not None:
        doc["config"] = spec.config.path if spec.config.path is not None else _Flow({"from": spec.config.endpoint})
    if spec.lets:
        doc["let"] = {x.name: x.expr.value if isinstance(x.expr, Num) and not isinstance(x.expr.value, bool)
                      else expr_text(x.expr) for x in spec.lets}
    if spec.rules:
        rules = []
        for r in spec.rules:
            d: dict[str, object] = {"from": r.sources[0] if len(r.sources) == 1 else tuple(r.sources), "to": r.target}
            if r.via:
                d["via"] = call_text(r.via[0]) if len(r.via) == 1 else tuple(call_text(c) for c in r.via)
            if r.optional:
                d["optional"] = True
            rules.append(_Flow(d))
        doc["rules"] = rules
    for kind in ("drop",):
        if getattr(spec, kind):
            doc[kind] = tuple(p.pattern for p in getattr(spec, kind))
    if spec.init:
        doc["init"] = {i.pattern: call_text(i.call) for i in spec.init}
    for kind in ("keep", "freeze"):
        if getattr(spec, kind):
            doc[kind] = tuple(p.pattern for p in getattr(spec, kind))
    if spec.lr:
        doc["lr"] = {x.pattern: x.factor for x in spec.lr}
    if spec.ack:
        acks: dict[str, list[str]] = {}
        for a in spec.ack:
            acks.setdefault(a.code, []).append(a.pattern)
        doc["ack"] = {code: pats[0] if len(pats) == 1 else tuple(pats) for code, pats in acks.items()}
    return doc
