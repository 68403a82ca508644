"""Names are untrusted: matching takes time linear in the name, and gives what `re` gives.

The linear matcher (`patterns._linear_match`) must agree with Python's backtracking regex of the
same pattern on every name, groups included (greedy, leftmost choices first); the hostile shapes
from issue 17 must match or fail in well under a second.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wmap.lang import patterns as P

SEG_PIECES = ["a", "b", "_", "ab", "0", "*", "{x}", "{y}", "{i:int}", "{a,ab}", "{b,_}"]


@st.composite
def pattern_texts(draw: st.DrawFn) -> str:
    segs = []
    for _ in range(draw(st.integers(1, 4))):
        whole = draw(st.sampled_from(["", "", "", "**", "{p:**}"]))
        if whole:
            segs.append(whole)
        else:
            segs.append("".join(draw(st.lists(st.sampled_from(SEG_PIECES), min_size=1, max_size=4))))
    return ".".join(segs)


names = st.text(alphabet="ab_0.1", min_size=0, max_size=14)


def _parsed(text: str) -> P.Pattern | None:
    try:
        return P.parse(text)
    except P.PatternError:
        return None


@settings(max_examples=3000, deadline=None)
@given(pattern_texts(), st.lists(names, min_size=1, max_size=6))
def test_linear_matcher_agrees_with_re(text: str, sample: list[str]) -> None:
    pat = _parsed(text)
    if pat is None:
        return
    matcher = pat.compiled
    for name in sample:
        want = matcher.regex.fullmatch(name)
        got = P._linear_match(matcher.tokens, name)
        assert (want is None) == (got is None), (text, name, want, got)
        if want is not None and got is not None:
            assert got.groupdict() == want.groupdict(), (text, name)
            assert P._extract(pat, got, "") == P._extract(pat, want, "")


HOSTILE = [
    ("*a*a*a*a*a*b.bias", "a" * 3000 + ".bias", False),
    ("*a*a*a*a*a*b.bias", "a" * 3000 + "b.bias", True),
    ("{a}_{b}_{c}_x.weight", "_" * 2000 + ".weight", False),
    ("{a}_{b}_{c}_x.weight", "_" * 2000 + "_x.weight", True),
    ("**.x.**.y", ".".join(["x"] * 20000) + ".z", False),
    ("**.x.**.y", ".".join(["x"] * 20000) + ".y", True),
    ("{p:**}.{q:**}.w", ".".join(["q"] * 20000) + ".v", False),
    ("{x}.{x}.{x}", ".".join(["a" * 3000] * 3), True),
]


@pytest.mark.parametrize(("text", "name", "hit"), HOSTILE, ids=[h[0] + ("-hit" if h[2] else "-miss") for h in HOSTILE])
def test_hostile_names_match_in_linear_time(text: str, name: str, hit: bool) -> None:
    pat = P.parse(text)
    t = time.perf_counter()
    m = pat.compiled.fullmatch(name)
    took = time.perf_counter() - t
    assert (m is not None) == hit
    assert took < 1.0, f"{took:.2f}s"


def test_ordinary_names_keep_the_regex() -> None:
    """The linear path is for long names and ambiguous patterns; a layer name takes the C regex."""
    pat = P.parse("layers.{i:int}.{x}_proj.weight")
    assert isinstance(pat.compiled.fullmatch("layers.3.q_proj.weight"), re.Match)
    assert isinstance(pat.compiled.fullmatch("layers.3." + "q" * 5000 + "_proj.weight"), P.LinearMatch)
