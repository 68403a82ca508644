"""safetensors: reading, hostile headers, sharded indexes, and the streaming writer."""

from __future__ import annotations

import errno
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from tests.support.format_fixtures import entry, expect_wm, numpy_weights, raw_safetensors
from wmap.core.inventory import TensorMeta
from wmap.formats import inventory_of, open_source
from wmap.formats.safetensors_file import SafetensorsFile
from wmap.sinks.safetensors_writer import SafetensorsWriter


@pytest.fixture
def st_file(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray[Any, Any]]]:
    weights = numpy_weights()
    weights["bf16"] = np.linspace(-2, 2, 6, dtype=np.float32).astype(ml_dtypes.bfloat16).reshape(2, 3)
    path = tmp_path / "model.safetensors"
    save_file(weights, str(path), metadata={"format": "np"})
    return path, weights


def test_inventory_and_reads(st_file: tuple[Path, dict[str, Any]]) -> None:
    path, weights = st_file
    with SafetensorsFile(path) as src:
        inv = src.inventory()
        assert set(inv.names) == set(weights)
        assert inv.label == "safetensors" and inv.framework is None
        assert src.metadata == {"format": "np"}
        for name, value in weights.items():
            meta = inv[name]
            assert meta.shape == value.shape and meta.dtype == np.dtype(value.dtype).name
            got = src.read(name)
            assert got.dtype == value.dtype and np.array_equal(got, value)
            assert not got.flags.writeable and not got.flags.owndata  # a view on the mapping
    assert inventory_of(str(path), framework="torch").framework == "torch"


def test_torch_reads_are_zero_copy_and_private(st_file: tuple[Path, dict[str, Any]]) -> None:
    torch = pytest.importorskip("torch")
    path, weights = st_file
    before = path.read_bytes()
    with SafetensorsFile(path) as src:
        t = src.read("bf16", "torch")
        assert t.dtype == torch.bfloat16
        assert torch.equal(t.float(), torch.from_numpy(weights["bf16"].astype(np.float32)))
        w = src.read("encoder.weight", "torch")
        w.mul_(0)  # copy-on-write: never reaches the file, never segfaults
    assert path.read_bytes() == before


