"""Compiler: matching, exactly-once accounting, shape algebra and hints, on metadata-only inventories."""

from __future__ import annotations

import json

import pytest

from tests.support.compiler_fixtures import M, compile_text, errors_of, inv, resnetish
from wmap.core.errors import WmapError


def keras_twin() -> object:
    return inv(
        M("stem.kernel", (3, 3, 3, 8)),
        *[M(f"stem_bn.{p}", (8,)) for p in ("gamma", "beta", "moving_mean", "moving_variance")],
        M("block0.kernel", (3, 3, 8, 8)), M("block1.kernel", (3, 3, 8, 8)),
        M("head.kernel", (8, 10)), M("head.bias", (10,)),
        framework="keras",
    )


PORT = """wmap 1
source torch "a.safetensors"
target keras "m:f"
conv1.weight -> stem.kernel | conv_to_keras
bn1.{weight,bias,running_mean,running_var} -> stem_bn.{gamma,beta,moving_mean,moving_variance}
layer1.{b:int}.conv.weight -> block{b}.kernel | conv_to_keras
fc.weight -> head.kernel | linear_to_dense
fc.bias -> head.bias
drop **.num_batches_tracked
freeze stem.*, stem_bn.*
lr head.* * 10
"""


def test_full_port_accounts_for_every_tensor_exactly_once() -> None:
    plan = compile_text(PORT, resnetish(), keras_twin())
    s = plan.summary()
    assert s["targets"] == 9 and s["copied"] == 5 and s["transformed"] == 4
    assert s["dropped"] == 1 and s["sources_used"] == 9 and s["frozen"] == 5
    assert plan.lr_scales == {"head.kernel": 10.0, "head.bias": 10.0}
    step = plan.step_for("block1.kernel")
    assert step is not None and step.sources[0].name == "layer1.1.conv.weight"
    assert step.transforms[0].NAME == "conv_to_keras" and step.chain[-1][0][0] == (3, 3, 8, 8)


def test_plan_is_deterministic_and_path_free() -> None:
    a = compile_text(PORT, resnetish(), keras_twin()).dumps()
    b = compile_text(PORT, resnetish(), keras_twin()).dumps()
    assert a == b
    data = json.loads(a)
    assert data["format_version"] == 2 and data["spec_digest"].startswith("sha256:")
    assert "/" not in json.dumps([s["span"] for s in data["steps"]])


def test_first_rule_claims_and_shadowed_rule_is_an_error() -> None:
    errs = errors_of("wmap 1\n** -> {x}\n", resnetish(), resnetish())  # template capture unbound
    assert errs[0][0] == "WM109"
    errs = errors_of("wmap 1\n{p:**} -> {p}\nfc.weight -> fc.weight\n", resnetish(), resnetish())
    assert errs[0][0] == "WM201" and "claimed them first" in errs[0][2]


def test_rule_matching_nothing_is_an_error_unless_optional() -> None:
    errs = errors_of("wmap 1\n{p:**} -> {p}\nnope.weight -> x\n", resnetish(), resnetish())
    assert [e[0] for e in errs] == ["WM201"]
    plan = compile_text("wmap 1\n{p:**} -> {p}\noptional nope.weight -> x\n", resnetish(), resnetish())
    assert plan.summary()["targets"] == len(resnetish())


def test_wrapper_prefix_is_detected_and_strip_prefix_fixes_it() -> None:
    errs = errors_of("wmap 1\nconv1.weight -> conv1.weight\noptional {p:**} -> {p}\n",
                     resnetish("module."), resnetish())
    assert errs[0][0] == "WM201" and "strip_prefix" in errs[0][2] and "module." in errs[0][2]
    plan = compile_text('wmap 1\noption strip_prefix = ["module.", "_orig_mod."]\n{p:**} -> {p}\n',
                        resnetish("_orig_mod.module."), resnetish())
    assert plan.step_for("fc.weight").sources[0].read_name == "_orig_mod.module.fc.weight"  # type: ignore[union-attr]


