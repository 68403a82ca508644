"""The `.npy` reader on its own: one array named by its file, headers only for the inventory, sizes
checked against the header, pickles refused before anything is unpickled."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from wmap.core.errors import WmapError
from wmap.formats import open_source


class _Payload:
    """Unpickling this creates a file: proof the reader never unpickles."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (os.mkdir, (self.marker,))


def test_npy_reads_its_array_zero_copy_and_fortran_order_as_numpy_does(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "fc.weight.npy", a)
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    np.save(tmp_path / "be.npy", a.astype(">f4"))
    for name, want_name in (("fc.weight.npy", "fc.weight"), ("f.npy", "f"), ("be.npy", "be")):
        with open_source(tmp_path / name) as src:  # type: ignore[attr-defined]
            inv = src.inventory()
            assert [(t.name, t.shape, t.dtype) for t in inv] == [(want_name, (3, 4), "float32")]
            got = src.read(want_name)
            np.testing.assert_array_equal(got, np.load(tmp_path / name))
            with pytest.raises(WmapError) as e:
                src.read("other")
            assert e.value.diagnostics[0].code == "WM503"


def test_a_pickled_npy_is_refused_from_its_header_and_never_unpickled(tmp_path: Path) -> None:
    marker = str(tmp_path / "ran")
    np.save(tmp_path / "p.npy", np.array([_Payload(marker), 1], dtype=object), allow_pickle=True)
    with pytest.raises(WmapError) as e:
        open_source(tmp_path / "p.npy")
    assert e.value.diagnostics[0].code == "WM508" and "np.savez" in (e.value.diagnostics[0].hint or "")
    assert not os.path.exists(marker)
    np.load(tmp_path / "p.npy", allow_pickle=True)  # control: numpy's own loader runs the payload
    assert os.path.isdir(marker)


@pytest.mark.parametrize("cut", [-4, +4])
def test_an_npy_whose_data_is_not_what_its_header_declares_is_refused(tmp_path: Path, cut: int) -> None:
    np.save(tmp_path / "w.npy", np.ones((3, 4), np.float32))
    raw = (tmp_path / "w.npy").read_bytes()
    (tmp_path / "bad.npy").write_bytes(raw[:cut] if cut < 0 else raw + b"\0" * cut)
    with pytest.raises(WmapError) as e:
        open_source(tmp_path / "bad.npy")
    assert e.value.diagnostics[0].code == "WM510" and "declares 48" in e.value.diagnostics[0].message


def test_a_huge_declared_npy_is_refused_without_allocating(tmp_path: Path) -> None:
    header = {"descr": "<f4", "fortran_order": False, "shape": (1 << 20, 1 << 20)}  # 4 TiB declared
    with open(tmp_path / "huge.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 16)
    with pytest.raises(WmapError) as e:
        open_source(tmp_path / "huge.npy")
    assert e.value.diagnostics[0].code == "WM510"


def test_a_file_with_npy_magic_and_another_suffix_is_read_as_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.ones(3, np.float32))
    os.rename(tmp_path / "w.npy", tmp_path / "w.data")
    with open_source(tmp_path / "w.data") as src:  # type: ignore[attr-defined]
        assert [t.name for t in src.inventory()] == ["w.data"]
