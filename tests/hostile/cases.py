"""The hostile-input corpus, declaratively: one small builder per case.

Each builder gets a `Work` (a fresh temporary folder with helpers), writes its hostile input
there and returns a `Setup`: the `wmap` argv to run (or, for an in-memory target, an API call),
the output path that must not appear (or, when it exists beforehand, must survive byte for
byte), an optional monkeypatch (I/O faults: root ignores chmod, so faults are injected), and
an optional extra post-condition (a pickle payload's marker file must not exist).

Every case names the stable diagnostic code it must end in and a fragment of its message.
`test_hostile_corpus.py` runs them all; `CATEGORIES` counts them for the report.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import struct
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# -- the case record -------------------------------------------------------------------------------


@dataclass
class Setup:
    argv: list[str] | None = None                  # run `wmap ARGV` in-process
    call: Callable[[], object] | None = None       # or run this API call (in-memory targets)
    out: Path | None = None                        # must not appear; if it exists before the run, must survive
    model: Any = None                              # an in-memory target whose checksums must not change
    patch: Callable[[pytest.MonkeyPatch], None] | None = None  # fault injection, installed just before the run
    check: Callable[[], None] | None = None        # extra post-condition, e.g. a payload marker does not exist
    cwd: Path | None = None                        # run from here (factories import from the current folder)
    watch: list[Path] = field(default_factory=list)  # folders whose listing must not change (temp files)


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    code: str
    text: str                      # a fragment of the diagnostic message (stable wording)
    build: Callable[[Work], Setup]
    needs: tuple[str, ...] = ()    # importable modules the case needs (skipped otherwise)


CASES: list[Case] = []


def case(category: str, code: str, text: str, needs: tuple[str, ...] = ()
         ) -> Callable[[Callable[[Work], Setup]], Callable[[Work], Setup]]:
    def register(fn: Callable[[Work], Setup]) -> Callable[[Work], Setup]:
        CASES.append(Case(fn.__name__, category, code, text, fn, needs))
        return fn
    return register


# -- files built by hand (no library in the loop, so the bytes are exactly what we say) ------------

_ST_DTYPE = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64",
             np.dtype(np.float64): "F64"}


def st_blob(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """A valid safetensors file."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    data = b""
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _ST_DTYPE[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return st_raw(header, data)


def st_raw(header: Mapping[str, Any] | bytes, data: bytes = b"", declared: int | None = None) -> bytes:
    """A safetensors file from a header (a dict becomes JSON) and data, with an optional wrong length."""
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(blob) if declared is None else declared) + blob + data


