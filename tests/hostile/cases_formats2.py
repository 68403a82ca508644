"""Hostile inputs, round two: the format readers (links, state files, short members, bombs, layouts).

Registered into `cases.CASES` by the import at the end of `cases.py`. Every file here is built
for real: h5py writes the links, torch.save the archives (then cut or edited), TensorFlow the
checkpoints, numpy the `.npy` headers. The zip bombs are real deflate streams (repeated
full-flush blocks of zeros, so a 256 MiB member costs ~0.1 s and ~0.3 MB to build); wmap must
refuse them from their declared sizes, never by inflating them.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.hostile.cases import SRC, Setup, Work, case, st_raw

# -- builders ----------------------------------------------------------------------------------------


def _h5(path: Path, build: Callable[[Any], None]) -> Path:
    import h5py
    with h5py.File(path, "w") as f:
        build(f)
    return path


def _legacy_layer(g: Any, layer: str = "a") -> None:
    """A Keras 2 layer group holding SRC's two tensors as `<layer>/weight`, `<layer>/bias`."""
    g.attrs["weight_names"] = np.array([f"{layer}/weight".encode(), f"{layer}/bias".encode()])
    g.create_dataset(f"{layer}/weight", data=SRC["a.weight"] * 100)
    g.create_dataset(f"{layer}/bias", data=SRC["a.bias"] * 100)


def _elsewhere(w: Work, build: Callable[[Any], None]) -> Path:
    """Another HDF5 file on the machine, which a hostile link points into (absolute path)."""
    return _h5((w.d / "elsewhere.h5").resolve(), build)


# A zip written by hand, so the compressed stream and the sizes are exactly what we say.
Member = tuple[str, int, bytes, int, int]  # name, method, payload, crc32, uncompressed size


def raw_zip(members: Sequence[Member]) -> bytes:
    out, central = bytearray(), bytearray()
    for name, method, payload, crc, size in members:
        n = name.encode()
        offset = len(out)
        out += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(payload), size, len(n), 0)
        out += n + payload
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(payload), size,
                               len(n), 0, 0, 0, 0, 0, offset) + n
    eocd = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(out), 0)
    return bytes(out + central + eocd)


def stored(name: str, data: bytes) -> Member:
    return (name, zipfile.ZIP_STORED, data, zlib.crc32(data), len(data))


def deflate_bomb(name: str, head: bytes, zero_mib: int) -> Member:
    """A real deflate member: `head`, then `zero_mib` MiB of zeros, from ~1 KB per MiB."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    mib = bytes(1 << 20)
    payload = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)  # after a full flush, the same input -> the same bytes
    crc = zlib.crc32(head)
    for _ in range(zero_mib):
        crc = zlib.crc32(mib, crc)
    return (name, zipfile.ZIP_DEFLATED, payload + block * zero_mib + c.flush(), crc, len(head) + zero_mib * (1 << 20))


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _torch() -> Any:
    import torch
    return torch


def _rezip(src: Path, dst: Path, edit: Callable[[str, bytes], bytes]) -> Path:
    """Copy a torch.save archive member by member (stored), letting `edit` change members' bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename, zin.read(info)))
    return dst


def _meta_target(w: Work, weight_shape: tuple[int, ...]) -> str:
    """A `module:callable` target with `b.weight` of `weight_shape` and `b.bias` (2,), built on the
    meta device: a target as big as a bomb's declared tensor, without writing one to disk."""
    return w.factory("import torch\n\ndef build():\n    m = torch.nn.Module()\n    m.b = torch.nn.Module()\n"
                     f"    m.b.weight = torch.nn.Parameter(torch.empty({weight_shape!r}))\n"
                     "    m.b.bias = torch.nn.Parameter(torch.empty(2))\n    return m\n")


def _with_cwd(s: Setup, w: Work) -> Setup:
    s.cwd = w.d  # the factory module is imported from the work folder
    return s


def _tf_checkpoint(prefix: Path, scale: float = 1.0) -> Path:
    """A real TF2 object-graph checkpoint whose variables are named `a.weight`, `a.bias`."""
    import tensorflow as tf
    a = tf.Module()
    a.weight = tf.Variable(SRC["a.weight"] * scale)
    a.bias = tf.Variable(SRC["a.bias"] * scale)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tf.train.Checkpoint(a=a).write(str(prefix))
    return prefix


# == HDF5: one link and storage policy for every reader ===============================================


