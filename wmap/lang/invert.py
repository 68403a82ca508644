"""The reverse of a spec: the spec that moves the weights back.

Every rule is turned around at the level of the spec itself, so the reverse of a recipe is again
one spec for every size of its family (its `config` and `let`s carry over; `config hf` becomes
`config target`, since the checkpoint the config sits beside is now the target):

- the target template becomes the source pattern and the source pattern the template. A capture
  keeps its kind (`{i:int}` on whichever side now matches), an index the source fanned in over
  (`experts.{e:int}` into a stacked tensor) becomes a fan-out index and back, and index arithmetic
  inverts (`{i+1}` -> `{i-1}`);
- the chain is reversed and every transform replaced by its inverse, with its `$name` arguments
  kept symbolic (`mha_proj_to_keras(num_heads=$heads)` -> `mha_proj_from_keras(num_heads=$heads)`,
  `split(1)` -> `concat(1)`, `rearrange("e (h d) -> e h d", h=$heads)` -> the swapped pattern);
- `drop` (a source deliberately unused) becomes `keep` (the target's tensor left as it is), `keep`
  becomes `drop`; `strip_prefix` and `target_strip_prefix` trade places. `freeze` and `lr` say how
  the target trains and have no reverse: they are left out, and said so in a comment.

What cannot run backwards is refused with the rule named (WM130): a step that loses information
(`prune`, `lerp`, `cast`, an `init` other than a `copy`, whose target is dropped), a transform whose inverse needs sizes the spec does not state
(`reshape(...)` does not say what it reshapes from: `rearrange` names its axes and inverts), index
arithmetic other than `+` and `-`, and a rule with several source patterns or named sources (WM131).
"""

from __future__ import annotations

import dataclasses
import os
import re

from wmap.core.errors import DiagnosticBag
from wmap.core.values import Ref, Value
from wmap.lang.spec import Call, Option, PatternStmt, Rule, SourceDecl, Spec, TargetDecl

_BRACE = re.compile(r"\{([^{}]*)\}")
_CAPTURE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::(int|\*\*))?$")
_ARITH = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*([-+*/%]+)\s*(.+)$")
_FLIP = {"+": "-", "-": "+"}
REVERSED_SOURCE = "model"  # the reverse spec's one source: what the forward spec filled


class NotInvertible(Exception):
    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


def invert_spec(spec: Spec) -> Spec:
    """The reverse of `spec`. Raises WmapError listing every rule that cannot run backwards."""
    bag = DiagnosticBag()
    if spec.path and spec.text is not None:
        bag.sources[spec.path] = spec.text
    # `init X = copy("s")` duplicates a source another rule maps (a derived buffer, such as a position
    # table kept twice): backwards, s comes from its own rule and X is dropped. Any other init made
    # values no source holds.
    copies = [i for i in spec.init if i.call.name == "copy"]
    made = [i for i in spec.init if i.call.name != "copy"]
    if made:
        first = made[0]
        bag.add("WM130", f"`init {first.pattern}` creates values that have no source to go back to",
                first.span, "a reverse spec cannot recreate what the forward one initialised: take the `init` "
                "out (and drop those tensors from the model) before inverting")
    names = {s.name for s in spec.sources}
    if len(spec.sources) > 1:
        bag.add("WM131", f"the spec reads {len(spec.sources)} sources; a reverse spec writes one target",
                spec.sources[1].span, "only a one-source spec has a reverse")
    rules: list[Rule] = []
    for rule in spec.rules:
        try:
            rules.append(_invert_rule(rule, names))
        except NotInvertible as e:
            bag.add(e.code, f"rule `{_rule_text(rule)}`: {e.message}", rule.span, e.hint)
    bag.raise_if_errors()

    source = spec.sources[0] if spec.sources else None
    target_decl = spec.target
    origin = f" of {os.path.basename(spec.path)}" if spec.path else ""
    header = (f"# The reverse{origin}, written by `wmap invert`: what it filled is the source here, "
              "what it read the target.",)
    new_source = SourceDecl(REVERSED_SOURCE, target_decl.location if target_decl else "",
                            target_decl.framework if target_decl else None, comments=header)
    new_target = TargetDecl(source.location if source else "", source.framework if source else None)
    options = tuple(_invert_option(o) for o in spec.options)
    config = spec.config
    if config is not None and config.endpoint is not None:
        endpoint = "target" if config.endpoint in names else REVERSED_SOURCE
        config = dataclasses.replace(config, endpoint=endpoint)
    left_out = [f"freeze {p.pattern}" for p in spec.freeze] + [f"lr {p.pattern} * {p.factor}" for p in spec.lr] \
        + [f"ack {a.code} {a.pattern}" for a in spec.ack]  # acks name the forward plan's warnings
    trailing = spec.trailing_comments
    if left_out:
        trailing = (*trailing, "# left out of the reverse (they say how the forward target trains): "
                    + "; ".join(left_out))
    return Spec(spec.version, sources=(new_source,), target=new_target, options=options,
                rules=tuple(rules), drop=tuple(_unprefixed(p, names) for p in spec.keep)
                + tuple(PatternStmt(i.pattern, i.span, i.comments) for i in copies),
                keep=tuple(_unprefixed(p, names) for p in spec.drop), config=config, lets=spec.lets,
                trailing_comments=trailing)


