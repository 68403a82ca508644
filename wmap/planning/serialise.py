"""The plan's JSON form (versioned) and loading it back for `apply PLAN.json`."""

from __future__ import annotations

import os
from typing import Any

from wmap.core.errors import Diagnostic, Severity, Span, WmapError
from wmap.core.inventory import TensorMeta
from wmap.lang.bindings import Bindings
from wmap.planning.plan import FORMAT_VERSION, Dropped, Plan, SourceRef, Step, TargetFlags
from wmap.transforms.initializers import Initializer


def _meta(d: dict[str, Any]) -> TensorMeta:
    return TensorMeta(d["name"], tuple(d["shape"]), d["dtype"], d.get("native"), d.get("kind"))


def _span_json(span: Span | None) -> dict[str, Any] | None:
    if span is None or not span.line:
        return None
    return {"file": os.path.basename(span.path or "<spec>"), "line": span.line, "column": span.column}


def _span(d: dict[str, Any] | None) -> Span | None:
    return None if not d else Span(d["file"], d["line"], d["column"])


def plan_to_json(plan: Plan) -> dict[str, Any]:
    from wmap.core.version import VERSION
    steps = []
    for s in plan.steps:
        steps.append({
            "kind": s.kind,
            "targets": [t.to_json() for t in s.targets],
            "sources": [{"source": r.source, "read": r.read_name, **r.meta.to_json()} for r in s.sources],
            "transforms": [{"name": t.NAME, "params": t.params()} for t in s.transforms],
            "chain": [[{"shape": list(sh), "dtype": dt} for sh, dt in h] for h in s.chain],
            "rule": s.rule,
            "rule_text": s.rule_text,
            "span": _span_json(s.span),
            "init": None if s.init is None else {"name": s.init.name, "params": dict(s.init.params)},
            "flags": [{"frozen": f.frozen, "lr": f.lr} for f in s.flags],
            **({"order": s.order} if s.order else {}),
        })
    return {
        "format_version": FORMAT_VERSION,
        "wmap_version": VERSION,
        "spec_digest": plan.spec_digest,
        "sources": [{"name": n, "fingerprint": fp, "framework": dict(plan.source_frameworks).get(n),
                     "label": dict(plan.source_labels).get(n)} for n, fp in plan.source_fingerprints],
        "target": {"fingerprint": plan.target_fingerprint, "framework": plan.target_framework,
                   "label": plan.target_label},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in plan.options},
        "summary": plan.summary(),
        "steps": steps,
        "dropped": [{"source": d.source.source, "name": d.source.name, "read": d.source.read_name,
                     "statement": d.statement} for d in plan.dropped],
        "tied": [list(p) for p in plan.tied],
        **({"config": _config_json(plan.config)} if plan.config is not None else {}),
        # the spec's file name only, as in step spans: a saved plan diffs the same in every checkout
        "warnings": [{**d.to_json(), "path": d.path and os.path.basename(d.path)} for d in plan.warnings],
        **({"acknowledged": [{**d.to_json(), "path": d.path and os.path.basename(d.path)}
                             for d in plan.acknowledged]} if plan.acknowledged else {}),
    }


def plan_from_json(data: dict[str, Any], path: str = "plan.json") -> Plan:
    """Rebuild a Plan from its JSON form; transforms are rebuilt from the registry with resolved params."""
    from wmap.transforms import TransformError, build

    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise WmapError([Diagnostic("WM520", "error", f"`{path}` is not a wmap plan of format version "
                                    f"{FORMAT_VERSION}", None, "re-create it with `wmap plan SPEC -o plan.json`")])
    try:
        steps = []
        for s in data["steps"]:
            transforms = tuple(build(t["name"], (), tuple(_tuplify(t["params"]).items())) for t in s["transforms"])
            init = s.get("init")
            steps.append(Step(
                s["kind"], tuple(_meta(t) for t in s["targets"]),
                tuple(SourceRef(r["source"], _meta(r), r["read"]) for r in s["sources"]),
                transforms,
                tuple(tuple((tuple(m["shape"]), m["dtype"]) for m in h) for h in s["chain"]),
                s["rule"], s["rule_text"], _span(s.get("span")),
                None if init is None else Initializer(init["name"], tuple(sorted(_tuplify(init["params"]).items()))),
                tuple(TargetFlags(f["frozen"], f["lr"]) for f in s["flags"]),
                order=str(s.get("order", "")),
            ))
        dropped = tuple(Dropped(SourceRef(d["source"], TensorMeta(d["name"], (), "float32"), d["read"]),
                                d["statement"]) for d in data["dropped"])
        return Plan(
            steps=tuple(steps), dropped=dropped, spec_digest=data["spec_digest"],
            source_fingerprints=tuple((s["name"], s["fingerprint"]) for s in data["sources"]),
            target_fingerprint=data["target"]["fingerprint"],
            source_frameworks=tuple((s["name"], s.get("framework")) for s in data["sources"]),
            target_framework=data["target"].get("framework"),
            source_labels=tuple((s["name"], s.get("label") or "") for s in data["sources"]),
            target_label=data["target"].get("label") or "",
            options=tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in data["options"].items())),
            tied=tuple((a, b) for a, b in data.get("tied", [])),
            config=_config_from_json(data["config"]) if "config" in data else None,
            # a saved plan keeps what it warned about, so applying it shows the same warnings
            warnings=tuple(_diag(d, "warning") for d in data.get("warnings", [])),
            acknowledged=tuple(_diag(d, "warning") for d in data.get("acknowledged", [])),
        )
    except (KeyError, TypeError, ValueError, TransformError) as e:
        raise WmapError([Diagnostic("WM520", "error", f"`{path}` is not a valid wmap plan ({type(e).__name__}: {e})",
                                    None, "re-create it with `wmap plan SPEC -o plan.json`")]) from None


def _diag(d: dict[str, Any], severity: Severity) -> Diagnostic:
    line = d.get("line")
    span = Span(d.get("path"), int(line), int(d.get("column") or 1)) if isinstance(line, int) else None
    return Diagnostic(str(d["code"]), severity, str(d["message"]), span, d.get("hint"),
                      tuple(str(n) for n in d.get("notes", ())))


def _config_json(b: Bindings) -> dict[str, Any]:
    """The lets' values and every config value they read: a saved plan re-reads the config when it
    is applied and refuses if one of these changed (WM604)."""
    def js(v: Any) -> Any:
        return [js(x) for x in v] if isinstance(v, tuple) else v
    return {"label": b.label, "where": b.where, "values": {n: js(v) for n, v in b.values},
            "keys": {k: js(v) for k, v in b.keys}}


def _config_from_json(d: dict[str, Any]) -> Bindings:
    def tup(v: Any) -> Any:
        return tuple(tup(x) for x in v) if isinstance(v, list) else v
    return Bindings(tuple((str(n), tup(v)) for n, v in d["values"].items()),
                    tuple((str(k), tup(v)) for k, v in d["keys"].items()), d.get("label"), d.get("where"))


def _tuplify(d: dict[str, Any]) -> dict[str, Any]:
    def deep(v: Any) -> Any:  # nested lists too: `constant([[0.1, 0.2]])` is a list of lists
        return tuple(deep(x) for x in v) if isinstance(v, list) else v
    return {k: deep(v) for k, v in d.items()}
