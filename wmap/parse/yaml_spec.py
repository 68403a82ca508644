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
from typing import Any

import jsonschema
import yaml

from wmap.errors import Diagnostic, DiagnosticBag, Span, WmapError, did_you_mean
from wmap.parse.dsl import parse_call
from wmap.parse.validate import assemble
from wmap.spec import DEFAULT_SOURCE, Init, LrScale, Option, PatternStmt, Rule, SourceDecl, Spec, TargetDecl

PathKey = tuple[object, ...]
MAX_DEPTH = 64


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((resources.files("wmap") / "schema" / "wmap.schema.json").read_text("utf-8"))
    return data


def parse_yaml(text: str, path: str | None = None) -> Spec:
    key = path or "<spec>"
    sources = {key: text}
    try:
        data, spans = _compose(text, path)
    except WmapError as e:
        raise WmapError(e.diagnostics, sources) from None
    bag = DiagnosticBag(sources=sources)
    _schema_errors(data, spans, path, bag)
    bag.raise_if_errors()
    try:
        statements = list(_statements(data, spans, path))
    except WmapError as e:
        raise WmapError(e.diagnostics, sources) from None
    return assemble([(s, []) for s in statements], [], path, text, bag)


# ---------------------------------------------------------------------------------------------


def _compose(text: str, path: str | None) -> tuple[Any, dict[PathKey, Span]]:
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
    data = _to_python(node, (), spans, path, 0)
    return data, spans


def _to_python(node: yaml.Node, key: PathKey, spans: dict[PathKey, Span], path: str | None, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WmapError([Diagnostic("WM116", "error", "the YAML is nested too deeply", _span(node, path),
                                    f"a spec needs at most {MAX_DEPTH} levels")])
    spans[key] = _span(node, path)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k_node, v_node in node.value:
            k = _scalar(k_node) if isinstance(k_node, yaml.ScalarNode) else None
            if not isinstance(k, (str, int, float, bool)) or k is None:
                raise WmapError([Diagnostic("WM110", "error", "mapping keys must be plain text", _span(k_node, path))])
            k = str(k)
            if k in out:
                raise WmapError([Diagnostic("WM107", "error", f"key `{k}` appears twice in one mapping",
                                            _span(k_node, path), "YAML would silently keep only the last one")])
            spans[key + (k, "__key__")] = _span(k_node, path)
            out[k] = _to_python(v_node, key + (k,), spans, path, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, key + (i,), spans, path, depth + 1) for i, v in enumerate(node.value)]
    return _scalar(node)


_SCALAR = yaml.SafeLoader("")


def _scalar(node: yaml.Node) -> Any:
    return _SCALAR.construct_object(node, deep=True)


def _span(node: yaml.Node, path: str | None) -> Span:
    s, e = node.start_mark, node.end_mark
    quoted = 1 if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"') else 0
    return Span(path, s.line + 1, s.column + 1 + quoted, e.line + 1, e.column + 1 - quoted)


def _near(spans: dict[PathKey, Span], key: PathKey) -> Span | None:
    while key not in spans and key:
        key = key[:-1]
    return spans.get(key)


def _schema_errors(data: Any, spans: dict[PathKey, Span], path: str | None, bag: DiagnosticBag) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    by_path: dict[PathKey, list[jsonschema.ValidationError]] = {}
    for err in validator.iter_errors(data):
        by_path.setdefault(tuple(err.absolute_path), []).append(err)
    for key in sorted(by_path, key=lambda k: (spans.get(k, Span(None, 0, 0)).line, str(k))):
        err = jsonschema.exceptions.best_match(by_path[key])
        bag.items.append(_schema_diag(err, key, spans, path))


