"""TensorFlow checkpoints (`prefix.index` + `prefix.data-*`), through TF's own reader.

`tf.train.load_checkpoint` reads only the index for shapes and dtypes; `get_tensor` reads
one variable. TensorFlow is imported only when such a checkpoint is opened (~5 s).

Names: object-graph checkpoints (`tf.train.Checkpoint`, Keras) spell variables like
`model/_operations/2/_kernel/.ATTRIBUTES/VARIABLE_VALUE`; we drop the
`/.ATTRIBUTES/VARIABLE_VALUE` suffix and leading underscores of each segment, giving
`model.operations.2.kernel`, and keep the full spelling as `native`. TF1 name-based
checkpoints (`bert/encoder/layer_0/.../kernel`) just become dotted. Skipped, and listed in
`skipped`: bookkeeping (`_CHECKPOINTABLE_OBJECT_GRAPH`, `save_counter`, `global_step`) and
optimizer state (`optimizer/...`, `.OPTIMIZER_SLOT` slot variables), which are not weights.

Before TensorFlow opens anything: a checkpoint folder's state file (`checkpoint`) may only
name a prefix inside that folder (TF would follow `model_checkpoint_path: "/etc/passwd"` or
`"../other/model"`), and the `.index` and every `.data-NNNNN-of-MMMMM` shard must exist and
be regular files (a FIFO would block the read forever, mid-transfer).
"""

from __future__ import annotations

import glob
import os
import re
import stat
from typing import Any

from wmap.core.inventory import DTYPE_BITS, Inventory, TensorMeta
from wmap.formats._common import (
    as_kind,
    canonical_framework,
    check_unique,
    fail,
    missing,
    np_dtype,
    require,
    shown,
)
from wmap.formats.base import Array, ArrayKind

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_BOOKKEEPING = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter", "global_step")
_TF_DTYPES = {"half": "float16", "float": "float32", "double": "float64"}


def checkpoint_prefix(path: str) -> str | None:
    """The checkpoint prefix for a path naming a prefix, its `.index` file or its directory."""
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "checkpoint")):
        return path
    return None


def is_bookkeeping(native: str) -> bool:
    head = native.split("/", 1)[0]
    return head in _BOOKKEEPING or head == "optimizer" or "/.OPTIMIZER_SLOT/" in native


def tf_name(native: str) -> str:
    name = native[: -len(_SUFFIX)] if native.endswith(_SUFFIX) else native
    name = name.removesuffix(":0")
    return ".".join(seg.lstrip("_") or seg for seg in name.split("/"))


_SHARD = re.compile(r"\.data-(\d{5})-of-(\d{5})$")


def state_prefix(folder: str, where: str, tf: Any) -> str:
    """The prefix a folder's `checkpoint` state file names, if it lies inside the folder."""
    try:
        state = tf.train.get_checkpoint_state(folder)  # joins a relative path with the folder
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail("WM513", f"`{os.path.join(where, 'checkpoint')}` is not a readable checkpoint state file "
                   f"({first[:200]})", hint="pass the checkpoint prefix itself, e.g. `ckpt/model`") from None
    named = state.model_checkpoint_path if state is not None else ""  # TF logs and returns None on a parse error
    if not named:
        raise fail("WM513", f"`{os.path.join(where, 'checkpoint')}` names no checkpoint (it is empty or not a "
                   "checkpoint state file)", hint="pass the checkpoint prefix itself, e.g. `ckpt/model`")
    base = os.path.realpath(folder)
    if os.path.commonpath([base, os.path.realpath(named)]) != base:
        raise fail("WM513", f"`{os.path.join(where, 'checkpoint')}` names the checkpoint `{named}`, which is outside "
                   "its folder; wmap reads only checkpoints inside the folder it is given",
                   hint="pass the checkpoint prefix itself if you mean it, e.g. `--source path/to/model`")
    return str(named)


def check_files(prefix: str, where: str) -> None:
    """The `.index` and every data shard exist and are regular files (never a FIFO or a device)."""
    index = prefix + ".index"
    shards = sorted(glob.glob(glob.escape(prefix) + ".data-*-of-*"))
    counts = {m.group(2) for m in map(_SHARD.search, shards) if m}
    if len(counts) > 1:
        raise fail("WM513", f"`{where}`: `{prefix}` has data files of different shard counts",
                   hint="remove the files of older checkpoints with the same prefix")
    total = int(counts.pop()) if counts else 1
    expected = [f"{prefix}.data-{i:05d}-of-{total:05d}" for i in range(total)]
    for path in [index, *expected]:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise fail("WM513", f"`{where}`: the checkpoint file `{path}` is missing",
                       hint="copy the `.index` and every `.data-*` file of the checkpoint") from None
        if not stat.S_ISREG(mode):
            raise fail("WM513", f"`{where}`: `{path}` is not a regular file", hint="pass a checkpoint made of files")


class TFCheckpoint:
    """A TF checkpoint read by TensorFlow's `CheckpointReader`."""

    label = "tf checkpoint"

    def __init__(self, path: str | os.PathLike[str], framework: str | None = None):
        self.path = shown(path)
        self.framework = canonical_framework(framework) or "keras"
        tf = require("tensorflow", f"reading `{self.path}`")
        prefix = checkpoint_prefix(self.path)
        if prefix is not None and os.path.isdir(prefix):
            prefix = state_prefix(prefix, self.path, tf)
        if prefix is None:
            raise fail("WM513", f"`{self.path}` is not a TensorFlow checkpoint (no `.index` file)",
                       hint="pass the checkpoint prefix, e.g. `ckpt/model` for `ckpt/model.index`")
        check_files(prefix, self.path)
        try:
            self._reader = tf.train.load_checkpoint(prefix)
            shapes = self._reader.get_variable_to_shape_map()
            dtypes = self._reader.get_variable_to_dtype_map()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise fail("WM513", f"`{self.path}` is not a readable TensorFlow checkpoint: {first[:300]}",
                       hint="check that the `.index` and every `.data-*` file are present and complete") from None
        metas, skipped = [], []
        for native in sorted(shapes):
            if is_bookkeeping(native):
                skipped.append(native)
                continue
            dname = _TF_DTYPES.get(dtypes[native].name, dtypes[native].name)
            if dname not in DTYPE_BITS:
                skipped.append(native)  # strings and resources carry no weights
                continue
            metas.append(TensorMeta(tf_name(native), tuple(int(d) for d in shapes[native]), dname, native))
        self._metas = check_unique(metas, f"`{self.path}`")
        self._native = {m.name: m.native or m.name for m in self._metas}
        self._dtype = {m.name: m.dtype for m in self._metas}
        self.skipped = tuple(skipped)

    def inventory(self) -> Inventory:
        return Inventory.from_metas(self._metas, self.label, self.framework)

    def read(self, name: str, kind: ArrayKind = "numpy") -> Array:
        native = self._native.get(name)
        if native is None:
            raise missing(name, self._native, f"`{self.path}`")
        try:
            arr = self._reader.get_tensor(native)
        except Exception as exc:
            raise fail("WM513", f"`{self.path}`: cannot read `{native}` ({str(exc).splitlines()[0][:200]})",
                       hint="a `.data-*` file is missing or corrupt") from None
        if self._dtype[name] in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
            arr = arr.view(np_dtype(self._dtype[name]))
        return as_kind(arr, kind, f"`{self.path}`: `{name}`")

    def close(self) -> None:
        self._reader = None

    def __enter__(self) -> TFCheckpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
