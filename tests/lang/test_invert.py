"""`wmap invert`: every rule turned around, every transform replaced by its inverse, and a refusal
naming the rule where a step cannot run backwards."""

from __future__ import annotations

import re

import pytest

import wmap
from wmap.lang.fmt import to_wmap


def back(text: str) -> str:
    return to_wmap(wmap.invert(wmap.parse_spec(text)))


def rules(text: str) -> list[str]:
    """The reverse's rule and list lines (statements after the header)."""
    return [re.sub(r"\s+", " ", ln.strip()) for ln in back(text).splitlines()[1:]
            if ln and not ln.startswith(("#", "source", "target"))]


def refused(text: str) -> tuple[str, int, int, str]:
    with pytest.raises(wmap.WmapError) as e:
        wmap.invert(wmap.parse_spec(text))
    d = e.value.diagnostics[0]
    assert d.span is not None and d.hint
    return d.code, d.span.line, d.span.column, d.message


def test_captures_keep_their_kind_and_index_arithmetic_inverts() -> None:
    got = rules("wmap 1\nlet first = 2\nlayers.{i:int}.{p:**} -> blocks.{i+$first}.{p}\n"
                "enc.{n}.w -> dec.{n}.kernel | transpose\n")
    assert got == ["let first = 2", "blocks.{i:int}.{p:**} -> layers.{i-$first}.{p}",
                   "dec.{n}.kernel -> enc.{n}.w | transpose"]


def test_a_fan_in_index_becomes_a_fan_out_index_and_back() -> None:
    stack = "wmap 1\nlayers.{l:int}.experts.{e:int}.w1.weight -> layers.{l}.experts.w1 | stack(0)\n"
    assert rules(stack) == ["layers.{l:int}.experts.w1 -> layers.{l}.experts.{e:int}.w1.weight | unstack"]
    twice = to_wmap(wmap.invert(wmap.invert(wmap.parse_spec(stack))))
    assert "layers.{l:int}.experts.{e:int}.w1.weight -> layers.{l}.experts.w1 | stack" in twice


def test_transforms_invert_with_their_config_references_kept() -> None:
    got = rules('wmap 1\nconfig "c.json"\nlet heads = config.n\n'
                'a.w -> {q,k,v}.kernel | split(1) | rearrange("e (h d) -> e h d", h=$heads)\n'
                "o.w -> o.kernel | mha_proj_to_keras(num_heads=$heads) | flip(1)\n")
    assert got[2:] == ['{q,k,v}.kernel -> a.w | rearrange("e h d -> e (h d)", h=$heads) | concat(1)',
                       "o.kernel -> o.w | flip(1) | mha_proj_from_keras($heads)"]


def test_a_slice_runs_back_as_a_splice_that_keeps_the_rest_of_the_target() -> None:
    text = "wmap 1\nconfig \"c.json\"\nlet first = config.pad + 1\na.w -> b.w | slice(0, $first)\n"
    assert rules(text)[-1:] == ["b.w -> a.w | splice(0, start=$first)"]
    assert "a.w -> b.w | slice(0, start=$first)" in to_wmap(wmap.invert(wmap.invert(wmap.parse_spec(text))))


def test_drop_and_keep_trade_places_and_so_do_the_prefix_options() -> None:
    text = back('wmap 1\nsource hf "a.safetensors"\ntarget keras "m:build"\noption strip_prefix = "model."\n'
                "config hf\nlet n = config.n\n{p:**} -> {p}\ndrop ?rotary.**\nkeep head.**\nfreeze stem.**\n"
                "lr blocks.** * 0.1\n")
    assert 'source model keras "m:build"' in text and 'target "a.safetensors"' in text
    assert 'option target_strip_prefix = "model."' in text and "config target" in text
    assert "drop head.**" in text and "keep ?rotary.**" in text
    assert "left out of the reverse" in text and "freeze stem.**" in text and "lr blocks.** * 0.1" in text


@pytest.mark.parametrize(("text", "code", "where", "says"), [
    ("wmap 1\na.w -> b.w | prune(0.1)\n", "WM130", (2, 1), "`prune` loses information"),
    ("wmap 1\na.w -> b.w | transpose\nc.w -> d.w | reshape(4, 4)\n", "WM130", (3, 1), "`reshape` as written"),
    ("wmap 1\nl.{i:int}.w -> m.{i*2}.w\n", "WM130", (2, 1), "`{i*2}` has no inverse"),
    ("wmap 1\nx.w, y.w -> z.w | add\n", "WM131", (2, 1), "2 source patterns"),
    ("wmap 1\na.w -> b.w\ninit head.** = zeros\n", "WM130", (3, 6), "`init head.**` creates values"),
    ("wmap 1\na.w -> b.w | layout(auto)\n", "WM130", (2, 1), "picks its transform"),
    ("wmap 1\na.w -> b.w | slice(0, 1, 5, 2)\n", "WM130", (2, 1), "`slice` as written"),  # strided: no splice
])
def test_what_cannot_run_backwards_is_refused_at_its_rule(text: str, code: str, where: tuple[int, int],
                                                          says: str) -> None:
    got, line, col, message = refused(text)
    assert (got, (line, col)) == (code, where) and says in message


def test_a_copy_init_is_a_derived_tensor_dropped_on_the_way_back() -> None:
    """`init X = copy("s")` duplicates a source a rule maps: the reverse drops X; other inits stay refused."""
    text = "wmap 1\npos -> table\ninit table_resized = copy(\"pos\")\n"
    assert rules(text) == ["table -> pos", "drop table_resized"]
    assert refused(text + "init head.b = zeros\n")[:3] == ("WM130", 4, 6)


def test_every_refusal_is_listed_at_once() -> None:
    with pytest.raises(wmap.WmapError) as e:
        wmap.invert(wmap.parse_spec("wmap 1\na.w -> b.w | prune(0.1)\nc.w -> d.w | cast(float16)\n"))
    assert [d.span.line for d in e.value.diagnostics if d.span] == [2, 3]


def test_the_reverse_of_the_reverse_is_the_spec_for_every_invertible_example_and_recipe() -> None:
    from tests.support.paths import EXAMPLES
    from wmap.lang import load_spec
    from wmap.recipes import catalog, path
    specs = [str(p) for p in sorted(EXAMPLES.glob("*.wmap"))] + [path(r.name) for r in catalog()]
    inverted = 0
    for p in specs:
        spec = load_spec(p)
        try:
            once = wmap.invert(spec)
        except wmap.WmapError:
            continue
        inverted += 1
        twice = wmap.invert(once)
        assert [r.target for r in twice.rules] == [r.target for r in spec.rules], p
        assert [r.sources for r in twice.rules] == [r.sources for r in spec.rules] or spec.sources[0].name != "src", p
    assert inverted >= 4
