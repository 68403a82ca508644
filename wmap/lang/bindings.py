"""`let` bindings: values computed from the model's config, and the spec they are bound into.

A spec names sizes once (`let heads = config.num_attention_heads`) and uses them as `$heads` in
transform and initialiser arguments and in index arithmetic (`{i+$first}`), so one spec serves
every size of a model family. Planning evaluates the lets against the config the spec names
(`evaluate`), then replaces every reference by its value (`bind`) before a transform is built:
nothing past this module sees a `$name`. What the evaluation read is kept (`Bindings.keys`), so a
saved plan can refuse to run when one of those config values changed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wmap.core.errors import DiagnosticBag, Span, did_you_mean
from wmap.core.values import Ref, Value
from wmap.lang import patterns as P
from wmap.lang.spec import BinOp, Call, Expr, Fn, Key, Let, Name, Neg, Num, Spec, Text

JSON = object  # a parsed JSON value: dict, list, str, int, float, bool or None


@dataclass(frozen=True)
class ConfigData:
    """A config as read: how to name it in messages and plans, and its parsed JSON."""

    label: str
    data: Mapping[str, JSON]
    where: str | None = None  # `path:config.json` or `from:src`: how a saved plan finds it again


@dataclass(frozen=True)
class Bindings:
    """What the lets evaluated to, and the config values they read (by dotted key path)."""

    values: tuple[tuple[str, Value], ...] = ()
    keys: tuple[tuple[str, Value], ...] = ()
    label: str | None = None
    where: str | None = None

    def __bool__(self) -> bool:
        return bool(self.values)


class _Absent:
    """A config key that is not there: `a ?? b` falls back on it; anything else reports it."""

    def __init__(self, key: Key, missing: str, where: Mapping[str, JSON]):
        self.key, self.missing, self.where = key, missing, where


def uses_config(spec: Spec) -> bool:
    from wmap.lang.validate import walk_expr
    return any(isinstance(n, Key) for x in spec.lets for n in walk_expr(x.expr))


def evaluate(spec: Spec, config: ConfigData | None, bag: DiagnosticBag) -> Bindings:
    """Every let's value, in order; problems go to `bag` (each at the key or the let it is about)."""
    values: dict[str, Value] = {}
    keys: dict[str, Value] = {}
    for let in spec.lets:
        ev = _Evaluator(let, config, values, keys, bag)
        v = ev.value(let.expr)
        if isinstance(v, _Absent):
            ev.absent(v)
            continue
        if v is not _FAILED:
            values[let.name] = _as_value(v, let, bag)
    return Bindings(tuple(values.items()), tuple(sorted(keys.items())), config.label if config else None,
                    config.where if config else None)


_FAILED = object()


