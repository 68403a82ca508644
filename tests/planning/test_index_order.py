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
