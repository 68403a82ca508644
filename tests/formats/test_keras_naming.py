"""Keras variables are named relative to the model and the same in every process.

Keras names layers it was not given a name for from a process-wide counter, and prefixes a
Sequential's variables with the model's own (auto) name: the second model a process builds is
`sequential_1`, its layers `dense_2`, `dense_3`. A spec written against one process's names broke in
the next, and a Keras -> Keras spec needed `strip_prefix` on both sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import wmap  # noqa: E402
from wmap.formats.keras_naming import keras_names  # noqa: E402


def seq() -> object:
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(4)])


def test_models_built_one_after_another_have_the_same_names() -> None:
    first, second = seq(), seq()
    assert first.name != second.name  # Keras numbered them
    names = ("dense.kernel", "dense.bias", "dense_1.kernel", "dense_1.bias")
    assert wmap.inventory_of(first).names == names == wmap.inventory_of(second).names


def test_names_someone_chose_are_kept() -> None:
    inp = keras.Input((3,))
    x = keras.layers.Dense(2, name="dense_0")(inp)
    x = keras.layers.Dense(2, name="dense_1")(x)
    m = keras.Model(inp, keras.layers.Dense(2, name="head")(x))
    assert wmap.inventory_of(m).names == ("dense_0.kernel", "dense_0.bias", "dense_1.kernel", "dense_1.bias",
                                          "head.kernel", "head.bias")


class Sub(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.a = keras.layers.Dense(2)
        self.blocks = [keras.layers.Dense(3) for _ in range(2)]

    def call(self, x: object) -> object:
        return self.blocks[1](self.blocks[0](self.a(x)))


def _nested() -> object:
    inp = keras.Input((3,))
    head = keras.layers.Dense(5)
    return keras.Model(inp, head(keras.Sequential([keras.layers.Dense(2)])(inp)))


@pytest.mark.parametrize("build", [seq, _nested, lambda: Sub()], ids=["sequential", "nested", "subclassed"])
@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_a_saved_file_is_named_like_the_model(build: object, suffix: str, tmp_path: Path) -> None:
    seq()  # shift the process's counters first
    model = build()  # type: ignore[operator]
    if isinstance(model, Sub):
        model(np.zeros((1, 3), np.float32))
        if suffix == ".keras":
            pytest.skip("an unregistered subclass does not save as .keras")
    path = tmp_path / f"m{suffix}"
    model.save_weights(path) if suffix == ".weights.h5" else model.save(path)
    assert sorted(wmap.inventory_of(str(path)).names) == sorted(wmap.inventory_of(model).names)


def test_variables_whose_paths_collide_are_named_by_the_layer_tree() -> None:
    class Twin(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.left = keras.layers.Dense(2, name="proj")
            self.right = keras.layers.Dense(2, name="proj")

        def call(self, x: object) -> object:
            return self.right(self.left(x))

    m = Twin()
    m(np.zeros((1, 2), np.float32))
    assert sorted(wmap.inventory_of(m).names) == ["left.bias", "left.kernel", "right.bias", "right.kernel"]



def _tower(depth: int) -> object:
    """A functional sub-model built on its own (as a dual-tower backbone builds each tower before the
    whole): its layer names are scoped to itself, not to the model it becomes part of."""
    inp = keras.Input((3,))
    x = inp
    for i in range(depth):
        x = keras.layers.Dense(3, name=f"block_{i}")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="norm")(x))


class Towers(keras.Model):
    def __init__(self, left_depth: int, right_depth: int) -> None:
        super().__init__()
        self.left = _tower(left_depth)
        self.right = _tower(right_depth)

    def call(self, x: object) -> object:
        return self.right(self.left(x))


@pytest.mark.parametrize("right_depth", [2, 4])
def test_a_sub_model_whose_names_collide_is_named_wholly_by_the_layer_tree(right_depth: int) -> None:
    """One tower's names do not depend on the other's depth: `right.block_3` is where it is whether or
    not `left` has a `block_3` too (as MetaCLIP 2's vision tower, deeper than its text tower)."""
    m = Towers(2, right_depth)
    m(np.zeros((1, 3), np.float32))
    names = wmap.inventory_of(m).names
    assert all(n.startswith(("left.", "right.")) for n in names), names
    assert f"right.layers.{right_depth}.kernel" in names  # Keras' own list: the input layer, then the blocks


class Attention(keras.layers.Layer):
    """Sublayers held under private attributes, as keras' MultiHeadAttention holds `_query_dense`."""
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._query_dense = keras.layers.Dense(2, name="query")
        self._value_dense = keras.layers.Dense(2, name="value")

    def call(self, x: object) -> object:
        return self._value_dense(self._query_dense(x))


def test_a_sublayer_held_under_an_attribute_is_named_by_it_not_by_its_slot_in_keras_layers() -> None:
    class Twin(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.left = Attention(name="attn")
            self.right = Attention(name="attn")

        def call(self, x: object) -> object:
            return self.right(self.left(x))

    m = Twin()
    m(np.zeros((1, 2), np.float32))
    assert sorted(wmap.inventory_of(m).names) == sorted(
        f"{side}.{d}_dense.{v}" for side in ("left", "right") for d in ("query", "value") for v in ("kernel", "bias"))


def test_a_keras_to_keras_spec_needs_no_prefix_stripping(tmp_path: Path) -> None:
    src, dst = seq(), seq()
    for v in src.weights:
        v.assign(np.random.default_rng(0).standard_normal(v.shape).astype("float32"))
    wmap.apply(wmap.parse_spec("wmap 1\n{p:**} -> {p}\n"), source=src, target=dst)
    for a, b in zip(src.weights, dst.weights, strict=True):
        assert np.array_equal(a.numpy(), b.numpy())


class Moe(keras.layers.Layer):
    def build(self, shape: object) -> None:
        self.kernel = self.add_weight(shape=(2, 2), name="kernel")

    def call(self, x: object) -> object:
        return x


class Block(keras.layers.Layer):
    """A transformer layer whose MoE sublayer Keras names from its counter (`moe`, `moe_1`, ...)."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        self.moe = Moe()

    def build(self, shape: object) -> None:
        self.moe.build(shape)

    def call(self, x: object) -> object:
        return self.moe(x)


def test_generated_names_are_numbered_within_their_parent_so_every_layer_says_the_same() -> None:
    def build() -> object:
        inp = keras.Input((2,))
        x = inp
        for i in range(3):
            x = Block(name=f"block_{i}")(x)
        return keras.Model(inp, x)

    first, second = build(), build()
    names = ("block_0.moe.kernel", "block_1.moe.kernel", "block_2.moe.kernel")
    assert wmap.inventory_of(first).names == names == wmap.inventory_of(second).names
    assert [v.path for v in second.weights][1].endswith("moe_4/kernel")  # what Keras itself calls it


def test_counter_style_names_are_the_same_in_every_process() -> None:
    """`Dense(10, name="dense_1")` ... `name="dense_3"` (or keras-hub's ViT MLP, `dense_1`/`dense_2`) cannot
    be told from names Keras generated by anything the model holds; Keras' process-wide counter could,
    but it depends on what else the process built, and then a recipe matched in a fresh process and not
    in a notebook that had built other models (keras-hub ViT's MLP: `dense_1` in one, `dense` in the
    other). So such names are numbered within their parent, the same whatever the process built first."""
    L = keras.layers

    def build() -> keras.Model:
        return keras.Sequential([keras.Input((5,)), L.Dense(10, name="dense_1"), L.Dense(20, name="dense_2"),
                                 L.Dense(5, name="dense_3")])

    keras.backend.clear_session()
    fresh = [n for n, _ in keras_names(build())]
    for _ in range(3):  # other unnamed Dense layers first, as in a notebook
        keras.Sequential([keras.Input((5,)), L.Dense(10), L.Dense(3)])
    assert [n for n, _ in keras_names(build())] == fresh == [
        "dense.kernel", "dense.bias", "dense_1.kernel", "dense_1.bias", "dense_2.kernel", "dense_2.bias"]