def ent(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


SRC = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.bias": np.ones(2, np.float32)}
TGT = {"b.weight": np.zeros((2, 3), np.float32), "b.bias": np.zeros(2, np.float32)}
SPEC = "wmap 1\na.{x} -> b.{x}\n"


class Payload:
    """Unpickling this runs `exec`, which creates `marker`: the payload a safe loader must refuse."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').close()",))


class Work:
    """A temporary folder: standard source/target/spec files, and the output folder `out/`."""

    def __init__(self, root: Path, case_id: str):
        self.d = root
        self.id = case_id
        self.outdir = root / "out"
        self.outdir.mkdir()
        self.out = self.outdir / "model.safetensors"
        self.marker = root / "PAYLOAD_RAN"

    def file(self, name: str, content: bytes | str) -> Path:
        p = self.d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            p.write_text(content, encoding="utf-8")
        else:
            p.write_bytes(content)
        return p

    def source(self, tensors: Mapping[str, np.ndarray] = SRC, name: str = "src.safetensors") -> Path:
        return self.file(name, st_blob(tensors))

    def target(self, tensors: Mapping[str, np.ndarray] = TGT, name: str = "tgt.safetensors") -> Path:
        return self.file(name, st_blob(tensors))

    def spec(self, text: str = SPEC, name: str = "spec.wmap") -> Path:
        return self.file(name, text)

    def old_output(self) -> Path:
        """A previous result at the output path: it must survive a failed apply byte for byte."""
        self.out.write_bytes(st_blob({"b.weight": np.full((2, 3), 7, np.float32), "b.bias": np.full(2, 7, np.float32)}))
        return self.out

    def apply(self, source: Path | str | None = None, *, spec: Path | None = None, target: Path | str | None = None,
              out: Path | None = None, extra: tuple[str, ...] = ()) -> Setup:
        """`wmap apply SPEC -s SOURCE -t TARGET -o OUT`: the whole pipeline, so nothing can hide."""
        spec = spec or self.spec()
        source = self.source() if source is None else source
        target = self.target() if target is None else target
        out = out or self.out
        argv = ["apply", str(spec), "-s", str(source), "-t", str(target), "-o", str(out), *extra]
        return Setup(argv=argv, out=out, watch=[out.parent] if out.parent.is_dir() else [])

    def factory(self, body: str) -> str:
        """A module `hostile_<case>.py` in the work folder; returns its `module:build` reference."""
        mod = f"hostile_{self.id}"
        self.file(f"{mod}.py", body)
        return f"{mod}:build"


def junk(n: int, seed: int = 7) -> bytes:
    """Deterministic garbage bytes (a case must fail the same way on every run)."""
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _torch() -> Any:
    import torch
    return torch


# == safetensors ====================================================================================


@case("safetensors", "WM504", "only 0 bytes long")
def st_empty_file(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", b""))


@case("safetensors", "WM504", "only 5 bytes long")
def st_shorter_than_length(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", b"\x10\x00\x00\x00\x00"))


@case("safetensors", "WM504", "is truncated: its header claims")
def st_header_length_past_eof(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", st_raw(b'{"a":', declared=4096)))


@case("safetensors", "WM504", "declares a 18,446,744,073,709,551,615-byte header")
def st_huge_declared_header(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", st_raw(b"{}", declared=2**64 - 1)))


@case("safetensors", "WM504", "has an invalid header")
def st_header_not_json(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", st_raw(b"{not json at all}")))


@case("safetensors", "WM504", "has an invalid header")
def st_header_not_utf8(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", st_raw(b'{"\xff\xfe": 1}')))


@case("safetensors", "WM504", "expected a JSON object")
def st_header_is_a_list(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", st_raw(b"[1, 2, 3]")))


@case("safetensors", "WM504", "appears twice")
def st_header_duplicate_name(w: Work) -> Setup:
    raw = b'{"a.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, ' \
          b'"a.weight": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'
    return w.apply(w.file("src.safetensors", st_raw(raw, bytes(8))))


@case("safetensors", "WM504", "`__metadata__` must map strings to strings")
def st_metadata_not_strings(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", st_raw({"__metadata__": {"format": 1}, "a.bias": ent("F32", [2], 0, 8)},
                                                    bytes(8))))


@case("safetensors", "WM504", "`shape` must be a list of non-negative integers")
def st_negative_dimension(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", st_raw({"a.bias": ent("F32", [-2], 0, 8)}, bytes(8))))


@case("safetensors", "WM504", "missing `dtype`")
def st_entry_without_dtype(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", st_raw({"a.bias": {"shape": [2], "data_offsets": [0, 8]}}, bytes(8))))


@case("safetensors", "WM504", "has an invalid header")
def st_header_deeply_nested(w: Work) -> Setup:
    """JSON nested past Python's stack: a parser error, not a crash."""
    return w.apply(w.file("src.safetensors", st_raw(b"[" * 100_000 + b"]" * 100_000)))


@case("safetensors", "WM505", "outside the")
def st_truncated_data(w: Work) -> Setup:
    blob = st_blob(SRC)
    return w.apply(w.file("src.safetensors", blob[:-5]))


@case("safetensors", "WM505", "overlaps another tensor's data")
def st_overlapping_offsets(w: Work) -> Setup:
    header = {"a.weight": ent("F32", [2, 3], 0, 24), "a.bias": ent("F32", [2], 16, 24)}
    return w.apply(w.file("src.safetensors", st_raw(header, bytes(24))))


@case("safetensors", "WM505", "outside the")
def st_offsets_out_of_range(w: Work) -> Setup:
    header = {"a.weight": ent("F32", [2, 3], 0, 24), "a.bias": ent("F32", [2], 2**40, 2**40 + 8)}
    return w.apply(w.file("src.safetensors", st_raw(header, bytes(32))))


@case("safetensors", "WM505", "outside the")
def st_offsets_reversed(w: Work) -> Setup:
    header = {"a.weight": ent("F32", [2, 3], 0, 24), "a.bias": ent("F32", [2], 32, 24)}
    return w.apply(w.file("src.safetensors", st_raw(header, bytes(32))))


@case("safetensors", "WM505", "belong to no tensor")
def st_hole_between_tensors(w: Work) -> Setup:
    header = {"a.weight": ent("F32", [2, 3], 0, 24), "a.bias": ent("F32", [2], 28, 36)}
    return w.apply(w.file("src.safetensors", st_raw(header, bytes(36))))


@case("safetensors", "WM505", "trailing bytes belong to no tensor")
def st_trailing_bytes(w: Work) -> Setup:
    return w.apply(w.file("src.safetensors", st_blob(SRC) + b"appended"))


@case("safetensors", "WM505", "needs 4,000,000,000,000 bytes")
def st_huge_shape_tiny_data(w: Work) -> Setup:
    header = {"a.weight": ent("F32", [10**6, 10**6], 0, 24), "a.bias": ent("F32", [2], 24, 32)}
    return w.apply(w.file("src.safetensors", st_raw(header, bytes(32))))


@case("safetensors", "WM506", "has dtype `F128`")
def st_unknown_dtype(w: Work) -> Setup:
    header = {"a.weight": ent("F128", [2, 3], 0, 96), "a.bias": ent("F32", [2], 96, 104)}
    return w.apply(w.file("src.safetensors", st_raw(header, bytes(104))))


# == PyTorch pickles ================================================================================


@case("torch", "WM508", "refuses to unpickle code", needs=("torch",))
def pt_pickled_exec_payload(w: Work) -> Setup:
    torch = _torch()
    path = w.d / "src.pt"
    torch.save({"a.weight": torch.ones(2, 3), "a.bias": torch.ones(2), "evil": Payload(w.marker)}, path)
    s = w.apply(path)
    s.check = lambda: _assert_absent(w.marker)
    return s


@case("torch", "WM508", "refuses to unpickle code", needs=("torch",))
def pt_legacy_pickle_payload(w: Work) -> Setup:
    """A pre-zip (legacy) pickle: loaded without mmap, still weights-only."""
    path = w.file("src.pth", pickle.dumps(Payload(w.marker), protocol=2))
    s = w.apply(path)
    s.check = lambda: _assert_absent(w.marker)
    return s


@case("torch", "WM508", "refuses to unpickle code", needs=("torch",))
def pt_payload_in_wrapper_dict(w: Work) -> Setup:
    """The payload hides in a training checkpoint's optimizer entry, next to a real state dict."""
    torch = _torch()
    path = w.d / "ckpt.pt"
    torch.save({"state_dict": {"a.weight": torch.ones(2, 3), "a.bias": torch.ones(2)},
                "optimizer": {"hook": Payload(w.marker)}}, path)
    s = w.apply(path)
    s.check = lambda: _assert_absent(w.marker)
    return s


@case("torch", "WM510", "is not a readable PyTorch checkpoint", needs=("torch",))
def pt_garbage_bytes(w: Work) -> Setup:
    return w.apply(w.file("src.pt", b"PK\x03\x04" + junk(64) + b"not a checkpoint"))


@case("torch", "WM510", "is not a readable PyTorch checkpoint", needs=("torch",))
def pt_empty_file(w: Work) -> Setup:
    return w.apply(w.file("src.pt", b""))


@case("torch", "WM510", "is not a readable PyTorch checkpoint", needs=("torch",))
def pt_truncated_zip(w: Work) -> Setup:
    torch = _torch()
    path = w.d / "full.pt"
    torch.save({"a.weight": torch.ones(2, 3), "a.bias": torch.ones(2)}, path)
    return w.apply(w.file("src.pt", path.read_bytes()[: path.stat().st_size // 2]))


@case("torch", "WM510", "not a state dict", needs=("torch",))
def pt_a_bare_tensor(w: Work) -> Setup:
    torch = _torch()
    path = w.d / "src.pt"
    torch.save(torch.ones(3), path)
    return w.apply(path)


@case("torch", "WM510", "holds no tensors", needs=("torch",))
def pt_no_tensors(w: Work) -> Setup:
    torch = _torch()
    path = w.d / "src.pt"
    torch.save({"epoch": 3, "notes": "no weights here"}, path)
    return w.apply(path)


@case("torch", "WM506", "cannot plan with", needs=("torch",))
def pt_unsupported_dtype(w: Work) -> Setup:
    torch = _torch()
    path = w.d / "src.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "ComplexHalf support is experimental"
        torch.save({"a.weight": torch.ones(2, 3), "a.bias": torch.ones(2, dtype=torch.complex32)}, path)
    return w.apply(path)


# == npz ===========================================================================================


@case("npz", "WM508", "is an object array")
def npz_object_array_payload(w: Work) -> Setup:
    """np.save pickles object arrays: this one's unpickling would run the payload."""
    path = w.d / "src.npz"
    np.savez(path, **{"a.weight": np.ones((2, 3), np.float32),
                      "a.bias": np.array([Payload(w.marker), 1], dtype=object)})
    s = w.apply(path)
    s.check = lambda: _assert_absent(w.marker)
    return s


@case("npz", "WM510", "is not a readable .npz archive")
def npz_corrupt_zip(w: Work) -> Setup:
    return w.apply(w.file("src.npz", b"PK\x03\x04" + junk(200)))


@case("npz", "WM510", "is not a readable .npy array")
def npz_member_not_npy(w: Work) -> Setup:
    path = w.d / "src.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.weight.npy", b"this is not an npy header")
    return w.apply(path)


@case("npz", "WM510", "holds 16 bytes of data where its header declares 4,000,000,000,000")
def npz_declares_4tb_array(w: Work) -> Setup:
    """The member header claims a 4 TB array; nothing may allocate it."""
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    hdr += " " * (-(len(hdr) + 11) % 64) + "\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + bytes(16)
    path = w.d / "src.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.weight.npy", member)
    spec = w.spec("wmap 1\na.weight -> big\n")
    body = "import torch\n\ndef build():\n    m = torch.nn.Module()\n" \
           "    m.register_parameter('big', torch.nn.Parameter(torch.empty(1000000, 1000000, device='meta')))\n" \
           "    return m\n"
    s = w.apply(path, spec=spec, target=w.factory(body))
    s.cwd = w.d
    return s


@case("npz", "WM506", "bfloat16/float8 arrays lose their dtype")
def npz_void_dtype(w: Work) -> Setup:
    path = w.d / "src.npz"
    np.savez(path, **{"a.weight": np.zeros((2, 3), dtype="V2"), "a.bias": np.ones(2, np.float32)})
    return w.apply(path)


# == sharded checkpoints ============================================================================


def _shards(w: Work, weight_map: Mapping[str, str] | str, files: Mapping[str, Mapping[str, np.ndarray]]) -> Path:
    for name, tensors in files.items():
        w.file(f"ckpt/{name}", st_blob(tensors))
    text = weight_map if isinstance(weight_map, str) else json.dumps({"metadata": {}, "weight_map": weight_map})
    return w.file("ckpt/model.safetensors.index.json", text)


_W = {"a.weight": SRC["a.weight"]}
_B = {"a.bias": SRC["a.bias"]}


@case("sharded", "WM507", "does not exist")
def shard_index_names_missing_file(w: Work) -> Setup:
    index = _shards(w, {"a.weight": "model-1.safetensors", "a.bias": "model-2.safetensors"},
                    {"model-1.safetensors": _W})
    return w.apply(index)


@case("sharded", "WM507", "more than once")
def shard_index_maps_tensor_twice(w: Work) -> Setup:
    text = '{"weight_map": {"a.weight": "model-1.safetensors", "a.bias": "model-2.safetensors", ' \
           '"a.weight": "model-2.safetensors"}}'
    return w.apply(_shards(w, text, {"model-1.safetensors": _W, "model-2.safetensors": _B}))


@case("sharded", "WM507", "is in shard")
def shard_tensor_in_two_shards(w: Work) -> Setup:
    """Both shards hold `a.weight`; the index says one of them."""
    index = _shards(w, {"a.weight": "model-1.safetensors", "a.bias": "model-2.safetensors"},
                    {"model-1.safetensors": _W, "model-2.safetensors": {**_W, **_B}})
    return w.apply(index)


@case("sharded", "WM507", "does not list")
def shard_holds_unlisted_tensor(w: Work) -> Setup:
    index = _shards(w, {"a.weight": "model-1.safetensors"}, {"model-1.safetensors": {**_W, **_B}})
    return w.apply(index)


@case("sharded", "WM507", "which does not hold it")
def shard_index_lists_absent_tensor(w: Work) -> Setup:
    index = _shards(w, {"a.weight": "model-1.safetensors", "a.bias": "model-1.safetensors"},
                    {"model-1.safetensors": _W})
    return w.apply(index)


@case("sharded", "WM507", "outside the checkpoint directory")
def shard_path_escapes_directory(w: Work) -> Setup:
    w.file("secret.safetensors", st_blob(_B))
    index = _shards(w, {"a.weight": "model-1.safetensors", "a.bias": "../secret.safetensors"},
                    {"model-1.safetensors": _W})
    return w.apply(index)


@case("sharded", "WM507", "is not valid JSON")
def shard_index_not_json(w: Work) -> Setup:
    return w.apply(_shards(w, "{weight_map: oops", {"model-1.safetensors": _W}))


@case("sharded", "WM507", "has no `weight_map`")
def shard_index_without_weight_map(w: Work) -> Setup:
    return w.apply(_shards(w, '{"metadata": {}, "weights": {}}', {"model-1.safetensors": _W}))


@case("sharded", "WM507", "is not valid JSON")
def shard_index_deeply_nested(w: Work) -> Setup:
    return w.apply(_shards(w, '{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}", {"model-1.safetensors": _W}))


@case("sharded", "WM504", "is truncated")
def shard_file_truncated(w: Work) -> Setup:
    index = _shards(w, {"a.weight": "model-1.safetensors", "a.bias": "model-2.safetensors"},
                    {"model-1.safetensors": _W})
    w.file("ckpt/model-2.safetensors", st_blob(_B)[:20])
    return w.apply(index)


# == Keras / HDF5 ==================================================================================


def _h5(path: Path, build: Callable[[Any], None]) -> Path:
    import h5py
    with h5py.File(path, "w") as f:
        build(f)
    return path


@case("keras", "WM509", "is outside any `vars` group", needs=("h5py",))
def h5_wrong_structure(w: Work) -> Setup:
    path = _h5(w.d / "src.weights.h5", lambda f: f.create_dataset("stray", data=np.ones(3, np.float32)))
    return w.apply(path)


@case("keras", "WM509", "has no Keras 3 `vars` groups", needs=("h5py",))
def h5_empty_groups(w: Work) -> Setup:
    path = _h5(w.d / "src.weights.h5", lambda f: f.create_group("layers").create_group("dense"))
    return w.apply(path)


@case("keras", "WM509", "is not a readable HDF5 file", needs=("h5py",))
def h5_garbage_after_magic(w: Work) -> Setup:
    return w.apply(w.file("src.h5", b"\x89HDF\r\n\x1a\n" + junk(300)))


@case("keras", "WM509", "wmap does not follow links", needs=("h5py",))
def h5_external_link(w: Work) -> Setup:
    """An external link would let a weights file read another file on the machine."""
    import h5py
    _h5(w.d / "elsewhere.h5", lambda f: f.create_group("vars").create_dataset("0", data=np.ones(3, np.float32)))

    def build(f: Any) -> None:
        g = f.create_group("layers").create_group("dense")
        g["vars"] = h5py.ExternalLink(str(w.d / "elsewhere.h5"), "/vars")
    return w.apply(_h5(w.d / "src.weights.h5", build))


@case("keras", "WM509", "has no `model.weights.h5`")
def keras_archive_without_weights(w: Work) -> Setup:
    path = w.d / "src.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
        zf.writestr("metadata.json", "{}")
    return w.apply(path)


@case("keras", "WM509", "is not valid JSON")
def keras_config_deeply_nested(w: Work) -> Setup:
    path = w.d / "src.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "[" * 100_000 + "]" * 100_000)
        zf.writestr("model.weights.h5", b"")
    return w.apply(path)


@case("keras", "WM509", "is not a readable .keras archive")
def keras_corrupt_zip(w: Work) -> Setup:
    return w.apply(w.file("src.keras", b"PK\x03\x04" + bytes(100)))


@case("keras", "WM509", "is not a readable HDF5 file", needs=("h5py",))
def keras_weights_member_garbage(w: Work) -> Setup:
    path = w.d / "src.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))
    return w.apply(path)


@case("keras", "WM509", "missing", needs=("h5py",))
def h5_legacy_names_missing_dataset(w: Work) -> Setup:
    """A Keras 2 file whose `weight_names` point at datasets that are not there."""
    def build(f: Any) -> None:
        f.attrs["layer_names"] = np.array([b"dense"])
        g = f.create_group("dense")
        g.attrs["weight_names"] = np.array([b"dense/kernel:0"])
    return w.apply(_h5(w.d / "src.h5", build))


@case("keras", "WM521", "deserialization of a `Lambda` layer", needs=("keras", "tensorflow"))
def keras_template_with_lambda_code(w: Work) -> Setup:
    """A `.keras` target whose Lambda layer carries Python bytecode that creates a marker when the
    model is rebuilt. Writing a `.keras` output rebuilds the target: Keras' safe mode must refuse."""
    import keras
    fn = eval(f"lambda x: (open({str(w.marker)!r}, 'w').close(), x)[1]")  # noqa: S307 - the payload under test
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d"), keras.layers.Lambda(fn)],
                             name="evil")  # named: Keras' default name depends on how many models came before
    model.save(w.d / "evil.keras")
    w.marker.unlink()  # building the model ran the lambda once, here, on purpose
    spec = w.spec("wmap 1\na.weight -> d.kernel | transpose\na.bias -> d.bias\n")
    s = w.apply(spec=spec, target=w.d / "evil.keras", out=w.outdir / "model.keras")
    s.check = lambda: _assert_absent(w.marker)
    return s


# == TensorFlow checkpoints =========================================================================


@case("tf", "WM513", "is not a readable TensorFlow checkpoint", needs=("tensorflow",))
def tf_checkpoint_garbage(w: Work) -> Setup:
    w.file("ckpt/model.data-00000-of-00001", junk(128))
    return w.apply(w.file("ckpt/model.index", b"\x00garbage index\xff" * 8))


# == files in general ===============================================================================


@case("files", "WM500", "does not exist")
def source_missing(w: Work) -> Setup:
    return w.apply(w.d / "no_such_model.safetensors")


@case("files", "WM500", "does not exist")
def source_symlink_loop(w: Work) -> Setup:
    path = w.d / "src.safetensors"
    path.symlink_to(path.name)
    return w.apply(path)


@case("files", "WM501", "is not in a format wmap recognises")
def source_unknown_format(w: Work) -> Setup:
    return w.apply(w.file("weights.xyz", "just some text, not weights\n"))


@case("files", "WM501", "holds no checkpoint wmap recognises")
def source_directory_without_checkpoint(w: Work) -> Setup:
    w.file("empty_dir/readme.txt", "nothing here")
    return w.apply(w.d / "empty_dir")


@case("files", "WM501", "holds several candidate checkpoints")
def source_directory_ambiguous(w: Work) -> Setup:
    w.file("two/a.safetensors", st_blob(SRC))
    w.file("two/b.safetensors", st_blob(SRC))
    return w.apply(w.d / "two")


@case("files", "WM510", "is not a readable .npz archive")
def source_wrong_suffix(w: Work) -> Setup:
    """A safetensors file named `.npz`: the suffix decides the reader, which must refuse cleanly."""
    return w.apply(w.file("src.npz", st_blob(SRC)))


@case("files", "WM500", "is not a regular file")
def source_is_a_fifo(w: Work) -> Setup:
    """Opening a FIFO for reading blocks until a writer comes: refused before it is opened."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = w.d / "src.safetensors"
    os.mkfifo(path)
    return w.apply(path)


# == factories =====================================================================================


@case("factory", "WM511", "cannot import `hostile_no_such_module_xyz`")
def factory_module_missing(w: Work) -> Setup:
    s = w.apply(target="hostile_no_such_module_xyz:build")
    s.cwd = w.d
    return s


@case("factory", "WM511", "raised RuntimeError: the factory exploded")
def factory_raises(w: Work) -> Setup:
    s = w.apply(target=w.factory("def build():\n    raise RuntimeError('the factory exploded')\n"))
    s.cwd = w.d
    return s


@case("factory", "WM511", "ZeroDivisionError")
def factory_module_raises_on_import(w: Work) -> Setup:
    s = w.apply(target=w.factory("x = 1 / 0\n\ndef build():\n    return None\n"))
    s.cwd = w.d
    return s


@case("factory", "WM511", "has no attribute `build`")
def factory_attribute_missing(w: Work) -> Setup:
    s = w.apply(target=w.factory("def construct():\n    return None\n"))
    s.cwd = w.d
    return s


@case("factory", "WM511", "not a callable")
def factory_not_callable(w: Work) -> Setup:
    s = w.apply(target=w.factory("build = 42\n"))
    s.cwd = w.d
    return s


@case("factory", "WM511", "SyntaxError")
def factory_module_syntax_error(w: Work) -> Setup:
    s = w.apply(target=w.factory("def build(:\n"))
    s.cwd = w.d
    return s


# == specs =========================================================================================


@case("spec", "WM115", "is not UTF-8 text")
def spec_not_utf8(w: Work) -> Setup:
    return w.apply(spec=w.file("spec.wmap", b"wmap 1\na.\xff\xfe -> b\n"))


@case("spec", "WM115", "does not exist")
def spec_missing(w: Work) -> Setup:
    return w.apply(spec=w.d / "nope.wmap")


@case("spec", "WM115", "is a directory")
def spec_is_a_directory(w: Work) -> Setup:
    (w.d / "dir.wmap").mkdir()
    return w.apply(spec=w.d / "dir.wmap")


@case("spec", "WM116", "wmap reads specs up to")
def spec_10mb(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap 1\n" + ("# padding padding padding padding padding\n" * 250_000)))


@case("spec", "WM116", "nested too deeply")
def spec_deeply_nested_wmap(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap 1\na.{x} -> b.{x} | pad(0, 2, init=" + "[" * 5_000 + "]" * 5_000 + ")\n"))


@case("spec", "WM116", "nested too deeply")
def spec_deeply_nested_yaml(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap: 1\nrules: " + "[" * 3_000 + "]" * 3_000 + "\n", "spec.yaml"))


@case("spec", "WM116", "expands to more than")
def spec_yaml_alias_bomb(w: Work) -> Setup:
    lines = ["wmap: 1", "x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return w.apply(spec=w.spec("\n".join(lines) + "\n", "bomb.yaml"))


@case("spec", "WM101", "unknown statement `include`")
def spec_includes_itself(w: Work) -> Setup:
    """wmap has no includes: a spec that tries to include itself is an unknown statement, not a loop."""
    return w.apply(spec=w.spec('wmap 1\ninclude "self.wmap"\na.{x} -> b.{x}\n', "self.wmap"))


@case("spec", "WM110", "unknown key `include`")
def spec_yaml_includes_itself(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap: 1\ninclude: self.yaml\nrules: [{from: 'a.{x}', to: 'b.{x}'}]\n", "self.yaml"))


@case("spec", "WM100", "")
def spec_syntax_error(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap 1\na.{x} -> b.{x} |\n"))


@case("spec", "WM100", "U+0000")
def spec_nul_byte(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap 1\na.{x} -> b.{x}\x00\n"))


@case("spec", "WM102", "does not say which language version")
def spec_without_version(w: Work) -> Setup:
    return w.apply(spec=w.spec("a.{x} -> b.{x}\n"))


@case("spec", "WM110", "the spec is empty")
def spec_empty(w: Work) -> Setup:
    return w.apply(spec=w.spec(""))


@case("spec", "WM103", "unknown transform `tranpose`")
def spec_unknown_transform(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap 1\na.{x} -> b.{x} | tranpose\n"))


@case("spec", "WM104", "has no parameter `dims`")
def spec_bad_transform_parameter(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap 1\na.{x} -> b.{x} | split(dims=0)\n"))


@case("spec", "WM105", "unknown option `nonfinit`")
def spec_unknown_option(w: Work) -> Setup:
    return w.apply(spec=w.spec('wmap 1\noption nonfinit = "warn"\na.{x} -> b.{x}\n'))


@case("spec", "WM106", "option `nonfinite` cannot be")
def spec_bad_nonfinite_policy(w: Work) -> Setup:
    return w.apply(spec=w.spec('wmap 1\noption nonfinite = "ignore"\na.{x} -> b.{x}\n'))


@case("spec", "WM106", "option `shard_size` cannot be")
def spec_infinite_shard_size(w: Work) -> Setup:
    return w.apply(spec=w.spec('wmap 1\noption shard_size = "1e999GB"\na.{x} -> b.{x}\n'))


@case("spec", "WM108", "is never closed")
def spec_bad_pattern(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap 1\na.{x -> b.{x}\n"))


@case("spec", "WM111", "YAML syntax error")
def spec_yaml_syntax_error(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap: 1\nrules: [{from: a, to: b}\n", "spec.yaml"))


@case("spec", "WM110", "has the wrong type")
def spec_yaml_python_tag(w: Work) -> Setup:
    """A YAML tag that an unsafe loader would turn into a call: read as plain data, then refused."""
    return w.apply(spec=w.spec("wmap: 1\nrules: !!python/object/apply:os.system ['touch PWNED']\n", "spec.yaml"))


@case("spec", "WM100", "spec.wmap:2002:")
def spec_long_with_errors_at_the_end(w: Work) -> Setup:
    """Syntax errors are re-parsed statement by statement; their lines must still be the file's lines
    (and finding them must not cost time quadratic in the file's length)."""
    body = "".join(f"a.w{i} -> b.w{i}\n" for i in range(2000))
    return w.apply(spec=w.spec("wmap 1\n" + body + "a.{x} -> |\nfrezze a.b\n"))


@case("spec", "WM104", "parameter `axes` must be a list of [name, value] pairs")
def spec_extra_kwargs_with_bad_axes(w: Work) -> Setup:
    return w.apply(spec=w.spec('wmap 1\na.{x} -> b.{x} | rearrange("a b -> b a", h=8, axes=true)\n'))


# -- regressions: inputs the parser fuzzer found (tests/fuzz/findings/), replayed through the CLI --

FINDINGS = Path(__file__).resolve().parents[1] / "fuzz" / "findings"


@case("fuzz finding", "WM116", "nested too deeply")
def fuzz_yaml_deep_flow_nesting(w: Work) -> Setup:
    """1,000 unclosed `{`: PyYAML's scanner is quadratic in flow depth (13 s); refused up front."""
    return w.apply(spec=w.spec((FINDINGS / "found-slow-f585e50792e6.yaml").read_text(encoding="utf-8"), "spec.yaml"))


@case("fuzz finding", "WM104", "parameter `axes` must be a list of [name, value] pairs")
def fuzz_positional_true_into_extra_kwargs(w: Work) -> Setup:
    """`rearrange(.5, true, true=[], ...)`: a TypeError inside `build` escaped as a crash."""
    return w.apply(spec=w.spec((FINDINGS / "found-crash-48f323e35abb.wmap").read_text(encoding="utf-8")))


@case("fuzz finding", "WM110", "could not determine a constructor for the tag")
def fuzz_yaml_unknown_tag_on_a_key(w: Work) -> Setup:
    """A `!!python/object/apply:...` tag on a mapping key: PyYAML's ConstructorError escaped."""
    return w.apply(spec=w.spec((FINDINGS / "found-crash-394807c19585.yaml").read_text(encoding="utf-8"), "spec.yaml"))


@case("spec", "WM110", "cannot read the YAML value `0xZZ`")
def spec_yaml_tag_rejects_its_value(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap: 1\noptions: {seed: !!int 0xZZ}\nrules: [{from: 'a.{x}', to: 'b.{x}'}]\n",
                               "spec.yaml"))


# == saved plans ====================================================================================


def _saved_plan(w: Work) -> Path:
    import wmap
    p = wmap.plan(str(w.spec()), source=str(w.source()), target=str(w.target()))
    return w.file("plan.json", p.dumps())


def redigest(data: dict[str, Any]) -> dict[str, Any]:
    """An edited plan with its digest recomputed (by someone who read how it is made): what is left
    to refuse it is the structural re-check, which these cases exercise."""
    from wmap.planning.serialise import plan_digest
    return {**data, "digest": plan_digest(data)}


@case("plan.json", "WM520", "cannot read plan")
def plan_json_garbage(w: Work) -> Setup:
    return w.apply(spec=w.file("plan.json", b"\x00\x01 garbage {"))


@case("plan.json", "WM520", "is not a wmap plan of format version 1")
def plan_json_other_format_version(w: Work) -> Setup:
    data = json.loads(_saved_plan(w).read_text())
    data["format_version"] = 3  # a version this wmap does not read (it reads 1 and 2)
    return w.apply(spec=w.file("plan.json", json.dumps(data)))


@case("plan.json", "WM520", "is not a valid wmap plan")
def plan_json_wrong_structure(w: Work) -> Setup:
    return w.apply(spec=w.file("plan.json", json.dumps({"format_version": 1, "steps": "all of them"})))


@case("plan.json", "WM520", "cannot read plan")
def plan_json_deeply_nested(w: Work) -> Setup:
    return w.apply(spec=w.file("plan.json", "[" * 200_000 + "]" * 200_000))


@case("plan.json", "WM604", "changed since the plan was made")
def plan_json_source_changed(w: Work) -> Setup:
    plan = _saved_plan(w)
    src = w.source({**SRC, "c.extra": np.zeros(1, np.float32)})  # the same file, now holding another tensor
    return w.apply(src, spec=plan, target=w.d / "tgt.safetensors")


@case("plan.json", "WM604", "changed since the plan was made")
def plan_json_target_changed(w: Work) -> Setup:
    plan = _saved_plan(w)
    tgt = w.target({"b.weight": np.zeros((3, 2), np.float32), "b.bias": np.zeros(2, np.float32)})
    return w.apply(w.d / "src.safetensors", spec=plan, target=tgt)


@case("plan.json", "WM520", "is not a valid wmap plan")
def plan_json_unknown_transform(w: Work) -> Setup:
    data = json.loads(_saved_plan(w).read_text())
    data["steps"][0]["transforms"] = [{"name": "os.system", "params": {"cmd": "touch PWNED"}}]
    return w.apply(spec=w.file("plan.json", json.dumps(redigest(data))))


@case("plan.json", "WM520", "does not match")
def plan_json_tampered_shapes(w: Work) -> Setup:
    """Fingerprints intact, but a step claims another shape: refused before anything is written."""
    data = json.loads(_saved_plan(w).read_text())
    for step in data["steps"]:  # sources and targets alike, so the plan is consistent in itself
        for t in step["targets"] + step["sources"]:
            t["shape"] = [1] * len(t["shape"])
    return w.apply(spec=w.file("plan.json", json.dumps(redigest(data))))


EXPERTS = {f"e.{k}.w": np.full(2, k, np.float32) for k in range(4)}


def _stacked_plan(w: Work) -> tuple[dict[str, Any], Path, Path]:
    """A saved plan (format 2) whose one step reads its four experts as one run of names."""
    import wmap
    src, tgt = w.source(EXPERTS), w.target({"s.w": np.zeros((4, 2), np.float32)})
    p = wmap.plan(str(w.spec("wmap 1\ne.{k:int}.w -> s.w | stack(0)\n")), source=str(src), target=str(tgt))
    data = json.loads(p.dumps())
    assert "names" in data["steps"][0]["sources"][0], "the experts are saved as a run"
    return data, src, tgt


def _edited_run(w: Work, edit: Callable[[dict[str, Any]], None]) -> Setup:
    data, src, tgt = _stacked_plan(w)
    edit(data["steps"][0]["sources"][0])
    return w.apply(src, spec=w.file("plan.json", json.dumps(redigest(data))), target=tgt)


@case("plan.json", "WM520", "more than 4,000,000 source and target tensors")
def plan_json_run_of_a_trillion_names(w: Work) -> Setup:
    """A few bytes standing for 10^12 tensors: counted and refused before any is made."""
    return _edited_run(w, lambda run: run["names"].update(count=10**12))


@case("plan.json", "WM520", "characters in all")
def plan_json_run_of_megabyte_names(w: Work) -> Setup:
    """A million names of a megabyte each, from a 1 MB file: refused before any is spelled."""
    return _edited_run(w, lambda run: run["names"].update(prefix="e" * 2**20, count=10**6))


@case("plan.json", "WM520", "a run has fields other than")
def plan_json_run_beside_a_name(w: Work) -> Setup:
    """A `name` beside a run would show a reviewer a tensor the loader does not read."""
    return _edited_run(w, lambda run: run.update(name="e.0.w", read="e.0.w"))


@case("plan.json", "WM520", "a source tensor's read name is not text")
def plan_json_list_where_a_name_belongs(w: Work) -> Setup:
    """Used to escape as a TypeError from the re-check's sets."""
    data = json.loads(_saved_plan(w).read_text())
    data["steps"][0]["sources"][0]["read"] = ["a.weight"]
    return w.apply(spec=w.file("plan.json", json.dumps(redigest(data))))


# == compile-time refusals (nothing loaded) =========================================================


@case("compile", "WM301", "")
def shape_mismatch_file(w: Work) -> Setup:
    return w.apply(target=w.target({"b.weight": np.zeros((3, 2), np.float32), "b.bias": np.zeros(2, np.float32)}))


@case("compile", "WM301", "", needs=("torch",))
def shape_mismatch_in_memory(w: Work) -> Setup:
    """Into a live model: nothing may be loaded, not even the tensors whose shapes do fit."""
    import wmap
    torch = _torch()
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"b": torch.nn.Linear(2, 2)})  # b.weight is (2, 2): a mismatch; b.bias fits
    src = {k: torch.from_numpy(v) for k, v in SRC.items()}
    return Setup(call=lambda: wmap.apply(wmap.parse_spec(SPEC), source=src, target=model), model=model)


@case("compile", "WM205", "")
def collision_two_rules_one_target(w: Work) -> Setup:
    src = w.source({**SRC, "c.weight": np.ones((2, 3), np.float32)})
    return w.apply(src, spec=w.spec("wmap 1\na.weight -> b.weight\nc.weight -> b.weight\na.bias -> b.bias\n"))


@case("compile", "WM210", "makes two source tensors both")
def collision_by_strip_prefix(w: Work) -> Setup:
    src = w.source({"module.a.weight": SRC["a.weight"], "a.weight": SRC["a.weight"], "a.bias": SRC["a.bias"]})
    return w.apply(src, spec=w.spec('wmap 1\noption strip_prefix = "module."\na.{x} -> b.{x}\n'))


@case("compile", "WM401", "")
def target_left_unfilled(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap 1\na.weight -> b.weight\ndrop a.bias\n"))


@case("compile", "WM402", "")
def source_left_unused(w: Work) -> Setup:
    src = w.source({**SRC, "c.extra": np.zeros(4, np.float32)})
    return w.apply(src)


@case("compile", "WM302", "")
def dtype_narrowing_refused(w: Work) -> Setup:
    return w.apply(target=w.target({"b.weight": np.zeros((2, 3), np.float16), "b.bias": np.zeros(2, np.float32)}))


@case("compile", "WM201", "matched 0 source tensors")
def rule_matches_nothing(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap 1\na.{x} -> b.{x}\nencoder.{x} -> b.{x}\n"))


# == execution ======================================================================================


def _nan_source(w: Work, value: float = float("nan")) -> Path:
    weight = SRC["a.weight"].copy()
    weight[1, 2] = value
    return w.source({"a.weight": weight, "a.bias": SRC["a.bias"]})


@case("execute", "WM603", "receives NaN or Inf")
def nan_in_source_policy_error(w: Work) -> Setup:
    return w.apply(_nan_source(w), spec=w.spec('wmap 1\noption nonfinite = "error"\na.{x} -> b.{x}\n'))


@case("execute", "WM603", "receives NaN or Inf")
def inf_in_source_policy_error(w: Work) -> Setup:
    w.old_output()
    return w.apply(_nan_source(w, float("inf")),
                   spec=w.spec('wmap 1\noption nonfinite = "error"\na.{x} -> b.{x}\n'))


@case("execute", "WM603", "receives NaN or Inf", needs=("torch",))
def nan_into_in_memory_model(w: Work) -> Setup:
    import wmap
    torch = _torch()
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"b": torch.nn.Linear(3, 2)})
    src = {"a.weight": torch.tensor([[1.0, 2.0, 3.0], [4.0, float("nan"), 6.0]]), "a.bias": torch.ones(2)}
    spec = wmap.parse_spec('wmap 1\noption nonfinite = "error"\n' + SPEC.removeprefix("wmap 1\n"))
    return Setup(call=lambda: wmap.apply(spec, source=src, target=model), model=model)


@case("execute", "WM602", "cannot keep", needs=("torch",))
def keep_without_target_values(w: Work) -> Setup:
    """`keep` into a file needs a template with values; a factory built on meta has none."""
    body = "import torch\n\ndef build():\n    return torch.nn.ModuleDict({'b': torch.nn.Linear(3, 2)})\n"
    s = w.apply(spec=w.spec("wmap 1\na.weight -> b.weight\ndrop a.bias\nkeep b.bias\n"), target=w.factory(body))
    s.cwd = w.d
    return s


@case("execute", "WM602", "cannot keep `b.weight`", needs=("torch",))
def splice_without_target_values(w: Work) -> Setup:
    """`splice` keeps the rest of its target, so like `keep` it needs a target with values."""
    body = "import torch\n\ndef build():\n    return torch.nn.ModuleDict({'b': torch.nn.Linear(3, 4)})\n"
    s = w.apply(spec=w.spec("wmap 1\na.weight -> b.weight | splice(0, 2)\ndrop a.bias\ninit b.bias = zeros\n"),
                target=w.factory(body))
    s.cwd = w.d
    return s


# == outputs and I/O faults =========================================================================


@case("output", "WM512", "is a directory")
def output_is_a_directory(w: Work) -> Setup:
    w.out.mkdir()
    return w.apply()


@case("output", "WM512", "cannot write")
def output_folder_missing(w: Work) -> Setup:
    return w.apply(out=w.d / "no" / "such" / "folder" / "model.safetensors")


@case("output", "WM512", "is a file, but a checkpoint directory was asked for")
def output_directory_is_a_file(w: Work) -> Setup:
    w.file("out/ckpt", "a file where a directory should be")
    return w.apply(out=w.outdir / "ckpt")


def _mkstemp_fails(err: OSError) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(mp: pytest.MonkeyPatch) -> None:
        import wmap.core.atomic as at

        def mkstemp(*a: Any, **k: Any) -> Any:
            raise err
        mp.setattr(at.tempfile, "mkstemp", mkstemp)
    return patch


@case("output", "WM512", "Permission denied")
def output_unwritable(w: Work) -> Setup:
    w.old_output()
    s = w.apply()
    s.patch = _mkstemp_fails(PermissionError(errno.EACCES, "Permission denied"))
    return s


@case("output", "WM512", "Read-only file system")
def output_read_only_filesystem(w: Work) -> Setup:
    s = w.apply()
    s.patch = _mkstemp_fails(OSError(errno.EROFS, "Read-only file system"))
    return s


class _FullDisk:
    """A file object that accepts `writes` writes, then fails like a full disk."""

    def __init__(self, f: Any, writes: int):
        self._f, self._writes = f, writes

    def write(self, data: Any) -> int:
        if self._writes <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._writes -= 1
        return int(self._f.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _disk_full_after(writes: int) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(mp: pytest.MonkeyPatch) -> None:
        import wmap.sinks.safetensors_writer as sw
        real = os.fdopen
        mp.setattr(sw.os, "fdopen", lambda fd, *a, **k: _FullDisk(real(fd, *a, **k), writes))
    return patch


@case("output", "WM512", "No space left on device")
def output_disk_full_while_streaming(w: Work) -> Setup:
    w.old_output()
    s = w.apply()
    s.patch = _disk_full_after(2)  # the header and the first tensor fit, the second does not
    return s


@case("output", "WM512", "No space left on device")
def output_disk_full_at_fsync(w: Work) -> Setup:
    w.old_output()
    s = w.apply()

    def patch(mp: pytest.MonkeyPatch) -> None:
        import wmap.sinks.safetensors_writer as sw

        def fsync(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")
        mp.setattr(sw.os, "fsync", fsync)
    s.patch = patch
    return s


@case("output", "WM512", "Permission denied")
def output_rename_refused(w: Work) -> Setup:
    w.old_output()
    s = w.apply()

    def patch(mp: pytest.MonkeyPatch) -> None:
        import wmap.sinks.safetensors_writer as sw

        def replace(a: Any, b: Any) -> None:
            raise PermissionError(errno.EACCES, "Permission denied")
        mp.setattr(sw.os, "replace", replace)
    s.patch = patch
    return s


@case("output", "WM512", "Input/output error")
def output_sharded_rename_fails_midway(w: Work) -> Setup:
    """Rewriting a sharded checkpoint: the second shard's rename fails after the first landed.
    The old checkpoint (index and every shard) must still be the old one, byte for byte."""
    import wmap
    ckpt = w.outdir / "ckpt"
    spec = w.spec('wmap 1\noption shard_size = "16B"\na.{x} -> b.{x}\n')
    wmap.apply(str(spec), source=str(w.source()), target=str(w.target()), out=str(ckpt))  # the old result
    src = w.source({"a.weight": SRC["a.weight"] * 2, "a.bias": SRC["a.bias"] * 2}, "src2.safetensors")
    s = w.apply(src, spec=spec, out=ckpt)
    s.watch = [ckpt]

    def patch(mp: pytest.MonkeyPatch) -> None:
        import wmap.sinks.safetensors_writer as sw
        real = os.replace
        calls = {"n": 0}

        def replace(a: Any, b: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.EIO, "Input/output error")
            real(a, b)
        mp.setattr(sw.os, "replace", replace)
    s.patch = patch
    s.check = lambda: _assert_tree_equal(ckpt, snapshot)
    snapshot = _tree(ckpt)
    return s


@case("output", "WM512", "cannot write")
def plan_save_into_missing_folder(w: Work) -> Setup:
    out = w.d / "missing" / "plan.json"
    return Setup(argv=["plan", str(w.spec()), "-s", str(w.source()), "-t", str(w.target()), "-o", str(out)],
                 out=out)


@case("output", "WM512", "No space left on device")
def plan_save_disk_full(w: Work) -> Setup:
    out = w.file("out/plan.json", '{"old": "plan"}\n')

    def patch(mp: pytest.MonkeyPatch) -> None:
        import wmap.core.atomic as at

        def replace(a: Any, b: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")
        mp.setattr(at.os, "replace", replace)
    return Setup(argv=["plan", str(w.spec()), "-s", str(w.source()), "-t", str(w.target()), "-o", str(out)],
                 out=out, patch=patch, watch=[w.outdir])


@case("output", "WM512", "cannot write")
def apply_report_into_missing_folder(w: Work) -> Setup:
    """The report cannot be written: checked before anything is applied, so no output appears either."""
    s = w.apply(extra=("--report", str(w.d / "missing" / "report.json")))
    return s


# == command line ==================================================================================


@case("cli", "WM521", "say where with --out")
def apply_without_out(w: Work) -> Setup:
    return Setup(argv=["apply", str(w.spec()), "-s", str(w.source()), "-t", str(w.target())])


@case("cli", "WM521", "give several sources as NAME=PATH")
def several_unnamed_sources(w: Work) -> Setup:
    s = w.apply()
    assert s.argv is not None
    s.argv += ["-s", str(w.source(name="other.safetensors"))]
    return s


@case("cli", "WM521", "no source")
def no_source_anywhere(w: Work) -> Setup:
    return Setup(argv=["plan", str(w.spec()), "-t", str(w.target())])


# -- post-conditions -------------------------------------------------------------------------------


def _assert_absent(marker: Path) -> None:
    assert not marker.exists(), f"the pickle payload ran: {marker} exists"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_tree_equal(root: Path, before: Mapping[str, bytes]) -> None:
    after = _tree(root)
    assert sorted(after) == sorted(before), f"files changed: {sorted(set(after) ^ set(before))}"
    changed = [k for k in before if after[k] != before[k]]
    assert not changed, f"old checkpoint files were overwritten: {changed}"


import tests.hostile.cases_formats2  # noqa: E402,F401 - registers round two's format cases into CASES
import tests.hostile.cases_issue17  # noqa: E402,F401 - registers issue 17 cases (plans, names, bounds)

CATEGORIES = Counter(c.category for c in CASES)
