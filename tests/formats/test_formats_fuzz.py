"""Random and mutated files: every reader either works or raises WmapError, never anything else."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from tests.support.format_fixtures import numpy_weights
from wmap.core.errors import WmapError
from wmap.formats import open_source

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _survives(path: Path) -> None:
    """Open, inventory and read everything; only WmapError may escape."""
    try:
        src = open_source(path)
    except WmapError:
        return
    try:
        for meta in src.inventory():
            src.read(meta.name)
    except WmapError:
        pass
    finally:
        src.close()


_entry = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "BOOL", "U8", "F8_E4M3", "X"]),
    "shape": st.lists(st.integers(-1, 5), max_size=3),
    "data_offsets": st.lists(st.integers(-1, 80), min_size=0, max_size=3),
})


@FUZZ
@given(header=st.dictionaries(st.text(max_size=4), _entry, max_size=4), data=st.binary(max_size=80))
def test_structured_safetensors_headers(header: dict[str, object], data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.safetensors"
        blob = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
        _survives(path)


@FUZZ
@given(blob=st.binary(max_size=64), suffix=st.sampled_from([".safetensors", ".npz", ".pt", ".h5", ".keras", ".bin"]),
       magic=st.sampled_from([b"", b"PK\x03\x04", b"\x89HDF\r\n\x1a\n", b"\x80\x02", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]))
def test_random_bytes(blob: bytes, suffix: str, magic: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"f{suffix}"
        path.write_bytes(magic + blob)
        _survives(path)


_real: dict[str, bytes] = {}


def _real_file(kind: str) -> bytes:
    if kind not in _real:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / f"x.{kind}"
            if kind == "safetensors":
                save_file(numpy_weights(), str(p))
            else:
                np.savez(p, **numpy_weights())
            _real[kind] = p.read_bytes()
    return _real[kind]


@FUZZ
@given(kind=st.sampled_from(["safetensors", "npz"]), data=st.data())
def test_mutated_real_files(kind: str, data: st.DataObject) -> None:
    raw = bytearray(_real_file(kind))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(raw) // 2, len(raw)))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x.{kind}"
        path.write_bytes(bytes(raw[:cut]))
        _survives(path)