class _Evaluator:
    def __init__(self, let: Let, config: ConfigData | None, values: Mapping[str, Value], keys: dict[str, Value],
                 bag: DiagnosticBag):
        self.let, self.config, self.values, self.keys, self.bag = let, config, values, keys, bag

    def fail(self, code: str, message: str, span: Span | None, hint: str | None = None) -> object:
        self.bag.add(code, f"`let {self.let.name}`: {message}", span if span is not None and span.line else self.let.span,
                     hint)
        return _FAILED

    def absent(self, a: _Absent) -> object:
        assert self.config is not None
        near = did_you_mean(a.missing, [k for k in a.where if isinstance(k, str)])
        return self.fail("WM121", f"{self.config.label} has no `{'.'.join(a.key.path)}`", a.key.span,
                         near or "check the key's spelling, or give a default: `config.KEY ?? 64`")

    def value(self, e: Expr) -> object:
        if isinstance(e, Num):
            return e.value
        if isinstance(e, Text):
            return e.value
        if isinstance(e, Name):
            return self.values.get(e.name, _FAILED)  # an unbound name was reported when the spec was read
        if isinstance(e, Key):
            return self.key(e)
        if isinstance(e, Neg):
            v = self.value(e.operand)
            return self.arith("-", 0, v, None) if not isinstance(v, _Absent) else self.absent(v)
        if isinstance(e, Fn):
            return self.call(e)
        assert isinstance(e, BinOp)
        left = self.value(e.left)
        if e.op == "??":
            return self.value(e.right) if isinstance(left, _Absent) or left is None else left
        right = self.value(e.right)
        for side in (left, right):
            if isinstance(side, _Absent):
                return self.absent(side)
        if left is _FAILED or right is _FAILED:
            return _FAILED
        return self.arith(e.op, left, right, e.span)

    def key(self, e: Key) -> object:
        if self.config is None:
            return self.fail("WM123", f"`config.{'.'.join(e.path)}` reads the model's config, but there is none",
                             e.span, "say where it is: `config \"config.json\"` or `config SOURCE` (the config.json "
                             "beside that checkpoint), or pass --config PATH")
        node: JSON = self.config.data
        for i, part in enumerate(e.path):
            if not isinstance(node, Mapping):
                return self.fail("WM122", f"`config.{'.'.join(e.path[:i])}` is {_show(node)}, not an object with "
                                 f"`{part}`", e.span)
            if part not in node:
                self.keys[".".join(e.path)] = None  # absent reads like null: a saved plan notices it appearing
                return _Absent(e, part, node)
            node = node[part]
        self.keys[".".join(e.path)] = plain(node)
        return node

    def call(self, e: Fn) -> object:
        args = [self.value(a) for a in e.args]
        for a in args:
            if isinstance(a, _Absent):
                return self.absent(a)
        if any(a is _FAILED for a in args) or not args:
            return _FAILED
        if not all(_number(a) for a in args):
            bad = next(a for a in args if not _number(a))
            return self.fail("WM122", f"`{e.name}` needs numbers, not {_show(bad)}", e.span)
        nums: list[int | float] = [a for a in args if isinstance(a, (int, float))]
        if e.name == "int":
            return int(nums[0])
        return min(nums) if e.name == "min" else max(nums)

    def arith(self, op: str, a: object, b: object, span: Span | None) -> object:
        if a is _FAILED or b is _FAILED:
            return _FAILED
        if not (_number(a) and _number(b)):
            bad = a if not _number(a) else b
            return self.fail("WM122", f"`{op}` needs numbers, not {_show(bad)}", span,
                             "arithmetic works on the config's numbers; is this the right key?")
        assert isinstance(a, (int, float)) and isinstance(b, (int, float))
        if op in ("/", "//", "%") and b == 0:
            return self.fail("WM122", f"division by zero (`{_show(a)} {op} 0`)", span)
        out = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
               "//": lambda: a // b, "%": lambda: a % b}[op]()
        if isinstance(out, float) and not math.isfinite(out):
            return self.fail("WM122", f"`{_show(a)} {op} {_show(b)}` is not a finite number", span)
        return out


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _show(v: object) -> str:
    if isinstance(v, Mapping):
        return "an object"
    if isinstance(v, list):
        return "a list"
    text = repr(v) if not isinstance(v, str) else f'"{v}"'
    return f"`{text if len(text) <= 40 else text[:37] + '...'}`"


def plain(v: JSON) -> Value:
    """A config value as a spec value (lists become tuples; objects are kept by their text)."""
    if isinstance(v, list):
        return tuple(plain(x) for x in v)
    if isinstance(v, Mapping):
        return repr(dict(v))
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def _as_value(v: object, let: Let, bag: DiagnosticBag) -> Value:
    if isinstance(v, Mapping):
        bag.add("WM122", f"`let {let.name}` is an object; a let is a number, a string or a list", let.span,
                "name one of its keys: `config.rope_scaling.factor`")
        return None
    return plain(v)


# -- binding: every `$name` replaced by its value ------------------------------------------------


def resolve(v: Value, values: Mapping[str, Value]) -> Value:
    if isinstance(v, Ref):
        return values[v.name]
    if isinstance(v, tuple):
        return tuple(resolve(x, values) for x in v)
    return v


def _bind_call(c: Call, values: Mapping[str, Value]) -> Call:
    return dataclasses.replace(c, args=tuple(resolve(a, values) for a in c.args),
                               kwargs=tuple((k, resolve(v, values)) for k, v in c.kwargs))


def bind(spec: Spec, bindings: Bindings, bag: DiagnosticBag) -> Spec:
    """`spec` with every reference replaced by its value (a reference to a let that failed to
    evaluate was reported already; its rule keeps the reference, and is not planned)."""
    values = dict(bindings.values)
    if not spec.lets:
        return spec
    rules = []
    for r in spec.rules:
        if not _bound(r.via, r.target, values):
            rules.append(r)
            continue
        try:
            target = P.bind_template(r.target, values)
        except P.TemplateError as e:
            bag.add("WM122", f"rule `{', '.join(r.sources)} -> {r.target}`: {e}", r.span)
            target = r.target
        rules.append(dataclasses.replace(r, target=target, via=tuple(_bind_call(c, values) for c in r.via)))
    inits = [dataclasses.replace(i, call=_bind_call(i.call, values)) if _bound((i.call,), "", values) else i
             for i in spec.init]
    return dataclasses.replace(spec, rules=tuple(rules), init=tuple(inits))


def _bound(calls: Sequence[Call], template: str, values: Mapping[str, Value]) -> bool:
    from wmap.core.values import refs_in
    used = [r.name for c in calls for r in refs_in(tuple(c.args) + tuple(v for _, v in c.kwargs))]
    return all(n in values for n in used + P.template_refs(template))
