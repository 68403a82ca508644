"""Keras 3 files written by Keras 3.15 itself, Keras 2 layout files, built models, TF checkpoints."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tests.support.format_fixtures import expect_wm, h5_keras2, keras_functional
from wmap.formats import inventory_of, open_source
from wmap.formats.keras_files import KerasWeightsFile
from wmap.formats.keras_naming import keras_names

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.tf


def _expected(model: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """The model's variables under their stable names (tests/formats/test_keras_naming.py holds those
    to Keras' own paths: relative to the model, counter-numbered layers as a fresh process numbers them)."""
    return {n: (tuple(v.shape), str(v.dtype)) for n, v in keras_names(model)}


def _name_of(model: Any, variable: Any) -> str:
    return next(n for n, v in keras_names(model) if v is variable)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    keras.utils.set_random_seed(0)
    model = keras_functional()
    d = tmp_path_factory.mktemp("keras")
    model.save_weights(d / "m.weights.h5")
    model.save(d / "m.keras")
    model.save(d / "m.h5")  # Keras 3.15 still writes the legacy layout for `.h5`
    return model, d


@pytest.mark.parametrize("name", ["m.weights.h5", "m.keras", "m.h5"])
def test_files_name_variables_like_the_built_model(saved: tuple[Any, Path], name: str) -> None:
    model, d = saved
    with open_source(d / name) as src:  # type: ignore[attr-defined]
        inv = src.inventory()
        assert inv.framework == "keras"
        got = {t.name: (t.shape, t.dtype) for t in inv}
        assert got == _expected(model)
        by_name = dict(keras_names(model))
        for t in inv:
            assert np.array_equal(src.read(t.name), by_name[t.name].numpy()), t.name
    assert inv["stem.kernel"].kind == "Conv2D"
    assert inv["lstm.lstm_cell.recurrent_kernel"].kind == "LSTMCell"
    if name != "m.weights.h5":  # config known: layer settings and model order
        assert inv["bn.gamma"].attr("epsilon") == pytest.approx(1e-3)
    if name == "m.keras":
        assert inv.names[0] == "stem.kernel" and inv.label == "keras archive"
        assert inv["mha.query.kernel"].kind == "EinsumDense"
        assert inv["mha.query.kernel"].native == "layers/multi_head_attention/query_dense/vars/0"


def test_sequential_subclassed_sharded_and_naming_by_model(tmp_path: Path) -> None:
    L = keras.layers
    seq = keras.Sequential([keras.Input((4,)), L.Dense(3), L.BatchNormalization(scale=False), L.Dense(2)])

    class Sub(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name="sub")
            self.blocks = [L.Dense(3), L.Dense(3)]
            self.head = L.Dense(2, dtype="bfloat16")

        def call(self, x: Any) -> Any:
            for b in self.blocks:
                x = b(x)
            return self.head(x)

    sub = Sub()
    sub(np.zeros((1, 3)))
    seq.save_weights(tmp_path / "seq.weights.h5")
    sub.save_weights(tmp_path / "sub.weights.h5")
    sub_inv = inventory_of(tmp_path / "sub.weights.h5")
    assert {t.name: (t.shape, t.dtype) for t in sub_inv} == _expected(sub)
    assert sub_inv[_name_of(sub, sub.head.kernel)].dtype == "bfloat16"
    with open_source(tmp_path / "sub.weights.h5") as src:  # type: ignore[attr-defined]
        kernel = src.read(_name_of(sub, sub.head.kernel))
        assert kernel.dtype.name == "bfloat16" and np.array_equal(kernel, sub.head.kernel.numpy())

    # BatchNormalization(scale=False) stores 3 variables: which one is missing is not in the file.
    inv = inventory_of(tmp_path / "seq.weights.h5")
    bn_vars = [t for t in inv if t.kind == "BatchNormalization"]
    assert [t.name.rsplit(".", 2)[-2:] for t in bn_vars] == [["vars", "0"], ["vars", "1"], ["vars", "2"]]
    assert "named by position" in str(bn_vars[0].attr("note"))
    exact = inventory_of(tmp_path / "seq.weights.h5", keras_model=seq)
    assert {t.name: (t.shape, t.dtype) for t in exact} == _expected(seq)

    wide = keras.Sequential([keras.Input((64,)), L.Dense(256), L.Dense(256), L.BatchNormalization(), L.Dense(4)])
    wide.save_weights(tmp_path / "sh.weights.json", max_shard_size=0.0003)
    assert sum(f.endswith(".weights.h5") and f.startswith("sh") for f in os.listdir(tmp_path)) > 1
    with open_source(tmp_path / "sh.weights.json") as src:  # type: ignore[attr-defined]
        assert {t.name: (t.shape, t.dtype) for t in src.inventory()} == _expected(wide)
        assert src.inventory().label == "sharded keras weights"
        for v in wide.weights:
            assert np.array_equal(src.read(_name_of(wide, v)), v.numpy())


