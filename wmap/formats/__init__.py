"""Readers for every place weights live, behind one `TensorSource` interface.

`open_source` dispatches on what it is given:

- a path: `.safetensors`; a sharded `*.index.json` (safetensors or torch `.bin` shards);
  `.pt/.pth/.bin/.ckpt`; `.npz`; `.npy` (one array, named by the file); Keras `.keras`, `.weights.h5`,
  sharded `.weights.json`, legacy `.h5`; a TensorFlow checkpoint prefix, its `.index`, or its directory; a
  directory holding one of these (Hugging Face names first); unknown suffixes by magic bytes;
- an `nn.Module`, a built Keras model, or a `Mapping[str, array]`;
- an object that already is a `TensorSource`.

A `module:callable` string names a model to build, which is not a reader's business: `run/resolve.py`
builds it and hands the model here.

Importing this package imports no framework: torch, TensorFlow and Keras objects are
recognised through `sys.modules`, and framework readers import lazily.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from wmap.core.errors import WmapError, did_you_mean
from wmap.core.inventory import Inventory
from wmap.formats._common import canonical_framework, fail
from wmap.formats.base import ArrayKind, TensorSource

__all__ = ["ArrayKind", "TensorSource", "inventory_of", "open_source"]

_DIR_PREFERENCE = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                   "pytorch_model.bin", "model.keras", "model.weights.h5")
_DIR_PATTERNS = ("*.safetensors.index.json", "*.safetensors", "*.bin.index.json", "*.weights.json", "*.keras",
                 "*.weights.h5", "*.h5", "*.npz", "*.pt", "*.pth", "*.bin", "*.index")

if TYPE_CHECKING:
    from wmap.core.frameworks import KerasModel


def open_source(obj: object, framework: str | None = None, *, keras_model: KerasModel | None = None) -> TensorSource:
    """A `TensorSource` for `obj`; the caller closes it. Unknown inputs are WM500/WM501.

    `keras_model`: a built Keras model whose variables name the datasets of a Keras 3
    weights file exactly (otherwise they are named from the file's own config/layout).
    """
    fw = canonical_framework(framework)
    if isinstance(obj, (str, os.PathLike)):
        return _open_path(os.fspath(obj), fw, keras_model)
    if isinstance(obj, TensorSource):
        return obj
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(obj, keras.layers.Layer):  # first: Keras' torch backend makes
        from wmap.formats.memory import KerasModelSource  # a Keras layer an nn.Module too

        return KerasModelSource(obj, fw)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.nn.Module):
        from wmap.formats.memory import TorchModuleSource

        return TorchModuleSource(obj, fw)
    if isinstance(obj, Mapping):
        from wmap.formats.memory import MappingSource

        return MappingSource(obj, fw)
    raise fail("WM501", f"wmap cannot read weights from a {type(obj).__module__}.{type(obj).__qualname__}",
               hint="pass a checkpoint path, a `module:callable` factory, an nn.Module, a built Keras model, "
               "or a mapping of names to arrays")


def inventory_of(obj: object, framework: str | None = None, *, keras_model: KerasModel | None = None) -> Inventory:
    """The inventory of `obj` (metadata only); sources opened here are closed again."""
    src = open_source(obj, framework, keras_model=keras_model)
    try:
        return src.inventory()
    finally:
        if src is not obj:
            src.close()


def _open_path(path: str, fw: str | None, keras_model: KerasModel | None) -> TensorSource:
    if not os.path.exists(path):  # a TensorFlow checkpoint is named by its prefix, not a file
        from wmap.formats.tf_checkpoint import TFCheckpoint, checkpoint_prefix
        if checkpoint_prefix(path):
            return TFCheckpoint(path, fw)
        parent = os.path.dirname(path) or "."
        siblings = os.listdir(parent) if os.path.isdir(parent) else []
        raise fail("WM500", f"`{path}` does not exist", hint=did_you_mean(os.path.basename(path), siblings))
    if os.path.isdir(path):
        path = _pick_in_dir(path)
        if os.path.isdir(path):
            from wmap.formats.tf_checkpoint import TFCheckpoint
            return TFCheckpoint(path, fw)
    if not os.path.isfile(path):  # a FIFO or device: opening a FIFO would block until a writer comes
        raise fail("WM500", f"`{path}` is not a regular file", hint="pass the checkpoint file itself")
    return _open_file(path, fw, keras_model)


def _pick_in_dir(path: str) -> str:
    """The checkpoint inside a directory: Hugging Face names first, then a TF checkpoint, then
    the only file of a known kind."""
    from wmap.formats.tf_checkpoint import checkpoint_prefix

    for name in _DIR_PREFERENCE:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    if checkpoint_prefix(path):
        return path
    for pattern in _DIR_PATTERNS:
        found = sorted(glob.glob(os.path.join(glob.escape(path), pattern)))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(f"`{os.path.basename(f)}`" for f in found[:4])
            raise fail("WM501", f"`{path}` holds several candidate checkpoints ({names}) and no index",
                       hint="pass one file, or add an index such as `model.safetensors.index.json`")
    raise fail("WM501", f"`{path}` holds no checkpoint wmap recognises",
               hint="expected e.g. model.safetensors, model.safetensors.index.json, pytorch_model.bin, "
               "*.keras, *.weights.h5, a TF checkpoint")


def _open_file(path: str, fw: str | None, keras_model: KerasModel | None) -> TensorSource:
    lower = path.lower()
    if lower.endswith(".weights.json"):
        from wmap.formats.keras_files import KerasWeightsFile

        return KerasWeightsFile(path, fw, keras_model)
    if lower.endswith(".index.json"):
        from wmap.formats.sharded import ShardedSource

        return ShardedSource(path, fw)
    kind = _kind_by_suffix(lower) or _kind_by_magic(path)
    if kind == "safetensors":
        from wmap.formats.safetensors_file import SafetensorsFile

        return SafetensorsFile(path, fw)
    if kind == "npz":
        from wmap.formats.npz_file import NpzFile

        return NpzFile(path, fw)
    if kind == "npy":
        from wmap.formats.npy_file import NpyFile

        return NpyFile(path, fw)
    if kind == "keras":
        from wmap.formats.keras_files import KerasWeightsFile

        return KerasWeightsFile(path, fw, keras_model)
    if kind == "h5":
        return _open_h5_file(path, fw, keras_model)
    if kind == "tf":
        from wmap.formats.tf_checkpoint import TFCheckpoint

        return TFCheckpoint(path, fw)
    if kind == "torch":
        from wmap.formats.torch_file import TorchFile

        return TorchFile(path, fw)
    raise fail("WM501", f"`{path}` is not in a format wmap recognises",
               hint="supported: .safetensors, *.index.json, .pt/.pth/.bin, .npz, .npy, .keras, .weights.h5, .h5, "
               "TF checkpoints")


def _kind_by_suffix(lower: str) -> str | None:
    if lower.endswith(".index"):
        return "tf"
    if lower.endswith(".ckpt"):  # a TF checkpoint's prefix, or a torch file
        from wmap.formats.tf_checkpoint import checkpoint_prefix
        if checkpoint_prefix(lower):
            return "tf"
    for suffixes, kind in (((".safetensors",), "safetensors"), ((".npz",), "npz"), ((".npy",), "npy"),
                           ((".keras",), "keras"),
                           ((".h5", ".hdf5"), "h5"), ((".pt", ".pth", ".bin", ".ckpt"), "torch")):
        if lower.endswith(suffixes):
            return kind
    return None


def _kind_by_magic(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise fail("WM500", f"cannot read `{path}`: {exc.strerror or exc}") from None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "h5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if len(head) >= 9 and int.from_bytes(head[:8], "little") < 100 * 1024 * 1024 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        return "torch"  # a legacy pickle; the weights-only loader decides what it may hold
    return None


def _zip_kind(path: str) -> str | None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if "model.weights.h5" in names or "config.json" in names:
        return "keras"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "torch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return None


def _open_h5_file(path: str, fw: str | None, keras_model: KerasModel | None) -> TensorSource:
    from wmap.formats.h5_util import damaged, open_h5
    from wmap.formats.keras_files import KerasWeightsFile
    from wmap.formats.keras_legacy import LegacyKerasH5, is_legacy_h5

    f = open_h5(path, path)
    try:
        legacy = is_legacy_h5(f, path)
    except WmapError:
        raise
    except Exception as exc:
        raise damaged(path, exc) from None
    finally:
        f.close()
    return LegacyKerasH5(path, fw) if legacy else KerasWeightsFile(path, fw, keras_model)
