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
"""

from __future__ import annotations

import os
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
from wmap.formats.base import ArrayKind

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


class TFCheckpoint:
    """A TF checkpoint read by TensorFlow's `CheckpointReader`."""

    label = "tf checkpoint"

    def __init__(self, path: str | os.PathLike[str], framework: str | None = None):
        self.path = shown(path)
        self.framework = canonical_framework(framework) or "keras"
        tf = require("tensorflow", f"reading `{self.path}`")
        prefix = checkpoint_prefix(self.path)
        if prefix is not None and os.path.isdir(prefix):
            prefix = tf.train.latest_checkpoint(prefix)
        if prefix is None:
            raise fail("WM513", f"`{self.path}` is not a TensorFlow checkpoint (no `.index` file)",
                       hint="pass the checkpoint prefix, e.g. `ckpt/model` for `ckpt/model.index`")
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

    def read(self, name: str, kind: ArrayKind = "numpy") -> Any:
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