def test_unused_sources_hint_at_the_prefix() -> None:
    errs = errors_of("wmap 1\noptional x -> y\n", resnetish("module."), resnetish())
    codes = {e[0] for e in errs}
    assert {"WM401", "WM402"} <= codes
    unused = next(e for e in errs if e[0] == "WM402")
    assert "module." in unused[2] and "strip_prefix" in unused[2]


def test_target_written_twice_names_both_rules() -> None:
    errs = errors_of("wmap 1\nfc.weight -> fc.weight\nconv1.weight -> fc.weight\noptional {p:**} -> {p}\n",
                     resnetish(), resnetish())
    twice = [e for e in errs if e[0] == "WM205"]
    assert twice and "fc.weight -> fc.weight" in twice[0][1] and "conv1.weight -> fc.weight" in twice[0][1]


def test_strict_off_turns_coverage_errors_into_warnings() -> None:
    plan = compile_text("wmap 1\noption strict = false\nfc.weight -> fc.weight\n", resnetish(), resnetish())
    assert {w.code for w in plan.warnings} == {"WM401", "WM402"}


def test_unfilled_targets_are_folded() -> None:
    target = inv(*[M(f"layers.{i}.w", (4,)) for i in range(32)], M("a", (1,)))
    errs = errors_of("wmap 1\noptional x -> a\n", inv(M("a", (1,))), target)
    unfilled = next(e for e in errs if e[0] == "WM401")
    assert "layers.{0..31}.w" in unfilled[1] and "32" in unfilled[1]


def test_fan_out_takes_sizes_from_targets_and_warns_on_equal_blocks() -> None:
    src = inv(M("attn.c_attn.weight", (4, 12), kind="Conv1D"))
    tgt = inv(*[M(f"attn.{x}.weight", (4, 4), kind="Linear") for x in "qkv"])
    plan = compile_text("wmap 1\nattn.c_attn.weight -> attn.{q,k,v}.weight | split(1) | transpose\n", src, tgt)
    step = plan.steps[0]
    assert [t.name for t in step.targets] == ["attn.q.weight", "attn.k.weight", "attn.v.weight"]
    assert step.transforms[0].params()["sizes"] == [4, 4, 4]
    assert any(w.code == "WM311" for w in plan.warnings)


def test_fan_in_orders_inputs_by_alternation() -> None:
    src = inv(*[M(f"{x}_proj.weight", (4, 4)) for x in "vkq"])
    tgt = inv(M("qkv.weight", (12, 4)))
    plan = compile_text("wmap 1\n{q,k,v}_proj.weight -> qkv.weight | concat(0)\n", src, tgt)
    assert [r.name for r in plan.steps[0].sources] == ["q_proj.weight", "k_proj.weight", "v_proj.weight"]


def test_several_sources_without_fan_in_transform_is_an_error() -> None:
    src = inv(*[M(f"{x}.w", (4,)) for x in "ab"])
    errs = errors_of("wmap 1\n{a,b}.w -> c.w\n", src, inv(M("c.w", (4,))))
    assert errs[0][0] == "WM206" and "concat" in errs[0][2]


def test_multi_source_lerp_needs_every_source() -> None:
    base = inv(M("l.0.w", (2,)), M("l.1.w", (2,)))
    tuned = inv(M("l.0.w", (2,)))
    spec = 'wmap 1\nsource base "a"\nsource tuned "b"\nbase:{p:**}, tuned:{p:**} -> {p} | lerp(0.5)\n'
    errs = errors_of(spec, {"base": base, "tuned": tuned}, base)
    assert errs[0][0] == "WM203" and "tuned" in errs[0][1]
    plan = compile_text(spec, {"base": base, "tuned": base}, base)
    assert [r.source for r in plan.steps[0].sources] == ["base", "tuned"]


def test_shape_mismatches_are_grouped_with_one_cause() -> None:
    src = inv(*[M(f"blocks.{i}.mlp.weight", (1920, 1920)) for i in range(12)])
    tgt = inv(*[M(f"blocks.{i}.mlp.weight", (1024, 1024)) for i in range(12)])
    errs = errors_of("wmap 1\n{p:**} -> {p}\n", src, tgt)
    assert len(errs) == 1 and errs[0][0] == "WM301"
    assert "12 of 12" in errs[0][1] and "blocks.{0..11}.mlp.weight" in errs[0][1]
    assert "width factor" in errs[0][2]


