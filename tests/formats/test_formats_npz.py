"""numpy .npz: header-only inventories, zero-copy stored members, hostile archives."""

from __future__ import annotations

import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from tests.support.format_fixtures import expect_wm, numpy_weights
from wmap.formats import inventory_of, open_source
from wmap.formats.npz_file import NpzFile


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_roundtrip(tmp_path: Path, compressed: bool) -> None:
    weights = numpy_weights()
    weights["fortran"] = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    weights["big_endian"] = np.arange(4, dtype=">i4")
    path = tmp_path / "w.npz"
    (np.savez_compressed if compressed else np.savez)(path, **weights)
    with NpzFile(path) as src:
        inv = src.inventory()
        assert inv.label == "npz" and inv.names == tuple(weights)
        assert inv["big_endian"].dtype == "int32" and inv["head.weight"].dtype == "float16"
        for k, v in weights.items():
            got = src.read(k)
            assert np.array_equal(got, v) and got.dtype.isnative and not got.flags.writeable
        if not compressed:
            assert not src.read("encoder.weight").flags.owndata  # a view on the mapping
    torch = pytest.importorskip("torch")
    with open_source(path) as s:  # type: ignore[attr-defined]
        assert torch.equal(s.read("steps", "torch"), torch.arange(5))


def test_npz_hostile(tmp_path: Path) -> None:
    obj = tmp_path / "obj.npz"
    np.savez(obj, ok=np.ones(2), bad=np.array([{"a": 1}], dtype=object))
    assert "refuses to unpickle" in expect_wm("WM508", lambda: open_source(obj)).diagnostics[0].message
    text = tmp_path / "text.npz"
    np.savez(text, s=np.array(["a", "b"]))
    expect_wm("WM506", lambda: open_source(text))
    bf16 = tmp_path / "bf16.npz"
    np.savez(bf16, b=np.ones(3, dtype=ml_dtypes.bfloat16))
    assert "|V2" in (expect_wm("WM506", lambda: open_source(bf16)).diagnostics[0].hint or "")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    expect_wm("WM510", lambda: open_source(corrupt))
    badmember = tmp_path / "badmember.npz"
    with zipfile.ZipFile(badmember, "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00garbage")
    expect_wm("WM510", lambda: open_source(badmember))
    good = tmp_path / "good.npz"
    np.savez(good, a=np.ones(1000))
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[:-3000])
    expect_wm("WM510", lambda: inventory_of(trunc))
    with NpzFile(good) as src:
        expect_wm("WM503", lambda: src.read("b"))
