"""PyTorch: torch.save files (safe loading), nn.Module and mapping sources, factories."""

from __future__ import annotations

import pickle
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.format_fixtures import Evil, expect_wm, numpy_weights, tiny_torch_model, torch_weights
from wmap.formats import inventory_of, open_source
from wmap.formats.memory import MappingSource, TorchModuleSource
from wmap.formats.torch_file import TorchFile
from wmap.run.factory import build_factory
from wmap.run.resolve import read_inventory

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _same(a: Any, b: Any) -> bool:
    return a.dtype == b.dtype and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def test_state_dict_file_inventory_and_reads(tmp_path: Path) -> None:
    weights = torch_weights()
    path = tmp_path / "w.pt"
    torch.save(weights, path)
    with TorchFile(path) as src:
        inv = src.inventory()
        assert inv.label == "torch file" and inv.framework == "torch"
        assert inv.names == tuple(weights)
        assert inv["emb.weight"].dtype == "bfloat16" and inv["fp8"].dtype == "float8_e4m3fn"
        for k, v in weights.items():
            assert _same(src.read(k, "torch"), v)
            arr = src.read(k)
            assert isinstance(arr, np.ndarray) and arr.shape == tuple(v.shape)
        assert src.read("emb.weight").dtype.name == "bfloat16"


def test_wrapped_checkpoint_skips_non_tensors_and_finds_ties(tmp_path: Path) -> None:
    shared = torch.randn(4, 4)
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "model": {"a.weight": shared, "b.weight": shared, "step": 10},
                "optimizer": {"lr": 0.1}}, path)
    with open_source(path) as src:  # type: ignore[attr-defined]
        inv = src.inventory()
        assert "under `model`" in inv.label
        assert inv.names == ("a.weight", "b.weight")
        assert inv.tied == (("b.weight", "a.weight"),)
        assert src.skipped == ("step",)


def test_legacy_non_zip_file_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "legacy.bin"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    with open_source(path) as src:  # type: ignore[attr-defined]
        assert torch.equal(src.read("w", "torch"), torch.ones(3))


@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_code_is_refused_and_never_runs(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    if legacy:
        path.write_bytes(pickle.dumps({"w": 1, "payload": Evil(marker)}, protocol=2))
    else:
        torch.save({"w": torch.ones(2), "payload": Evil(marker)}, path)
    err = expect_wm("WM508", lambda: open_source(path))
    assert "refuses to unpickle code" in err.diagnostics[0].message
    assert "`exec`" in err.diagnostics[0].message
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"payload": Evil(marker)}, protocol=4))  # rejected earlier, by opcode
    err = expect_wm("WM508", lambda: open_source(path))
    assert not marker.exists()


def test_hostile_torch_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint at all")
    expect_wm("WM510", lambda: open_source(garbage))
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(100)}, good)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:200])
    expect_wm("WM510", lambda: open_source(trunc))
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.ones(2), tensor)
    assert "not a state dict" in expect_wm("WM510", lambda: open_source(tensor)).diagnostics[0].message
    nothing = tmp_path / "nothing.pt"
    torch.save({"epoch": 1, "note": "x"}, nothing)
    assert "no tensors" in expect_wm("WM510", lambda: open_source(nothing)).diagnostics[0].message
    odd = tmp_path / "odd.pt"
    torch.save({"c": torch.ones(2).to(torch.float8_e4m3fnuz)}, odd)
    expect_wm("WM506", lambda: open_source(odd))
    with TorchFile(good) as src:
        expect_wm("WM503", lambda: src.read("v"))


def test_module_source_kinds_attrs_ties_on_meta() -> None:
    with torch.device("meta"):
        model = tiny_torch_model()
    src = open_source(model)
    assert isinstance(src, TorchModuleSource)
    inv = src.inventory()
    assert inv.label == "torch model" and inv.framework == "torch"
    assert inv.names == tuple(model.state_dict())
    assert inv["conv.weight"].kind == "Conv2d" and inv["conv.weight"].attr("groups") == 1
    assert inv["conv.weight"].attr("in_channels") == 3
    assert inv["bn.running_var"].kind == "BatchNorm2d"
    assert inv["bn.weight"].attr("eps") == 1e-4 and inv["bn.weight"].attr("momentum") == 0.2
    assert inv.tied == (("head.weight", "emb.weight"),)
    assert src.read("conv.weight", "torch").device.type == "meta"
    assert "meta device" in expect_wm("WM503", lambda: src.read("conv.weight")).diagnostics[0].message


def test_module_source_reads_live_tensors() -> None:
    model = tiny_torch_model()
    src = open_source(model)
    t = src.read("conv.weight", "torch")
    assert t.data_ptr() == model.conv.weight.data_ptr() and not t.requires_grad
    arr = src.read("emb.weight")
    assert np.shares_memory(arr, model.emb.weight.detach().numpy())


def test_mapping_sources() -> None:
    weights = numpy_weights()
    weights["alias"] = weights["encoder.weight"]
    src = open_source({**weights, "epoch": 3})
    assert isinstance(src, MappingSource)
    inv = src.inventory()
    assert inv.framework is None and src.skipped == ("epoch",)
    assert inv.tied == (("alias", "encoder.weight"),)
    assert src.read("head.weight") is weights["head.weight"]
    assert torch.equal(src.read("steps", "torch"), torch.arange(5))
    tw = torch_weights()
    inv = inventory_of(tw)
    assert inv.framework == "torch" and inv["emb.weight"].dtype == "bfloat16"
    assert inventory_of(tw, framework="keras").framework == "keras"
    expect_wm("WM501", lambda: inventory_of(tw, framework="jax"))