@pytest.mark.parametrize(("src", "tgt", "cause"), [
    ((10, 8), (8, 10), "transpose"),
    ((64, 3, 7, 7), (7, 7, 3, 64), "layout"),
    ((50257, 8), (50304, 8), "pad(0)"),
    ((1, 197, 8), (1, 257, 8), "resize(prefix_tokens=1)"),
    ((8, 3, 7, 7), (8, 1, 7, 7), "adapt_channels"),
    ((4, 6), (24,), "reshape"),
])
def test_shape_mismatch_hints(src: tuple[int, ...], tgt: tuple[int, ...], cause: str) -> None:
    errs = errors_of("wmap 1\nw -> w\n", inv(M("w", src)), inv(M("w", tgt)))
    assert errs[0][0] == "WM301" and cause in errs[0][2], errs


def test_dtype_policy() -> None:
    widen = compile_text("wmap 1\nw -> w\n", inv(M("w", (2,), "bfloat16")), inv(M("w", (2,), "float32")))
    assert widen.steps[0].targets[0].dtype == "float32"
    errs = errors_of("wmap 1\nw -> w\n", inv(M("w", (2,), "float32")), inv(M("w", (2,), "bfloat16")))
    assert errs[0][0] == "WM302" and "cast(bfloat16)" in errs[0][2]
    cast = compile_text("wmap 1\nw -> w | cast(bfloat16)\n", inv(M("w", (2,))), inv(M("w", (2,), "bfloat16")))
    assert cast.steps[0].transforms[0].NAME == "cast"
    compile_text('wmap 1\noption dtype = "target"\nw -> w\n', inv(M("w", (2,))), inv(M("w", (2,), "float16")))
    errs = errors_of('wmap 1\noption dtype = "strict"\nw -> w\n', inv(M("w", (2,), "float16")), inv(M("w", (2,))))
    assert errs[0][0] == "WM302"


def test_same_shape_traps_warn() -> None:
    square = compile_text("wmap 1\nfc.weight -> dense.kernel\n", inv(M("fc.weight", (8, 8), kind="Linear")),
                          inv(M("dense.kernel", (8, 8), kind="Dense"), framework="keras"))
    assert [w.code for w in square.warnings] == ["WM310"]
    gru = compile_text("wmap 1\ngru.weight_ih_l0 -> gru.kernel | transpose\n",
                       inv(M("gru.weight_ih_l0", (12, 4), kind="GRU")),
                       inv(M("gru.kernel", (4, 12), kind="GRU"), framework="keras"))
    assert "WM312" in [w.code for w in gru.warnings]
    eps = compile_text("wmap 1\nbn.weight -> bn.gamma\n", inv(M("bn.weight", (4,), kind="BatchNorm2d", eps=1e-5)),
                       inv(M("bn.gamma", (4,), kind="BatchNormalization", eps=1e-3), framework="keras"))
    assert [w.code for w in eps.warnings] == ["WM313"]


def test_init_and_keep_only_touch_unfilled_targets() -> None:
    src = inv(M("a", (2,)))
    tgt = inv(M("a", (2,)), M("head.w", (2,)), M("head.b", (2,)))
    plan = compile_text("wmap 1\na -> a\ninit head.w = normal(std=0.02)\nkeep head.b\n", src, tgt)
    kinds = {s.targets[0].name: s.kind for s in plan.steps}
    assert kinds == {"a": "map", "head.w": "init", "head.b": "keep"}
    errs = errors_of("wmap 1\na -> a\ninit * = zeros\n", src, tgt)
    assert errs[0][0] == "WM208" and "`a`" in errs[0][1]
    errs = errors_of("wmap 1\na -> a\ninit head.* = zeros\ninit nothing.* = ones\n", src, tgt)
    assert errs[0][0] == "WM202"
    compile_text("wmap 1\na -> a\ninit head.* = zeros\ninit ?nothing.* = ones\n", src, tgt)