def test_inventory_reads_only_the_header_of_a_14gb_file(tmp_path: Path) -> None:
    big = 14 * 1024**3
    header = {"small": entry("F32", [2], 0, 8), "huge": entry("F32", [big // 4], 8, 8 + big)}
    path = raw_safetensors(tmp_path / "huge.safetensors", header, np.ones(2, np.float32).tobytes())
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size + big)  # sparse: no data blocks on disk
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    inv = inventory_of(path)
    with SafetensorsFile(path) as src:
        small = src.read("small")
        assert np.array_equal(small, np.ones(2, np.float32))
    assert time.perf_counter() - start < 1.0
    assert inv["huge"].shape == (big // 4,)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50 * 1024  # KiB


@pytest.mark.parametrize("case,code", [
    ("empty", "WM504"), ("short", "WM504"), ("past_eof", "WM504"), ("huge_header", "WM504"),
    ("bad_json", "WM504"), ("bad_utf8", "WM504"), ("not_object", "WM504"), ("dup_key", "WM504"),
    ("bad_entry", "WM504"), ("negative_dim", "WM504"), ("bad_metadata", "WM504"),
    ("unknown_dtype", "WM506"), ("out_of_range", "WM505"), ("overlap", "WM505"),
    ("size_mismatch", "WM505"), ("hole", "WM505"), ("trailing", "WM505"), ("reversed", "WM505"),
])
def test_hostile_headers(tmp_path: Path, case: str, code: str) -> None:
    p = tmp_path / f"{case}.safetensors"
    data16 = bytes(16)
    if case == "empty":
        p.write_bytes(b"")
    elif case == "short":
        p.write_bytes(b"\x01\x02\x03")
    elif case == "past_eof":
        raw_safetensors(p, {"a": entry("F32", [1], 0, 4)}, bytes(4), declared_len=10_000)
    elif case == "huge_header":
        raw_safetensors(p, b"{}", declared_len=200 * 1024 * 1024)
    elif case == "bad_json":
        raw_safetensors(p, b"{not json")
    elif case == "bad_utf8":
        raw_safetensors(p, b'{"\xff\xfe": 1}')
    elif case == "not_object":
        raw_safetensors(p, b"[1, 2]")
    elif case == "dup_key":
        raw_safetensors(p, b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                           b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', bytes(4))
    elif case == "bad_entry":
        raw_safetensors(p, {"a": {"dtype": "F32"}})
    elif case == "negative_dim":
        raw_safetensors(p, {"a": entry("F32", [-1], 0, 4)}, bytes(4))
    elif case == "bad_metadata":
        raw_safetensors(p, {"__metadata__": {"k": 1}})
    elif case == "unknown_dtype":
        raw_safetensors(p, {"a": entry("Q7", [1], 0, 4)}, bytes(4))
    elif case == "out_of_range":
        raw_safetensors(p, {"a": entry("F32", [4], 0, 16)}, bytes(8))
    elif case == "overlap":
        raw_safetensors(p, {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}, data16)
    elif case == "size_mismatch":
        raw_safetensors(p, {"a": entry("F32", [3], 0, 16)}, data16)
    elif case == "hole":
        raw_safetensors(p, {"a": entry("F32", [2], 0, 8), "b": entry("F32", [1], 12, 16)}, data16)
    elif case == "trailing":
        raw_safetensors(p, {"a": entry("F32", [2], 0, 8)}, data16)
    elif case == "reversed":
        raw_safetensors(p, {"a": entry("F32", [0], 8, 4)}, bytes(8))
    err = expect_wm(code, lambda: open_source(p))
    assert str(p) in err.diagnostics[0].message


def test_missing_tensor_and_missing_file(st_file: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, _ = st_file
    with SafetensorsFile(path) as src:
        err = expect_wm("WM503", lambda: src.read("encoder.weigth"))
        assert "encoder.weight" in (err.diagnostics[0].hint or "")
    err = expect_wm("WM500", lambda: open_source(str(tmp_path / "modle.safetensors")))
    assert "model.safetensors" in (err.diagnostics[0].hint or "")


# -- sharded ------------------------------------------------------------------------------

def _sharded(tmp_path: Path, weight_map: dict[str, str] | None = None, shards: dict[str, dict[str, Any]] | None = None
             ) -> Path:
    w = numpy_weights()
    shards = shards or {"model-00001-of-00002.safetensors": {k: w[k] for k in list(w)[:3]},
                        "model-00002-of-00002.safetensors": {k: w[k] for k in list(w)[3:]}}
    for name, tensors in shards.items():
        save_file(tensors, str(tmp_path / name))
    if weight_map is None:
        weight_map = {k: name for name, tensors in shards.items() for k in tensors}
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}))
    return index


def test_sharded_reads_and_directory_dispatch(tmp_path: Path) -> None:
    index = _sharded(tmp_path)
    weights = numpy_weights()
    with open_source(tmp_path) as src:  # type: ignore[attr-defined]
        inv = src.inventory()
        assert inv.label == "sharded safetensors"
        assert set(inv.names) == set(weights)
        for k, v in weights.items():
            assert np.array_equal(src.read(k), v)
    assert inventory_of(index).names == inv.names


def test_sharded_hostile(tmp_path: Path) -> None:
    w = numpy_weights()
    a, b = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    names = list(w)
    cases: list[tuple[dict[str, str] | None, dict[str, Any] | None, str]] = [
        ({**{k: a for k in names}, "ghost": "model-00003-of-00003.safetensors"}, None, "does not exist"),
        ({**{k: a for k in names[:3]}, **{k: b for k in names[3:]}, "ghost": a}, None, "does not hold"),
        ({k: a for k in names[:3]} | {k: b for k in names[4:]}, None, "does not list"),
        ({k: a for k in names[:4]} | {k: b for k in names[4:]},
         {a: {k: w[k] for k in names[:4]}, b: {k: w[k] for k in names[3:]}}, "maps it to"),
        ({"x": "../../etc/passwd"}, None, "outside"),
    ]
    for i, (weight_map, shards, words) in enumerate(cases):
        d = tmp_path / f"case{i}"
        d.mkdir()
        index = _sharded(d, weight_map, shards)
        err = expect_wm("WM507", lambda index=index: open_source(index))
        assert words in err.diagnostics[0].message
    d = tmp_path / "dup"
    d.mkdir()
    save_file({"x": w["steps"]}, str(d / a))
    (d / "model.safetensors.index.json").write_text(f'{{"weight_map": {{"x": "{a}", "x": "{a}"}}}}')
    assert "more than once" in expect_wm("WM507", lambda: open_source(d)).diagnostics[0].message
    (d / "model.safetensors.index.json").write_text("{oops")
    expect_wm("WM507", lambda: open_source(d / "model.safetensors.index.json"))
    (d / "model.safetensors.index.json").write_text('{"metadata": {}}')
    expect_wm("WM507", lambda: open_source(d / "model.safetensors.index.json"))


# -- writer -------------------------------------------------------------------------------

def _metas(weights: dict[str, Any]) -> list[TensorMeta]:
    return [TensorMeta(k, tuple(v.shape), np.dtype(v.dtype).name) for k, v in weights.items()]


def _write(path: Path, weights: dict[str, Any], shard_size: int | None = None) -> None:
    with SafetensorsWriter(path, _metas(weights), {"producer": "wmap"}, shard_size) as w:
        for k, v in weights.items():
            w.write(k, v)


def test_writer_roundtrip_single_file_is_deterministic(tmp_path: Path) -> None:
    weights = numpy_weights()
    weights["bf16"] = np.ones((2, 2), dtype=ml_dtypes.bfloat16)
    _write(tmp_path / "a.safetensors", weights)
    _write(tmp_path / "b.safetensors", weights)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    with safe_open(str(tmp_path / "a.safetensors"), "np") as f:
        assert f.metadata() == {"producer": "wmap"}
        assert set(f.keys()) == set(weights)
        for k in weights:
            if k != "bf16":
                assert np.array_equal(f.get_tensor(k), weights[k])
    with SafetensorsFile(tmp_path / "a.safetensors") as src:
        assert np.array_equal(src.read("bf16"), weights["bf16"])
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors", "b.safetensors"]


def test_writer_torch_tensors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from tests.support.format_fixtures import torch_weights

    weights = torch_weights()
    metas = [TensorMeta(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in weights.items()]
    with SafetensorsWriter(tmp_path / "t.safetensors", metas, {}) as w:
        for k, v in weights.items():
            w.write(k, v)
    from safetensors.torch import load_file

    loaded = load_file(str(tmp_path / "t.safetensors"))
    for k, v in weights.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape
        assert torch.equal(loaded[k].reshape(-1).view(torch.uint8), v.reshape(-1).view(torch.uint8))


def test_writer_sharded_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    weights = {f"layers.{i}.weight": rng.standard_normal((16, 16)).astype(np.float32) for i in range(5)}
    out = tmp_path / "ckpt"
    _write(out, weights, shard_size=2 * 16 * 16 * 4)
    files = sorted(os.listdir(out))
    assert files == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                     "model-00003-of-00003.safetensors", "model.safetensors.index.json"]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 5 * 16 * 16 * 4
    with open_source(out) as src:  # type: ignore[attr-defined]
        for k, v in weights.items():
            assert np.array_equal(src.read(k), v)
    # Re-writing unsharded replaces the layout: the stale index must not shadow the new file.
    _write(out, weights)
    assert sorted(os.listdir(out)) == ["model.safetensors"]
    _write(out, weights, shard_size=3 * 16 * 16 * 4)
    assert sorted(os.listdir(out)) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                       "model.safetensors.index.json"]


def test_writer_contract_errors(tmp_path: Path) -> None:
    weights = numpy_weights()
    metas = _metas(weights)
    path = tmp_path / "x.safetensors"
    w = SafetensorsWriter(path, metas, {})
    expect_wm("WM514", lambda: w.write("head.weight", weights["head.weight"]))
    expect_wm("WM514", lambda: w.write("encoder.weight", weights["encoder.weight"].T))
    expect_wm("WM514", lambda: w.write("encoder.weight", weights["encoder.weight"].astype(np.float64)))
    w.write("encoder.weight", weights["encoder.weight"])
    expect_wm("WM514", w.commit)
    assert os.listdir(tmp_path) == []
    expect_wm("WM512", lambda: SafetensorsWriter(path, metas, {}, shard_size=64))
    expect_wm("WM514", lambda: SafetensorsWriter(path, metas + metas[:1], {}))


def test_writer_output_path_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = numpy_weights()
    metas = _metas(weights)
    (tmp_path / "isdir.safetensors").mkdir()
    err = expect_wm("WM512", lambda: SafetensorsWriter(tmp_path / "isdir.safetensors", metas, {}))
    assert "is a directory" in err.diagnostics[0].message
    (tmp_path / "afile").write_text("x")
    expect_wm("WM512", lambda: SafetensorsWriter(tmp_path / "afile", metas, {}))
    expect_wm("WM512", lambda: SafetensorsWriter(tmp_path / "afile" / "x.safetensors", metas, {}))
    expect_wm("WM512", lambda: SafetensorsWriter(tmp_path / "nodir" / "x.safetensors", metas, {}))

    def denied(*a: Any, **k: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr("tempfile.mkstemp", denied)
        err = expect_wm("WM512", lambda: SafetensorsWriter(tmp_path / "y.safetensors", metas, {}))
        assert "Permission denied" in err.diagnostics[0].message
    assert sorted(os.listdir(tmp_path)) == ["afile", "isdir.safetensors"]


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_writer_disk_full_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    weights = numpy_weights()
    path = tmp_path / "m.safetensors"
    _write(path, weights)
    before = path.read_bytes()
    new = {k: v + 1 if v.dtype != bool else v for k, v in weights.items()}

    def full(*a: Any, **k: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    w = SafetensorsWriter(path, _metas(new), {})
    if where == "write":
        class Full:
            def write(self, data: Any) -> int:
                full()
                return 0

            def close(self) -> None:
                pass

        w._files[0].close()
        w._files[0] = Full()  # type: ignore[assignment]
        err = expect_wm("WM512", lambda: w.write("encoder.weight", new["encoder.weight"]))
    else:
        for k, v in new.items():
            w.write(k, v)
        monkeypatch.setattr(os, "fsync", full)
        err = expect_wm("WM512", w.commit)
    assert "No space left" in err.diagnostics[0].message
    assert "free disk space" in (err.diagnostics[0].hint or "")
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_writer_abort_on_exception(tmp_path: Path) -> None:
    weights = numpy_weights()
    with pytest.raises(RuntimeError), SafetensorsWriter(tmp_path / "z.safetensors", _metas(weights), {}) as w:
        w.write("encoder.weight", weights["encoder.weight"])
        raise RuntimeError("executor failed")
    assert os.listdir(tmp_path) == []


def test_large_mappings_are_released_in_the_background_and_small_ones_at_once(tmp_path: Path) -> None:
    """A reader's close returns before a large mapping's page tables are torn down, but the
    mapping does get closed (and a small one is closed before close returns)."""
    from wmap.formats import _common

    big = {"w": np.ones(_common.RELEASE_IN_BACKGROUND // 4, np.float32)}
    small = {"w": np.ones(16, np.float32)}
    mappings = []
    for name, tensors in (("big", big), ("small", small)):
        save_file(tensors, str(tmp_path / f"{name}.safetensors"))
        src = SafetensorsFile(str(tmp_path / f"{name}.safetensors"))
        assert float(src.read("w").sum()) == tensors["w"].size  # maps the file
        mm = src._mm
        assert mm is not None
        src.close()
        mappings.append(mm)
    assert mappings[1].closed
    _common._releaser.submit(lambda: None).result(timeout=30)  # the releaser runs jobs in order
    assert mappings[0].closed