def test_factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    mod = "wmap_test_factories_mod"
    (tmp_path / f"{mod}.py").write_text(textwrap.dedent("""
        import torch

        def big():
            return torch.nn.Linear(4096, 4096)

        def broken():
            raise ValueError("bad width")

        class Zoo:
            @staticmethod
            def tiny():
                return torch.nn.Sequential(torch.nn.Linear(2, 3))

        NOT_CALLABLE = 3
    """))
    monkeypatch.delitem(sys.modules, mod, raising=False)
    try:
        model = build_factory(f"{mod}:big")
        assert model.weight.device.type == "meta"
        inv = read_inventory(f"{mod}:Zoo.tiny")
        assert inv.names == ("0.weight", "0.bias") and inv["0.weight"].kind == "Linear"
        assert build_factory(f"{mod}:big", device=None).weight.device.type == "cpu"
        assert "bad width" in expect_wm("WM511", lambda: build_factory(f"{mod}:broken")).diagnostics[0].message
        expect_wm("WM511", lambda: build_factory(f"{mod}:missing"))
        expect_wm("WM511", lambda: build_factory(f"{mod}:NOT_CALLABLE"))
        err = expect_wm("WM511", lambda: build_factory("no_such_module_xyz:make"))
        assert "No module named" in err.diagnostics[0].message
        expect_wm("WM511", lambda: build_factory("not a spec"))
    finally:
        sys.modules.pop(mod, None)


# -- torch.load(mmap=True) checked: storages against members, views against storages ---------------


def _rezip(src: Path, dst: Path, edit: Any, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info)))
    return dst


def test_shared_storages_views_and_broadcast_buffers_still_load(tmp_path: Path) -> None:
    """Tied weights, a slice of a bigger storage, a transposed view, `expand`ed buffers (HF
    `position_ids`) and a small zero-stride broadcast are what real checkpoints hold."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = {"emb.weight": base, "head.weight": base, "rows": base[1:3], "cols": base[:, 2:4], "t": base.t(),
          "position_ids": torch.arange(512).expand((1, -1)), "bias": torch.zeros(1).expand(768)}
    path = tmp_path / "views.pt"
    torch.save(sd, path)
    with TorchFile(path) as src:
        assert ("head.weight", "emb.weight") in src.tied
        for k, v in sd.items():
            assert torch.equal(src.read(k, "torch"), v), k


def test_storage_scan_reads_what_the_pickle_declares(tmp_path: Path) -> None:
    from wmap.formats.torch_file import _StorageScan

    path = tmp_path / "w.pt"
    torch.save({"a": torch.ones(2, 3), "b": torch.ones(4, dtype=torch.bfloat16), "c": torch.ones(5)[1:]}, path)
    with zipfile.ZipFile(path) as zf:
        scan = _StorageScan(zf.read("w/data.pkl"))
        scan.load()
        assert scan.storages == {"0": ("FloatStorage", 6), "1": ("BFloat16Storage", 4), "2": ("FloatStorage", 5)}
        assert [zf.getinfo(f"w/data/{k}").file_size for k in "012"] == [24, 8, 20]


def test_storages_must_match_their_members(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2, 3)}, good)
    cut = _rezip(good, tmp_path / "cut.pt", lambda n, b: b[:4] if n.endswith("/data/0") else b)
    err = expect_wm("WM510", lambda: TorchFile(cut))
    assert err.diagnostics[0].message == f"`{cut}`: storage `good/data/0` declares 24 bytes, but its archive member " \
        "holds 4"
    longer = _rezip(good, tmp_path / "long.pt", lambda n, b: b + bytes(8) if n.endswith("/data/0") else b)
    assert "holds 32" in expect_wm("WM510", lambda: TorchFile(longer)).diagnostics[0].message
    deflated = _rezip(good, tmp_path / "deflated.pt", lambda n, b: b, zipfile.ZIP_DEFLATED)
    err = expect_wm("WM510", lambda: TorchFile(deflated))  # torch.load(mmap=True) would map the deflate stream
    assert "storage member `good/data/0` is compressed" in err.diagnostics[0].message


def test_views_must_fit_and_not_amplify(tmp_path: Path) -> None:
    wide = tmp_path / "wide.pt"
    torch.save({"w": torch.ones(1).as_strided((2**20, 4), (0, 0))}, wide)  # 16 MiB from 4 bytes
    err = expect_wm("WM510", lambda: TorchFile(wide)).diagnostics[0]
    assert "`w` declares 16,777,216 bytes over 4 stored bytes (zero or overlapping stride: shape (1048576, 4), " \
        "stride (0, 0), offset 0)" in err.message
    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, good)
    past = _rezip(good, tmp_path / "past.pt",  # the pickle's size (2, 3) edited to (2, 9): past the storage
                  lambda n, b: b.replace(b"K\x02K\x03\x86", b"K\x02K\x09\x86", 1) if n.endswith("data.pkl") else b)
    expect_wm("WM510", lambda: TorchFile(past))


@pytest.mark.parametrize("layout", ["coo", "csr", "nested"])
def test_sparse_and_nested_tensors_are_refused(tmp_path: Path, layout: str) -> None:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        value = {"coo": lambda: torch.eye(3).to_sparse(), "csr": lambda: torch.eye(3).to_sparse_csr(),
                 "nested": lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])}[layout]()
    path = tmp_path / f"{layout}.pt"
    torch.save({"w": value, "b": torch.ones(2)}, path)
    err = expect_wm("WM510", lambda: TorchFile(path)).diagnostics[0]
    what = "a nested tensor" if layout == "nested" else f"a tensor with the sparse_{layout} layout"
    assert err.message == f"`{path}`: `w` is {what}, which wmap does not read (dense tensors only)"
