"""Sizes from the model's config: `config` and `let`, `$name` in arguments and index arithmetic.

One spec serves every size of a family: the sizes come from the `config.json` beside the
checkpoint, are shown in the plan's header, recorded in the plan JSON, and a saved plan refuses to
run when a value it was made with changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import wmap
from wmap.cli import main
from wmap.core.errors import WmapError

MHA = """wmap 1
source torch "model.safetensors"
target keras "tgt.safetensors"
config src
let heads = config.num_attention_heads
let head_dim = config.head_dim ?? config.hidden_size // heads
attn.in_proj_weight -> attn.{query,key,value}.kernel | mha_in_to_keras(num_heads=$heads)
"""


def write_model(d: Path, hidden: int, heads: int, **extra: object) -> None:
    (d / "config.json").write_text(json.dumps({"hidden_size": hidden, "num_attention_heads": heads, **extra}))
    save_file({"attn.in_proj_weight": np.arange(3 * hidden * hidden, dtype=np.float32).reshape(3 * hidden, hidden)},
              str(d / "model.safetensors"))
    save_file({f"attn.{q}.kernel": np.zeros((hidden, heads, hidden // heads), np.float32)
               for q in ("query", "key", "value")}, str(d / "tgt.safetensors"))


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.wmap").write_text(MHA)
    return tmp_path


@pytest.mark.parametrize("hidden,heads", [(8, 2), (12, 3), (16, 8)])
def test_one_spec_serves_every_size_of_a_family(work: Path, hidden: int, heads: int) -> None:
    write_model(work, hidden, heads)
    plan = wmap.plan("s.wmap")
    (step,) = plan.steps
    assert step.transforms[0].params()["num_heads"] == heads
    assert f"with heads = {heads}, head_dim = {hidden // heads} (from config.json beside src)" in plan.render()
    assert plan.to_json()["config"] == {"label": "config.json beside src", "where": "from:src",
                                        "values": {"heads": heads, "head_dim": hidden // heads},
                                        "keys": {"head_dim": None, "hidden_size": hidden,
                                                 "num_attention_heads": heads}}
    out = work / "out.safetensors"
    wmap.apply("s.wmap", out=out)
    q = load_file(str(out))["attn.query.kernel"]
    w = np.arange(3 * hidden * hidden, dtype=np.float32).reshape(3 * hidden, hidden)[:hidden]
    assert np.array_equal(q, w.reshape(heads, hidden // heads, hidden).transpose(2, 0, 1))


def test_a_default_is_taken_only_when_the_key_is_absent_or_null(work: Path) -> None:
    write_model(work, 8, 2, head_dim=None)
    assert dict(wmap.plan("s.wmap").config.values)["head_dim"] == 4  # type: ignore[union-attr]
    write_model(work, 8, 2, head_dim=16)
    assert dict(wmap.plan("s.wmap").config.values)["head_dim"] == 16  # type: ignore[union-attr]


def test_a_saved_plan_runs_as_made_and_refuses_when_a_config_value_changed(work: Path) -> None:
    write_model(work, 8, 2)
    assert main(["plan", "s.wmap", "-o", "plan.json"]) == 0
    assert main(["apply", "plan.json", "-s", "model.safetensors", "-t", "tgt.safetensors", "-o", "a.safetensors"]) == 0
    (work / "config.json").write_text(json.dumps({"hidden_size": 8, "num_attention_heads": 4}))
    with pytest.raises(WmapError) as e:
        wmap.apply(wmap.load_plan("plan.json"), source="model.safetensors", target="tgt.safetensors",
                   out="b.safetensors")
    (d,) = e.value.diagnostics
    assert d.code == "WM604" and "`num_attention_heads` was 2 and is now 4" in d.message
    (work / "config.json").write_text(json.dumps({"hidden_size": 8, "num_attention_heads": 2, "head_dim": 4}))
    with pytest.raises(WmapError) as e:  # a key that was absent (so the default applied) appeared
        wmap.apply(wmap.load_plan("plan.json"), source="model.safetensors", target="tgt.safetensors",
                   out="b.safetensors")
    assert "`head_dim` was null and is now 4" in e.value.diagnostics[0].message
    assert not (work / "b.safetensors").exists()


def test_a_config_passed_to_the_call_wins_over_the_spec(work: Path) -> None:
    write_model(work, 8, 2)
    (work / "other.json").write_text(json.dumps({"hidden_size": 8, "num_attention_heads": 4}))
    with pytest.raises(WmapError):  # heads 4 does not fit the (8, 2, 4) kernels
        wmap.plan("s.wmap", config="other.json")
    assert dict(wmap.plan("s.wmap", config={"hidden_size": 8, "num_attention_heads": 2}).config.values) == \
        {"heads": 2, "head_dim": 4}  # type: ignore[union-attr]
    assert main(["plan", "s.wmap", "--config", "config.json"]) == 0


def _codes(text: str, tmp: Path, config: object = None) -> list[tuple[str, int, int, str]]:
    (tmp / "c.wmap").write_text(text)
    with pytest.raises(WmapError) as e:
        wmap.plan(str(tmp / "c.wmap"), source={"w": np.zeros((2, 2), np.float32)},
                  target={"v": np.zeros((2, 2), np.float32)}, config=config)
    return [(d.code, d.span.line if d.span else 0, d.span.column if d.span else 0, d.message)
            for d in e.value.diagnostics]


def test_a_missing_key_is_reported_at_the_key_with_the_nearest_names(tmp_path: Path) -> None:
    spec = "wmap 1\nlet heads = 2 * config.num_heads\nw -> v | scale($heads)\n"
    ((code, line, col, msg),) = _codes(spec, tmp_path, {"num_attention_heads": 2, "n_heads": 3})
    assert (code, line, col) == ("WM121", 2, 17) and "has no `num_heads`" in msg


def test_values_of_the_wrong_kind_and_no_config_at_all(tmp_path: Path) -> None:
    assert _codes("wmap 1\nlet x = config.act * 2\nw -> v | scale($x)\n", tmp_path, {"act": "gelu"})[0][:2] == \
        ("WM122", 2)
    assert _codes("wmap 1\nlet x = config.a // config.b\nw -> v | scale($x)\n", tmp_path, {"a": 1, "b": 0})[0][0] == \
        "WM122"
    assert _codes("wmap 1\nlet x = config.moe\nw -> v | scale($x)\n", tmp_path, {"moe": {"n": 1}})[0][0] == "WM122"
    ((code, line, col, msg),) = _codes("wmap 1\nlet x = config.a\nw -> v | scale($x)\n", tmp_path)
    assert (code, line, col) == ("WM123", 2, 9)


@pytest.mark.parametrize("text,code", [
    ("wmap 1\nw -> v | scale($nope)\n", "WM118"),
    ("wmap 1\nlet a = b + 1\nlet b = 2\nw -> v | scale($a)\n", "WM118"),
    ("wmap 1\nlet a = avg(1, 2)\nw -> v | scale($a)\n", "WM119"),
    ("wmap 1\nlet a = 2\nlet a = 3\nw -> v | scale($a)\n", "WM107"),
    ("wmap 1\nconfig nowhere\nw -> v\n", "WM112"),
    ("wmap 1\nlayers.{i:int}.w -> l{i+$off}.w\n", "WM118"),
])
def test_structural_problems_are_found_when_the_spec_is_read(text: str, code: str) -> None:
    with pytest.raises(WmapError) as e:
        wmap.parse_spec(text)
    assert e.value.diagnostics[0].code == code


def test_index_arithmetic_with_a_bound_offset(tmp_path: Path) -> None:
    """Layers of a pipeline stage land after the stages before it: `{i+$first}`."""
    src = {f"layers.{i}.w": np.full((1,), i, np.float32) for i in range(3)}
    tgt = {f"blocks.{i}.w": np.zeros((1,), np.float32) for i in range(4, 7)}
    spec = wmap.parse_spec("wmap 1\nlet first = config.first_layer\nlayers.{i:int}.w -> blocks.{i+$first}.w\n")
    out = tmp_path / "o.safetensors"
    wmap.apply(spec, source=src, target=tgt, out=out, config={"first_layer": 4})
    assert {k: float(v[0]) for k, v in load_file(str(out)).items()} == {"blocks.4.w": 0, "blocks.5.w": 1, "blocks.6.w": 2}
    with pytest.raises(WmapError) as e:
        wmap.plan(spec, source=src, target=tgt, config={"first_layer": 1.5})
    assert e.value.diagnostics[0].code == "WM122"


@pytest.mark.parametrize("body,problem", [
    ("{", "not JSON"), ("[1, 2]", "not an object"), ("\xff", "not UTF-8"), ("[" * 100000, "nested too deeply"),
])
def test_a_bad_config_file_is_wm515(work: Path, body: str, problem: str) -> None:
    write_model(work, 8, 2)
    (work / "config.json").write_bytes(body.encode("latin-1"))
    with pytest.raises(WmapError) as e:
        wmap.plan("s.wmap")
    assert e.value.diagnostics[0].code == "WM515" and problem in e.value.diagnostics[0].message


def test_a_config_that_is_a_fifo_is_refused_without_blocking(work: Path) -> None:
    write_model(work, 8, 2)
    os.remove(work / "config.json")
    os.mkfifo(work / "config.json")
    with pytest.raises(WmapError) as e:
        wmap.plan("s.wmap")
    assert e.value.diagnostics[0].code == "WM515" and "not a regular file" in e.value.diagnostics[0].message


def test_check_reads_the_config_when_it_is_at_hand(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_model(work, 8, 2)
    assert main(["check", "s.wmap"]) == 0
    (work / "config.json").write_text(json.dumps({"hidden_size": 8}))
    assert main(["check", "s.wmap"]) == 1
    assert "s.wmap:5:13: error[WM121]" in capsys.readouterr().err
    os.remove(work / "config.json")
    assert main(["check", "s.wmap"]) == 0  # no config on this machine: the spec itself is fine


def test_yaml_and_wmap_say_the_same(work: Path) -> None:
    write_model(work, 8, 2)
    (work / "s.yaml").write_text(
        "wmap: 1\nsource: {framework: torch, path: model.safetensors}\ntarget: {framework: keras, path: tgt.safetensors}\n"
        "config: {from: src}\nlet:\n  heads: config.num_attention_heads\n"
        "  head_dim: config.head_dim ?? config.hidden_size // heads\n"
        "rules:\n- {from: attn.in_proj_weight, to: 'attn.{query,key,value}.kernel', via: 'mha_in_to_keras(num_heads=$heads)'}\n")
    a, b = wmap.load_spec("s.wmap"), wmap.load_spec("s.yaml")
    assert a == b and wmap.plan("s.wmap").spec_digest == wmap.plan("s.yaml").spec_digest


def test_explain_knows_the_new_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for code in ("WM118", "WM119", "WM121", "WM122", "WM123", "WM515"):
        assert main(["explain", code]) == 0
        assert code in capsys.readouterr().out
