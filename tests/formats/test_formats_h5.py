"""The one HDF5 link and storage policy (`wmap.formats.h5_util`) every HDF5 reader uses: hard links
only, data stored in the file, and no dataset declaring far more than it stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.format_fixtures import expect_wm
from wmap.formats import inventory_of, open_source
from wmap.formats.bounds import EXPANSION_HINT
from wmap.formats.h5_util import LINK_HINT, check_dataset, dataset, hard_child, walk

h5py = pytest.importorskip("h5py")


def _file(path: Path, build: Any) -> Path:
    with h5py.File(path, "w") as f:
        build(f)
    return path


@pytest.fixture
def linked(tmp_path: Path) -> Any:
    other = _file(tmp_path / "other.h5", lambda f: f.create_group("g").create_dataset("d", data=np.ones(3)))

    def build(f: Any) -> None:
        f.create_group("real").create_dataset("d", data=np.zeros(3))
        f["soft"] = h5py.SoftLink("/real")
        f["ext"] = h5py.ExternalLink(str(other), "/g")
        f["dangling"] = h5py.ExternalLink(str(tmp_path / "missing.h5"), "/g")
    f = h5py.File(_file(tmp_path / "main.h5", build), "r")
    yield f
    f.close()


def test_hard_child_resolves_hard_links_only(linked: Any) -> None:
    assert hard_child(linked, "real", "main.h5").name == "/real"
    assert hard_child(linked, "nothing", "main.h5") is None
    soft = expect_wm("WM509", lambda: hard_child(linked, "soft", "main.h5")).diagnostics[0]
    assert soft.message == "`main.h5`: `/soft` is a soft link to `/real`; wmap does not follow links"
    assert soft.hint == LINK_HINT
    ext = expect_wm("WM509", lambda: hard_child(linked, "ext", "main.h5")).diagnostics[0]
    assert ext.message.startswith("`main.h5`: `/ext` is an external link to `/g` in `")
    assert ext.message.endswith("other.h5`; wmap does not follow links")


def test_walk_checks_every_component(linked: Any) -> None:
    """`name in group` or `group["ext/d"]` would open the other file for the intermediate link."""
    assert walk(linked, "real/d", "main.h5").name == "/real/d"
    assert walk(linked, "real/none", "main.h5") is None
    for path in ("ext/d", "./ext/d", "dangling/d", "soft/d"):
        expect_wm("WM509", lambda p=path: walk(linked, p, "main.h5"))
    err = expect_wm("WM509", lambda: dataset(linked, "real/d/deeper", "main.h5"))
    assert "is a dataset, but `real/d/deeper` continues below it" in err.diagnostics[0].message


def test_datasets_must_store_their_data_in_the_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.ones(4, np.float32).tobytes())
    src = _file(tmp_path / "src.h5", lambda f: f.create_dataset("w", data=np.ones(4, np.float32)))

    def build(f: Any) -> None:
        f.create_dataset("external", shape=(4,), dtype="<f4", external=[(str(raw), 0, 16)])
        layout = h5py.VirtualLayout(shape=(4,), dtype="<f4")
        layout[:] = h5py.VirtualSource(str(src), "w", shape=(4,))
        f.create_virtual_dataset("virtual", layout)
    with h5py.File(_file(tmp_path / "main.h5", build), "r") as f:
        for name in ("external", "virtual"):
            err = expect_wm("WM509", lambda n=name: check_dataset(f[n], "main.h5"))
            assert f"`/{name}` stores its data outside the file" in err.diagnostics[0].message


def test_declared_size_against_allocated_storage(tmp_path: Path) -> None:
    """Unwritten chunks read as the fill value; compression is fine up to the expansion bound."""
    rng = np.random.default_rng(0)

    def build(f: Any) -> None:
        f.create_dataset("fill", shape=(2**22,), dtype="<f4", chunks=(2**16,))  # 16 MiB, never written
        f.create_dataset("small_fill", shape=(1000,), dtype="<f4")  # 4 KB of fill: within the allowance
        f.create_dataset("gzip", data=rng.standard_normal(2**18).astype(np.float32), compression="gzip")
        f.create_dataset("gzip_zeros", data=np.zeros(2**22, np.float32), compression="gzip", chunks=(2**18,))
    with h5py.File(_file(tmp_path / "main.h5", build), "r") as f:
        err = expect_wm("WM509", lambda: check_dataset(f["fill"], "main.h5")).diagnostics[0]
        assert err.message == ("`main.h5`: `/fill` declares 16,777,216 bytes ((4194304,) float32) but stores only 0 "
                               "(its unwritten chunks would read as the fill value)")
        assert err.hint == EXPANSION_HINT
        assert "far less than compression gives" in \
            expect_wm("WM509", lambda: check_dataset(f["gzip_zeros"], "main.h5")).diagnostics[0].message
        for name in ("small_fill", "gzip"):
            assert check_dataset(f[name], "main.h5").name == f"/{name}"


def test_every_reader_uses_the_policy(tmp_path: Path) -> None:
    """Keras 3 `.weights.h5`, legacy `.h5` (root and `model_weights`), through the dispatcher too."""
    other = _file(tmp_path / "other.h5", lambda f: f.create_group("vars").create_dataset("0", data=np.ones(3)))

    def keras3(f: Any) -> None:
        f.create_group("layers").create_group("dense")["vars"] = h5py.ExternalLink(str(other), "/vars")

    def legacy_weight(f: Any) -> None:
        f.attrs["layer_names"] = np.array([b"dense"])
        g = f.create_group("dense")
        g.attrs["weight_names"] = np.array([b"vars/0"])
        g["vars"] = h5py.ExternalLink(str(other), "/vars")

    def legacy_model_weights(f: Any) -> None:
        f["model_weights"] = h5py.ExternalLink(str(other), "/vars")
    for name, build in (("k3.weights.h5", keras3), ("legacy.h5", legacy_weight), ("full.h5", legacy_model_weights)):
        path = _file(tmp_path / name, build)
        err = expect_wm("WM509", lambda p=path: inventory_of(p))
        assert "is an external link to" in err.diagnostics[0].message and str(path) in err.diagnostics[0].message


def test_plain_files_still_load(tmp_path: Path) -> None:
    def legacy(f: Any) -> None:
        f.attrs["layer_names"] = np.array([b"dense"])
        g = f.create_group("dense")
        g.attrs["weight_names"] = np.array([b"dense/kernel:0", b"dense/bias:0"])
        g.create_dataset("dense/kernel:0", data=np.ones((2, 3), np.float32))
        g.create_dataset("dense/bias:0", data=np.zeros(3, np.float32), compression="gzip")
    with open_source(_file(tmp_path / "ok.h5", legacy)) as src:  # type: ignore[attr-defined]
        assert [(t.name, t.shape) for t in src.inventory()] == [("dense.kernel", (2, 3)), ("dense.bias", (3,))]
        assert np.array_equal(src.read("dense.kernel"), np.ones((2, 3)))