def test_copy_initialiser_reads_a_source() -> None:
    src = inv(M("emb", (5, 2)))
    tgt = inv(M("emb", (5, 2)), M("lm_head", (5, 2)))
    plan = compile_text('wmap 1\nemb -> emb\ninit lm_head = copy("emb")\n', src, tgt)
    step = plan.step_for("lm_head")
    assert step is not None and step.sources[0].name == "emb"
    errs = errors_of('wmap 1\nemb -> emb\ninit lm_head = copy("emd")\n', src, tgt)
    assert "`emb`" in errs[0][2]


def test_unknown_source_prefix_and_missing_target_names() -> None:
    errs = errors_of("wmap 1\nother:a -> a\n", inv(M("a", (1,))), inv(M("a", (1,))))
    assert errs[0][0] == "WM112"
    errs = errors_of("wmap 1\na -> model.a\n", inv(M("a", (1,))), inv(M("a", (1,))))
    assert errs[0][0] == "WM204" and "`model.`" in errs[0][2]


def test_tied_alias_is_written_through_its_canonical_tensor() -> None:
    from wmap.core.inventory import Inventory
    tgt = Inventory.from_metas([M("emb.weight", (5, 2)), M("lm_head.weight", (5, 2))],
                               tied=[("lm_head.weight", "emb.weight")])
    plan = compile_text("wmap 1\nemb -> emb.weight\n", inv(M("emb", (5, 2))), tgt)
    assert plan.tied == (("lm_head.weight", "emb.weight"),) and len(plan.steps) == 1
    assert "tied" in plan.render()


def test_one_error_per_cause_not_per_tensor() -> None:
    src = inv(*[M(f"layers.{i}.w", (4, 4)) for i in range(100)])
    tgt = inv(*[M(f"layers.{i}.w", (4, 4)) for i in range(100)])
    with pytest.raises(WmapError) as e:
        compile_text("wmap 1\nlayers.{i:int}.w -> layers.{i}.w | transpose(0, 2)\n", src, tgt)
    assert len(e.value.diagnostics) == 1


def test_render_folds_repeats_and_ends_with_a_summary() -> None:
    src = inv(*[M(f"layers.{i}.w", (4, 4)) for i in range(32)])
    text = compile_text("wmap 1\nlayers.{i:int}.w -> blocks.{i}.w | transpose\n", src,
                        inv(*[M(f"blocks.{i}.w", (4, 4)) for i in range(32)])).render()
    assert "blocks.{0..31}.w (4, 4) float32  x32" in text
    assert text.strip().splitlines()[-1].startswith("Plan: 32 targets")
    md = compile_text("wmap 1\nlayers.{i:int}.w -> blocks.{i}.w | transpose\n", src,
                      inv(*[M(f"blocks.{i}.w", (4, 4)) for i in range(32)])).render("markdown")
    assert "| targets | 32 |" in md


def test_plan_json_round_trips() -> None:
    from wmap.planning.serialise import plan_from_json
    plan = compile_text(PORT, resnetish(), keras_twin())
    again = plan_from_json(json.loads(plan.dumps()))
    assert again.steps == plan.steps and again.spec_digest == plan.spec_digest
    assert again.dumps() == plan.dumps()


def test_an_equal_split_into_names_without_dots_warns_instead_of_crashing() -> None:
    """WM311 names the blocks by their module; a target named without a dot is its own block name
    (this used to raise IndexError while building the hint)."""
    import wmap
    from wmap.core.inventory import Inventory, TensorMeta
    from wmap.planning.compiler import compile_plan

    src = Inventory.from_metas([TensorMeta("a", (6, 4), "float32")], "test", None)
    tgt = Inventory.from_metas([TensorMeta(n, (2, 4), "float32") for n in "xyz"], "test", None)
    plan = compile_plan(wmap.parse_spec("wmap 1\na -> {x,y,z} | split(0)\n"), {"src": src}, tgt)
    (w,) = [w for w in plan.warnings if w.code == "WM311"]
    assert w.hint is not None and w.hint.endswith("matches x, y, z")