def _schema_diag(err: jsonschema.ValidationError, key: PathKey, spans: dict[PathKey, Span],
                 path: str | None) -> Diagnostic:
    where = ".".join(str(k) for k in key) or "top level"
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
        return Diagnostic("WM102", "error", f"wmap language version {err.instance!r} is not supported", span,
                          "this wmap reads version 1")
    if err.validator == "not" and not key:
        return Diagnostic("WM110", "error", "use either `source` or `sources`, not both", span,
                          "`sources` names several sources; `source` is the single one")
    if err.validator == "enum":
        choices = [str(c) for c in err.validator_value]
        return Diagnostic("WM110", "error", f"{where} cannot be {err.instance!r}", span,
                          did_you_mean(str(err.instance), choices) or "choose one of: " + ", ".join(choices))
    if err.validator == "pattern" and key and key[0] in ("rules", "init"):
        return Diagnostic("WM110", "error", f"{where} is not a transform call: {err.instance!r}", span,
                          "write a call such as `transpose` or `split(0)`")
    if err.validator in ("type", "oneOf"):
        return Diagnostic("WM110", "error", f"{where} has the wrong type ({_yaml_type(err.instance)})", span,
                          _type_hint(key))
    return Diagnostic("WM110", "error", f"{where}: {err.message}", span, None)


def _yaml_type(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "empty"}.get(type(v), type(v).__name__)


def _type_hint(key: PathKey) -> str | None:
    hints = {
        "source": "`source: {framework: torch, path: model.safetensors}` or a path string",
        "target": "`target: {framework: keras, model: \"pkg.models:build\"}` or a path string",
        "rules": "`rules:` is a list of `{from: ..., to: ..., via: ...}`",
        "drop": "a pattern or a list of patterns", "keep": "a pattern or a list of patterns",
        "freeze": "a pattern or a list of patterns", "init": "a mapping `pattern: initialiser`",
        "lr": "a mapping `pattern: multiplier`", "options": "a mapping of option names to values",
    }
    if key and key[0] == "rules" and len(key) >= 3:
        return {"from": "a pattern or a list of patterns", "to": "one target template",
                "via": "a call string or a list of call strings", "optional": "true or false"}.get(str(key[2]))
    return hints.get(str(key[0])) if key else None


# ---------------------------------------------------------------------------------------------


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _statements(data: dict[str, Any], spans: dict[PathKey, Span], path: str | None) -> Iterator[Any]:
    def sp(*key: object) -> Span:
        return _near(spans, tuple(key)) or Span(path, 1, 1)

    yield ("version", data.get("wmap"), sp("wmap"))
    if "source" in data:
        yield _endpoint(SourceDecl, DEFAULT_SOURCE, data["source"], sp("source"))
    for name, ep in (data.get("sources") or {}).items():
        yield _endpoint(SourceDecl, name, ep, sp("sources", name))
    if "target" in data:
        yield _endpoint(TargetDecl, None, data["target"], sp("target"))
    for name, value in (data.get("options") or {}).items():
        v = tuple(value) if isinstance(value, list) else value
        yield Option(name, v, sp("options", name, "__key__"))
    for i, r in enumerate(data.get("rules") or []):
        via = _as_list(r.get("via", []))
        calls = tuple(parse_call(c, sp("rules", i, "via", k) if isinstance(r.get("via"), list) else sp("rules", i, "via"))
                      for k, c in enumerate(via))
        yield Rule(tuple(_as_list(r["from"])), r["to"], calls, bool(r.get("optional", False)), sp("rules", i))
    for kind in ("drop",):
        pats = _as_list(data.get(kind) or [])
        yield (kind, [PatternStmt(p, sp(kind, k) if isinstance(data[kind], list) else sp(kind))
                      for k, p in enumerate(pats)])
    inits = data.get("init") or {}
    yield ("init", [Init(p, parse_call(c, sp("init", p)), sp("init", p, "__key__")) for p, c in inits.items()])
    for kind in ("keep", "freeze"):
        pats = _as_list(data.get(kind) or [])
        yield (kind, [PatternStmt(p, sp(kind, k) if isinstance(data[kind], list) else sp(kind))
                      for k, p in enumerate(pats)])
    lrs = data.get("lr") or {}
    yield ("lr", [LrScale(p, float(f), sp("lr", p, "__key__")) for p, f in lrs.items()])


def _endpoint(cls: Any, name: str | None, ep: Any, span: Span) -> Any:
    if isinstance(ep, str):
        loc, fw = ep, None
    else:
        loc, fw = ep.get("path") or ep.get("model"), ep.get("framework")
    if cls is SourceDecl:
        return SourceDecl(name or DEFAULT_SOURCE, loc, fw, span)
    return TargetDecl(loc, fw, span)