def _rule_text(rule: Rule) -> str:
    return f"{', '.join(rule.sources)} -> {rule.target}"


def _invert_option(o: Option) -> Option:
    swap = {"strip_prefix": "target_strip_prefix", "target_strip_prefix": "strip_prefix"}
    return dataclasses.replace(o, name=swap.get(o.name, o.name))


def _strip_source(pattern: str, names: set[str]) -> str:
    optional = pattern.startswith("?")
    body = pattern[1:] if optional else pattern
    head, sep, rest = body.partition(":")
    if sep and head in names and "{" not in head:
        body = rest
    return ("?" if optional else "") + body


def _unprefixed(p: PatternStmt, names: set[str]) -> PatternStmt:
    return dataclasses.replace(p, pattern=_strip_source(p.pattern, names))


# -- patterns ----------------------------------------------------------------------------------


def _invert_patterns(source: str, target: str) -> tuple[str, str]:
    """(new source pattern, new target template) for `source -> target`."""
    kinds: dict[str, str | None] = {}
    for inner in _BRACE.findall(source):
        m = _CAPTURE.match(inner.strip())
        if m:
            kinds[m.group(1)] = m.group(2)
    used: set[str] = set()
    arith: dict[str, str] = {}

    def new_source(m: re.Match[str]) -> str:
        inner = m.group(1).strip()
        cap = _CAPTURE.match(inner)
        if cap:
            name, kind = cap.group(1), cap.group(2)
            used.add(name)
            kind = kind or kinds.get(name)
            return "{" + name + (f":{kind}" if kind else "") + "}"
        ar = _ARITH.match(inner)
        if ar and "," not in inner:
            name, op, operand = ar.groups()
            if op not in _FLIP:
                raise NotInvertible("WM130", f"index arithmetic `{{{inner}}}` has no inverse",
                                    "only `{i+n}` and `{i-n}` run backwards")
            used.add(name)
            arith[name] = f"{name}{_FLIP[op]}{operand.strip()}"
            return "{" + name + ":int}"
        return m.group(0)  # an alternation (or a literal brace the parser will judge)

    def new_target(m: re.Match[str]) -> str:
        inner = m.group(1).strip()
        cap = _CAPTURE.match(inner)
        if not cap:
            return m.group(0)
        name, kind = cap.group(1), cap.group(2)
        if name in arith:
            return "{" + arith[name] + "}"
        if name in used:
            return "{" + name + "}"
        # an index the forward rule fanned in over: the reverse fans out over it
        return "{" + name + (f":{kind}" if kind else "") + "}"

    inverted_source = _BRACE.sub(new_source, target)
    return inverted_source, _BRACE.sub(new_target, source)


