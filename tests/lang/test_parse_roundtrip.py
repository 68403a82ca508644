"""Printing and parsing are inverses, in both syntaxes, for generated ASTs.

Hypothesis builds random valid specs (named and default sources, a target, typed options,
rules whose patterns and templates are assembled from pattern pieces, calls with ints,
floats, strings, lists and keyword arguments, drop/init/keep/freeze/lr, comments) and
checks that `parse(print(ast)) == ast` for `.wmap` and YAML, that printing is idempotent,
that messy spellings of the same spec print canonically, and that comments survive.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, find, given, settings
from hypothesis import strategies as st

from wmap.core.codes import ACKNOWLEDGEABLE
from wmap.core.frameworks import FRAMEWORKS
from wmap.lang import format_spec, parse_spec
from wmap.lang.spec import (
    DEFAULT_SOURCE,
    FUNCTIONS,
    Ack,
    BinOp,
    Call,
    ConfigDecl,
    Expr,
    Fn,
    Init,
    Key,
    Let,
    LrScale,
    Name,
    Neg,
    Num,
    Option,
    PatternStmt,
    Ref,
    Rule,
    SourceDecl,
    Spec,
    TargetDecl,
    Text,
    Use,
)
from wmap.lang.statements import KEYWORDS

# WMAP_EXAMPLES=2000 runs a deeper search (the default keeps the suite fast)
SETTINGS = settings(max_examples=int(os.environ.get("WMAP_EXAMPLES", "40")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# -- names, values and calls --------------------------------------------------------------------

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_WORD = _LOWER + _LOWER.upper() + "_0123456789"


def _word(first: str, rest: str, max_size: int) -> st.SearchStrategy[str]:
    """`first` then up to `max_size` of `rest` (st.from_regex is slow: this keeps the suite fast)."""
    return st.builds(str.__add__, st.sampled_from(first), st.text(rest, max_size=max_size))


IDENT = _word(_WORD[:-10], _WORD, 7)
# words the grammar also uses: they must still work wherever a name is allowed
NAME = st.one_of(IDENT, st.sampled_from(KEYWORDS + ("true", "false", "null", "src", "inf", "nan")))
NO_SURROGATES = st.characters(blacklist_categories=["Cs"])
TEXT = st.text(NO_SURROGATES, max_size=12)

SCALAR = st.one_of(
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    NAME,
    st.booleans(),
    st.none(),
)
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6)


@st.composite
def calls(draw: st.DrawFn, refs: tuple[str, ...] = ()) -> Call:
    value = st.one_of(VALUE, st.sampled_from(refs).map(Ref)) if refs else VALUE
    args = tuple(draw(st.lists(value, max_size=2)))
    keys = draw(st.lists(NAME, max_size=2, unique=True))
    kwargs = tuple((k, draw(value)) for k in keys)
    return Call(draw(NAME), args, kwargs)


# -- `let` expressions -----------------------------------------------------------------------------

KEY_PART = _word(_LOWER + "_", _LOWER + "_0123456789", 6).filter(lambda s: s not in ("true", "false", "null"))


def exprs(names: tuple[str, ...]) -> st.SearchStrategy[Expr]:
    """Random expression trees over numbers, strings, config keys and earlier lets."""
    leaves: list[st.SearchStrategy[Expr]] = [
        st.integers(-10**6, 10**6).map(Num), st.floats(-1e6, 1e6, allow_nan=False).map(Num),
        TEXT.map(Text), st.lists(KEY_PART, min_size=1, max_size=3).map(lambda p: Key(tuple(p)))]
    if names:
        leaves.append(st.sampled_from(names).map(Name))
    return st.recursive(st.one_of(leaves), lambda inner: st.one_of(
        st.builds(BinOp, st.sampled_from(["+", "-", "*", "/", "//", "%", "??"]), inner, inner),
        inner.filter(lambda e: not isinstance(e, Num)).map(Neg),
        st.builds(lambda f, a: Fn(f, tuple(a[:1] if f == "int" else a)), st.sampled_from(FUNCTIONS),
                  st.lists(inner, min_size=1, max_size=3))),
        max_leaves=5)


# -- patterns from their pieces ------------------------------------------------------------------

LIT = _word(_LOWER + "0123456789_", _LOWER + "0123456789_/-", 4).map(lambda s: s.rstrip("-"))
CAP = _word(_LOWER, _LOWER + "0123456789_", 4)


@st.composite
def skeletons(draw: st.DrawFn) -> list[list[tuple[str, Any]]]:
    """A source pattern as segments of pieces: ("lit", text), ("star",), ("dstar",), ("cap", name),
    ("int", name), ("path", name), ("alt", options). Capture names are unique; no two non-literal
    pieces touch (that is ambiguous, and refused)."""
    count = iter(range(100))

    def fresh() -> str:
        return f"{draw(CAP)}{next(count)}"  # unique without a costly unique-list draw
    segs: list[list[tuple[str, Any]]] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["mixed", "mixed", "mixed", "dstar", "path"]))
        if kind == "dstar" and not (segs and segs[-1] == [("dstar", None)]):
            segs.append([("dstar", None)])
        elif kind == "path":
            segs.append([("path", fresh())])
        else:
            pieces: list[tuple[str, Any]] = []
            lit_first = draw(st.booleans())
            for k in range(draw(st.integers(1, 4))):  # literal and wildcard pieces take turns
                if (k % 2 == 0) == lit_first:
                    pieces.append(("lit", draw(LIT)))
                    continue
                wild = draw(st.sampled_from(["star", "cap", "int", "alt"]))
                if wild == "alt":
                    pieces.append(("alt", tuple(draw(st.lists(LIT, min_size=2, max_size=3, unique=True)))))
                elif wild == "star":
                    pieces.append(("star", None))
                else:
                    pieces.append((wild, fresh()))
            segs.append(pieces)
    return segs


def render(segs: list[list[tuple[str, Any]]]) -> str:
    def piece(kind: str, v: Any) -> str:
        return {"lit": lambda: v, "star": lambda: "*", "dstar": lambda: "**", "cap": lambda: f"{{{v}}}",
                "int": lambda: f"{{{v}:int}}", "path": lambda: f"{{{v}:**}}", "alt": lambda: "{" + ",".join(v) + "}",
                "expr": lambda: f"{{{v[0]}{v[1]}{v[2]}}}"}[kind]()
    return ".".join("".join(piece(k, v) for k, v in seg) for seg in segs)


@st.composite
def template_for(draw: st.DrawFn, segs: list[list[tuple[str, Any]]]) -> str:
    """A target template that renames the literals and alternation options of a source skeleton,
    uses its captures (integer ones perhaps with arithmetic) and keeps its wildcards."""
    out: list[list[tuple[str, Any]]] = []
    for seg in segs:
        new: list[tuple[str, Any]] = []
        for kind, v in seg:
            if kind == "lit":
                new.append(("lit", draw(LIT)))
            elif kind == "alt":
                new.append(("alt", tuple(draw(st.lists(LIT, min_size=len(v), max_size=len(v), unique=True)))))
            elif kind == "int" and draw(st.booleans()):
                new.append(("expr", (v, draw(st.sampled_from(["+", "-", "*", "//", "%"])), draw(st.integers(1, 9)))))
            elif kind in ("int", "path"):
                new.append(("cap", v))
            else:
                new.append((kind, v))
        out.append(new)
    return render(out)


def source_patterns(prefixes: tuple[str, ...]) -> st.SearchStrategy[str]:
    prefix = st.sampled_from(("",) + tuple(f"{p}:" for p in prefixes))
    return st.builds(lambda p, s: p + render(s), prefix, skeletons())


def target_patterns() -> st.SearchStrategy[str]:
    return st.builds(lambda q, s: q + render(s), st.sampled_from(["", "?"]), skeletons())


# -- comments ------------------------------------------------------------------------------------

COMMENT_BODY = st.text(st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=20).map(str.rstrip)


@st.composite
def comments(draw: st.DrawFn) -> tuple[str, ...]:
    lead = [f"#{b}" for b in draw(st.lists(COMMENT_BODY, max_size=2))]
    trail = [f" #{draw(COMMENT_BODY)}"] if draw(st.booleans()) else []
    return tuple(lead + trail)


# -- whole specs ---------------------------------------------------------------------------------

OPTION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "strict": st.booleans(),
    "seed": st.integers(0, 2**63),
    "dtype": st.sampled_from(["strict", "widen", "target"]),
    "strip_prefix": st.one_of(TEXT, st.lists(TEXT, max_size=3).map(tuple)),
    "target_strip_prefix": st.one_of(TEXT, st.lists(TEXT, max_size=3).map(tuple)),
    "nonfinite": st.sampled_from(["error", "warn", "allow"]),
    "bn_eval": st.booleans(),
    "shard_size": st.sampled_from(["5GB", "500MB", "2GiB", "100"]),
}
LOCATION = st.one_of(st.text(NO_SURROGATES, min_size=1, max_size=12), st.builds(lambda a, b: f"{a}:{b}", _word(_LOWER, _LOWER + "._", 8),
                                                   _word(_LOWER, _LOWER + "_0123456789", 8)))


@st.composite
def specs(draw: st.DrawFn, with_comments: bool = False) -> Spec:
    def cm() -> tuple[str, ...]:
        return draw(comments()) if with_comments else ()

    n_sources = draw(st.integers(0, 3))
    names = draw(st.lists(NAME, min_size=n_sources, max_size=n_sources, unique=True))
    if n_sources == 1 and draw(st.booleans()):
        names = [DEFAULT_SOURCE]
    sources = []
    for name in names:
        fw = draw(st.one_of(st.none(), st.sampled_from(FRAMEWORKS)))
        if fw is None and name in FRAMEWORKS:
            fw = "torch"  # `source torch "x"` names the framework, so such a source needs one
        sources.append(SourceDecl(name, draw(LOCATION), fw, comments=cm()))
    target = None
    if draw(st.booleans()):
        target = TargetDecl(draw(LOCATION), draw(st.one_of(st.none(), st.sampled_from(FRAMEWORKS))), comments=cm())
    options = tuple(Option(k, draw(OPTION_VALUES[k]), comments=cm())
                    for k in draw(st.lists(st.sampled_from(sorted(OPTION_VALUES)), max_size=3, unique=True)))
    prefixes = tuple(names) if n_sources > 1 else ()
    config = draw(st.one_of(st.none(), st.builds(lambda p: ConfigDecl(path=p), LOCATION),
                            st.sampled_from([*names, "target"] if names else [DEFAULT_SOURCE, "target"])
                            .map(lambda n: ConfigDecl(endpoint=n))))
    lets: list[Let] = []
    for name in draw(st.lists(NAME, max_size=2, unique=True)):
        lets.append(Let(name, draw(exprs(tuple(x.name for x in lets))), comments=cm()))
    refs = tuple(x.name for x in lets)
    rules = []
    for _ in range(draw(st.integers(0, 3))):
        skel = draw(skeletons())
        srcs = [render(skel)]
        if len(prefixes) > 1 and draw(st.booleans()):  # several sources feed one rule: `a:{p:**}, b:{p:**} -> {p}`
            srcs = [f"{p}:{render(skel)}" for p in draw(st.lists(st.sampled_from(prefixes), min_size=1,
                                                                  max_size=3, unique=True))]
        via = tuple(draw(st.lists(calls(refs), max_size=2)))
        rules.append(Rule(tuple(srcs), draw(template_for(skel)), via, draw(st.booleans()), comments=cm()))
    drop = tuple(PatternStmt(draw(source_patterns(prefixes)), comments=cm()) for _ in range(draw(st.integers(0, 2))))
    keep = tuple(PatternStmt(draw(target_patterns()), comments=cm()) for _ in range(draw(st.integers(0, 1))))
    freeze = tuple(PatternStmt(draw(target_patterns()), comments=cm()) for _ in range(draw(st.integers(0, 2))))
    init_pats = draw(st.lists(target_patterns(), max_size=2, unique=True))  # YAML: one key per pattern
    init = tuple(Init(p, draw(calls(refs)), comments=cm()) for p in init_pats)
    lr_pats = draw(st.lists(target_patterns(), max_size=2, unique=True))
    lr = tuple(LrScale(p, draw(st.floats(0, 1e6)), comments=cm()) for p in lr_pats)
    acks = [Ack(draw(st.sampled_from(sorted(ACKNOWLEDGEABLE))), draw(target_patterns()), comments=cm())
            for _ in range(draw(st.integers(0, 3)))]
    uses = tuple(Use(draw(LOCATION.filter(bool)), tuple(draw(st.lists(calls(refs), max_size=2))), comments=cm())
                 for _ in range(draw(st.integers(0, 2))))
    trailing = tuple(f"#{b}" for b in draw(st.lists(COMMENT_BODY, max_size=2))) if with_comments else ()
    return Spec(1, tuple(sources), target, options, tuple(rules), drop, init, keep, freeze, lr, config, tuple(lets),
                ack=tuple(sorted(acks, key=lambda a: a.code)), uses=uses, trailing_comments=trailing)


def parse(text: str, syntax: str) -> Spec:
    return parse_spec(text, syntax, "spec", names=False, includes=False)  # type: ignore[arg-type]  # `use`s as written


def all_comments(spec: Spec) -> list[tuple[str, ...]]:
    nodes: list[Any] = [*spec.uses, *spec.sources, *([spec.target] if spec.target else []), *spec.options, *spec.rules, *spec.drop,
             *spec.init, *spec.keep, *spec.freeze, *spec.lr]
    return [n.comments for n in nodes] + [spec.trailing_comments]


# -- properties ----------------------------------------------------------------------------------


@SETTINGS
@given(specs())
def test_wmap_roundtrip(spec: Spec) -> None:
    text = format_spec(spec, "wmap")
    back = parse(text, "wmap")
    assert back == spec, text
    assert format_spec(back, "wmap") == text  # idempotent


@SETTINGS
@given(specs())
def test_yaml_roundtrip(spec: Spec) -> None:
    text = format_spec(spec, "yaml")
    back = parse(text, "yaml")
    assert back == spec, text
    assert format_spec(back, "yaml") == text  # idempotent


@SETTINGS
@given(specs())
def test_conversion_is_lossless_both_ways(spec: Spec) -> None:
    wmap_text = format_spec(spec, "wmap")
    via_yaml = parse(format_spec(parse(wmap_text, "wmap"), "yaml"), "yaml")
    assert via_yaml == spec
    assert format_spec(via_yaml, "wmap") == wmap_text


@SETTINGS
@given(specs(with_comments=True))
def test_comments_survive_wmap_formatting(spec: Spec) -> None:
    text = format_spec(spec, "wmap")
    back = parse(text, "wmap")
    assert back == spec
    assert all_comments(back) == all_comments(spec), text
    assert format_spec(back, "wmap") == text


def _messy(text: str) -> str:
    """The same spec as a person might type it: extra spaces, blank lines, chains broken onto
    `|` continuation lines, trailing whitespace. Lines with strings or comments are left alone
    (their spaces are content)."""
    out = []
    for line in text.rstrip("\n").split("\n"):  # not splitlines(): strings may hold \x1d, \x85...
        if any(c in line for c in "\"'#"):
            out.append(line)
            continue
        line = line.replace(" -> ", "   ->\t").replace(", ", " ,  ").replace(" * ", "  *  ").replace(" = ", "=")
        line = line.replace(" | ", "\n      |  ")
        out.append("  " + line + "   ")
        out.append("")
    return "\n".join(out) + "\n"


@SETTINGS
@given(specs(with_comments=True))
def test_messy_spellings_print_canonically(spec: Spec) -> None:
    canonical = format_spec(spec, "wmap")
    messy = _messy(canonical)
    assume(messy != canonical)
    back = parse(messy, "wmap")
    assert back == spec, messy
    assert format_spec(back, "wmap") == canonical


def test_comments_at_every_position_survive() -> None:
    """A hand-written spec: a header before the version, comments on lines of their own, at line
    ends, inside a continued chain and at the end; after one `wmap fmt` every comment is there,
    and a second `wmap fmt` changes nothing."""
    text = """# Header: what this transfer is