def test_keras2_layout_h5(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    k, b = rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32)
    config = {"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": "Dense", "name": "dense_1", "config": {"name": "dense_1"}},
        {"class_name": "BatchNormalization", "name": "bn", "config": {"name": "bn", "epsilon": 1e-5,
                                                                      "momentum": 0.9}},
    ]}}
    path = h5_keras2(tmp_path / "k2.h5", {
        "dense_1": {"dense_1/kernel:0": k, "dense_1/bias:0": b},
        "bn": {f"bn/{n}:0": b for n in ("gamma", "beta", "moving_mean", "moving_variance")},
    }, config)
    with open_source(path) as src:  # type: ignore[attr-defined]
        inv = src.inventory()
        # a lone `dense_1` is what Keras' counter gives the second Dense a process built: named as a
        # fresh process names it (tests/formats/test_keras_naming.py); the native name stays
        assert inv.names[:2] == ("dense.kernel", "dense.bias")
        assert inv["dense.kernel"].native == "model_weights/dense_1/dense_1/kernel:0"
        assert inv["dense.kernel"].kind == "Dense"
        assert inv["bn.gamma"].kind == "BatchNormalization" and inv["bn.gamma"].attr("epsilon") == 1e-5
        assert np.array_equal(src.read("dense.kernel"), k)
    # Keras 2 weight names can repeat across nested models: prefix with the top-level layer.
    nested = h5_keras2(tmp_path / "nested.h5", {"enc": {"dense/kernel:0": k}, "dec": {"dense/kernel:0": k}})
    assert inventory_of(nested).names == ("enc.dense.kernel", "dec.dense.kernel")
    assert inventory_of(nested)["enc.dense.kernel"].kind == "Dense"


def test_keras_model_source(saved: tuple[Any, Path]) -> None:
    model, _ = saved
    src = open_source(model)
    inv = src.inventory()
    assert inv.label == "keras model" and inv.framework == "keras"
    assert inv.names == tuple(n for n, _ in keras_names(model))
    assert [n.split(".")[0] for n in inv.names if "dense" in n][:1] == ["dense"]  # not `dense_34`
    assert inv["bn.moving_mean"].kind == "BatchNormalization"
    assert inv["bn.gamma"].attr("epsilon") == pytest.approx(1e-3)
    assert inv["bn.gamma"].attr("momentum") == pytest.approx(0.99)
    assert inv["mha.query.kernel"].kind == "EinsumDense"
    assert inv["stem.kernel"].native == "stem/kernel"
    assert np.array_equal(src.read("stem.kernel"), model.get_layer("stem").kernel.numpy())
    unbuilt = keras.Sequential([keras.layers.Dense(3, name="Embedding-Token")])
    err = expect_wm("WM502", lambda: open_source(unbuilt))
    d = err.diagnostics[0]
    assert d.message == "Keras layer `Embedding-Token` has no variables yet (the model is not built)"
    assert d.hint == "Build the target (call it once on an input) before planning"


def test_an_unbuilt_layer_that_cannot_hold_variables_does_not_make_the_model_unbuilt() -> None:
    """A helper layer with Keras' default `build` and no sublayers, never called (keras-hub's vision rotary
    embedding), creates no variables: the model around it is read; one that overrides `build` is not."""
    import keras

    class Helper(keras.layers.Layer):
        def table(self, n: int) -> Any:
            return keras.ops.arange(n)

    class Lazy(keras.layers.Layer):
        def build(self, shape: Any) -> None:
            self.w = self.add_weight(shape=(shape[-1],), name="w")

    class Tower(keras.layers.Layer):
        def __init__(self, extra: keras.layers.Layer) -> None:
            super().__init__()
            self.dense, self.extra = keras.layers.Dense(2, name="proj"), extra

        def build(self, shape: Any) -> None:
            self.dense.build(shape)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    inp = keras.Input((3,))
    helped = keras.Model(inp, Tower(Helper(name="rotary"))(inp))
    assert open_source(helped).inventory().names == ("tower.proj.kernel", "tower.proj.bias")
    lazy = keras.Model(inp, Tower(Lazy(name="lazy"))(inp))
    assert expect_wm("WM502", lambda: open_source(lazy)).diagnostics[0].message.startswith("Keras layer `lazy`")