def _invert_rule(rule: Rule, names: set[str]) -> Rule:
    if len(rule.sources) > 1:
        raise NotInvertible("WM131", f"{len(rule.sources)} source patterns land on one target; a reverse rule "
                            "would need one pattern per target", "write the sources as one pattern with an "
                            "alternation (`{q,k,v}_proj.weight`) so the reverse can fan out over it")
    source = _strip_source(rule.sources[0], names)
    new_source, new_target = _invert_patterns(source, rule.target)
    via = tuple(invert_call(c) for c in reversed(rule.via))
    return Rule((new_source,), new_target, via, rule.optional, rule.span, rule.comments)


# -- transforms --------------------------------------------------------------------------------

# A transform's `inverse()` needs numbers, but a recipe's arguments are `$name` references whose
# values come from a config only at plan time. Each reference stands in as a distinct odd number far
# above any tensor dimension (2**40 + 1, 2**40 + 3, ...): an inverse that passes one through is
# mapped back to its reference; one that computes with it (h * d, n // h) yields a number that is in
# no table, caught by the `> base // 2` check below and refused rather than written as a constant.
_PLACEHOLDER_BASE = 2**40 + 1


def invert_call(call: Call) -> Call:
    """The call that undoes `call`, with its `$name` arguments kept as references."""
    from wmap.transforms.base import REGISTRY, TransformError, build

    cls = REGISTRY.get(call.name)
    if cls is None:
        raise NotInvertible("WM103", f"unknown transform `{call.name}`")
    if cls.DISPATCH:
        raise NotInvertible("WM130", f"`{call.name}` picks its transform from the two models, so its inverse is "
                            "only known once planned", "name the preset it picks (`wmap plan` shows it)")
    if not cls.INVERTIBLE:
        raise NotInvertible("WM130", f"`{call.name}` loses information and has no inverse",
                            "a spec with it runs one way only")
    stand_in: dict[int, Ref] = {}

    def sub(v: Value) -> Value:
        if isinstance(v, Ref):
            k = _PLACEHOLDER_BASE + 2 * len(stand_in)
            stand_in[k] = v
            return k
        if isinstance(v, tuple):
            return tuple(sub(x) for x in v)
        return v

    args = tuple(sub(a) for a in call.args)
    kwargs = tuple((k, sub(v)) for k, v in call.kwargs)
    try:
        inverse = build(call.name, args, kwargs).inverse()
    except TransformError as e:
        raise NotInvertible(e.code, e.message, e.hint) from None
    if inverse is None:
        raise NotInvertible("WM130", f"`{call.name}` as written does not say what it undoes",
                            "`reshape` does not name the shape it reshapes from; `rearrange(\"e (h d) -> e h d\", "
                            "h=$heads)` names its axes and runs backwards" if call.name == "reshape" else
                            "only some forms of it run backwards (`wmap explain` says which); a spec with this "
                            "one runs one way only")

    def back(v: object) -> Value:
        if isinstance(v, bool) or not isinstance(v, (int, list, tuple)):
            return v  # type: ignore[return-value]  # a scalar spec value (str, float, None)
        if isinstance(v, int):
            return stand_in.get(v, v)
        return tuple(back(x) for x in v)

    params = inverse.params()
    for v in params.values():
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, int) and not isinstance(x, bool) and x > _PLACEHOLDER_BASE // 2 and x not in stand_in:
                raise NotInvertible("WM130", f"the inverse of `{call.name}` computes with a `$name` argument",
                                    "give that argument as a number, or invert a spec whose config is at hand")
    pairs = [(k, back(v)) for k, v in params.items()]
    first = next((f.name for f in dataclasses.fields(inverse) if f.init), None)
    args_out: tuple[Value, ...] = ()
    if pairs and pairs[0][0] == first:  # `concat(1)`, `rearrange("h d -> (h d)", h=$heads)`: as people write them
        args_out, pairs = (pairs[0][1],), pairs[1:]
    return Call(inverse.NAME, args_out, tuple(pairs), call.span)
