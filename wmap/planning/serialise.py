"""The plan's JSON form (versioned) and loading it back for `apply PLAN.json`.

A saved plan is untrusted input like any file: it carries a digest of its own canonical JSON, so
any edit is refused (WM520, "edited"), and it is checked again as a fresh compile checks it
(step kinds, exactly-once, options, transform arguments and the chain's shapes, tied pairs),
because a digest can be recomputed by whoever edits the file. What needs the inventories
(coverage of the source and target tensors, the tied pairs) is checked when it is applied
(`run/resolve.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from wmap.core.bulk import collector_paused
from wmap.core.errors import Diagnostic, Severity, Span, WmapError
from wmap.core.inventory import Shape, TensorMeta
from wmap.lang.bindings import Bindings
from wmap.planning.plan import FORMAT_VERSION, Dropped, Plan, SourceRef, Step, TargetFlags
from wmap.transforms.base import InferContext, Transform
from wmap.transforms.initializers import Initializer


def _meta(d: dict[str, Any]) -> TensorMeta:
    return TensorMeta(d["name"], tuple(d["shape"]), d["dtype"], d.get("native"), d.get("kind"))


def _span_json(span: Span | None) -> dict[str, object] | None:
    if span is None or not span.line:
        return None
    return {"file": os.path.basename(span.path or "<spec>"), "line": span.line, "column": span.column}


def _span(d: dict[str, Any] | None) -> Span | None:
    return None if not d else Span(d["file"], d["line"], d["column"])


def _step_json(s: Step) -> dict[str, object]:
    return {
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
    }


def plan_to_json(plan: Plan) -> dict[str, object]:
    """The plan as JSON data, with the digest of its canonical form last."""
    from wmap.core.version import VERSION
    out = {
        "format_version": FORMAT_VERSION,
        "wmap_version": VERSION,
        "spec_digest": plan.spec_digest,
        "sources": [{"name": n, "fingerprint": fp, "framework": dict(plan.source_frameworks).get(n),
                     "label": dict(plan.source_labels).get(n)} for n, fp in plan.source_fingerprints],
        "target": {"fingerprint": plan.target_fingerprint, "framework": plan.target_framework,
                   "label": plan.target_label},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in plan.options},
        "summary": plan.summary(),
        "steps": [_step_json(s) for s in plan.steps],
        "dropped": [{"source": d.source.source, "name": d.source.name, "read": d.source.read_name,
                     "statement": d.statement} for d in plan.dropped],
        "tied": [list(p) for p in plan.tied],
        **({"config": _config_json(plan.config)} if plan.config is not None else {}),
        # the spec's file name only, as in step spans: a saved plan diffs the same in every checkout
        "warnings": [{**d.to_json(), "path": d.path and os.path.basename(d.path)} for d in plan.warnings],
        **({"acknowledged": [{**d.to_json(), "path": d.path and os.path.basename(d.path)}
                             for d in plan.acknowledged]} if plan.acknowledged else {}),
    }
    out["digest"] = plan_digest(out)
    return out


def plan_digest(data: Mapping[str, object]) -> str:
    """sha256 of the plan's canonical JSON (sorted keys, no spaces), everything but the digest itself."""
    body = {k: v for k, v in data.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# -- writing: the text of `json.dumps(plan_to_json(plan), indent=2)`, built without the pure-Python
# encoder (an indented dump cannot use the C one), which took 4 s for a DeepSeek-V3 plan's 27 MB.
# Steps are written from templates: a meta is its encoded name plus a tail cached per (shape,
# dtype, depth); transforms, chains, flags and spans repeat across a rule's steps, so each distinct
# one is dumped once. tests/planning/test_serialise.py holds the output to `json.dumps`'.

_encode: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


_PADS = tuple("\n" + "  " * level for level in range(16))


def _pad(level: int) -> str:
    return _PADS[level] if level < 16 else "\n" + "  " * level


def _dump_at(value: object, level: int) -> str:
    """`value` as `json.dumps(indent=2)` writes it when its first line sits at `level`."""
    return json.dumps(value, indent=2).replace("\n", _pad(level))


class _Writer:
    def __init__(self) -> None:
        self.tails: dict[tuple[Shape, str, int], str] = {}
        self.seen: dict[tuple[str, object, int], str] = {}

    def once(self, kind: str, key: object, level: int, make: Callable[[], object]) -> str:
        """`_dump_at(make(), level)`, made once per distinct `key`."""
        text = self.seen.get((kind, key, level))
        if text is None:
            text = self.seen[(kind, key, level)] = _dump_at(make(), level)
        return text

    def meta(self, t: TensorMeta, level: int, head: str = "") -> str:
        """A plain TensorMeta's `to_json()` as a dict at `level`, after `head` (the keys before it)."""
        tail = self.tails.get((t.shape, t.dtype, level))
        if tail is None:
            inner = _pad(level + 1)
            shape = _dump_at(list(t.shape), level + 1)
            tail = self.tails[(t.shape, t.dtype, level)] = (
                f',{inner}"shape": {shape},{inner}"dtype": {_encode(t.dtype)}{_pad(level)}}}')
        return f'{{{_pad(level + 1)}{head}"name": {_encode(t.name)}{tail}'

    def target(self, t: TensorMeta, level: int) -> str:
        return self.meta(t, level) if _plain(t) else _dump_at(t.to_json(), level)

    def source(self, r: SourceRef, level: int) -> str:
        m = r.meta
        if not _plain(m):
            return _dump_at({"source": r.source, "read": r.read_name, **m.to_json()}, level)
        tail = self.tails.get((m.shape, m.dtype, level))
        if tail is None:
            return self.meta(m, level, f'"source": {_encode(r.source)},{_pad(level + 1)}"read": '
                                       f'{_encode(r.read_name)},{_pad(level + 1)}')
        inner = _pad(level + 1)
        name = _encode(m.name)
        read = name if r.read_name == m.name else _encode(r.read_name)
        return f'{{{inner}"source": {_encode(r.source)},{inner}"read": {read},{inner}"name": {name}{tail}'

    def transform(self, t: Transform, level: int) -> str:
        return self.once("transform", t, level, lambda: {"name": t.NAME, "params": t.params()})

    def step(self, s: Step, level: int) -> str:
        k = level + 1
        inner = _pad(k)
        span = _span_json(s.span)
        fields = [
            f'"kind": {_encode(s.kind)}',
            '"targets": ' + _items([self.target(t, k + 1) for t in s.targets], k),
            '"sources": ' + _items([self.source(r, k + 1) for r in s.sources], k),
            '"transforms": ' + _items([self.transform(t, k + 1) for t in s.transforms], k),
            '"chain": ' + self.once("chain", s.chain, k, lambda: [[{"shape": list(sh), "dtype": dt} for sh, dt in h]
                                                                  for h in s.chain]),
            f'"rule": {_dump_at(s.rule, k)}',
            f'"rule_text": {_encode(s.rule_text)}',
            '"span": ' + self.once("span", span and tuple(span.items()), k, lambda: span),
            '"init": ' + (_dump_at(None, k) if s.init is None else
                          _dump_at({"name": s.init.name, "params": dict(s.init.params)}, k)),
            '"flags": ' + self.once("flags", s.flags, k, lambda: [{"frozen": f.frozen, "lr": f.lr} for f in s.flags]),
        ]
        if s.order:
            fields.append(f'"order": {_encode(s.order)}')
        return "{" + inner + ("," + inner).join(fields) + _pad(level) + "}"


def _plain(t: TensorMeta) -> bool:
    """A meta whose JSON is name, shape and dtype only (what the writer's templates cover)."""
    return (t.native is None or t.native == t.name) and not t.kind and not t.attrs


def _items(texts: list[str], level: int) -> str:
    """A list of already-written items, as a list at `level`."""
    if not texts:
        return "[]"
    inner = _pad(level + 1)
    return "[" + inner + ("," + inner).join(texts) + _pad(level) + "]"


_STEPS = "\x00steps\x00"  # stands in for the steps in the document, replaced by their text


def plan_dumps(plan: Plan) -> str:
    """`json.dumps(plan_to_json(plan), indent=2) + "\\n"`, the same text, written fast. The digest is of the
    canonical (sorted, compact) form, which the C encoder writes quickly; only the indented text, which
    it cannot write, comes from the templates."""
    with collector_paused():  # a few acyclic dicts per step: see wmap/core/bulk.py
        return _dumps(plan)


def _dumps(plan: Plan) -> str:
    doc = plan_to_json(plan)
    doc["steps"] = _STEPS
    w = _Writer()
    steps = _items([w.step(s, 2) for s in plan.steps], 1)
    head, sep, tail = json.dumps(doc, indent=2).partition(_encode(_STEPS))
    assert sep, "the steps placeholder is in the document"
    return head + steps + tail + "\n"


def plan_from_json(data: dict[str, Any], path: str = "plan.json") -> Plan:
    """Rebuild a Plan from its JSON form; transforms are rebuilt from the registry with resolved params."""
    from wmap.transforms import TransformError, build

    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise WmapError([Diagnostic("WM520", "error", f"`{path}` is not a wmap plan of format version "
                                    f"{FORMAT_VERSION}", None, "re-create it with `wmap plan SPEC -o plan.json`")])
    if "digest" not in data:
        raise _invalid(path, "it carries no digest of itself: it was not written by `wmap plan`, or by an older wmap")
    try:
        with collector_paused():
            digest_ok = data["digest"] == plan_digest(data)
    except (TypeError, ValueError) as e:  # not JSON-shaped (an API caller's dict)
        raise _invalid(path, f"{type(e).__name__}: {e}") from None
    if not digest_ok:
        raise WmapError([Diagnostic("WM520", "error", f"`{path}` was edited after `wmap plan` wrote it (its digest "
                                    "does not match its content)", None,
                                    "a saved plan runs only as it was planned: change the spec and make the plan "
                                    "again with `wmap plan SPEC -o plan.json`")])
    built: dict[str, Transform] = {}  # a rule's steps share their transforms: build each distinct one once

    def transform(t: dict[str, Any]) -> Transform:
        key = json.dumps(t, sort_keys=True)
        if key not in built:
            built[key] = build(t["name"], (), tuple(_tuplify(t["params"]).items()))
        return built[key]

    try:
        with collector_paused():  # ~4 objects per tensor, none in a cycle: see wmap/core/bulk.py
            plan = _plan_from_json(data, transform)
    except (KeyError, TypeError, ValueError, AttributeError, TransformError) as e:
        raise _invalid(path, f"{type(e).__name__}: {e}") from None
    with collector_paused():  # replays every step's shapes: many small objects, none in a cycle
        check_saved_structure(plan, path)
    return plan


def _plan_from_json(data: dict[str, Any], transform: Callable[[dict[str, Any]], Transform]) -> Plan:
    steps = []
    for s in data["steps"]:
        if s["kind"] not in STEP_KINDS:
            raise ValueError(f"step kind `{s['kind']}` is not one of {', '.join(STEP_KINDS)}")
        transforms = tuple(transform(t) for t in s["transforms"])
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


def _invalid(path: str, why: str) -> WmapError:
    return WmapError([Diagnostic("WM520", "error", f"`{path}` is not a valid wmap plan ({why})", None,
                                 "re-create it with `wmap plan SPEC -o plan.json`")])


STEP_KINDS = ("map", "init", "keep")


def check_saved_structure(plan: Plan, path: str = "plan.json") -> None:
    """Everything a fresh compile guarantees that a plan can show without the inventories: each
    step well formed for its kind, every target written once, every source tensor read once (or
    dropped), the options valid, each transform's inference reproducing the recorded chain and
    ending in the target's shape and an allowed dtype. WM520 naming the first step at fault."""
    from wmap.core.errors import DiagnosticBag
    from wmap.lang.spec import OPTIONS, Option
    from wmap.lang.validate import check_option
    from wmap.planning.checks import dtype_check
    from wmap.transforms import InferContext, TransformError

    def bad(why: str, i: int | None = None) -> WmapError:
        where = "" if i is None else f"step {i + 1} (`{plan.steps[i].rule_text}`): "
        return _invalid(path, where + why)

    options = dict(plan.options)
    if set(options) != set(OPTIONS):
        raise bad(f"its options are not wmap's ({', '.join(sorted(set(options) ^ set(OPTIONS)))})")
    bag = DiagnosticBag()
    for name, value in plan.options:
        if value is not None or OPTIONS[name][1] is not None:  # None is the default of the prefix options
            check_option(Option(name, value), bag)
    if bag.items:
        raise bad(bag.items[0].message)
    sources = {n for n, _ in plan.source_fingerprints}
    written: set[str] = set()
    read: set[tuple[str, str]] = set()
    fws = dict(plan.source_frameworks)
    for i, s in enumerate(plan.steps):
        if not s.targets:
            raise bad("it writes no target", i)
        if len(s.flags) != len(s.targets):
            raise bad("its flags do not match its targets", i)
        if any(f.lr is not None and not (isinstance(f.lr, (int, float)) and 0 <= f.lr < float("inf"))
               for f in s.flags):
            raise bad("a learning-rate multiplier is not a finite number >= 0", i)
        for t in s.targets:
            if t.name in written:
                raise bad(f"`{t.name}` is written twice", i)
            written.add(t.name)
        if s.kind == "map":
            if not s.sources or s.init is not None or len(s.chain) != len(s.transforms):
                raise bad("a map step reads sources through its transforms and initialises nothing", i)
        elif s.kind == "keep" and (s.sources or s.transforms or s.chain or s.init is not None):
            raise bad("a keep step reads nothing and initialises nothing", i)
        elif s.kind == "init" and (s.init is None or s.transforms or s.chain or len(s.sources) != (
                s.init.name == "copy") or (s.sources and s.init.source not in (s.sources[0].name, s.sources[0].read_name))):
            raise bad("an init step names its initialiser and reads nothing (`copy` reads the one tensor "
                      "it names)", i)
        if s.init is not None:
            _check_init(s.init, i, bad)
        for r in s.sources:
            if r.source not in sources:
                raise bad(f"it reads source `{r.source}`, which the plan does not pin", i)
            if s.kind == "init":  # `copy(...)` may read a tensor a rule also reads
                continue
            if (r.source, r.read_name) in read:
                raise bad(f"source tensor `{r.source}:{r.read_name}` is read twice", i)
            read.add((r.source, r.read_name))
        if s.kind == "map":
            fw = fws.get(s.sources[0].source)
            ctx = InferContext(tuple(r.meta for r in s.sources), s.targets, fw, plan.target_framework)
            try:
                _replay_chain(s, ctx, options["dtype"], dtype_check)
            except TransformError as e:
                raise bad(e.message, i) from None
            except ValueError as e:
                raise bad(str(e), i) from None
    for d in plan.dropped:
        if d.source.source not in sources or (d.source.source, d.source.read_name) in read:
            raise _invalid(path, f"dropped source tensor `{d.source.source}:{d.source.read_name}` is also read, "
                           "dropped twice or from a source the plan does not pin")
        read.add((d.source.source, d.source.read_name))
    aliases = [a for a, _ in plan.tied]
    strict = bool(options.get("strict", True))  # a non-strict plan may leave a tied pair unwritten
    for alias, canonical in plan.tied:
        if alias in written or (strict and canonical not in written) or aliases.count(alias) > 1 or alias == canonical:
            raise _invalid(path, f"the tied pair `{alias}` -> `{canonical}` is not an alias of a written tensor")


def _check_init(init: Initializer, i: int, bad: Callable[[str, int], WmapError]) -> None:
    from wmap.transforms.initializers import InitError, make_initializer
    try:
        again = make_initializer(init.name, (), init.params)
    except InitError as e:
        raise bad(str(e), i) from None
    if again != init:
        raise bad(f"initialiser `{init.name}` does not hold its checked parameters", i)


def _replay_chain(s: Step, ctx: InferContext, policy: str, dtype_check: Callable[[str, str, str], str | None]) -> None:
    """Infer the step's transforms again from its source metas, as the compiler does: each must
    resolve to itself, give the recorded shapes and dtypes, and end in the targets'."""
    from wmap.transforms import ArrayMeta

    metas = tuple(ArrayMeta(r.meta.shape, r.meta.dtype) for r in s.sources)
    for k, (t, recorded) in enumerate(zip(s.transforms, s.chain, strict=True)):
        c = InferContext(ctx.sources, ctx.targets, ctx.source_framework, ctx.target_framework,
                         is_last=k == len(s.transforms) - 1)
        if t.ARITY == "1:1" and len(metas) > 1 and not (t.DISPATCH and k == 0):
            outs: list[ArrayMeta] = []
            for j, m in enumerate(metas):
                tj = (s.targets[j],) if len(s.targets) == len(metas) else s.targets
                t2, o = t.infer((m,), InferContext(c.sources, tj, c.source_framework, c.target_framework,
                                                   is_last=c.is_last))
                if t2 != t:
                    raise ValueError(f"`{t.describe()}` does not hold what inference resolves")
                outs.extend(o)
            metas = tuple(outs)
        else:
            t2, metas = t.infer(metas, c)
            if t2 != t:
                raise ValueError(f"`{t.describe()}` does not hold what inference resolves")
        if tuple((m.shape, m.dtype) for m in metas) != recorded:
            raise ValueError(f"the shapes after `{t.NAME}` are not the ones recorded")
    if len(metas) != len(s.targets):
        raise ValueError(f"the chain yields {len(metas)} tensor(s) for {len(s.targets)} target(s)")
    if len(s.sources) > 1 and len(s.targets) == 1 and not s.transforms:
        raise ValueError("several sources land on one target without a fan-in transform")
    for m, tm in zip(metas, s.targets):
        if m.shape != tm.shape:
            raise ValueError(f"the chain ends in {list(m.shape)}, but `{tm.name}` is {list(tm.shape)}")
        problem = dtype_check(m.dtype, tm.dtype, policy)
        if problem:
            raise ValueError(problem)


def _diag(d: dict[str, Any], severity: Severity) -> Diagnostic:
    line = d.get("line")
    span = Span(d.get("path"), int(line), int(d.get("column") or 1)) if isinstance(line, int) else None
    return Diagnostic(str(d["code"]), severity, str(d["message"]), span, d.get("hint"),
                      tuple(str(n) for n in d.get("notes", ())))


def _config_json(b: Bindings) -> dict[str, object]:
    """The lets' values and every config value they read: a saved plan re-reads the config when it
    is applied and refuses if one of these changed (WM604)."""
    def js(v: object) -> object:
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