def test_hostile_keras_files(tmp_path: Path, saved: tuple[Any, Path]) -> None:
    _, d = saved
    ext = tmp_path / "ext.weights.h5"
    with h5py.File(ext, "w") as f:
        f.create_group("layers/dense/vars").attrs["name"] = "dense"
        f["layers/dense/vars/0"] = h5py.ExternalLink(str(d / "m.weights.h5"), "/layers/dense/vars/0")
    assert "link" in expect_wm("WM509", lambda: open_source(ext)).diagnostics[0].message
    stray = tmp_path / "stray.weights.h5"
    with h5py.File(stray, "w") as f:
        f.create_group("layers/dense/vars")
        f["layers/dense/oops"] = np.ones(2)
    expect_wm("WM509", lambda: open_source(stray))
    cycle = tmp_path / "cycle.weights.h5"
    with h5py.File(cycle, "w") as f:
        f.create_group("layers/dense/vars")["0"] = np.ones(2)
        f["layers/dense/loop"] = f["layers"]
    assert "reachable twice" in expect_wm("WM509", lambda: open_source(cycle)).diagnostics[0].message
    empty = tmp_path / "empty.weights.h5"
    h5py.File(empty, "w").close()
    expect_wm("WM509", lambda: open_source(empty))
    not_h5 = tmp_path / "garbage.weights.h5"
    not_h5.write_bytes(b"definitely not hdf5")
    expect_wm("WM509", lambda: open_source(not_h5))
    not_zip = tmp_path / "garbage.keras"
    not_zip.write_bytes(b"not a zip")
    expect_wm("WM509", lambda: open_source(not_zip))
    no_weights = tmp_path / "noweights.keras"
    with zipfile.ZipFile(no_weights, "w") as zf:
        zf.writestr("config.json", "{}")
    expect_wm("WM509", lambda: open_source(no_weights))
    bad_config = tmp_path / "badconfig.keras"
    with zipfile.ZipFile(bad_config, "w") as zf:
        zf.writestr("config.json", "{oops")
        zf.write(d / "m.weights.h5", "model.weights.h5")
    expect_wm("WM509", lambda: open_source(bad_config))
    legacy_broken = h5_keras2(tmp_path / "broken.h5", {"dense": {"dense/kernel:0": np.ones(2)}})
    with h5py.File(legacy_broken, "a") as f:
        del f["dense/dense/kernel:0"]
    expect_wm("WM509", lambda: open_source(legacy_broken))
    with KerasWeightsFile(d / "m.weights.h5") as src:
        expect_wm("WM503", lambda: src.read("stem.kernal"))


def test_deflated_keras_archive(tmp_path: Path, saved: tuple[Any, Path]) -> None:
    model, d = saved
    deflated = tmp_path / "deflated.keras"
    with zipfile.ZipFile(d / "m.keras") as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    assert {t.name: (t.shape, t.dtype) for t in inventory_of(deflated)} == _expected(model)


def test_tf_checkpoint(tmp_path: Path, saved: tuple[Any, Path]) -> None:
    tf = pytest.importorskip("tensorflow")
    model, _ = saved
    prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt" / "m"))
    for given in (prefix, prefix + ".index", str(tmp_path / "ckpt")):
        inv = inventory_of(given)
        assert inv.label == "tf checkpoint" and len(inv) == len(model.weights)
    with open_source(prefix) as src:  # type: ignore[attr-defined]
        assert "_CHECKPOINTABLE_OBJECT_GRAPH" in src.skipped
        assert any(s.startswith("save_counter") for s in src.skipped)
        t = src.inventory().tensors[0]
        assert t.native.endswith("/.ATTRIBUTES/VARIABLE_VALUE") and ".ATTRIBUTES" not in t.name
        assert all(not seg.startswith("_") for seg in t.name.split("."))
        shapes = sorted(tuple(v.shape) for v in model.weights)
        assert sorted(m.shape for m in src.inventory()) == shapes
        assert isinstance(src.read(t.name), np.ndarray)
    for f in os.listdir(tmp_path / "ckpt"):
        if ".data-" in f:
            (tmp_path / "ckpt" / f).write_bytes(b"")
    with open_source(prefix) as src:  # type: ignore[attr-defined]
        expect_wm("WM513", lambda: src.read(src.inventory().tensors[0].name))
    (tmp_path / "fake.index").write_bytes(b"garbage")
    expect_wm("WM513", lambda: open_source(tmp_path / "fake.index"))


