"""The plan's JSON form (versioned) and loading it back for `apply PLAN.json`.

A saved plan is untrusted input like any file: it carries a digest of its own canonical JSON, so
any edit is refused (WM520, "edited"), and it is checked again as a fresh compile checks it
(step kinds, exactly-once, options, transform arguments and the chain's shapes, tied pairs),
because a digest can be recomputed by whoever edits the file. What needs the inventories
(coverage of the source and target tensors, the tied pairs) is checked when it is applied
(`run/resolve.py`).

The file (format 2) is `json.dumps(plan_to_json(plan), indent=2)` plus a newline, keys in this
order: `format_version` (2), `wmap_version`, `spec_digest`, `sources` (name, fingerprint,
framework, label of each), `target` (fingerprint, framework, label), `options` (every option),
`summary` (counts), `steps`, `dropped` (source, name, read, statement), `tied` ([alias,
canonical] pairs), `config` (when the spec has lets), `warnings`, `acknowledged` (when any), and
`digest` last: "sha256:" + the hex sha256 of every other member as canonical JSON (keys sorted,
separators "," and ":", ASCII only). Each step: `kind` (map, init or keep), `targets`, `sources`,
`transforms` ({name, params}), `chain` (the shape and dtype of each value after each transform),
`rule` (index), `rule_text`, `span` ({file, line, column} or null), `init` ({name, params} or
null), `flags` ({frozen, lr} per target), and `order` for an indexed fan-in or fan-out.
A target is {name, shape, dtype} (+ native, kind, attrs when it has them); a source is {source,
read, name, shape, dtype} (+ the same). Format 2 may also write consecutive entries of a step's
`targets` or `sources` as one run (see "runs" below): {"names": {"prefix", "first", "count",
"suffix"}, "shape", "dtype"} for targets, with "source" (and "read_prefix") for sources.
Format 1, the same without runs, is still read; a run in a file that says format 1 is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from wmap.core.bulk import collector_paused
from wmap.core.errors import Diagnostic, Severity, Span, WmapError
from wmap.core.inventory import Shape, TensorMeta
from wmap.core.names import successor_split
from wmap.lang.bindings import Bindings
from wmap.planning.plan import FORMAT_VERSION, Dropped, Plan, SourceRef, Step, TargetFlags
from wmap.transforms.base import ArrayMeta, InferContext, Transform
from wmap.transforms.initializers import Initializer


def _meta(d: dict[str, Any]) -> TensorMeta:
    native, kind = d.get("native"), d.get("kind")
    if not (native is None or isinstance(native, str)) or not (kind is None or isinstance(kind, str)):
        raise ValueError("a tensor's native name or kind is not text")
    return TensorMeta(_text(d["name"], "a tensor's name"), _shape(d["shape"]), _text(d["dtype"], "a dtype"),
                      native, kind)


# The loader checks the type of every field it keeps: a list where a name belongs would otherwise
# reach the re-check's sets as an unhashable value (a TypeError, not a refusal).

def _text(v: object, what: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{what} is not text")
    return v


def _shape(v: object) -> Shape:
    if not isinstance(v, list) or not all(type(n) is int and n >= 0 for n in v):
        raise ValueError("a shape is not a list of sizes (integers >= 0)")
    return tuple(v)


def _span_json(span: Span | None) -> dict[str, object] | None:
    if span is None or not span.line:
        return None
    return {"file": os.path.basename(span.path or "<spec>"), "line": span.line, "column": span.column}


def _span(d: dict[str, Any] | None) -> Span | None:
    return None if not d else Span(d["file"], d["line"], d["column"])


def _step_json(s: Step, lists: _Lists) -> dict[str, object]:
    targets, sources = lists
    return {
        "kind": s.kind,
        "targets": [s.targets[e].to_json() if isinstance(e, int) else e.to_json(s.targets[e.start])
                    for e in targets],
        "sources": [_source_json(s.sources[e]) if isinstance(e, int) else e.to_json(s.sources[e.start].meta)
                    for e in sources],
        "transforms": [{"name": t.NAME, "params": t.params()} for t in s.transforms],
        "chain": [[{"shape": list(sh), "dtype": dt} for sh, dt in h] for h in s.chain],
        "rule": s.rule,
        "rule_text": s.rule_text,
        "span": _span_json(s.span),
        "init": None if s.init is None else {"name": s.init.name, "params": dict(s.init.params)},
        "flags": [{"frozen": f.frozen, "lr": f.lr} for f in s.flags],
        **({"order": s.order} if s.order else {}),
    }


def _source_json(r: SourceRef) -> dict[str, object]:
    return {"source": r.source, "read": r.read_name, **r.meta.to_json()}


# -- runs (format 2). A stacked step reads 256 experts whose names differ in one number, and a
# DeepSeek-V3 plan has 92k such entries. A step's targets and sources are written as runs where
# they allow it: at least two consecutive entries of one shape and dtype (and one source) whose
# names are `prefix + str(first + k) + suffix` for k = 0 .. count-1 (decimal, no leading zeros),
# each otherwise plain: no layer kind or attrs, and
# - a target: no native name of its own;
# - a source: read under its own name (no native name of its own), or, when a `strip_prefix`
#   option made its name, read under `read_prefix + name`, which is also its native name.
# A run is written {"source": S, "read_prefix": P (when there is one), "names": {"prefix",
# "first", "count", "suffix"}, "shape", "dtype"} (a target's without the source and read_prefix).
# Every other entry is written in full as in format 1. The loader expands runs back into the same
# entries, so the Plan in memory (and the apply that follows it) is the same either way; since a
# few bytes can stand for many tensors, it counts them first and refuses a plan of more than
# MAX_PLAN_ENTRIES in all, or whose runs spell more than MAX_RUN_TEXT characters of names (WM520).

@dataclass(frozen=True)
class _Run:
    """`count` (>= 2) consecutive entries from index `start` of a step's targets or sources;
    `key` is None for targets, (source, read prefix) for sources."""

    start: int
    count: int
    prefix: str
    first: int
    suffix: str
    key: tuple[str, str] | None

    def to_json(self, meta: TensorMeta) -> dict[str, object]:
        names = {"prefix": self.prefix, "first": self.first, "count": self.count, "suffix": self.suffix}
        head: dict[str, object] = {}
        if self.key is not None:
            head["source"] = self.key[0]
            if self.key[1]:
                head["read_prefix"] = self.key[1]
        return {**head, "names": names, "shape": list(meta.shape), "dtype": meta.dtype}


_Entries = list[int | _Run]  # an index for an entry written in full, a _Run for a run
_Lists = tuple[_Entries, _Entries]  # a step's targets and sources as written


def _runs(metas: Sequence[TensorMeta], keys: Sequence[object]) -> _Entries:
    """The entries of a list as written. `keys[i]` must be equal along a run; None where entry i
    cannot be in one."""
    out: _Entries = []
    i, n = 0, len(metas)
    while i < n:
        a, key = metas[i], keys[i]
        if i + 1 < n and key is not None and keys[i + 1] == key:
            b = metas[i + 1]
            split = successor_split(a.name, b.name) if b.shape == a.shape and b.dtype == a.dtype else None
            if split is not None:
                prefix, first, suffix = split
                shape, dtype = a.shape, a.dtype
                j = i + 2
                while j < n:
                    m = metas[j]
                    if keys[j] != key or m.name != f"{prefix}{first + j - i}{suffix}" or m.shape != shape \
                            or m.dtype != dtype:
                        break
                    j += 1
                out.append(_Run(i, j - i, prefix, first, suffix, key if isinstance(key, tuple) else None))
                i = j
                continue
        out.append(i)
        i += 1
    return out


def _source_key(r: SourceRef) -> tuple[str, str] | None:
    """(source, read prefix) of a source entry that can be in a run; None if it cannot."""
    m = r.meta
    if m.kind or m.attrs:
        return None
    if r.read_name == m.name:
        return (r.source, "") if m.native is None or m.native == m.name else None
    lead = len(r.read_name) - len(m.name)
    if lead > 0 and m.native == r.read_name and r.read_name.endswith(m.name):
        return r.source, r.read_name[:lead]
    return None


def _lists(s: Step) -> _Lists:
    return (_runs(s.targets, ["" if _plain(t) else None for t in s.targets]),
            _runs(list(map(_META, s.sources)),  # the common case inline: 92k calls cost a third of a save
                  [(r.source, "") if r.read_name == r.meta.name and r.meta.native is None and not r.meta.kind
                   and not r.meta.attrs else _source_key(r) for r in s.sources]))


def plan_to_json(plan: Plan, lists: Sequence[_Lists] | None = None) -> dict[str, object]:
    """The plan as JSON data, with the digest of its canonical form last. (`lists`: each step's
    targets and sources as written; the writer works them out once, for this and for its text.)"""
    if lists is None:
        lists = [_lists(s) for s in plan.steps]
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
        "steps": [_step_json(s, ls) for s, ls in zip(plan.steps, lists, strict=True)],
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

    def step(self, s: Step, lists: _Lists, level: int) -> str:
        k = level + 1
        inner = _pad(k)
        span = _span_json(s.span)
        targets = [self.target(s.targets[e], k + 1) if isinstance(e, int) else
                   _dump_at(e.to_json(s.targets[e.start]), k + 1) for e in lists[0]]
        sources = [self.source(s.sources[e], k + 1) if isinstance(e, int) else
                   _dump_at(e.to_json(s.sources[e.start].meta), k + 1) for e in lists[1]]
        fields = [
            f'"kind": {_encode(s.kind)}',
            '"targets": ' + _items(targets, k),
            '"sources": ' + _items(sources, k),
            '"transforms": ' + _items([self.transform(t, k + 1) for t in s.transforms], k),
            '"chain": ' + self.once("chain", s.chain, k, lambda: [[{"shape": list(sh), "dtype": dt} for sh, dt in h]
                                                                  for h in s.chain]),
            '"rule": ' + self.once("rule", s.rule, k, lambda: s.rule),  # (the pure-Python encoder, once per rule)
            f'"rule_text": {_encode(s.rule_text)}',
            '"span": ' + self.once("span", span and tuple(span.items()), k, lambda: span),
            '"init": ' + ("null" if s.init is None else
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
    lists = [_lists(s) for s in plan.steps]
    doc = plan_to_json(plan, lists)
    doc["steps"] = _STEPS
    w = _Writer()
    steps = _items([w.step(s, ls, 2) for s, ls in zip(plan.steps, lists, strict=True)], 1)
    head, sep, tail = json.dumps(doc, indent=2).partition(_encode(_STEPS))
    assert sep, "the steps placeholder is in the document"
    return head + steps + tail + "\n"


def plan_from_json(data: dict[str, Any], path: str = "plan.json") -> Plan:
    """Rebuild a Plan from its JSON form; transforms are rebuilt from the registry with resolved params."""
    # one pause for the whole load: ~4 objects per tensor, none in a cycle (see wmap/core/bulk.py);
    # resuming between its stages would let the collector walk them all again each time
    with collector_paused():
        return _load(data, path)


def _load(data: dict[str, Any], path: str) -> Plan:
    from wmap.transforms import TransformError, build

    version = data.get("format_version") if isinstance(data, dict) else None
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise WmapError([Diagnostic("WM520", "error", f"`{path}` is not a wmap plan of format version "
                                    f"{' or '.join(map(str, READABLE_VERSIONS))}", None,
                                    "re-create it with `wmap plan SPEC -o plan.json`")])
    if "digest" not in data:
        raise _invalid(path, "it carries no digest of itself: it was not written by `wmap plan`, or by an older wmap")
    try:
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
        # repr tells JSON values apart as json.dumps does (1, 1.0, True and "1" differ), without
        # building an encoder per call (a sixth of loading a plan of one-tensor steps, profiled)
        key = repr(t)
        if key not in built:
            built[key] = build(t["name"], (), tuple(_tuplify(t["params"]).items()))
        return built[key]

    try:
        plan = _plan_from_json(data, transform, _Expander(runs=version >= 2))
    except (KeyError, TypeError, ValueError, AttributeError, TransformError) as e:
        raise _invalid(path, f"{type(e).__name__}: {e}") from None
    try:
        check_saved_structure(plan, path)
    except TypeError as e:  # a value of a type no field above checks (an option's, say): refused, not a traceback
        raise _invalid(path, f"{type(e).__name__}: {e}") from None
    return plan


# Format 1 wrote every entry in full; format 2 writes runs (above). Both are read.
READABLE_VERSIONS = (1, FORMAT_VERSION)
# Runs make a small file stand for many tensors: a plan may expand to this many source and target
# entries in all, twice the 1M-tensor bench's and 20x DeepSeek-V3's (about 1 GB of Python objects).
MAX_PLAN_ENTRIES = 4_000_000
# ... and the names its runs spell may hold this many characters in all, as much as the largest plan
# file (api.MAX_PLAN_BYTES) holds: a long prefix times a large count would otherwise ask for terabytes.
# DeepSeek-V3's runs spell 4.7M.
MAX_RUN_TEXT = 256 * 1024 * 1024


_RUN_NAMES = frozenset({"prefix", "first", "count", "suffix"})
_TARGET_RUN = frozenset({"names", "shape", "dtype"})
_SOURCE_RUN = _TARGET_RUN | {"source", "read_prefix"}


class _Expander:
    """Reads a step's target and source lists back, expanding runs (format 2 only) within a
    budget of entries for the whole plan."""

    def __init__(self, runs: bool) -> None:
        self.runs = runs
        self.left = MAX_PLAN_ENTRIES
        self.text_left = MAX_RUN_TEXT

    def _take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise ValueError(f"its steps list more than {MAX_PLAN_ENTRIES:,} source and target tensors")

    def _run(self, d: dict[str, Any], fields: frozenset[str], lead: str = "") -> tuple[list[str], Shape, str]:
        """A run's names (the budgets charged first), shape and dtype; `lead`: a source run's
        read_prefix, spelled once more per name."""
        if not self.runs:
            raise ValueError(f"a run of names is format {FORMAT_VERSION}, and the plan says format 1")
        names = d["names"]
        # nothing beside what the loader reads: a reviewer must not read a `name` the loader ignores
        if not isinstance(names, dict) or set(d) - fields or set(names) != _RUN_NAMES:
            raise ValueError(f"a run has fields other than {', '.join(sorted(fields))} and names "
                             f"{{{', '.join(sorted(_RUN_NAMES))}}}")
        prefix, first, count, suffix = names["prefix"], names["first"], names["count"], names["suffix"]
        if not (isinstance(prefix, str) and isinstance(suffix, str) and type(first) is int and type(count) is int
                and first >= 0 and count >= 1):
            raise ValueError("a run of names needs a prefix and suffix (text), a first index >= 0 and a count >= 1")
        self._take(count)
        self.text_left -= count * (len(prefix) + len(suffix) + len(lead) + len(str(first + count)))
        if self.text_left < 0:
            raise ValueError(f"its runs spell names of more than {MAX_RUN_TEXT:,} characters in all")
        return ([f"{prefix}{k}{suffix}" for k in range(first, first + count)], _shape(d["shape"]),
                _text(d["dtype"], "a dtype"))

    def targets(self, entries: list[dict[str, Any]]) -> tuple[TensorMeta, ...]:
        out: list[TensorMeta] = []
        for d in entries:
            if "names" in d:
                names, shape, dtype = self._run(d, _TARGET_RUN)
                out.extend([TensorMeta(n, shape, dtype) for n in names])
            else:
                self._take(1)
                out.append(_meta(d))
        return tuple(out)

    def sources(self, entries: list[dict[str, Any]]) -> tuple[SourceRef, ...]:
        out: list[SourceRef] = []
        for d in entries:
            if "names" in d:
                source = _text(d["source"], "a source's name")
                lead = _text(d.get("read_prefix", ""), "a run's read_prefix")
                names, shape, dtype = self._run(d, _SOURCE_RUN, lead)
                if lead:  # read under the name before `strip_prefix`, which is also its native name
                    out.extend([SourceRef(source, TensorMeta(n, shape, dtype, r), r)
                                for n, r in zip(names, [lead + n for n in names], strict=True)])
                else:
                    out.extend([SourceRef(source, TensorMeta(n, shape, dtype), n) for n in names])
            else:
                self._take(1)
                out.append(SourceRef(_text(d["source"], "a source's name"), _meta(d),
                                     _text(d["read"], "a source tensor's read name")))
        return tuple(out)


def _plan_from_json(data: dict[str, Any], transform: Callable[[dict[str, Any]], Transform],
                    expand: _Expander) -> Plan:
    steps = []
    for s in data["steps"]:
        if s["kind"] not in STEP_KINDS:
            raise ValueError(f"step kind `{s['kind']}` is not one of {', '.join(STEP_KINDS)}")
        transforms = tuple(transform(t) for t in s["transforms"])
        init = s.get("init")
        steps.append(Step(
            s["kind"], expand.targets(s["targets"]), expand.sources(s["sources"]),
            transforms,
            tuple(tuple((tuple(m["shape"]), m["dtype"]) for m in h) for h in s["chain"]),
            s["rule"], s["rule_text"], _span(s.get("span")),
            None if init is None else Initializer(init["name"], tuple(sorted(_tuplify(init["params"]).items()))),
            tuple(TargetFlags(f["frozen"], f["lr"]) for f in s["flags"]),
            order=str(s.get("order", "")),
        ))
    dropped = tuple(Dropped(SourceRef(_text(d["source"], "a source's name"),
                                      TensorMeta(_text(d["name"], "a tensor's name"), (), "float32"),
                                      _text(d["read"], "a source tensor's read name")),
                            _text(d["statement"], "a drop's statement")) for d in data["dropped"])
    return Plan(
        steps=tuple(steps), dropped=dropped, spec_digest=data["spec_digest"],
        source_fingerprints=tuple((_text(s["name"], "a source's name"), s["fingerprint"]) for s in data["sources"]),
        target_fingerprint=data["target"]["fingerprint"],
        source_frameworks=tuple((s["name"], s.get("framework")) for s in data["sources"]),
        target_framework=data["target"].get("framework"),
        source_labels=tuple((s["name"], s.get("label") or "") for s in data["sources"]),
        target_label=data["target"].get("label") or "",
        options=tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in data["options"].items())),
        tied=tuple((_text(a, "a tied name"), _text(b, "a tied name")) for a, b in data.get("tied", [])),
        config=_config_from_json(data["config"]) if "config" in data else None,
        # a saved plan keeps what it warned about, so applying it shows the same warnings
        warnings=tuple(_diag(d, "warning") for d in data.get("warnings", [])),
        acknowledged=tuple(_diag(d, "warning") for d in data.get("acknowledged", [])),
    )


def _invalid(path: str, why: str) -> WmapError:
    return WmapError([Diagnostic("WM520", "error", f"`{path}` is not a valid wmap plan ({why})", None,
                                 "re-create it with `wmap plan SPEC -o plan.json`")])


STEP_KINDS = ("map", "init", "keep")
# read in C: the re-check looks at 92k source references in a DeepSeek-V3 plan
_NAME, _SOURCE, _READ, _META = (attrgetter(a) for a in ("name", "source", "read_name", "meta"))
_SIG = attrgetter("shape", "dtype")


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
    read: dict[str, set[str]] = {n: set() for n in sources}  # per source, the names read from it
    fws = dict(plan.source_frameworks)
    arrays: dict[tuple[Shape, str], ArrayMeta] = {}  # the replay's input metas, one per distinct (shape, dtype)
    for i, s in enumerate(plan.steps):
        if not s.targets:
            raise bad("it writes no target", i)
        if len(s.flags) != len(s.targets):
            raise bad("its flags do not match its targets", i)
        if any(f.lr is not None and not (isinstance(f.lr, (int, float)) and 0 <= f.lr < float("inf"))
               for f in s.flags):
            raise bad("a learning-rate multiplier is not a finite number >= 0", i)
        names = list(map(_NAME, s.targets))
        # a whole step at once with set operations; the loop only to name the first repeat
        if len(names) > 1 and written.isdisjoint(names) and len(set(names)) == len(names):
            written.update(names)
        else:
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
        from_one = set(map(_SOURCE, s.sources))
        if len(s.sources) > 1 and s.kind != "init" and len(from_one) == 1 and from_one <= sources:
            # the usual fan-in (one source's experts): a whole step at once, as for the targets
            seen, reads = read[s.sources[0].source], list(map(_READ, s.sources))
            if seen.isdisjoint(reads) and len(set(reads)) == len(reads):
                seen.update(reads)
                from_one = set()  # done
        for r in s.sources if from_one else ():
            if r.source not in sources:
                raise bad(f"it reads source `{r.source}`, which the plan does not pin", i)
            if s.kind == "init":  # `copy(...)` may read a tensor a rule also reads
                continue
            if r.read_name in read[r.source]:
                raise bad(f"source tensor `{r.source}:{r.read_name}` is read twice", i)
            read[r.source].add(r.read_name)
        if s.kind == "map":
            fw = fws.get(s.sources[0].source)
            ctx = InferContext(tuple(map(_META, s.sources)), s.targets, fw, plan.target_framework)
            try:
                _replay_chain(s, ctx, options["dtype"], dtype_check, arrays)
            except TransformError as e:
                raise bad(e.message, i) from None
            except ValueError as e:
                raise bad(str(e), i) from None
    for d in plan.dropped:
        if d.source.source not in sources or d.source.read_name in read[d.source.source]:
            raise _invalid(path, f"dropped source tensor `{d.source.source}:{d.source.read_name}` is also read, "
                           "dropped twice or from a source the plan does not pin")
        read[d.source.source].add(d.source.read_name)
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


def _replay_chain(s: Step, ctx: InferContext, policy: str, dtype_check: Callable[[str, str, str], str | None],
                  arrays: dict[tuple[Shape, str], ArrayMeta]) -> None:
    """Infer the step's transforms again from its source metas, as the compiler does: each must
    resolve to itself, give the recorded shapes and dtypes, and end in the targets'. (`arrays`:
    the ArrayMeta of each (shape, dtype) made so far; they are immutable, so steps share them.)"""
    sigs = list(map(_SIG, ctx.sources))
    if sigs and sigs.count(sigs[0]) == len(sigs):  # a fan-in's experts, all alike: one lookup
        metas = (arrays.get(sigs[0]) or arrays.setdefault(sigs[0], ArrayMeta(*sigs[0])),) * len(sigs)
    else:
        metas = tuple([arrays.get(sig) or arrays.setdefault(sig, ArrayMeta(*sig)) for sig in sigs])
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
