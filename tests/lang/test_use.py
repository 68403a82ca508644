"""`use`: a spec built on others, as a user with a folder of mapping files writes one.

The used files are merged into one Spec; every statement keeps the file:line:col it was written at
(diagnostics and the plan's provenance name the used file), `use X | step` appends the step to every
rule X brings in, and the ways it can go wrong are refused with their own codes: nothing there
(WM125), a cycle (WM126), two files that declare one thing differently (WM127).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import wmap
from wmap.core.errors import WmapError
from wmap.lang import format_spec, load_spec, parse_spec

BASE = """wmap 1
# the shared part
source torch
config src
let heads = config.num_attention_heads

enc.{i:int}.w -> blocks.{i}.kernel | transpose
enc.{i:int}.b -> blocks.{i}.bias
"""

TOP = """wmap 1
use "parts/base.wmap" | cast("float16")
source torch "model.safetensors"
target "tgt.safetensors"

head.w -> head.kernel | transpose
"""


def write(d: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)


def codes(e: pytest.ExceptionInfo[WmapError]) -> list[str]:
    return [d.code for d in e.value.errors]


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository of mapping files and a tiny model: the current folder is elsewhere, on purpose."""
    write(tmp_path, {"parts/base.wmap": BASE, "top.wmap": TOP,
                     "config.json": '{"num_attention_heads": 2}'})
    rng = np.random.default_rng(0)
    src = {f"enc.{i}.w": rng.standard_normal((4, 6)).astype(np.float32) for i in range(2)}
    src |= {f"enc.{i}.b": rng.standard_normal(4).astype(np.float32) for i in range(2)}
    src["head.w"] = rng.standard_normal((3, 4)).astype(np.float32)
    save_file(src, str(tmp_path / "model.safetensors"))
    tgt = {f"blocks.{i}.kernel": np.zeros((6, 4), np.float32) for i in range(2)}
    tgt |= {f"blocks.{i}.bias": np.zeros(4, np.float32) for i in range(2)}
    tgt["head.kernel"] = np.zeros((4, 3), np.float32)
    save_file(tgt, str(tmp_path / "tgt.safetensors"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return tmp_path


def test_used_rules_come_first_keep_their_place_and_get_the_use_steps(repo: Path) -> None:
    spec = load_spec(repo / "top.wmap")
    assert [(r.sources, [c.name for c in r.via]) for r in spec.rules] == [
        (("enc.{i:int}.w",), ["transpose", "cast"]), (("enc.{i:int}.b",), ["cast"]), (("head.w",), ["transpose"])]
    base = os.path.normpath(repo / "parts" / "base.wmap")
    assert [str(r.span) for r in spec.rules] == [f"{base}:7:1", f"{base}:8:1", f"{repo / 'top.wmap'}:6:1"]
    assert str(spec.rules[0].via[1].span).startswith(f"{repo / 'top.wmap'}:2:")  # the step is the use's
    # declarations merged: the open source filled in by the top file, config and let from the part
    assert [(s.name, s.location, s.framework) for s in spec.sources] == [("src", "model.safetensors", "torch")]
    assert spec.config is not None and spec.config.endpoint == "src" and [x.name for x in spec.lets] == ["heads"]
    assert spec.uses == () and dict(spec.included)[base] == BASE


def test_the_plan_names_each_rule_at_its_own_file_and_the_apply_lands_it(repo: Path) -> None:
    plan = wmap.plan(str(repo / "top.wmap"))
    places = {s.targets[0].name: (os.path.basename(s.span.path or ""), s.span.line) for s in plan.steps if s.span}
    assert places == {"blocks.0.kernel": ("base.wmap", 7), "blocks.1.kernel": ("base.wmap", 7),
                      "blocks.0.bias": ("base.wmap", 8), "blocks.1.bias": ("base.wmap", 8),
                      "head.kernel": ("top.wmap", 6)}
    assert "base.wmap:7" in plan.render() and "top.wmap:6" in plan.render()
    out = repo / "out.safetensors"
    wmap.apply(str(repo / "top.wmap"), out=out, show_progress=False)
    got, src = load_file(str(out)), load_file(str(repo / "model.safetensors"))
    # the part's rules went through the use's cast: float16-rounded values, transposed
    np.testing.assert_array_equal(got["blocks.1.kernel"], src["enc.1.w"].astype(np.float16).astype(np.float32).T)
    np.testing.assert_array_equal(got["head.kernel"], src["head.w"].T)  # the top file's rule: no cast


def test_a_plan_error_in_a_used_rule_points_into_the_used_file(repo: Path) -> None:
    write(repo, {"parts/base.wmap": BASE.replace("enc.{i:int}.b -> blocks.{i}.bias",
                                                 "enc.{i:int}.b -> blocks.{i}.bias\nnothing.here -> blocks.9.x")})
    with pytest.raises(WmapError) as e:
        wmap.plan(str(repo / "top.wmap"))
    d = next(d for d in e.value.errors if "nothing.here" in d.message)
    assert d.span is not None and os.path.basename(d.span.path or "") == "base.wmap" and d.span.line == 9
    assert "9 | nothing.here -> blocks.9.x" in e.value.render()  # the used file's line is quoted


def test_a_recipe_is_used_by_name_from_any_folder(repo: Path) -> None:
    spec = parse_spec('wmap 1\nuse "hf_to_keras_hub/llama3" | cast("float16")\n', path=str(repo / "x.wmap"))
    assert all(r.via[-1].name == "cast" for r in spec.rules) and len(spec.rules) >= 9
    assert {os.path.basename(r.span.path or "") for r in spec.rules} == {"llama3.wmap", "decoder.wmap"}


@pytest.mark.parametrize("use,needle,hint", [
    ('"parts/bsae.wmap"', "there is no spec file", "did you mean `base.wmap`"),
    ('"hf_to_keras_hub/lama3"', "there is no recipe `hf_to_keras_hub/lama3`", "did you mean `hf_to_keras_hub/llama3`"),
])
def test_a_use_of_nothing_is_wm125_at_the_use(repo: Path, use: str, needle: str, hint: str) -> None:
    write(repo, {"top.wmap": TOP.replace('"parts/base.wmap"', use)})
    with pytest.raises(WmapError) as e:
        load_spec(repo / "top.wmap")
    (d,) = e.value.errors
    assert d.code == "WM125" and needle in d.message and hint in (d.hint or "")
    assert d.span is not None and (d.span.line, d.span.column) == (2, 1)


def test_a_path_is_relative_to_the_spec_not_to_the_current_folder(repo: Path) -> None:
    write(repo / "elsewhere", {"parts/base.wmap": "wmap 1\nwrong.w -> wrong.k\n"})  # the cwd's: not read
    assert load_spec(repo / "top.wmap").rules[0].sources == ("enc.{i:int}.w",)


@pytest.mark.parametrize("files,chain", [
    ({"a.wmap": 'wmap 1\nuse "a.wmap"\n'}, "a.wmap -> a.wmap"),
    ({"a.wmap": 'wmap 1\nuse "b.wmap"\n', "b.wmap": 'wmap 1\nuse "c.yaml"\n',
      "c.yaml": "wmap: 1\nuse: [a.wmap]\n"}, "a.wmap -> b.wmap -> c.yaml -> a.wmap"),
])
def test_a_cycle_is_wm126_naming_it(tmp_path: Path, files: dict[str, str], chain: str) -> None:
    write(tmp_path, files)
    with pytest.raises(WmapError) as e:
        load_spec(tmp_path / "a.wmap")
    assert codes(e) == ["WM126"] and chain in e.value.errors[0].message


def test_a_file_reached_twice_is_merged_once(tmp_path: Path) -> None:
    write(tmp_path, {"base.wmap": "wmap 1\nx.w -> y.k\n", "a.wmap": 'wmap 1\nuse "base.wmap"\na.w -> a.k\n',
                     "b.wmap": 'wmap 1\nuse "base.wmap"\nb.w -> b.k\n',
                     "top.wmap": 'wmap 1\nuse "a.wmap"\nuse "b.wmap"\n'})
    assert [r.sources[0] for r in load_spec(tmp_path / "top.wmap").rules] == ["x.w", "a.w", "b.w"]
    write(tmp_path, {"b.wmap": 'wmap 1\nuse "base.wmap" | transpose\nb.w -> b.k\n'})
    with pytest.raises(WmapError) as e:
        load_spec(tmp_path / "top.wmap")
    assert codes(e) == ["WM127"] and "other steps" in e.value.errors[0].message


@pytest.mark.parametrize("extra", ["let heads = config.num_attention_heads", "config src", "option strict = true"])
def test_a_declaration_may_be_repeated_as_it_is(repo: Path, extra: str) -> None:
    write(repo, {"top.wmap": TOP + extra + "\n"})
    assert load_spec(repo / "top.wmap").rules


@pytest.mark.parametrize("extra,what", [("let heads = config.n_head", "`let heads`"),
                                        ('config "config.json"', "the config")])
def test_a_declaration_said_differently_is_wm127_at_the_second(repo: Path, extra: str, what: str) -> None:
    write(repo, {"top.wmap": TOP + extra + "\n"})
    with pytest.raises(WmapError) as e:
        load_spec(repo / "top.wmap")
    (d,) = e.value.errors
    assert d.code == "WM127" and d.message.startswith(what) and "base.wmap:" in (d.hint or "")
    assert d.span is not None and os.path.basename(d.span.path or "") == "top.wmap"


def test_options_that_differ_conflict_too(repo: Path) -> None:
    write(repo, {"parts/base.wmap": BASE + "option strict = true\n", "top.wmap": TOP + "option strict = false\n"})
    with pytest.raises(WmapError) as e:
        load_spec(repo / "top.wmap")
    assert codes(e) == ["WM127"] and "option `strict`" in e.value.errors[0].message


def test_the_loaded_files_locations_win_but_two_used_specs_must_agree(repo: Path) -> None:
    """Where the weights are is the user's to say (as --source/--target say it over a spec): the loaded
    file's source and target locations replace a used spec's. Two used specs that name different
    locations, or frameworks that differ anywhere, are a conflict."""
    write(repo, {"parts/base.wmap": BASE.replace("source torch", 'source torch "base.safetensors"') +
                 'target "base_tgt.safetensors"\n'})
    spec = load_spec(repo / "top.wmap")
    assert spec.sources[0].location == "model.safetensors" and spec.target is not None
    assert spec.target.location == "tgt.safetensors" and os.path.basename(spec.target.span.path or "") == "top.wmap"
    write(repo, {"parts/other.wmap": 'wmap 1\nsource torch "other.safetensors"\n',
                 "mid.wmap": 'wmap 1\nuse "parts/base.wmap"\nuse "parts/other.wmap"\n'})
    with pytest.raises(WmapError) as e:
        load_spec(repo / "mid.wmap")
    assert codes(e) == ["WM127"] and "source `src`" in e.value.errors[0].message
    write(repo, {"top.wmap": TOP.replace('source torch "model.safetensors"', 'source safetensors "model.safetensors"')})
    with pytest.raises(WmapError) as e:
        load_spec(repo / "top.wmap")
    assert codes(e) == ["WM127"] and "source `src`" in e.value.errors[0].message


def test_a_used_spec_must_check_on_its_own(repo: Path) -> None:
    """A part that names a `let` only its user binds is refused where it is written."""
    write(repo, {"parts/base.wmap": "wmap 1\nsource torch\nx.w -> y.k | mha_out_to_keras(num_heads=$heads)\n"})
    with pytest.raises(WmapError) as e:
        load_spec(repo / "top.wmap")
    (d,) = e.value.errors
    assert d.code == "WM118" and d.span is not None and os.path.basename(d.span.path or "") == "base.wmap"
    assert any("used at" in n and "top.wmap:2" in n for n in d.notes)


def test_the_user_may_name_what_the_used_spec_declares(repo: Path) -> None:
    write(repo, {"top.wmap": TOP + "other.w -> other.k | mha_out_to_keras(num_heads=$heads)\n"})
    assert load_spec(repo / "top.wmap").rules[-1].via[0].kwargs == (("num_heads", wmap.lang.spec.Ref("heads")),)
    write(repo, {"top.wmap": TOP + "other.w -> other.k | mha_out_to_keras(num_heads=$haeds)\n"})
    with pytest.raises(WmapError) as e:
        load_spec(repo / "top.wmap")
    assert codes(e) == ["WM118"] and "did you mean `$heads`" in (e.value.errors[0].hint or "").replace("`heads`", "`$heads`")


def test_a_use_step_is_checked_like_a_rule_step(repo: Path) -> None:
    write(repo, {"top.wmap": TOP.replace('cast("float16")', "transpoze")})
    with pytest.raises(WmapError) as e:
        load_spec(repo / "top.wmap")
    (d,) = e.value.errors
    assert d.code == "WM103" and d.span is not None and (d.span.line, d.span.column) == (2, 25)


def test_yaml_says_the_same_through_the_schema(repo: Path) -> None:
    write(repo, {"top.yaml": "wmap: 1\nuse:\n  - {path: parts/base.wmap, via: 'cast(\"float16\")'}\n"
                             "source: {framework: torch, path: model.safetensors}\ntarget: tgt.safetensors\n"
                             "rules:\n  - {from: head.w, to: head.kernel, via: transpose}\n"})
    assert load_spec(repo / "top.yaml") == load_spec(repo / "top.wmap")
    write(repo, {"bad.yaml": "wmap: 1\nuse: [{via: transpose}]\n"})
    with pytest.raises(WmapError) as e:
        load_spec(repo / "bad.yaml")
    assert codes(e) == ["WM110"] and "missing `path`" in e.value.errors[0].message


def test_fmt_keeps_the_uses_and_reads_back_the_same(repo: Path) -> None:
    as_written = load_spec(repo / "top.wmap", includes=False)
    assert [u.path for u in as_written.uses] == ["parts/base.wmap"] and len(as_written.rules) == 1
    for syntax in ("wmap", "yaml"):
        text = format_spec(as_written, syntax)
        assert parse_spec(text, syntax, str(repo / f"again.{syntax}"), includes=False) == as_written
    assert format_spec(as_written, "wmap").startswith("wmap 1\n\nuse \"parts/base.wmap\" | cast(float16)\n")


def test_invert_writes_the_used_rules_out(repo: Path) -> None:
    write(repo, {"top.wmap": TOP.replace(' | cast("float16")', "")})
    back = wmap.invert(str(repo / "top.wmap"))
    assert back.uses == () and sorted(r.target for r in back.rules) == ["enc.{i}.b", "enc.{i}.w", "head.w"]
    write(repo, {"top.wmap": TOP})
    with pytest.raises(WmapError) as e:  # the use's cast has no inverse: named, at the used rule
        wmap.invert(str(repo / "top.wmap"))
    assert "WM130" in codes(e)


def test_init_writes_a_recipe_built_on_others_with_its_endpoints_and_it_loads_anywhere(tmp_path: Path) -> None:
    """`wmap init` proposes a recipe as text with the endpoints filled in; mistral's come from the
    specs it uses, so they are declared in the written file, which loads from another folder."""
    from wmap.recipes import catalog
    from wmap.recipes.recognise import RecipeMatch, with_endpoints
    recipe = next(r for r in catalog() if r.name == "hf_to_keras_hub/mistral")
    spec = load_spec(recipe.path)
    text = with_endpoints(RecipeMatch(recipe, "mistral", "MistralBackbone", spec), "ckpt/model.safetensors",
                          "mypkg:build")
    out = tmp_path / "port.wmap"
    out.write_text(text)
    written = load_spec(out)
    assert [(s.name, s.location) for s in written.sources] == [("hf", "ckpt/model.safetensors")]
    assert written.target is not None and written.target.location == "mypkg:build"
    assert written.rules == spec.rules and written.lets == spec.lets


def test_the_invert_command_says_it_inlined(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wmap.cli import main
    write(repo, {"top.wmap": TOP.replace(' | cast("float16")', "")})
    assert main(["invert", str(repo / "top.wmap"), "-o", str(repo / "back.wmap")]) == 0
    assert "inlines what the spec uses (parts/base.wmap)" in capsys.readouterr().err
    back = load_spec(repo / "back.wmap")
    assert back.uses == () and sorted(r.target for r in back.rules) == ["enc.{i}.b", "enc.{i}.w", "head.w"]
