"""Legacy Keras `.h5` (Keras 2 `model.save`/`save_weights`; Keras 3 still writes it for `.h5`).

Layout: a group (`model_weights` in a full-model file, else the root) with attr
`layer_names`; each layer group has attr `weight_names` (`dense/kernel:0` in Keras 2,
`dense/kernel` from Keras 3) and the datasets at `<layer>/<weight name>`. Names are the
normalised weight names (`dense.kernel`), which is what the built model calls them. Keras 2
did not make weight names unique across nested models; colliding names are prefixed with
their top-level layer (`encoder.dense.kernel`). The class (`kind`) comes from the
`model_config` attr when present, else from the owning layer's name prefix.

Every group and dataset is reached link by link under `h5_util`'s policy (hard links only,
data stored in the file and not far less of it than declared): names come from attributes,
and a `weight_names` entry such as `ext/kernel` must not lead out of the file on the way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections import Counter
from typing import Any

from wmap.core.errors import WmapError
from wmap.core.inventory import Inventory, TensorMeta, normalise_name
from wmap.formats import bounds
from wmap.formats._common import as_kind, canonical_framework, check_unique, fail, missing, require, shown
from wmap.formats.base import Array, ArrayKind
from wmap.formats.h5_util import (
    damaged,
    dataset,
    dataset_dtype,
    hard_child,
    open_h5,
    read_dataset,
    text_attr,
    walk,
)
from wmap.formats.keras_files import LayerConfig, layer_attrs
from wmap.formats.keras_layers import class_from_key
from wmap.formats.keras_naming import canonical_paths


def is_legacy_h5(f: Any, where: str) -> bool:
    """A Keras 2 style file: `layer_names` on the root or on `model_weights` (a hard link)."""
    if "layer_names" in f.attrs:
        return True
    mw = hard_child(f, "model_weights", where)
    return mw is not None and hasattr(mw, "attrs") and "layer_names" in mw.attrs


def _configs(raw: object) -> dict[str, LayerConfig]:
    """Every layer config by name, nested models flattened (names are unique per Keras 2 graph)."""
    out: dict[str, LayerConfig] = {}

    def visit(node: LayerConfig) -> None:
        for name, child in node.children.items():
            out.setdefault(name, child)
            visit(child)

    text = text_attr(raw) if raw is not None else None
    if text:
        with contextlib.suppress(ValueError, RecursionError):  # a damaged config only costs us the layer classes
            visit(LayerConfig.parse(json.loads(text)))
    return out


class LegacyKerasH5:
    """A Keras 2 style `.h5` weights or model file."""

    label = "keras legacy h5"

    def __init__(self, path: str | os.PathLike[str], framework: str | None = None):
        self.path = shown(path)
        self.framework = canonical_framework(framework) or "keras"
        self._file = open_h5(self.path, self.path)
        try:
            self._metas, self._where = self._scan()
        except WmapError:
            self._file.close()
            raise
        except Exception as exc:  # h5py's errors on damaged files
            self._file.close()
            raise damaged(self.path, exc) from None

    def _scan(self) -> tuple[tuple[TensorMeta, ...], dict[str, tuple[str, str]]]:
        f, where = self._file, self.path
        h5py = require("h5py", where)
        if not is_legacy_h5(f, where):
            raise fail("WM509", f"`{where}` is not a Keras weights file: no `layer_names` attribute",
                       hint="Keras 3 weights files end in `.weights.h5`")
        root = f if "layer_names" in f.attrs else hard_child(f, "model_weights", where)
        if root is None:  # is_legacy_h5 found `layer_names` in one of the two places
            raise fail("WM509", f"`{where}` has no `model_weights` group", hint="the file is damaged")
        configs = _configs(f.attrs.get("model_config"))
        rows = []
        for layer in (text_attr(n) for n in root.attrs["layer_names"]):
            group = walk(root, layer, where)
            if not isinstance(group, h5py.Group):
                raise fail("WM509", f"`{where}`: layer `{layer}` is listed in `layer_names` but has no group")
            if "weight_names" not in group.attrs:
                raise fail("WM509", f"`{where}`: layer group `{group.name}` has no `weight_names` attribute")
            for wn in (text_attr(n) for n in group.attrs["weight_names"]):
                ds = dataset(group, wn, where)
                parts = normalise_name(wn).split(".")
                owner = parts[-2] if len(parts) > 1 else layer
                node = configs.get(owner) or configs.get(layer)
                cls = (configs[owner].cls if owner in configs else None) or class_from_key(owner) \
                    or (node.cls if node else None) or class_from_key(layer)
                attrs = layer_attrs(cls, node.config if node else {})
                meta = TensorMeta(normalise_name(wn), tuple(int(d) for d in ds.shape), dataset_dtype(ds, where),
                                  ds.name.lstrip("/"), cls, attrs)
                rows.append((layer, meta, ds.name))
        counts = Counter(m.name for _, m, _ in rows)
        fixed = [(TensorMeta(f"{layer}.{m.name}", m.shape, m.dtype, m.native, m.kind, m.attrs)
                  if counts[m.name] > 1 else m, p) for layer, m, p in rows]
        # named as keras_naming names the built model: process-numbered layers numbered within their parent
        classes = {seg: m.kind for m, _ in fixed for seg in m.name.split(".")[:-1][-1:]}
        # a layer's own class from the model config (a GRU layer's variables sit under its `gru_cell`)
        classes.update({layer: (configs[layer].cls if layer in configs else None) or classes.get(layer)
                        for layer, _, _ in rows})
        stable = canonical_paths([m.name.split(".") for m, _ in fixed], classes)
        fixed = [(dataclasses.replace(m, name=".".join(parts)), p) for (m, p), parts in zip(fixed, stable, strict=True)]
        metas = check_unique((m for m, _ in fixed), f"`{where}`")
        bounds.check_total(sum(m.nbytes for m in metas), os.path.getsize(where), where, "WM509")
        return metas, {m.name: (p, m.dtype) for m, p in fixed}

    def inventory(self) -> Inventory:
        return Inventory.from_metas(self._metas, self.label, self.framework)

    def read(self, name: str, kind: ArrayKind = "numpy") -> Array:
        loc = self._where.get(name)
        if loc is None:
            raise missing(name, self._where, f"`{self.path}`")
        try:
            ds = self._file[loc[0]]
        except Exception as exc:
            raise damaged(self.path, exc) from None
        arr = read_dataset(ds, loc[1], self.path)
        return as_kind(arr, kind, f"`{self.path}`: `{name}`")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LegacyKerasH5:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
