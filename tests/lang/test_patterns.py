"""Patterns: what they match, what they capture, how templates render, and which rule wins.

Property tests build a pattern from pieces and, from the same pieces, a name it must match and
the target name its template must produce. The alphabets keep that unambiguous: literals and
alternation options use `a`-`m`, wildcard and capture values `n`-`z` and digits, and a pattern
has at most one piece spanning several segments (`**` or `{x:**}`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wmap.lang import patterns as P

SETTINGS = settings(max_examples=int(os.environ.get("WMAP_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

LIT_CHARS = "abcdefghijklm"
VALUE_CHARS = "nopqrstuvwxyz"
LIT = st.text(LIT_CHARS, min_size=1, max_size=3)
VALUE = st.text(VALUE_CHARS, min_size=1, max_size=3)
DIGITS = st.text("0123456789", min_size=1, max_size=3)
SEGMENT_VALUE = st.text(VALUE_CHARS + "0123456789_", min_size=1, max_size=3)


@dataclass
class Built:
    pattern: str        # the source pattern
    template: str       # a target template for it
    name: str           # a name the pattern matches
    target: str         # what the template renders for that name
    captures: dict[str, str]


@st.composite
def built(draw: st.DrawFn, arithmetic: bool = True) -> Built:
    """A source pattern, a matching name, and a template with the target it must produce."""
    names = iter(f"c{i}" for i in range(100))
    multi_used = False
    src, tpl, name, tgt = [], [], [], []
    captures: dict[str, str] = {}
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["mixed", "mixed", "mixed", "dstar", "path"]))
        if kind in ("dstar", "path") and not multi_used:
            multi_used = True
            segs = draw(st.lists(SEGMENT_VALUE, min_size=0 if kind == "dstar" else 1, max_size=2))
            if kind == "dstar":
                src.append("**")
                tpl.append("**")
            else:
                c = next(names)
                src.append(f"{{{c}:**}}")
                tpl.append(f"{{{c}}}")
                captures[c] = ".".join(segs)
            if segs:
                name.append(".".join(segs))
                tgt.append(".".join(segs))
            continue
        s_seg, t_seg, n_seg, g_seg = "", "", "", ""
        last_lit = False
        for k in range(draw(st.integers(1, 4))):
            want_lit = not last_lit and (k > 0 or draw(st.booleans()))
            if want_lit or (k > 0 and not last_lit):
                lit, new = draw(LIT), draw(LIT)
                s_seg, t_seg, n_seg, g_seg = s_seg + lit, t_seg + new, n_seg + lit, g_seg + new
                last_lit = True
                continue
            piece = draw(st.sampled_from(["star", "cap", "int", "alt"]))
            if piece == "star":
                v = draw(VALUE)
                s_seg, t_seg, n_seg, g_seg = s_seg + "*", t_seg + "*", n_seg + v, g_seg + v
            elif piece == "cap":
                c, v = next(names), draw(VALUE)
                captures[c] = v
                s_seg, t_seg, n_seg, g_seg = s_seg + f"{{{c}}}", t_seg + f"{{{c}}}", n_seg + v, g_seg + v
            elif piece == "int":
                c, v = next(names), draw(DIGITS)
                captures[c] = v
                s_seg, n_seg = s_seg + f"{{{c}:int}}", n_seg + v
                if arithmetic and draw(st.booleans()):
                    op, k2 = draw(st.sampled_from(["+", "-", "*", "//", "%"])), draw(st.integers(1, 9))
                    t_seg, g_seg = t_seg + f"{{{c}{op}{k2}}}", g_seg + expected_arith(v, op, k2)
                else:
                    t_seg, g_seg = t_seg + f"{{{c}}}", g_seg + v
            else:
                width = draw(st.integers(1, 2))
                opts = draw(st.lists(st.text(LIT_CHARS, min_size=width, max_size=width), min_size=2, max_size=3,
                                     unique=True))
                renamed = draw(st.lists(LIT, min_size=len(opts), max_size=len(opts), unique=True))
                pick = draw(st.integers(0, len(opts) - 1))
                s_seg += "{" + ",".join(opts) + "}"
                t_seg += "{" + ",".join(renamed) + "}"
                n_seg, g_seg = n_seg + opts[pick], g_seg + renamed[pick]
            last_lit = False
        src.append(s_seg)
        tpl.append(t_seg)
        name.append(n_seg)
        tgt.append(g_seg)
    if not name:  # only a `**` that matched nothing: a name has at least one segment
        src, tpl, name, tgt = src + ["end"], tpl + ["end"], ["end"], tgt + ["end"]
    return Built(".".join(src), ".".join(tpl), ".".join(name), ".".join(tgt), captures)


def expected_arith(text: str, op: str, k: int) -> str:
    v = int(text)
    r = {"+": v + k, "-": v - k, "*": v * k, "//": v // k, "%": v % k}[op]
    if len(text) > 1 and text[0] == "0" and r >= 0:
        return str(r).zfill(len(text))
    return str(r)


# -- properties ----------------------------------------------------------------------------------


@SETTINGS
@given(built())
def test_a_name_built_from_the_pieces_matches(b: Built) -> None:
    pat = P.parse(b.pattern)
    m = pat.match(b.name)
    assert m is not None, (b.pattern, b.name)
    assert {k: str(v) for k, v in m.captures} == b.captures
    if "**" not in b.pattern:  # anchored: no extra segment before or after
        assert pat.match("zz." + b.name) is None and pat.match(b.name + ".zz") is None


@SETTINGS
@given(built())
def test_substituting_captures_reproduces_the_target(b: Built) -> None:
    src = P.parse(b.pattern)
    tpl = P.parse(b.template, template=True)
    assert P.check_template(tpl, (src,)) == []
    match = src.match(b.name)
    assert match is not None
    assert P.substitute(tpl, src, match) == (b.target,)
    # the planner's hot path renders straight from the regex match: the same names
    assert P.render_match(tpl, src, src.compiled.fullmatch(b.name)) == (b.target,)  # type: ignore[arg-type]


@st.composite
def pattern_lists(draw: st.DrawFn) -> tuple[list[P.Pattern], list[str]]:
    """Patterns over a tiny alphabet (so they overlap), and names: some built for one of them."""
    items = [draw(built(arithmetic=False)) for _ in range(draw(st.integers(1, 6)))]
    # digit-only literal segments and shared literals exercise the matcher's index and cache
    extra = draw(st.lists(st.sampled_from(["0.a", "a.**", "**.a", "{x}.0", "a.*", "**", "0.{y:int}", "a.{p:**}"]),
                          max_size=3))
    pats = [P.parse(i.pattern) for i in items] + [P.parse(e) for e in extra]
    order = draw(st.permutations(range(len(pats))))
    pats = [pats[i] for i in order]
    names = [i.name for i in items] + draw(st.lists(
        st.lists(st.sampled_from(["a", "b", "0", "1", "07", "n", "ab"]), min_size=1, max_size=4).map(".".join),
        max_size=6))
    return pats, names


@SETTINGS
@given(pattern_lists())
def test_multimatcher_first_agrees_with_trying_patterns_in_order(case: tuple[list[P.Pattern], list[str]]) -> None:
    pats, names = case
    mm = P.MultiMatcher(tuple(pats))
    for _ in range(2):  # the second pass is served from the matcher's cache
        for name in names:
            want = next((i for i, p in enumerate(pats) if p.compiled.fullmatch(name)), None)
            assert mm.first(name) == want, (name, [p.text for p in pats])


# -- units: matching -----------------------------------------------------------------------------


def m(pattern: str, name: str) -> dict[str, Any] | None:
    hit = P.parse(pattern).match(name)
    return None if hit is None else {"caps": dict(hit.captures), "wild": hit.wildcards, "alts": hit.alternations}


def test_patterns_are_anchored_and_star_stays_in_its_segment() -> None:
    assert m("conv*.weight", "conv1.weight") is not None
    assert m("conv*.weight", "conv1.weight.extra") is None
    assert m("conv*.weight", "x.conv1.weight") is None
    assert m("conv*.weight", "conv1.a.weight") is None  # `*` never crosses a dot
    assert m("conv*", "conv") == {"caps": {}, "wild": ("",), "alts": ()}  # `*` may be empty


@pytest.mark.parametrize(("name", "wild"), [("bias", (None,)), ("a.bias", ("a",)), ("a.b.c.bias", ("a.b.c",))])
def test_double_star_at_the_start(name: str, wild: tuple[str | None, ...]) -> None:
    assert m("**.bias", name) == {"caps": {}, "wild": wild, "alts": ()}


@pytest.mark.parametrize(("name", "wild"), [("enc.out", (None,)), ("enc.x.out", ("x",)), ("enc.x.y.out", ("x.y",))])
def test_double_star_in_the_middle(name: str, wild: tuple[str | None, ...]) -> None:
    assert m("enc.**.out", name) == {"caps": {}, "wild": wild, "alts": ()}
    assert m("enc.**.out", "encx.out") is None


@pytest.mark.parametrize(("name", "wild"), [("decoder", (None,)), ("decoder.a", ("a",)), ("decoder.a.b", ("a.b",))])
def test_double_star_at_the_end(name: str, wild: tuple[str | None, ...]) -> None:
    assert m("decoder.**", name) == {"caps": {}, "wild": wild, "alts": ()}
    assert m("decoder.**", "decoders.a") is None


def test_double_star_alone_matches_any_name() -> None:
    assert m("**", "a") == {"caps": {}, "wild": ("a",), "alts": ()}
    assert m("**", "a.b.c") == {"caps": {}, "wild": ("a.b.c",), "alts": ()}


def test_path_capture_takes_one_or_more_whole_segments() -> None:
    assert m("{p:**}.weight", "a.b.weight") == {"caps": {"p": "a.b"}, "wild": (), "alts": ()}
    assert m("{p:**}.weight", "weight") is None  # unlike `**`, at least one segment
    assert m("model.{p:**}", "model.layers.0.q") == {"caps": {"p": "layers.0.q"}, "wild": (), "alts": ()}
    tpl = P.parse("{p}", template=True)
    src = P.parse("base:{p:**}")
    assert src.source == "base"
    hit = src.match("blocks.0.attn")
    assert hit is not None and P.substitute(tpl, src, hit) == ("blocks.0.attn",)


def test_alternation_matches_one_option_and_records_which() -> None:
    assert m("bn.{weight,bias,running_mean}", "bn.bias") == {"caps": {}, "wild": (), "alts": (1,)}
    assert m("bn.{weight,bias}", "bn.running_var") is None
    # the longest option wins where options share a prefix
    assert m("x.{w,weight}", "x.weight") == {"caps": {}, "wild": (), "alts": (1,)}
    assert m("{q,k,v}_proj.weight", "k_proj.weight") == {"caps": {}, "wild": (), "alts": (1,)}


def test_repeated_capture_is_a_backreference() -> None:
    pat = "blocks.{i:int}.attn.{i:int}.out"  # the second `{i}` must equal the first
    assert m(pat, "blocks.3.attn.3.out") == {"caps": {"i": 3}, "wild": (), "alts": ()}
    assert m(pat, "blocks.3.attn.4.out") is None
    assert m("{n}.to.{n}", "enc.to.enc") is not None
    assert m("{n}.to.{n}", "enc.to.dec") is None
    with pytest.raises(P.PatternError, match="two different types"):
        P.parse("{n}.{n:int}")


def test_int_capture_takes_digits_only() -> None:
    assert m("layer{i:int}.w", "layer12.w") == {"caps": {"i": 12}, "wild": (), "alts": ()}
    assert m("layer{i:int}.w", "layerx.w") is None
    assert m("layer{i}.w", "layerx.w") == {"caps": {"i": "x"}, "wild": (), "alts": ()}


def test_optional_marker_and_source_prefix() -> None:
    pat = P.parse("?tuned:head.*")
    assert pat.optional and pat.source == "tuned" and pat.match("head.w") is not None
    tpl = P.parse("tuned:x", template=True)  # templates have no source prefix: `tuned:x` is text
    assert tpl.source is None


# -- units: templates ----------------------------------------------------------------------------


def render(src: str, tpl: str, name: str) -> tuple[str, ...]:
    s, t = P.parse(src), P.parse(tpl, template=True)
    assert P.check_template(t, (s,)) == []
    hit = s.match(name)
    assert hit is not None
    out = P.substitute(t, s, hit)
    assert P.render_match(t, s, s.compiled.fullmatch(name)) == out  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize(("tpl", "want"), [
    ("stage{s+1}.w", "stage4.w"), ("stage{s-1}.w", "stage2.w"), ("stage{s*2}.w", "stage6.w"),
    ("stage{s//2}.w", "stage1.w"), ("stage{s%2}.w", "stage1.w"), ("stage{s}.w", "stage3.w"),
    ("stage{ s + 10 }.w", "stage13.w"),
])
def test_arithmetic_templates(tpl: str, want: str) -> None:
    assert render("layer{s:int}.w", tpl, "layer3.w") == (want,)


def test_zero_padded_indices_keep_their_width() -> None:
    assert render("layer{i:int}.*", "block{i}.*", "layer007.x") == ("block007.x",)
    assert render("layer{i:int}.w", "block{i}.w", "layer007.w") == ("block007.w",)
    assert render("layer{i:int}.w", "block{i+1}.w", "layer09.w") == ("block10.w",)
    assert render("layer{i:int}.w", "block{i-1}.w", "layer010.w") == ("block009.w",)
    assert render("layer{i:int}.w", "block{i-1}.w", "layer0.w") == ("block-1.w",)


def test_unnamed_wildcards_carry_over_by_position() -> None:
    assert render("enc.**.conv*.w", "dec.**.c*.k", "enc.a.b.conv3.w") == ("dec.a.b.c3.k",)
    assert render("enc.**.w", "dec.**.w", "enc.w") == ("dec.w",)  # `**` matched no segment


def test_paired_alternations_rename_and_unpaired_ones_fan_out() -> None:
    assert render("bn.{weight,bias}", "norm.{gamma,beta}", "bn.bias") == ("norm.beta",)
    src, tpl = P.parse("attn.qkv.weight"), P.parse("attn.{q,k,v}.weight", template=True)
    assert P.fanout_count(tpl, src) == 3
    hit = src.match("attn.qkv.weight")
    assert hit is not None
    assert P.substitute(tpl, src, hit) == ("attn.q.weight", "attn.k.weight", "attn.v.weight")


def test_template_errors_name_the_problem() -> None:
    def problems(src: str, tpl: str) -> list[str]:
        return P.check_template(P.parse(tpl, template=True), (P.parse(src),))

    assert problems("layer{i}.w", "block{j}.w") == ["target uses `{j}`, which `layer{i}.w` does not capture"]
    assert "not capture as an integer" in problems("layer{i}.w", "block{i+1}.w")[0]
    assert "different lengths" in problems("{q,k,v}.w", "{a,b}.w")[0]
    assert "unnamed wildcard" in problems("a.w", "*.w")[0]
    hints = P.template_problems(P.parse("block{j}.w", template=True), (P.parse("layer{i}.{jj}.w"),))
    assert hints[0][1] == "did you mean `{jj}`?"
    with pytest.raises(P.TemplateError, match="integer capture"):
        P.substitute(P.parse("b{i+1}", template=True), P.parse("a{i}"), P.parse("a{i}").match("ax"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "message", "offset"), [
    ("a..b", "empty segment", 2),
    (".a", "empty segment", 0),
    ("a.", "empty segment", 2),
    ("layer**.w", "`**` must be a whole segment", 5),
    ("a.{x{y}}", "nested `{`", 4),
    ("layer{i.{j}.w", "not closed before the next", 5),
    ("a.{x", "never closed", 2),
    ("a}.b", "without a matching", 1),
    ("a.{x}{y}", "side by side", 5),
    ("a.*{x}", "side by side", 3),
    ("a.b{p:**}", "must be a whole segment", 3),
    ("a.{}", "empty `{}`", 2),
    ("a.{x y}", "cannot read", 2),
    ("a.{b,b}", "repeats an option", 2),
    ("**.**.a", "is the same as `**`", 3),
    ("a b", "unexpected space", 1),
    ("", "empty pattern", 0),
    ("?src:", "empty pattern", 5),
])
def test_pattern_errors_say_what_and_where(text: str, message: str, offset: int) -> None:
    with pytest.raises(P.PatternError, match=re.escape(message)) as e:
        P.parse(text)
    assert e.value.offset == offset


def test_template_only_syntax_is_refused_in_source_patterns() -> None:
    with pytest.raises(P.PatternError, match="cannot read"):
        P.parse("layer{i+1}.w")
    with pytest.raises(P.PatternError, match="division by zero"):
        P.parse("layer{i//0}.w", template=True)
