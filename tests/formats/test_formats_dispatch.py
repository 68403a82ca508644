"""`open_source` dispatch: suffixes, magic bytes, directories, objects; no framework imports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.support import paths
from tests.support.format_fixtures import expect_wm, numpy_weights
from wmap.formats import inventory_of, open_source
from wmap.formats.memory import MappingSource

ROOT = paths.ROOT


def _keras3_h5(path: Path) -> Path:
    """A Keras 3 `.weights.h5` laid out as Keras 3.15 writes it (see test_formats_keras)."""
    with h5py.File(path, "w") as f:
        f.create_group("vars").attrs["name"] = "functional"
        f.create_group("layers/input_layer/vars").attrs["name"] = "input_layer"
        g = f.create_group("layers/dense/vars")
        g.attrs["name"] = "head"
        g["0"] = np.ones((4, 2), np.float32)
        g["1"] = np.zeros(2, np.float32)
    return path


def test_readers_import_no_framework(tmp_path: Path) -> None:
    save_file(numpy_weights(), str(tmp_path / "a.safetensors"))
    np.savez(tmp_path / "b.npz", **numpy_weights())
    _keras3_h5(tmp_path / "c.weights.h5")
    code = textwrap.dedent(f"""
        import sys
        from wmap.formats import inventory_of, open_source
        from wmap.sinks.safetensors_writer import SafetensorsWriter
        names = [inventory_of({str(tmp_path)!r} + "/" + f).names for f in ("a.safetensors", "b.npz", "c.weights.h5")]
        assert names[2] == ("head.kernel", "head.bias"), names
        src = open_source({str(tmp_path)!r} + "/a.safetensors")
        src.read("encoder.weight")
        heavy = [m for m in ("torch", "tensorflow", "keras", "jax") if m in sys.modules]
        assert not heavy, heavy
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_magic_bytes_and_directories(tmp_path: Path) -> None:
    weights = numpy_weights()
    save_file(weights, str(tmp_path / "weights.dat"))
    assert inventory_of(tmp_path / "weights.dat").label == "safetensors"
    np.savez(tmp_path / "arrays.npz", **weights)
    (tmp_path / "arrays.bin2").write_bytes((tmp_path / "arrays.npz").read_bytes())
    assert inventory_of(tmp_path / "arrays.bin2").label == "npz"
    _keras3_h5(tmp_path / "noext")
    assert inventory_of(tmp_path / "noext").label == "keras weights"
    (tmp_path / "mystery.xyz").write_bytes(b"\x00\x01nothing we know")
    expect_wm("WM501", lambda: open_source(tmp_path / "mystery.xyz"))

    hf = tmp_path / "hf"
    hf.mkdir()
    save_file(weights, str(hf / "model.safetensors"))
    (hf / "config.json").write_text("{}")
    assert inventory_of(hf).label == "safetensors"
    many = tmp_path / "many"
    many.mkdir()
    for i in range(2):
        save_file(weights, str(many / f"part{i}.safetensors"))
    assert "several" in expect_wm("WM501", lambda: open_source(many)).diagnostics[0].message
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_wm("WM501", lambda: open_source(empty))


def test_objects(tmp_path: Path) -> None:
    src = MappingSource(numpy_weights())
    assert open_source(src) is src
    assert len(inventory_of(src)) == len(numpy_weights())
    assert src.read("steps") is not None  # not closed by inventory_of
    expect_wm("WM501", lambda: open_source(42))
    expect_wm("WM501", lambda: open_source([1, 2]))


def test_torch_sharded_bin_index(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"a": torch.ones(2)}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.zeros(3)}, tmp_path / "pytorch_model-00002-of-00002.bin")
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {
        "a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}))
    with open_source(tmp_path, framework="pytorch") as src:  # type: ignore[attr-defined]
        inv = src.inventory()
        assert inv.label == "sharded torch file" and inv.framework == "torch"
        assert torch.equal(src.read("b", "torch"), torch.zeros(3))
