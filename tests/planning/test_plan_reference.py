"""The example plans against a reference written by hand, not against wmap's own earlier output.

The golden plans (`test_plan_golden.py`) catch any change to a plan; they cannot tell a right plan
from a wrong one, since they are wmap's own output. For the examples whose plan is otherwise only
checked by its golden, each reference below says, in plain Python and from the architectures
alone, what every target tensor must receive: from which source tensors, through which
transforms in which order (or which initialiser), frozen or not, with which lr multiplier.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.example_inventories import CHECKPOINTS, Shapes
from tests.support.paths import EXAMPLES
from wmap.core.inventory import Inventory, TensorMeta
from wmap.lang import load_spec
from wmap.planning.compiler import compile_plan
from wmap.planning.plan import Plan

# target -> (source tensors in order, transform names in order) for a rule; ("init:<name>",) for init
Expected = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
BN = ("weight", "bias", "running_mean", "running_var")


def fused_qkv_split() -> Expected:
    out: Expected = {
        "embed_tokens.weight": (("wte.weight",), ()), "embed_positions.weight": (("wpe.weight",), ()),
        "norm.weight": (("ln_f.weight",), ()), "norm.bias": (("ln_f.bias",), ()),
        "lm_head.weight": (("wte.weight",), ("init:copy",)),  # tied to the embedding
    }
    for i in range(2):
        h, t = f"h.{i}", f"layers.{i}"
        for q in "qkv":  # GPT-2's Conv1D stores (in, out): transpose, then cut the fused rows in three
            out[f"{t}.attn.{q}.weight"] = ((f"{h}.attn.c_attn.weight",), ("transpose", "split"))
            out[f"{t}.attn.{q}.bias"] = ((f"{h}.attn.c_attn.bias",), ("split",))
        out[f"{t}.attn.o.weight"] = ((f"{h}.attn.c_proj.weight",), ("transpose",))
        out[f"{t}.attn.o.bias"] = ((f"{h}.attn.c_proj.bias",), ())
        out[f"{t}.mlp.up.weight"] = ((f"{h}.mlp.c_fc.weight",), ("transpose",))
        out[f"{t}.mlp.down.weight"] = ((f"{h}.mlp.c_proj.weight",), ("transpose",))
        out[f"{t}.mlp.up.bias"] = ((f"{h}.mlp.c_fc.bias",), ())
        out[f"{t}.mlp.down.bias"] = ((f"{h}.mlp.c_proj.bias",), ())
        for n in (1, 2):
            for p in ("weight", "bias"):
                out[f"{t}.norm{n}.{p}"] = ((f"{h}.ln_{n}.{p}",), ())
    return out


def backbone_new_head() -> Expected:
    out: Expected = {"backbone.stem.conv.weight": (("conv1.weight",), ())}
    out.update({f"backbone.stem.norm.{p}": ((f"bn1.{p}",), ()) for p in BN})
    for s in range(1, 5):  # torchvision's layer1..4 are the new stages 0..3
        stage = f"backbone.stages.{s - 1}.blocks"
        for b in range(2):
            for k in (1, 2, 3):
                out[f"{stage}.{b}.conv{k}.weight"] = ((f"layer{s}.{b}.conv{k}.weight",), ())
                out.update({f"{stage}.{b}.norm{k}.{p}": ((f"layer{s}.{b}.bn{k}.{p}",), ()) for p in BN})
        out[f"{stage}.0.shortcut.conv.weight"] = ((f"layer{s}.0.downsample.0.weight",), ())
        out.update({f"{stage}.0.shortcut.norm.{p}": ((f"layer{s}.0.downsample.1.{p}",), ()) for p in BN})
    inits = {"proj.weight": "kaiming_normal", "proj.bias": "zeros", "norm.weight": "ones", "norm.bias": "zeros",
             "fc.weight": "trunc_normal", "fc.bias": "zeros"}
    out.update({f"head.{n}": ((), (f"init:{i}",)) for n, i in inits.items()})
    return out


def vocab_growth() -> Expected:
    src, _ = CHECKPOINTS["vocab_growth"]()
    out: Expected = {n: ((n,), ()) for n in src["src"]}
    out["model.embed_tokens.weight"] = (("model.embed_tokens.weight",), ("pad",))
    out["lm_head.weight"] = (("lm_head.weight",), ("pad",))
    return out


def freeze_lr() -> Expected:
    src, _ = CHECKPOINTS["freeze_lr"]()
    out: Expected = {n: ((n,), ()) for n in src["src"] if not n.startswith("fc.")}
    out.update({"fc.weight": ((), ("init:normal",)), "fc.bias": ((), ("init:zeros",))})
    return out


def torch_to_keras() -> Expected:
    out: Expected = {}
    for n in range(3):
        out[f"block{n}_conv.kernel"] = ((f"features.{n}.conv.weight",), ("conv_to_keras",))
        out[f"block{n}_conv.bias"] = ((f"features.{n}.conv.bias",), ())
        for a, b in zip(BN, ("gamma", "beta", "moving_mean", "moving_variance"), strict=True):
            out[f"block{n}_bn.{b}"] = ((f"features.{n}.bn.{a}",), ())
    for k in (1, 2):
        out[f"dense_{k}.kernel"] = ((f"classifier.fc{k}.weight",), ("linear_to_dense",))
        out[f"dense_{k}.bias"] = ((f"classifier.fc{k}.bias",), ())
    return out


def moe_experts() -> Expected:
    # `option strip_prefix = "model."`: the plan names sources without it
    out: Expected = {"embed.weight": (("embed_tokens.weight",), ()), "norm.weight": (("norm.weight",), ()),
                     "lm_head.weight": (("lm_head.weight",), ())}
    for i in range(2):
        s, t = f"layers.{i}", f"layers.{i}"
        out.update({f"{t}.attn.{q}.weight": ((f"{s}.self_attn.{q}_proj.weight",), ()) for q in "qkvo"})
        out[f"{t}.norm1.weight"] = ((f"{s}.input_layernorm.weight",), ())
        out[f"{t}.norm2.weight"] = ((f"{s}.post_attention_layernorm.weight",), ())
        out[f"{t}.moe.router.weight"] = ((f"{s}.block_sparse_moe.gate.weight",), ())
        for w, proj in (("w1", "gate"), ("w3", "up"), ("w2", "down")):  # Mixtral: w1 gate, w3 up, w2 down
            experts = tuple(f"{s}.block_sparse_moe.experts.{e}.{w}.weight" for e in range(12))  # 0, 1, ..., 11
            out[f"{t}.moe.{proj}_proj"] = (experts, ("stack",))
    return out


REFERENCES: dict[str, Callable[[], Expected]] = {
    "fused_qkv_split": fused_qkv_split, "backbone_new_head": backbone_new_head, "vocab_growth": vocab_growth,
    "freeze_lr": freeze_lr, "torch_to_keras": torch_to_keras, "moe_experts": moe_experts,
}


def _inv(shapes: Shapes) -> Inventory:
    return Inventory.from_metas([TensorMeta(n, s, "int64" if not s else "float32") for n, s in shapes.items()])


def _plan(stem: str) -> Plan:
    sources, target = CHECKPOINTS[stem]()
    return compile_plan(load_spec(EXAMPLES / f"{stem}.wmap"), {n: _inv(s) for n, s in sources.items()}, _inv(target))


def _received(plan: Plan) -> Expected:
    got: Expected = {}
    for step in plan.steps:
        for t in step.targets:
            how = (f"init:{step.init.name}",) if step.init is not None else tuple(x.NAME for x in step.transforms)
            got[t.name] = (tuple(r.name for r in step.sources), how)
    return got


@pytest.mark.parametrize("stem", sorted(REFERENCES))
def test_every_target_receives_what_the_reference_says(stem: str) -> None:
    got, want = _received(_plan(stem)), REFERENCES[stem]()
    assert sorted(got) == sorted(want), "targets differ"
    wrong = {t: (got[t], want[t]) for t in want if got[t] != want[t]}
    assert not wrong, wrong


def test_the_reference_can_tell_a_wrong_plan() -> None:
    """A plan that swapped two targets' sources (same shapes) fails the comparison."""
    got = _received(_plan("fused_qkv_split"))
    got["layers.0.mlp.up.bias"], got["layers.0.mlp.down.bias"] = got["layers.0.mlp.down.bias"], got["layers.0.mlp.up.bias"]
    assert got != fused_qkv_split()


def test_freeze_lr_flags_follow_the_stages() -> None:
    plan = _plan("freeze_lr")
    frozen = set(plan.frozen)
    for name in _received(plan):
        stage = name.split(".")[0]
        assert (name in frozen) == (stage in ("conv1", "bn1", "layer1", "layer2")), name
        lr = plan.lr_scales.get(name)
        assert lr == {"layer3": 0.25, "layer4": 0.5, "fc": 10.0}.get(stage), name


def test_fused_qkv_split_cuts_q_k_v_in_that_order() -> None:
    """The three targets of one split take the rows in q, k, v order: the step lists them so."""
    step = next(s for s in _plan("fused_qkv_split").steps if s.targets[0].name == "layers.0.attn.q.weight")
    assert [t.name for t in step.targets] == [f"layers.0.attn.{q}.weight" for q in "qkv"]
    assert [list(x.params().get("sizes", [])) for x in step.transforms if x.NAME == "split"] == [[8, 8, 8]]