@case("keras", "WM509", "is an external link", needs=("h5py",))
def h5_legacy_layer_external_link(w: Work) -> Setup:
    """Legacy `.h5`: `layer_names=["a"]` and `/a` an external link: the values would come from the
    other file."""
    import h5py
    other = _elsewhere(w, lambda f: _legacy_layer(f.create_group("a")))

    def build(f: Any) -> None:
        f.attrs["layer_names"] = np.array([b"a"])
        f["a"] = h5py.ExternalLink(str(other), "/a")
    return w.apply(_h5(w.d / "src.h5", build))


@case("keras", "WM509", "is an external link", needs=("h5py",))
def h5_legacy_model_weights_external_link(w: Work) -> Setup:
    """A full-model legacy `.h5` whose `/model_weights` is an external link."""
    import h5py

    def other_build(f: Any) -> None:
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([b"a"])
        _legacy_layer(mw.create_group("a"))
    other = _elsewhere(w, other_build)
    return w.apply(_h5(w.d / "src.h5", lambda f: f.__setitem__("model_weights",
                                                                h5py.ExternalLink(str(other), "/model_weights"))))


@case("keras", "WM509", "is an external link", needs=("h5py",))
def h5_legacy_intermediate_external_link(w: Work) -> Setup:
    """`weight_names=["ext/kernel"]` where `/a/ext` is an external link: `inspect` would list the
    other file's tensors."""
    import h5py
    other = _elsewhere(w, lambda f: f.create_group("ext").create_dataset("kernel", data=np.ones((2, 3), np.float32)))

    def build(f: Any) -> None:
        f.attrs["layer_names"] = np.array([b"a"])
        g = f.create_group("a")
        g.attrs["weight_names"] = np.array([b"ext/kernel"])
        g["ext"] = h5py.ExternalLink(str(other), "/ext")
    return Setup(argv=["inspect", str(_h5(w.d / "src.h5", build))])


@case("keras", "WM509", "is a soft link", needs=("h5py",))
def h5_legacy_soft_link(w: Work) -> Setup:
    """A soft link never appears in a Keras file; following one could lead through an external link."""
    import h5py

    def build(f: Any) -> None:
        f.attrs["layer_names"] = np.array([b"a"])
        _legacy_layer(f.create_group("real"))
        f["a"] = h5py.SoftLink("/real")
    return w.apply(_h5(w.d / "src.h5", build))


@case("keras", "WM509", "stores its data outside the file", needs=("h5py",))
def h5_legacy_external_storage(w: Work) -> Setup:
    """A dataset whose raw data lives in another file (HDF5 external storage)."""
    raw = w.file("elsewhere.bin", (SRC["a.weight"] * 100).tobytes())

    def build(f: Any) -> None:
        f.attrs["layer_names"] = np.array([b"a"])
        g = f.create_group("a")
        g.attrs["weight_names"] = np.array([b"a/weight"])
        g.create_dataset("a/weight", shape=(2, 3), dtype="<f4", external=[(str(raw.resolve()), 0, 24)])
    return w.apply(_h5(w.d / "src.h5", build))


@case("keras", "WM509", "stores its data outside the file", needs=("h5py",))
def h5_virtual_dataset(w: Work) -> Setup:
    """A virtual dataset (VDS) mapping another file's dataset into a Keras 3 weights file."""
    import h5py
    other = _elsewhere(w, lambda f: f.create_dataset("w", data=SRC["a.weight"] * 100))

    def build(f: Any) -> None:
        layout = h5py.VirtualLayout(shape=(2, 3), dtype="<f4")
        layout[:] = h5py.VirtualSource(str(other), "w", shape=(2, 3))
        f.create_group("layers").create_group("dense").create_group("vars").create_virtual_dataset("0", layout)
    return w.apply(_h5(w.d / "src.weights.h5", build))


@case("keras", "WM509", "is an external link", needs=("h5py",))
def keras_archive_member_external_link(w: Work) -> Setup:
    """The `model.weights.h5` inside a `.keras` archive, with an external link in it."""
    import h5py
    other = _elsewhere(w, lambda f: f.create_group("vars").create_dataset("0", data=np.ones(3, np.float32)))
    inner = _h5(w.d / "inner.h5", lambda f: f.create_group("layers").create_group("dense").__setitem__(
        "vars", h5py.ExternalLink(str(other), "/vars")))
    path = w.file("src.keras", raw_zip([stored("config.json", b"{}"), stored("model.weights.h5", inner.read_bytes())]))
    return w.apply(path)


# == TensorFlow checkpoints: the state file and the data files ========================================


@case("tf", "WM513", "outside its folder", needs=("tensorflow",))
def tf_state_file_names_absolute_prefix_elsewhere(w: Work) -> Setup:
    """`checkpoint` says `model_checkpoint_path: "/abs/elsewhere/model"`: TF would read that."""
    other = _tf_checkpoint((w.d / "elsewhere" / "model").resolve(), scale=100.0)
    w.file("ckpt/checkpoint", f'model_checkpoint_path: "{other}"\n')
    return w.apply(w.d / "ckpt")


