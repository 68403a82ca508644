"""The YAML form -> the same Spec AST, checked against `specs/wmap.schema.json`.

`yaml.compose` keeps every node's line and column, so schema errors and later
diagnostics point into the YAML file. Transform calls are strings parsed by the
grammar's own `call` rule: one parser for calls in both syntaxes.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from wmap.core.errors import Diagnostic, DiagnosticBag, Span, WmapError, did_you_mean
from wmap.lang.dsl import parse_call, parse_expr
from wmap.lang.spec import (
    DEFAULT_SOURCE,
    Ack,
    Call,
    ConfigDecl,
    Init,
    Let,
    LrScale,
    Num,
    Option,
    PatternStmt,
    Rule,
    SourceDecl,
    Spec,
    TargetDecl,
    Use,
)
from wmap.lang.statements import ListKind, Statement, StatementList, VersionLine
from wmap.lang.validate import assemble, check_endpoint, check_lr_factor, check_option, sort_diagnostics

if TYPE_CHECKING:
    import jsonschema

PathKey = tuple[object, ...]
MAX_DEPTH = 64
MAX_NODES = 2_000_000  # YAML aliases can expand a small file into billions of nodes


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, object]:
    data: dict[str, object] = json.loads((resources.files("wmap") / "schema" / "wmap.schema.json").read_text("utf-8"))
    return data


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    """The schema's validator, built once per process. jsonschema is imported here, when a YAML spec
    is validated, never for a `.wmap` spec: its import is most of what a YAML check costs."""
    import jsonschema
    return jsonschema.Draft202012Validator(schema())


def parse_yaml(text: str, path: str | None = None, *, names: bool = False) -> Spec:
    """Parse the YAML form into a validated Spec; raises WmapError with every problem found.

    YAML syntax errors stop at the first; schema errors are all reported; once the document
    has the right shape, structural and (with `names`) name errors are reported together.
    """
    key = path or "<spec>"
    sources = {key: text}
    try:
        data, spans = _compose(text, path)
    except WmapError as e:
        raise WmapError(e.diagnostics, sources) from None
    bag = DiagnosticBag(sources=sources)
    _schema_errors(data, spans, path, bag)
    if bag.has_errors:
        _shared_checks(data, spans, path, bag)
        sort_diagnostics(bag)
        bag.raise_if_errors()
    part_spans: dict[Span, tuple[Span, ...]] = {}
    statements = list(_statements(data, spans, path, bag, part_spans))
    return assemble([(s, []) for s in statements], [], path, text, bag, names=names,
                    part_spans=part_spans)


# ---------------------------------------------------------------------------------------------


def _flow_depth(text: str) -> int:
    """The deepest `[`/`{` nesting, counting brackets anywhere (also in strings: an overestimate)."""
    depth = peak = 0
    for ch in re.sub(r"[^\[\]{}]+", "", text):
        depth = depth + 1 if ch in "[{" else max(depth - 1, 0)
        peak = max(peak, depth)
    return peak


def _compose(text: str, path: str | None) -> tuple[Any, dict[PathKey, Span]]:
    # PyYAML's scanner is quadratic in flow nesting (`{{{{...` takes seconds), so refuse it first;
    # real specs nest a few levels, and brackets inside strings only make this count higher.
    if _flow_depth(text) > 4 * MAX_DEPTH:
        raise WmapError([Diagnostic("WM116", "error", "the YAML is nested too deeply", Span(path, 1, 1),
                                    f"a spec needs at most {MAX_DEPTH} levels")])
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = Span(path, mark.line + 1, mark.column + 1) if mark else Span(path, 1, 1)
        problem = (e.problem or "invalid YAML").strip()
        raise WmapError([Diagnostic("WM111", "error", f"YAML syntax error: {problem}", span,
                                    "check indentation and quoting around this point")]) from None
    except yaml.YAMLError as e:
        raise WmapError([Diagnostic("WM111", "error", f"YAML syntax error: {e}", Span(path, 1, 1))]) from None
    except RecursionError:
        raise WmapError([Diagnostic("WM116", "error", "the YAML is nested too deeply", Span(path, 1, 1),
                                    f"a spec needs at most {MAX_DEPTH} levels")]) from None
    if node is None:
        raise WmapError([Diagnostic("WM110", "error", "the spec is empty", Span(path, 1, 1),
                                    "start with `wmap: 1`")])
    spans: dict[PathKey, Span] = {}
    # Without aliases a document has about as many values as characters; far more means aliases
    # repeating parts (a "billion laughs"), refused at once rather than after millions of values.
    data = _to_python(node, (), spans, path, 0, min(MAX_NODES, 2 * len(text) + 1000))
    return data, spans


def _to_python(node: yaml.Node, key: PathKey, spans: dict[PathKey, Span], path: str | None, depth: int,
               limit: int = MAX_NODES) -> Any:
    if depth > MAX_DEPTH:
        raise WmapError([Diagnostic("WM116", "error", "the YAML is nested too deeply", _span(node, path),
                                    f"a spec needs at most {MAX_DEPTH} levels")])
    if len(spans) > limit:
        raise WmapError([Diagnostic("WM116", "error", f"the YAML expands to more than {limit:,} values",
                                    _span(node, path), "are aliases (`*name`) repeating large parts?")])
    spans[key] = _span(node, path)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k_node, v_node in node.value:
            k = _scalar(k_node, path) if isinstance(k_node, yaml.ScalarNode) else None
            if not isinstance(k, (str, int, float, bool)) or k is None:
                raise WmapError([Diagnostic("WM110", "error", "mapping keys must be plain text", _span(k_node, path))])
            k = str(k)
            if k in out:
                raise WmapError([Diagnostic("WM107", "error", f"key `{k}` appears twice in one mapping",
                                            _span(k_node, path), "YAML would silently keep only the last one")])
            spans[key + (k, "__key__")] = _span(k_node, path)
            out[k] = _to_python(v_node, key + (k,), spans, path, depth + 1, limit)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, key + (i,), spans, path, depth + 1, limit) for i, v in enumerate(node.value)]
    return _scalar(node, path)


_SCALAR = yaml.SafeLoader("")


def _scalar(node: yaml.Node, path: str | None = None) -> object:
    """A scalar's value by the safe loader's rules; a tag it cannot construct (`!!python/...`, `!foo`)
    or a value its tag rejects (`!!int 0xZZ`) is a diagnostic, not a ConstructorError or ValueError."""
    try:
        return _SCALAR.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, ArithmeticError) as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise WmapError([Diagnostic("WM110", "error", f"cannot read the YAML value `{str(node.value)[:40]}`: "
                                    f"{problem}", _span(node, path),
                                    "YAML tags are not supported in a spec: write plain values")]) from None
    finally:  # the shared loader would otherwise keep every node it ever built
        _SCALAR.constructed_objects.clear()
        _SCALAR.recursive_objects.clear()


def _span(node: yaml.Node, path: str | None) -> Span:
    s, e = node.start_mark, node.end_mark
    quoted = 1 if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"') else 0
    return Span(path, s.line + 1, s.column + 1 + quoted, e.line + 1, e.column + 1 - quoted)


def _near(spans: dict[PathKey, Span], key: PathKey) -> Span | None:
    while key not in spans and key:
        key = key[:-1]
    return spans.get(key)


def _schema_errors(data: Any, spans: dict[PathKey, Span], path: str | None, bag: DiagnosticBag) -> None:
    from jsonschema.exceptions import best_match
    validator = _validator()
    by_path: dict[PathKey, list[jsonschema.ValidationError]] = {}
    for err in validator.iter_errors(data):
        by_path.setdefault(tuple(err.absolute_path), []).append(err)
    found: list[Diagnostic] = []
    for key in by_path:
        err = best_match(by_path[key])
        deep = tuple(err.absolute_path)
        if _left_to_validate(err, deep, data):
            continue
        found.append(_schema_diag(err, deep, spans, path))
    found.sort(key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))
    bag.items.extend(found)


def _shared_checks(data: Any, spans: dict[PathKey, Span], path: str | None, bag: DiagnosticBag) -> None:
    """When the schema fails, the checks `_left_to_validate` skipped still run, on what is well-formed."""
    if not isinstance(data, dict):
        return

    def sp(*key: object) -> Span:
        return _near(spans, tuple(key)) or Span(path, 1, 1)

    if isinstance(data.get("options"), dict):
        for name, value in data["options"].items():
            check_option(Option(name, tuple(value) if isinstance(value, list) else value,
                                sp("options", name, "__key__")), bag,
                         (sp("options", name, "__key__"), sp("options", name)))
    if isinstance(data.get("lr"), dict):
        for pat, f in data["lr"].items():
            if isinstance(f, (int, float)) and not isinstance(f, bool):
                check_lr_factor(LrScale(pat, float(f), sp("lr", pat, "__key__")), bag)
    endpoints: list[tuple[object, str, Any]] = [("source", DEFAULT_SOURCE, data.get("source"))]
    if isinstance(data.get("sources"), dict):
        endpoints += [(("sources", n), n, ep) for n, ep in data["sources"].items()]
    for key, name, ep in endpoints:
        if isinstance(ep, dict) and isinstance(ep.get("framework"), str):
            where = sp(*key) if isinstance(key, tuple) else sp(key)
            fw_key = (*key, "framework") if isinstance(key, tuple) else (key, "framework")
            check_endpoint(SourceDecl(name, str(ep.get("path") or ep.get("model") or "?"), ep["framework"], where),
                           bag, sp(*fw_key))
    target = data.get("target")
    if isinstance(target, dict) and isinstance(target.get("framework"), str):
        check_endpoint(TargetDecl(str(target.get("path") or target.get("model") or "?"), target["framework"],
                                  sp("target")), bag, sp("target", "framework"))


def _left_to_validate(err: jsonschema.ValidationError, key: PathKey, data: Any) -> bool:
    """Errors the shared checks in `validate` report with the same words in both syntaxes:
    option names and values, negative lr multipliers, framework names."""
    if key[:1] == ("options",) and isinstance(data, dict) and isinstance(data.get("options"), dict):
        return len(key) >= 2 or err.validator == "additionalProperties"
    if key[:1] == ("lr",) and len(key) == 2 and err.validator == "minimum":
        return True
    return bool(key) and key[-1] == "framework" and err.validator == "enum"


def _where(key: PathKey) -> str:
    """`rules[0].via`, `lr["head.**"]`: the place in the document, as a reader would write it."""
    out = ""
    for k in key:
        if isinstance(k, int):
            out += f"[{k}]"
        elif not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)):
            out += f"[{json.dumps(str(k))}]"
        else:
            out += f".{k}" if out else str(k)
    return out or "top level"


def _schema_diag(err: jsonschema.ValidationError, key: PathKey, spans: dict[PathKey, Span],
                 path: str | None) -> Diagnostic:
    where = _where(key)
    span = _near(spans, key) or Span(path, 1, 1)
    if err.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", err.message.split("(")[-1])
        allowed = list((err.schema.get("properties") or {}).keys()) if isinstance(err.schema, dict) else []
        bad = extra[0] if extra else "?"
        kspan = spans.get(key + (bad, "__key__"), span)
        return Diagnostic("WM110", "error", f"unknown key `{bad}` in {where}", kspan,
                          did_you_mean(bad, allowed) or ("allowed keys: " + ", ".join(allowed) if allowed else None))
    if err.validator == "required":
        missing = re.findall(r"'([^']+)'", err.message)
        return Diagnostic("WM110", "error", f"{where} is missing `{missing[0] if missing else '?'}`", span,
                          "a YAML spec starts with `wmap: 1`" if missing == ["wmap"] else None)
    if err.validator == "const" and key == ("wmap",):
        quoted = isinstance(err.instance, str)
        shown = str(err.instance) if isinstance(err.instance, int) else json.dumps(err.instance)
        return Diagnostic("WM102", "error", f"wmap language version {shown} is not supported", span,
                          "write the number without quotes: `wmap: 1`" if quoted else "this wmap reads version 1")
    if err.validator == "not" and not key:
        return Diagnostic("WM110", "error", "use either `source` or `sources`, not both",
                          spans.get(("sources", "__key__"), span),
                          "`sources` names several sources; `source` is the single one")
    if err.validator == "enum":
        choices = [str(c) for c in err.validator_value] if isinstance(err.validator_value, list) else []
        return Diagnostic("WM110", "error", f"{where} cannot be {_shown(err.instance)}", span,
                          did_you_mean(str(err.instance), choices) or "choose one of: " + ", ".join(choices))
    if err.validator == "pattern" and key and key[0] in ("rules", "init"):
        what = "an initialiser call" if key[0] == "init" else "a transform call"
        if isinstance(err.instance, str) and "|" in err.instance:
            hint = "write a chain as a list: `via: [transpose, split(0)]`"
        elif key[0] == "init":
            hint = "write a call such as `zeros` or `normal(std=0.02)`"
        else:
            hint = "write a call such as `transpose` or `split(0)`"
        return Diagnostic("WM110", "error", f"{where} is not {what}: {_shown(err.instance)}", span, hint)
    if err.validator == "pattern" and key[-1:] == ("model",):
        return Diagnostic("WM110", "error", f"{where} is not a `module:callable`: {_shown(err.instance)}", span,
                          "e.g. `model: \"mypkg.models:build\"`; a checkpoint file goes in `path:`")
    if err.validator in ("minItems", "minLength", "minProperties"):
        return Diagnostic("WM110", "error", f"{where} is empty", span, _type_hint(key))
    if err.instance is None and err.validator in ("type", "oneOf"):
        return Diagnostic("WM110", "error", f"{where} is empty", span,
                          "remove the key, or give it a value: " + (_type_hint(key) or "see the schema"))
    if err.validator in ("oneOf", "not") and isinstance(err.instance, dict) and key[:1] in (
            ("source",), ("sources",), ("target",)):
        both = "path" in err.instance and "model" in err.instance
        return Diagnostic("WM110", "error", f"{where} needs " + ("`path` or `model`, not both" if both else
                                                                 "a `path` or a `model`"), span, _type_hint(key))
    if err.validator in ("type", "oneOf"):
        return Diagnostic("WM110", "error", f"{where} has the wrong type ({_yaml_type(err.instance)})", span,
                          _type_hint(key))
    return Diagnostic("WM110", "error", f"{where}: {err.message}", span, None)


def _shown(v: object) -> str:
    return f"`{v}`" if isinstance(v, (int, float)) else f"`{json.dumps(v)}`" if not isinstance(v, str) else f"`{v}`"


def _yaml_type(v: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "empty"}.get(type(v), type(v).__name__)


def _type_hint(key: PathKey) -> str | None:
    hints = {
        "source": "`source: {framework: torch, path: model.safetensors}` or a path string",
        "sources": "`sources: {base: base.safetensors, tuned: {framework: torch, path: tuned.safetensors}}`",
        "wmap": "`wmap: 1`",
        "target": "`target: {framework: keras, model: \"pkg.models:build\"}` or a path string",
        "rules": "`rules:` is a list of `{from: ..., to: ..., via: ...}`",
        "drop": "a pattern or a list of patterns", "keep": "a pattern or a list of patterns",
        "freeze": "a pattern or a list of patterns", "init": "a mapping `pattern: initialiser`",
        "lr": "a mapping `pattern: multiplier`", "ack": "a mapping `WM310: pattern` (or a list of patterns)",
        "options": "a mapping of option names to values",
        "use": "a list of spec paths or recipe names: `use: [llama3.wmap, {path: base.wmap, via: cast(\"float16\")}]`",
    }
    if key and key[0] == "rules" and len(key) >= 3:
        return {"from": "a pattern or a list of patterns", "to": "one target template",
                "via": "a call string or a list of call strings", "optional": "true or false"}.get(str(key[2]))
    if key and key[0] == "rules" and len(key) == 2:
        return "a rule reads `{from: PATTERN, to: TEMPLATE, via: CALL}`"
    if not key:
        return "a spec is a mapping: `wmap: 1`, `source: ...`, `target: ...`, `rules: [...]`"
    return hints.get(str(key[0])) if key else None


# ---------------------------------------------------------------------------------------------


def _as_list(v: object) -> list[object]:
    return v if isinstance(v, list) else [v]


def _statements(data: dict[str, Any], spans: dict[PathKey, Span], path: str | None, bag: DiagnosticBag,
                part_spans: dict[Span, tuple[Span, ...]]) -> Iterator[Statement]:
    def sp(*key: object) -> Span:
        return _near(spans, tuple(key)) or Span(path, 1, 1)

    def calls(texts: list[Any], keys: list[PathKey]) -> tuple[Call, ...]:
        out = []
        for text, key in zip(texts, keys, strict=True):
            try:
                out.append(parse_call(text, sp(*key)))
            except WmapError as e:  # reported with the rest; the rule keeps its other calls
                bag.extend(e.diagnostics)
        return tuple(out)

    def patterns(kind: ListKind) -> StatementList:
        pats = _as_list(data.get(kind) or [])
        return StatementList(kind, tuple(PatternStmt(str(p), sp(kind, k) if isinstance(data[kind], list) else sp(kind))
                                         for k, p in enumerate(pats)))

    yield VersionLine(data.get("wmap"), sp("wmap"))
    for k, u in enumerate(data.get("use") or []):
        if isinstance(u, str):
            yield Use(u, (), sp("use", k))
            continue
        via = _as_list(u.get("via", []))
        listed = isinstance(u.get("via"), list)
        yield Use(u["path"], calls(via, [("use", k, "via", j) if listed else ("use", k, "via") for j in range(len(via))]),
                  sp("use", k))
    endpoints: list[tuple[Any, str | None, Any, PathKey]] = []
    if "source" in data:
        endpoints.append((SourceDecl, DEFAULT_SOURCE, data["source"], ("source",)))
    endpoints += [(SourceDecl, name, ep, ("sources", name)) for name, ep in (data.get("sources") or {}).items()]
    if "target" in data:
        endpoints.append((TargetDecl, None, data["target"], ("target",)))
    for cls, name, ep, key in endpoints:
        decl = _endpoint(cls, name, ep, sp(*key))
        if isinstance(ep, dict) and "framework" in ep:
            part_spans[decl.span] = (sp(*key, "framework"),)
        yield decl
    for name, value in (data.get("options") or {}).items():
        v = tuple(value) if isinstance(value, list) else value
        option = Option(name, v, sp("options", name, "__key__"))
        part_spans[option.span] = (option.span, sp("options", name))
        yield option
    if "config" in data:
        c = data["config"]
        yield (ConfigDecl(path=c, span=sp("config")) if isinstance(c, str) else
               ConfigDecl(endpoint=c["from"], span=sp("config")))
    for name, value in (data.get("let") or {}).items():
        try:
            expr = parse_expr(value, sp("let", name)) if isinstance(value, str) else Num(value)
        except WmapError as e:  # reported with the rest
            bag.extend(e.diagnostics)
            continue
        yield Let(name, expr, sp("let", name, "__key__"))
    for i, r in enumerate(data.get("rules") or []):
        via = _as_list(r.get("via", []))
        listed = isinstance(r.get("via"), list)
        chain = calls(via, [("rules", i, "via", k) if listed else ("rules", i, "via") for k in range(len(via))])
        rule = Rule(tuple(str(f) for f in _as_list(r["from"])), r["to"], chain, bool(r.get("optional", False)), sp("rules", i))
        froms = [sp("rules", i, "from", k) for k in range(len(rule.sources))] if isinstance(r["from"], list) \
            else [sp("rules", i, "from")]
        part_spans[rule.span] = (*froms, sp("rules", i, "to"))
        yield rule
    yield patterns("drop")
    inits = data.get("init") or {}
    init_calls = [(p, calls([c], [("init", p)])) for p, c in inits.items()]
    yield StatementList("init", tuple(Init(p, c[0], sp("init", p, "__key__")) for p, c in init_calls if c))
    yield patterns("keep")
    yield patterns("freeze")
    lrs = data.get("lr") or {}
    yield StatementList("lr", tuple(LrScale(p, float(f), sp("lr", p, "__key__")) for p, f in lrs.items()))
    acks = data.get("ack") or {}
    yield StatementList("ack", tuple(Ack(str(code), str(p), sp("ack", code, k) if isinstance(pats, list) else sp("ack", code))
                                     for code, pats in acks.items() for k, p in enumerate(_as_list(pats))))


def _endpoint(cls: type[SourceDecl] | type[TargetDecl], name: str | None, ep: str | dict[str, str],
              span: Span) -> SourceDecl | TargetDecl:
    if isinstance(ep, str):
        loc, fw = ep, None
    else:
        loc, fw = ep.get("path") or ep.get("model") or "", ep.get("framework")
    if cls is SourceDecl:
        return SourceDecl(name or DEFAULT_SOURCE, loc, fw, span)
    return TargetDecl(loc, fw, span)