# (two lines)
wmap 1  # version 1 of the language

# where from
source torch "ckpt.safetensors"  # a "#" inside a string is not a comment
target keras "pkg.models:build"

# rules
fc.weight -> head.kernel  # the head
    # between continuation lines
    | transpose  # fix the layout
    | scale(2.0)
drop aux.*, **.num_batches_tracked  # unused
# lr for the head
lr head.* * 10

# the end
"""
    spec = parse(text, "wmap")
    out = format_spec(spec, "wmap")
    for c in re.findall(r"#.*", text):
        if c.startswith('#" inside'):
            continue
        assert c.rstrip() in out, c
    assert 'source torch "ckpt.safetensors"  # a "#" inside a string is not a comment' in out
    assert spec.sources[0].location == "ckpt.safetensors"
    assert format_spec(parse(out, "wmap"), "wmap") == out
    assert out.index("# Header") < out.index("source torch")


@st.composite
def rules_from_skeletons(draw: st.DrawFn) -> tuple[str, str]:
    skel = draw(skeletons())
    return render(skel), draw(template_for(skel))


FEATURES: dict[str, tuple[st.SearchStrategy[Any], Any]] = {
    "null_argument": (calls(), lambda c: None in c.args),
    "keyword_argument": (calls(), lambda c: bool(c.kwargs)),
    "literal_named_keyword": (calls(), lambda c: any(k in ("true", "false", "null") for k, _ in c.kwargs)),
    "nested_list": (calls(), lambda c: any(isinstance(a, tuple) and any(isinstance(x, tuple) for x in a)
                                           for a in c.args)),
    "float_argument": (calls(), lambda c: any(isinstance(a, float) for a in c.args)),
    "arithmetic": (rules_from_skeletons(), lambda r: re.search(r"\{\w+[-+*/%]", r[1])),
    "alternation": (rules_from_skeletons(), lambda r: "," in r[1]),
    "path_capture": (rules_from_skeletons(), lambda r: ":**}" in r[0]),
    "double_star": (rules_from_skeletons(), lambda r: "**" in r[1].replace(":**", "")),
    "star": (rules_from_skeletons(), lambda r: "*" in r[0].replace("**", "")),
    "comment": (comments(), lambda c: len(c) == 3),
    "use_with_steps": (specs(), lambda s: any(u.via for u in s.uses)),
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_generated_pieces_reach(feature: str) -> None:
    """The strategies produce what the properties are meant to cover (a guard against a strategy
    that silently degenerates): hypothesis finds an example of each feature."""
    strategy, has = FEATURES[feature]
    example = find(strategy, has, settings=settings(max_examples=2000, phases=[Phase.generate], database=None,
                                                    deadline=None))
    assert has(example)


def test_a_spec_with_every_statement_roundtrips_exactly() -> None:
    spec = parse("""wmap 1

source base torch "a.safetensors"
source tuned "b.safetensors"
target keras "pkg.models:build"
option seed = 3
option strip_prefix = ["module.", "_orig_mod."]

optional base:{p:**}, tuned:{p:**} -> {p} | lerp(0.5)
layer{i:int}.{a,b}.w               -> block{i+1}.{c,d}.kernel | f(-1, 2.5e-3, "x y", [1, [true, null]], k=word)

drop ?base:aux.*
init head.bias = zeros
keep decoder.**
freeze conv1.**, "odd$name"
lr head.** * 0.5
""", "wmap")
    for syntax in ("wmap", "yaml"):
        again = parse(format_spec(spec, syntax), syntax)
        assert again == spec
        assert dataclasses.astuple(again.rules[1].via[0])[:3] == ("f", (-1, 0.0025, "x y", (1, (True, None))),
                                                                 (("k", "word"),))