@case("tf", "WM513", "outside its folder", needs=("tensorflow",))
def tf_state_file_names_dotdot_prefix(w: Work) -> Setup:
    _tf_checkpoint(w.d / "elsewhere" / "model", scale=100.0)
    w.file("ckpt/checkpoint", 'model_checkpoint_path: "../elsewhere/model"\n')
    return w.apply(w.d / "ckpt")


@case("tf", "WM513", "outside its folder", needs=("tensorflow",))
def tf_state_file_names_etc_passwd(w: Work) -> Setup:
    w.file("ckpt/checkpoint", 'model_checkpoint_path: "/etc/passwd"\nall_model_checkpoint_paths: "/etc/passwd"\n')
    return w.apply(w.d / "ckpt")


@case("tf", "WM513", "is not a regular file", needs=("tensorflow",))
def tf_data_file_is_a_fifo(w: Work) -> Setup:
    """Reading a FIFO blocks until a writer comes: refused before TF (or the output) opens anything."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    prefix = _tf_checkpoint(w.d / "ckpt" / "model")
    data = Path(f"{prefix}.data-00000-of-00001")
    data.unlink()
    os.mkfifo(data)
    return w.apply(Path(f"{prefix}.index"))


# == PyTorch archives: storages against their members, views against their storages ===================


def _pt(w: Work, tensors: dict[str, Any], name: str = "full.pt") -> Path:
    path = w.d / name
    _torch().save(tensors, path)
    return path


@case("torch", "WM510", "declares 24 bytes", needs=("torch",))
def pt_storage_member_cut_short(w: Work) -> Setup:
    """`archive/data/0` cut to 4 of its 24 bytes: an mmap load would read the zip's own headers."""
    full = _pt(w, {k: _torch().from_numpy(v) for k, v in SRC.items()})
    return w.apply(_rezip(full, w.d / "src.pt", lambda n, b: b[:4] if n.endswith("/data/0") else b))


@case("torch", "WM510", "runs into", needs=("torch",))
def pt_storage_member_size_lies(w: Work) -> Setup:
    """The zip directory says `data/0` holds 24 bytes, but only 4 are there before the next member."""
    full = _pt(w, {"a.weight": _torch().from_numpy(SRC["a.weight"]), "a.bias": _torch().from_numpy(SRC["a.bias"])})
    members = []
    with zipfile.ZipFile(full) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            if info.filename.endswith("/data/0"):
                members.append((info.filename, 0, data[:4], zlib.crc32(data), 24))
                continue
            members.append(stored(info.filename, data))
    # the central directory and the local header agree on 24 bytes; the member really has 4
    blob = bytearray(raw_zip(members))
    name = next(m[0] for m in members if m[0].endswith("/data/0")).encode()
    at = blob.index(b"PK\x03\x04" + struct.pack("<5H", 20, 0, 0, 0, 0x21))
    while blob[at + 30:at + 30 + len(name)] != name:
        at = blob.index(b"PK\x03\x04", at + 4)
    struct.pack_into("<I", blob, at + 18, 24)  # compressed size in the local header
    cd = blob.index(b"PK\x01\x02" + struct.pack("<6H", 20, 20, 0, 0, 0, 0x21))
    while blob[cd + 46:cd + 46 + len(name)] != name:
        cd = blob.index(b"PK\x01\x02", cd + 4)
    struct.pack_into("<I", blob, cd + 20, 24)  # compressed size in the central directory
    return w.apply(w.file("src.pt", bytes(blob)))


@case("torch", "WM510", "stride", needs=("torch",))
def pt_zero_stride_bomb(w: Work) -> Setup:
    """A 4-byte storage viewed as (2**22, 3) with strides (0, 0): 48 MiB declared from 4 bytes stored."""
    torch = _torch()
    src = _pt(w, {"a.weight": torch.ones(1).as_strided((2**22, 3), (0, 0)), "a.bias": torch.ones(2)}, "src.pt")
    return _with_cwd(w.apply(src, target=_meta_target(w, (2**22, 3))), w)


@case("torch", "WM510", "sparse_coo layout", needs=("torch",))
def pt_sparse_coo_tensor(w: Work) -> Setup:
    torch = _torch()
    return w.apply(_pt(w, {"a.weight": torch.eye(2, 3).to_sparse(), "a.bias": torch.ones(2)}, "src.pt"))


