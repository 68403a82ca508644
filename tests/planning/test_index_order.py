"""Index semantics: a fan-in lands its inputs in the order of their indices, never of their names.

Each expert (or tensor-parallel shard) is filled with its own index, so what lands where is read
back from the values: slot k of the stacked tensor must hold k. The property tests shuffle the
inventory's order and vary the count (2, 12, 130): string order (`0, 1, 10, 11, 2`) would fail
each of them from 11 experts on.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wmap
from wmap.core.errors import WmapError

STACK = "wmap 1\nlayers.{l:int}.experts.{e:int}.w1.weight -> layers.{l}.experts.w1 | stack(0)\n"
STAR_STACK = "wmap 1\nlayers.{l:int}.experts.*.w1.weight -> layers.{l}.experts.w1 | stack(0)\n"


def experts(n: int, layers: int = 1, order: list[int] | None = None) -> dict[str, np.ndarray]:
    """`layers.L.experts.E.w1.weight`, each holding E (plus 1000 L), in the given insertion order."""
    idx = order if order is not None else list(range(n))
    return {f"layers.{lay}.experts.{e}.w1.weight": np.full((2, 3), e + 1000 * lay, np.float32)
            for lay in range(layers) for e in idx}


def stacked_targets(n: int, layers: int = 1) -> dict[str, np.ndarray]:
    return {f"layers.{lay}.experts.w1": np.zeros((n, 2, 3), np.float32) for lay in range(layers)}


def landed(spec: str, src: dict[str, np.ndarray], tgt: dict[str, np.ndarray], tmp_path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    out = tmp_path / "out.safetensors"
    wmap.apply(wmap.parse_spec(spec), source=src, target=tgt, out=out)
    return load_file(str(out))


@pytest.mark.parametrize("spec", [STACK, STAR_STACK], ids=["int-capture", "star"])
def test_twelve_experts_stack_in_numeric_order(spec: str, tmp_path) -> None:
    got = landed(spec, experts(12, layers=2), stacked_targets(12, layers=2), tmp_path)
    for lay in range(2):
        assert got[f"layers.{lay}.experts.w1"][:, 0, 0].tolist() == [e + 1000 * lay for e in range(12)]


@settings(max_examples=25, deadline=None)
@given(n=st.sampled_from([2, 12, 130]), seed=st.integers(0, 2**32 - 1), star=st.booleans())
def test_shuffled_inventories_of_any_size_land_the_same(n: int, seed: int, star: bool) -> None:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    plan = wmap.plan(wmap.parse_spec(STAR_STACK if star else STACK), source=experts(n, order=order),
                     target=stacked_targets(n))
    (step,) = plan.steps
    assert [int(r.name.split(".")[3]) for r in step.sources] == list(range(n))
    assert step.order == f"{'*' if star else '{e}'} = 0..{n - 1}"


def test_tensor_parallel_shards_concatenate_in_rank_order(tmp_path) -> None:
    shards = {f"mlp.weight.{r}": np.full((2, 4), r, np.float32) for r in (3, 11, 0, 7, 1, 10, 2, 9, 4, 8, 5, 6)}
    got = landed("wmap 1\nmlp.weight.{r:int} -> mlp.weight | concat(0)\n", shards,
                 {"mlp.weight": np.zeros((24, 4), np.float32)}, tmp_path)
    assert got["mlp.weight"][::2, 0].tolist() == list(range(12))


def test_an_alternation_fans_in_in_written_order(tmp_path) -> None:
    src = {f"{p}_proj.weight": np.full((2, 2), i, np.float32) for i, p in enumerate("qkv")}
    got = landed("wmap 1\n{v,q,k}_proj.weight -> qkv | concat(0)\n", src, {"qkv": np.zeros((6, 2), np.float32)},
                 tmp_path)
    assert got["qkv"][::2, 0].tolist() == [2, 0, 1]


def test_the_plan_says_what_orders_a_stack() -> None:
    plan = wmap.plan(wmap.parse_spec(STACK), source=experts(12, layers=3), target=stacked_targets(12, layers=3))
    text = plan.render()
    assert "<- layers.{0..2}.experts.{0..11}.w1.weight (2, 3) float32" in text
    assert "stacked over {e} = 0..11" in text
    assert plan.to_json()["steps"][0]["order"] == "{e} = 0..11"
    from wmap.planning.serialise import plan_from_json
    assert plan_from_json(plan.to_json()).steps[0].order == "{e} = 0..11"


def _errors(spec: str, src: dict[str, np.ndarray], tgt: dict[str, np.ndarray]) -> list[str]:
    with pytest.raises(WmapError) as e:
        wmap.plan(wmap.parse_spec(spec), source=src, target=tgt)
    return [f"{d.code} {d.message}" for d in e.value.diagnostics]


def test_a_missing_expert_is_a_gap_not_a_shape_error() -> None:
    src = experts(12)
    del src["layers.0.experts.7.w1.weight"]
    (msg,) = _errors(STACK, src, stacked_targets(12))
    assert msg.startswith("WM211") and "has a gap: no 7 (found 0..6, 8..11)" in msg


def test_one_index_spelled_twice_is_a_clash() -> None:
    src = experts(4)
    src["layers.0.experts.01.w1.weight"] = src["layers.0.experts.1.w1.weight"]
    (msg,) = _errors(STACK, src, stacked_targets(5))
    assert msg.startswith("WM211") and "spells one index twice: `01` and `1`" in msg


def test_a_missing_alternation_option_is_named() -> None:
    src = {f"{p}_proj.weight": np.zeros((2, 2), np.float32) for p in "qv"}
    (msg,) = _errors("wmap 1\n{q,k,v}_proj.weight -> qkv | concat(0)\n", src, {"qkv": np.zeros((6, 2), np.float32)})
    assert msg.startswith("WM211") and "has no input for `k`" in msg


def test_two_indices_must_fill_their_grid() -> None:
    src = {f"w.{r}.{c}": np.zeros((1,), np.float32) for r in range(2) for c in range(3)}
    del src["w.1.2"]
    src["w.1.0b"] = np.zeros((1,), np.float32)  # keeps each index gap-free on its own
    msg = _errors("wmap 1\nw.{r}.{c} -> w | concat(0)\n", src, {"w": np.zeros((6,), np.float32)})
    assert any(m.startswith("WM211") for m in msg)


def test_non_ascii_digits_are_not_an_index() -> None:
    src = {"layers.\u0663.w": np.zeros((1,), np.float32)}  # ARABIC-INDIC DIGIT THREE
    msg = _errors("wmap 1\nlayers.{i:int}.w -> l{i}.w\n", src, {"l3.w": np.zeros((1,), np.float32)})
    assert any(m.startswith("WM201") for m in msg)


def test_folding_keeps_numbers_as_written_and_in_numeric_order() -> None:
    from wmap.core.names import fold
    names = [f"layers.{i}.q" for i in (0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9)]
    assert fold(names) == [("layers.{0..11}.q", 12)]
    assert fold(["target_004.conv_1.kernel"]) == [("target_004.conv_1.kernel", 1)]
    assert fold([f"e.{i:03d}" for i in range(12)]) == [("e.{000..011}", 12)]
    assert fold(["e.1", "e.01"]) == [("e.{01,1}", 2)]


# == indices that fan out: a capture only the target has is bound by the target names ==============

UNSTACK = "wmap 1\nlayers.{l:int}.experts.w1 -> layers.{l}.experts.{e:int}.w1.weight | unstack(0)\n"


def test_unstack_fills_enumerated_experts_in_numeric_order(tmp_path) -> None:
    n = 16
    src = {f"layers.{lay}.experts.w1": np.stack([np.full((2, 3), e + 1000 * lay, np.float32) for e in range(n)])
           for lay in range(2)}
    got = landed(UNSTACK, src, experts(n, layers=2), tmp_path)
    for lay in range(2):
        assert [got[f"layers.{lay}.experts.{e}.w1.weight"][0, 0] for e in range(n)] == [e + 1000 * lay for e in range(n)]


def test_the_plan_says_what_an_unstack_is_unstacked_over() -> None:
    src = {"layers.0.experts.w1": np.zeros((12, 2, 3), np.float32)}
    text = wmap.plan(wmap.parse_spec(UNSTACK), source=src, target=experts(12)).render()
    assert "~ layers.0.experts.{0..11}.w1.weight (2, 3) float32" in text
    assert "unstacked over {e} = 0..11" in text and "| unstack -> (2, 3) x12" in text
    assert "WM311" not in text  # the index orders the parts: no equal-block warning


def test_an_unstack_into_a_target_with_a_gap_names_the_missing_index() -> None:
    tgt = experts(12)
    del tgt["layers.0.experts.7.w1.weight"]
    (msg,) = _errors(UNSTACK, {"layers.0.experts.w1": np.zeros((12, 2, 3), np.float32)}, tgt)
    assert msg.startswith("WM211") and "enumerated by {e}, which has a gap: no 7" in msg


def test_a_fan_out_whose_size_differs_from_the_enumerated_targets_gives_both_counts() -> None:
    msgs = _errors(UNSTACK, {"layers.0.experts.w1": np.zeros((12, 2, 3), np.float32)}, experts(10))
    assert any("gives 12 parts" in m and "10 targets" in m for m in msgs), msgs


def test_a_target_only_capture_without_a_fan_out_transform_is_still_a_typo() -> None:
    with pytest.raises(WmapError) as e:
        wmap.parse_spec("wmap 1\nlayer{i}.w -> block{j}.w\n")
    assert e.value.diagnostics[0].code == "WM109"
    with pytest.raises(WmapError) as e:  # arithmetic on an index the targets enumerate
        wmap.parse_spec("wmap 1\nw -> e.{k+1}.w | unstack(0)\n")
    assert "cannot be computed with" in e.value.diagnostics[0].message


PAIR_STACK = "wmap 1\nexperts.{e:int}.{gate,up}.weight -> bank | stack(0)\n"
PAIR_UNSTACK = "wmap 1\nbank -> experts.{e:int}.{gate,up}.weight | unstack(0)\n"


def pairs(n: int) -> dict[str, np.ndarray]:
    """`experts.E.gate.weight` holding 10 E, `experts.E.up.weight` holding 10 E + 1."""
    return {f"experts.{e}.{p}.weight": np.full((2, 3), 10 * e + j, np.float32)
            for e in range(n) for j, p in enumerate(("gate", "up"))}


def test_an_index_beside_a_target_alternation_fans_out_in_the_templates_order(tmp_path) -> None:
    """The reverse of a fan-in over (expert, gate|up): expert-major, as the fan-in stacked them, over a
    full grid of both, and the plan says so."""
    n = 12
    stacked = landed(PAIR_STACK, pairs(n), {"bank": np.zeros((2 * n, 2, 3), np.float32)}, tmp_path)
    assert stacked["bank"][:, 0, 0].tolist() == [10 * e + j for e in range(n) for j in range(2)]
    plan = wmap.plan(wmap.parse_spec(PAIR_UNSTACK), source=stacked, target=pairs(n))
    (step,) = plan.steps
    assert [t.name for t in step.targets][:4] == ["experts.0.gate.weight", "experts.0.up.weight",
                                                  "experts.1.gate.weight", "experts.1.up.weight"]
    assert step.order == "{e} = 0..11; {gate,up}"
    back = landed(PAIR_UNSTACK, stacked, pairs(n), tmp_path)
    assert all(np.array_equal(back[k], v) for k, v in pairs(n).items())
    tgt = pairs(n)
    del tgt["experts.7.up.weight"]
    (msg,) = _errors(PAIR_UNSTACK, stacked, tgt)
    assert msg.startswith("WM211") and "do not form a full grid (23 targets" in msg


def test_stack_then_unstack_gives_back_every_expert_bit_for_bit(tmp_path) -> None:
    from safetensors.numpy import save_file
    rng = np.random.default_rng(0)
    per = {f"layers.{lay}.experts.{e}.w1.weight": rng.standard_normal((2, 3)).astype(np.float32)
           for lay in range(2) for e in range(16)}
    save_file(per, str(tmp_path / "per.safetensors"))
    stacked = landed(STACK, {k: v for k, v in per.items()}, stacked_targets(16, layers=2), tmp_path)
    save_file(stacked, str(tmp_path / "stacked.safetensors"))
    out = tmp_path / "back.safetensors"
    wmap.apply(wmap.parse_spec(UNSTACK), source=str(tmp_path / "stacked.safetensors"),
               target=str(tmp_path / "per.safetensors"), out=out)
    from safetensors.numpy import load_file
    back = load_file(str(out))
    assert sorted(back) == sorted(per) and all(np.array_equal(back[k], per[k]) for k in per)


torch = pytest.importorskip("torch")


class PerExpert(torch.nn.Module):
    """A mixture of 16 experts, one Linear each (HF-style `experts.{e}.w1`)."""

    def __init__(self, n: int = 16):
        super().__init__()
        self.experts = torch.nn.ModuleList([torch.nn.ModuleDict({"w1": torch.nn.Linear(3, 2, bias=False)})
                                            for _ in range(n)])


class Stacked(torch.nn.Module):
    """The same experts as one (16, 2, 3) parameter (a grouped-GEMM layout)."""

    def __init__(self, n: int = 16):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.zeros(n, 2, 3))


def test_sixteen_experts_into_and_out_of_a_torch_model_value_by_value() -> None:
    torch.manual_seed(0)
    per, stacked = PerExpert(), Stacked()
    wmap.apply(wmap.parse_spec("wmap 1\nexperts.{e:int}.w1.weight -> w1 | stack(0)\n"), source=per, target=stacked)
    for e in range(16):
        assert torch.equal(stacked.w1[e], per.experts[e]["w1"].weight), e
    again = PerExpert()
    wmap.apply(wmap.parse_spec("wmap 1\nw1 -> experts.{e:int}.w1.weight | unstack(0)\n"), source=stacked, target=again)
    for e in range(16):
        assert torch.equal(again.experts[e]["w1"].weight, per.experts[e]["w1"].weight), e


def test_sixteen_experts_into_and_out_of_a_keras_model_value_by_value() -> None:
    keras = pytest.importorskip("keras")
    inp = keras.Input((3,))
    per = keras.Model(inp, [keras.layers.Dense(2, use_bias=False, name=f"expert_{e}")(inp) for e in range(16)],
                      name="per")
    stacked_in = keras.Input((3,))
    stacked = keras.Model(stacked_in, keras.layers.EinsumDense("bi,eio->beo", (16, 2), name="experts")(stacked_in),
                          name="stacked")
    torch.manual_seed(1)
    src = PerExpert()
    # torch Linear stores (out, in); the Keras einsum kernel is (expert, in, out)
    wmap.apply(wmap.parse_spec("wmap 1\nexperts.{e:int}.w1.weight -> experts.kernel | stack(0) | permute([0, 2, 1])\n"),
               source=src, target=stacked)
    kernel = np.asarray(stacked.get_layer("experts").kernel.numpy())
    for e in range(16):
        assert np.array_equal(kernel[e], src.experts[e]["w1"].weight.detach().numpy().T), e
    wmap.apply(wmap.parse_spec("wmap 1\nexperts.kernel -> expert_{e:int}.kernel | unstack(0)\n"), source=stacked,
               target=per)
    for e in range(16):
        assert np.array_equal(np.asarray(per.get_layer(f"expert_{e}").kernel.numpy()), kernel[e]), e
