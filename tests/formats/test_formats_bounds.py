"""The expansion bound and the zip layout checks every zip-based reader shares (`wmap.formats.bounds`),
and what they mean for `.npz` archives: short members, members that lie about their size, deflate
bombs refused from their declared sizes (never inflated), and normal archives that still load."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.hostile.cases_formats2 import deflate_bomb, npy, npy_header, raw_zip, stored
from tests.support.format_fixtures import expect_wm
from wmap.formats import bounds, inventory_of
from wmap.formats.npz_file import NpzFile


def _members(path: Path) -> dict[str, bounds.Member]:
    with zipfile.ZipFile(path) as zf:
        return bounds.members(zf, str(path), "WM510")


def test_expansion_bound() -> None:
    assert bounds.expansion_ok(bounds.FREE_BYTES, 0)  # small items are always allowed
    assert not bounds.expansion_ok(bounds.FREE_BYTES + 1, 0)
    assert bounds.expansion_ok(100 * 10**6, 10**6) and not bounds.expansion_ok(100 * 10**6 + 1, 10**6)
    assert "100 declared bytes per byte" in bounds.EXPANSION_HINT


def test_members_of_normal_archives_point_at_their_bytes(tmp_path: Path) -> None:
    arrays = {"w": np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "b": np.zeros(64)}
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, **arrays)
        found = _members(path)
        assert sorted(found) == ["b.npy", "w.npy"]
        raw = path.read_bytes()
        with zipfile.ZipFile(path) as zf:
            for name, m in found.items():
                assert m.stored == (save is np.savez)
                if m.stored:
                    assert raw[m.data_start:m.data_start + m.info.file_size] == zf.read(name)


def test_a_member_that_claims_more_than_it_holds_is_refused(tmp_path: Path) -> None:
    """The directory says 100 bytes; the next member's header starts after 20."""
    blob = bytearray(raw_zip([stored("a.npy", bytes(20)), stored("b.npy", bytes(20))]))
    cd = blob.index(b"PK\x01\x02")
    blob[cd + 20:cd + 28] = (100).to_bytes(4, "little") * 2  # compressed and uncompressed size of `a.npy`
    path = tmp_path / "lies.npz"
    path.write_bytes(bytes(blob))
    err = expect_wm("WM510", lambda: _members(path))
    assert "member `a.npy` claims 100 bytes" in err.diagnostics[0].message
    assert "runs into the next member `b.npy`" in err.diagnostics[0].message


def test_deflate_bombs_are_refused_without_inflating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.npz"
    path.write_bytes(raw_zip([deflate_bomb("a.npy", npy_header((2**24,)), 64)]))

    def no_inflating(*args: object) -> None:
        raise AssertionError("a member was decompressed")
    monkeypatch.setattr(zipfile, "_get_decompressor", no_inflating)
    err = expect_wm("WM510", lambda: NpzFile(path))
    assert "would expand from" in err.diagnostics[0].message and "67,108,992 bytes" in err.diagnostics[0].message
    assert err.diagnostics[0].hint == bounds.EXPANSION_HINT


def test_many_small_members_cannot_add_up_to_a_bomb(tmp_path: Path) -> None:
    """Each 1 MiB of zeros is within the per-member allowance; 80 of them (80 MiB from ~80 KB) are not."""
    path = tmp_path / "many.zip"
    path.write_bytes(raw_zip([deflate_bomb(f"m{i}.bin", b"", 1) for i in range(80)]))
    err = expect_wm("WM510", lambda: _members(path))
    assert "would expand to 83,886,080 bytes" in err.diagnostics[0].message


def test_npz_members_must_hold_exactly_their_arrays(tmp_path: Path) -> None:
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    short = tmp_path / "short.npz"
    short.write_bytes(raw_zip([stored("w.npy", npy(w)[:-4]), stored("b.npy", npy(np.ones(2)))]))
    err = expect_wm("WM510", lambda: NpzFile(short))
    assert err.diagnostics[0].message.endswith("`w.npy` holds 20 bytes of data where its header declares 24 "
                                               "((2, 3) float32)")
    longer = tmp_path / "long.npz"
    longer.write_bytes(raw_zip([stored("w.npy", npy(w) + bytes(8))]))
    assert "holds 32 bytes" in expect_wm("WM510", lambda: NpzFile(longer)).diagnostics[0].message


def test_compressed_npz_with_normal_ratios_still_loads(tmp_path: Path) -> None:
    """Real weights compress by ~1.1:1; a zero bias or a 1 MiB zero block far better, within the allowance."""
    rng = np.random.default_rng(1)
    arrays = {"w": rng.standard_normal((256, 256)).astype(np.float32), "bias": np.zeros(256, np.float32),
              "mask": np.zeros((500, 500), np.float32), "ids": np.arange(1000)}
    path = tmp_path / "ok.npz"
    np.savez_compressed(path, **arrays)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("mask.npy")
        assert info.file_size / info.compress_size > bounds.MAX_EXPANSION  # far past 100:1, but under 1 MiB
    with NpzFile(path) as src:
        for k, v in arrays.items():
            assert np.array_equal(src.read(k), v)
    assert len(inventory_of(path)) == 4