@case("torch", "WM510", "sparse_csr layout", needs=("torch",))
def pt_sparse_csr_tensor(w: Work) -> Setup:
    import warnings
    torch = _torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        weight = torch.eye(2, 3).to_sparse_csr()
    return w.apply(_pt(w, {"a.weight": weight, "a.bias": torch.ones(2)}, "src.pt"))


@case("torch", "WM510", "nested tensor", needs=("torch",))
def pt_nested_tensor(w: Work) -> Setup:
    import warnings
    torch = _torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "nested tensors are in prototype stage"
        weight = torch.nested.nested_tensor([torch.ones(3), torch.ones(2)])
    return w.apply(_pt(w, {"a.weight": weight, "a.bias": torch.ones(2)}, "src.pt"))


# == npz: members against their headers, and deflate bombs =============================================


@case("npz", "WM510", "holds 4 bytes of data where its header declares 24")
def npz_member_data_short(w: Work) -> Setup:
    """`a.weight.npy` declares (2, 3) float32 but holds 20 bytes too few: the read would run into the
    next member."""
    head = npy(SRC["a.weight"])
    path = w.file("src.npz", raw_zip([stored("a.weight.npy", head[:-20]), stored("a.bias.npy", npy(SRC["a.bias"]))]))
    return w.apply(path)


@case("npz", "WM510", "would expand", needs=("torch",))
def npz_deflate_bomb(w: Work) -> Setup:
    """A 0.3 MB archive whose member inflates to 256 MiB (a real deflate stream of zeros)."""
    n = 64 * 2**20
    members = [deflate_bomb("a.weight.npy", npy_header((n,)), 256), stored("a.bias.npy", npy(SRC["a.bias"]))]
    src = w.file("src.npz", raw_zip(members))
    spec = w.spec("wmap 1\na.weight -> b.weight\na.bias -> b.bias\n")
    return _with_cwd(w.apply(src, spec=spec, target=_meta_target(w, (n,))), w)


# == Keras / HDF5 memory bombs ========================================================================


@case("keras", "WM509", "would expand", needs=("h5py",))
def keras_archive_deflate_bomb(w: Work) -> Setup:
    """A `.keras` whose `model.weights.h5` is a real small weights file followed by 256 MiB of zeros,
    deflated to 0.3 MB: planning must not inflate it."""
    inner = _h5(w.d / "inner.h5", lambda f: f.create_group("vars").create_dataset("0", data=np.ones(2, np.float32)))
    path = w.file("src.keras", raw_zip([stored("config.json", b"{}"),
                                        deflate_bomb("model.weights.h5", inner.read_bytes(), 256)]))
    return Setup(argv=["inspect", str(path)])


@case("keras", "WM509", "stores only", needs=("h5py", "torch"))
def h5_fill_value_bomb(w: Work) -> Setup:
    """A few KB `.weights.h5` with a chunked dataset of 2**26 float32 whose chunks were never written:
    reading it would allocate 256 MiB of fill value."""
    def build(f: Any) -> None:
        v = f.create_group("layers").create_group("dense").create_group("vars")
        v.create_dataset("0", shape=(2**26,), dtype="<f4", chunks=(2**16,), fillvalue=1.0)
        v.create_dataset("1", data=np.ones(2, np.float32))
    src = _h5(w.d / "src.weights.h5", build)
    spec = w.spec("wmap 1\ndense.kernel -> b.weight\ndense.bias -> b.bias\n")
    return _with_cwd(w.apply(src, spec=spec, target=_meta_target(w, (2**26,))), w)


# == names that cannot be printed ====================================================================


@case("safetensors", "WM504", "is not valid Unicode")
def st_name_lone_surrogate(w: Work) -> Setup:
    """A header key `"\\ud800"`: valid JSON escapes, but no Unicode string (the safetensors library
    refuses it too); `inspect` used to crash printing it."""
    header = b'{"\\ud800": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'
    return Setup(argv=["inspect", str(w.file("src.safetensors", st_raw(header, bytes(8))))])


@case("safetensors", "WM402", "a\\x1b]0;pwned\\x07\\x1b[2Jb")
def st_name_with_terminal_controls(w: Work) -> Setup:
    """A name carrying an OSC title sequence and a clear-screen: diagnostics show it escaped."""
    header = {"a\x1b]0;pwned\x07\x1b[2Jb": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    spec = w.spec("wmap 1\noption strict = true\na.bias -> b.bias\n")
    src = w.file("src.safetensors", st_raw({**header, "a.bias": {"dtype": "F32", "shape": [2],
                                                                 "data_offsets": [8, 16]}}, bytes(16)))
    return w.apply(src, spec=spec, target=w.target({"b.bias": np.zeros(2, np.float32)}))