def test_tf_checkpoint_state_file_and_data_files(tmp_path: Path, saved: tuple[Any, Path]) -> None:
    """A folder's `checkpoint` file may name a prefix inside the folder only (also through symlinks),
    and every data shard must be there, as a regular file, before TensorFlow opens anything."""
    import shutil

    tf = pytest.importorskip("tensorflow")
    model, _ = saved
    folder = tmp_path / "ckpt"
    prefix = tf.train.Checkpoint(model=model).write(str(folder / "m"))
    for named in ("m", prefix, "./m"):  # relative, absolute inside the folder
        (folder / "checkpoint").write_text(f'model_checkpoint_path: "{named}"\n')
        assert len(inventory_of(folder)) == len(model.weights), named
    shutil.copytree(folder, tmp_path / "other")
    (folder / "link").symlink_to(tmp_path / "other")
    (folder / "checkpoint").write_text('model_checkpoint_path: "link/m"\n')
    err = expect_wm("WM513", lambda: inventory_of(folder)).diagnostics[0]
    assert err.message == f"`{folder / 'checkpoint'}` names the checkpoint `{folder / 'link' / 'm'}`, which is " \
        "outside its folder; wmap reads only checkpoints inside the folder it is given"
    (folder / "checkpoint").write_text("this is not a text proto {{{\n")
    assert "names no checkpoint (it is empty or not a checkpoint state file)" in \
        expect_wm("WM513", lambda: inventory_of(folder)).diagnostics[0].message
    data = next(folder.glob("m.data-*"))
    data.unlink()
    err = expect_wm("WM513", lambda: inventory_of(prefix)).diagnostics[0]
    assert err.message == f"`{prefix}`: the checkpoint file `{data}` is missing"
    os.mkfifo(data)
    assert "is not a regular file" in expect_wm("WM513", lambda: inventory_of(prefix)).diagnostics[0].message


def test_a_legacy_h5_names_a_process_numbered_layer_like_the_model(tmp_path: Path) -> None:
    """A GRU built after another in the same process is `gru_1` to Keras; its variables sit under its
    `gru_cell`, so the layer's own class comes from the file's model config. Read back, it is named as
    the built model names it (`gru`), not as the process counter did."""
    keras.layers.GRU(2)  # another GRU first: the model's own is numbered `gru_1` (or later) by Keras
    keras.utils.set_random_seed(0)
    model = keras_functional()
    assert any(la.name.startswith("gru_") for la in model.layers)
    model.save(tmp_path / "m.h5")
    with open_source(tmp_path / "m.h5") as src:  # type: ignore[attr-defined]
        assert {t.name for t in src.inventory()} == set(_expected(model))


def test_an_unbuilt_layer_that_made_its_variables_in_init_is_read() -> None:
    """SmolLM3's rotary embedding adds its `inv_freq` in `__init__` and is called only in the layers that use
    RoPE: never called, never built, yet it holds its variable, so the model around it is read, with it."""
    class Table(keras.layers.Layer):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.freq = self.add_weight(shape=(2,), name="freq", trainable=False)

        def build(self, shape: Any) -> None:
            super().build(shape)

    class Block(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__(name="block")
            self.dense, self.table = keras.layers.Dense(2, name="proj"), Table(name="table")

        def build(self, shape: Any) -> None:
            self.dense.build(shape)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    inp = keras.Input((3,))
    block = Block()
    model = keras.Model(inp, block(inp))
    assert not block.table.built
    # `table.freq`, as Keras paths it: the variable was made before the table was attached to the block
    assert set(open_source(model).inventory().names) == {"block.proj.kernel", "block.proj.bias", "table.freq"}
