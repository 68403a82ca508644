"""Keras 3 weight files: `.weights.h5`, `.keras` archives and sharded `.weights.json`.

Layout written by Keras 3.15 (checked by saving real models in the tests):

    layers/<snake_class>[_N]/vars            attrs {"name": <layer name>}
    layers/<snake_class>[_N]/vars/0, 1, ...  the layer's own variables, trainable first
    layers/<lstm>/cell/vars/...              sublayers under their attribute name
    layers/<seq>/layers/<dense>/vars/...     nested Sequential/Functional models
    <attr>/vars/... (subclassed models)      attributes, e.g. `enc/vars/0`, `blocks/dense_1/vars/0`
    vars                                     the model itself, attrs {"name": <model name>}

Datasets are positional, so names come from the layer class: `config.json` in a `.keras`
archive gives it (and `use_bias`/`center`/`scale`), otherwise the class is inferred from the
group key (see keras_layers). The result matches the stable names `keras_naming` gives the
built model (relative to the model, counter-numbered layers as a fresh process numbers them).
Pass `model=` (a built Keras model) to name from the model itself. A
variable whose class is unknown is named `<layer>.vars.<i>`, with a `note` attr.
Reading uses h5py (a copy per dataset; Keras targets are not memcpy-bound). Every group and
dataset is reached under `h5_util`'s link and storage policy, and a `.keras` archive's members
are checked (`bounds.members`) before any is read or inflated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, cast

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
    zip_member,
)
from wmap.formats.keras_layers import class_from_key, sublayer_class, variable_names
from wmap.formats.keras_naming import canonical_paths, keras_names

CONFIG_LIMIT = 64 * 1024 * 1024
WEIGHTS_LIMIT = 16 * 1024**3

if TYPE_CHECKING:
    import h5py

    from wmap.core.frameworks import KerasModel, KerasVariable


@dataclass(frozen=True)
class LayerConfig:
    """One layer's `class_name` and `config` from `config.json`, with nested layers by name."""

    cls: str | None
    config: Mapping[str, object]
    children: Mapping[str, LayerConfig]

    @classmethod
    def parse(cls, raw: object) -> LayerConfig:
        if not isinstance(raw, dict):
            return cls(None, {}, {})
        config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
        assert isinstance(config, dict)
        children = {}
        for sub in config.get("layers") or ():
            node = cls.parse(sub)
            name = (sub.get("name") or node.config.get("name")) if isinstance(sub, dict) else None
            if isinstance(name, str):
                children[name] = node
        name = raw.get("class_name")
        return cls(name if isinstance(name, str) else None, config, children)


def layer_attrs(cls: str | None, config: Mapping[str, object]) -> tuple[tuple[str, object], ...]:
    """Settings worth reporting next to the weights (BatchNorm epsilon differs across frameworks)."""
    keys: tuple[str, ...] = ()
    if cls == "BatchNormalization":
        keys = ("epsilon", "momentum")
    elif cls in ("LayerNormalization", "GroupNormalization", "RMSNormalization"):
        keys = ("epsilon",)
    elif cls and cls.startswith("Conv") and "groups" in config:
        keys = ("groups",)
    return tuple((k, config[k]) for k in keys if isinstance(config.get(k), (int, float, str, bool)))


@dataclass
class _Saveable:
    """A group with a `vars` child: one layer (or model) and its positional datasets."""

    group: str
    key: str
    name: str
    cls: str | None
    cfg: LayerConfig | None
    chain: tuple[str, ...]        # prefix for variable paths (Functional names dropped)
    full: tuple[str, ...]         # every enclosing saveable's name, then its own
    datasets: dict[str, tuple[int, str, tuple[int, ...], str]] = field(default_factory=dict)


class KerasWeightsFile:
    """Keras 3 weights, from `.weights.h5`, `.keras` or a sharded `.weights.json`.

    Functional models' layers are built outside the model's name scope (Sequential's and
    subclassed models' are not), so only Functional names are left out of variable paths.
    Without a config, a Functional model is recognised by its InputLayer, which Keras lists
    in `Functional.layers` but not in `Sequential.layers`.
    """

    def __init__(self, path: str | os.PathLike[str], framework: str | None = None, model: KerasModel | None = None):
        self.path = shown(path)
        self.framework = canonical_framework(framework) or "keras"
        self.config: dict[str, object] | None = None
        self._files: list[h5py.File] = []
        self._zip: zipfile.ZipFile | None = None
        self._member: IO[bytes] | None = None  # h5py does not close file objects it was given
        self._stored = 0  # bytes of HDF5 behind the datasets (file, shards or archive member)
        self._layout: dict[str, bounds.Member] = {}
        try:
            self.label = self._open()
            root = LayerConfig.parse(self.config) if self.config is not None else None
            saveables: dict[str, _Saveable] = {}
            self._names: dict[str, str] = {}
            self._functional: set[str] = set()
            for f in self._files:
                self._seen: set[object] = set()  # h5py object ids
                self._survey(f)
            for fi, f in enumerate(self._files):
                self._seen = set()
                self._visit(fi, f, "", root, None, (), (), saveables, is_root=True)
            if not saveables:
                raise fail("WM509", f"`{self.path}` has no Keras 3 `vars` groups",
                           hint="legacy Keras 2 `.h5` files have `layer_names`; is this a different layout?")
            self._metas, self._where = self._name(saveables, _model_index(model) if model is not None else {},
                                                  {id(v): n for n, v in keras_names(model)} if model is not None else {})
            bounds.check_total(sum(m.nbytes for m in self._metas), self._stored, self.path, "WM509")
        except WmapError:
            self.close()
            raise
        except Exception as exc:  # h5py's errors on damaged files: KeyError, RuntimeError, OSError...
            self.close()
            raise damaged(self.path, exc) from None

    def _open(self) -> str:
        if self.path.lower().endswith(".keras") or zipfile.is_zipfile(self.path):
            try:
                self._zip = zipfile.ZipFile(self.path)
            except OSError as exc:
                raise fail("WM500", f"cannot read `{self.path}`: {exc.strerror or exc}") from None
            except (zipfile.BadZipFile, ValueError, EOFError) as exc:
                raise fail("WM509", f"`{self.path}` is not a readable .keras archive: {exc}") from None
            self._layout = bounds.members(self._zip, self.path, "WM509")
            names = set(self._layout)
            if "config.json" in names:
                self.config = _json(self._zip_bytes("config.json", CONFIG_LIMIT), f"{self.path}:config.json")
            if "model.weights.h5" not in names:
                extra = " (npz weights are not supported)" if "model.weights.npz" in names else ""
                raise fail("WM509", f"`{self.path}` has no `model.weights.h5`{extra}",
                           hint="save the model with `model.save(\"x.keras\")` (h5 weights)")
            weights = self._layout["model.weights.h5"]
            self._member = zip_member(self._zip, self.path, weights, self.path, WEIGHTS_LIMIT)
            self._files.append(open_h5(self._member, f"{self.path}:model.weights.h5"))
            self._stored = weights.info.file_size
            return "keras archive"
        if self.path.lower().endswith(".json"):
            for shard in _shard_files(self.path):
                self._files.append(open_h5(shard, shard))
                self._stored += os.path.getsize(shard)
            return "sharded keras weights"
        self._files.append(open_h5(self.path, self.path))
        self._stored = os.path.getsize(self.path)
        return "keras weights"

    def _zip_bytes(self, member: str, limit: int) -> bytes:
        assert self._zip is not None
        info = self._layout[member].info
        if info.file_size > limit:
            raise fail("WM509", f"`{self.path}`: `{member}` is {info.file_size:,} bytes (limit {limit:,})")
        try:
            return self._zip.read(member)
        except Exception as exc:
            raise fail("WM509", f"`{self.path}`: cannot read `{member}` ({exc})") from None

    def _enter(self, group: h5py.Group) -> None:
        """Hard links can make a group its own descendant; Keras never shares groups."""
        if group.id in self._seen:
            raise fail("WM509", f"`{self.path}`: group `{group.name}` is reachable twice (a link cycle?)",
                       hint="the file does not have the Keras 3 weights layout")
        self._seen.add(group.id)

    def _survey(self, group: h5py.Group) -> None:
        """Layer names and Functional models by group path, across every shard.

        A sharded file splits a layer's variables over shards and writes the `name` attr
        (and enclosing models' groups) only into the first, so naming needs all of them.
        """
        self._enter(group)
        vars_group = hard_child(group, "vars", self.path)
        if vars_group is not None and hasattr(vars_group, "attrs") and "name" in vars_group.attrs:
            self._names.setdefault(group.name, text_attr(vars_group.attrs["name"]))
        layers = hard_child(group, "layers", self.path)
        if layers is not None and hasattr(layers, "keys") and any(k.startswith("input_layer") for k in layers):
            self._functional.add(group.name)
        for k in group:
            sub = hard_child(group, k, self.path) if k != "vars" else None
            if sub is not None and hasattr(sub, "keys"):
                self._survey(sub)

    def _visit(self, fi: int, group: h5py.Group, key: str, scope: LayerConfig | None, parent_cls: str | None,
               chain: tuple[str, ...], full: tuple[str, ...], out: dict[str, _Saveable], is_root: bool = False
               ) -> None:
        h5py = require("h5py", self.path)
        where = self.path
        self._enter(group)
        vars_group = hard_child(group, "vars", where)
        if vars_group is not None and not isinstance(vars_group, h5py.Group):
            raise fail("WM509", f"`{where}`: `{group.name}/vars` is a dataset, not a group of variables")
        if vars_group is not None or group.name in self._names:
            name = self._names.get(group.name) or key or "model"
            node = scope if is_root else (scope.children.get(name) if scope else None)
            cls = (node.cls if node else None) or class_from_key(key) or sublayer_class(key, parent_cls, name)
            rec = out.setdefault(group.name, _Saveable(group.name, key, name, cls, node, chain, full + (name,)))
            for k in vars_group if vars_group is not None else ():
                ds = dataset(vars_group, k, where)
                rec.datasets[k] = (fi, ds.name, tuple(int(d) for d in ds.shape), dataset_dtype(ds, where))
            if not (cls == "Functional" or (cls != "Sequential" and group.name in self._functional)):
                chain = chain + (name,)
            full, scope, parent_cls = full + (name,), (node if node and node.children else None), cls
        for k in _child_order(group, scope, where):
            sub = hard_child(group, k, where)
            if isinstance(sub, h5py.Dataset):
                raise fail("WM509", f"`{where}`: dataset `{sub.name}` is outside any `vars` group",
                           hint="the file does not have the Keras 3 weights layout")
            self._visit(fi, sub, k, scope, parent_cls, chain, full, out)

    def _name(self, saveables: Mapping[str, _Saveable], by_model: Mapping[tuple[str, ...], KerasModel],
              stable: Mapping[int, str]) -> tuple[tuple[TensorMeta, ...], dict[str, tuple[int, str, str]]]:
        rows = []
        from_model: set[str] = set()
        for rec in saveables.values():
            if not rec.datasets:
                continue
            keys = sorted(rec.datasets, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
            positional = all(k.isdigit() for k in keys) and keys == [str(i) for i in range(len(keys))]
            cls, notes = rec.cls, cast(tuple[tuple[str, object], ...], ())
            names: list[str] | None = None
            layer = by_model.get(rec.full)
            own = _own_variables(layer) if layer is not None else None
            if own is not None and positional and len(own) == len(keys):
                names, cls = [stable.get(id(v), normalise_name(v.path)) for v in own], type(layer).__name__
                from_model.update(names)
            else:
                table = variable_names(cls, len(keys), rec.cfg.config if rec.cfg else None) if positional else None
                if table is None and positional:
                    notes = (("note", f"variable order of layer class `{cls or '?'}` unknown; named by position"),)
                leaf = table or [k if not k.isdigit() else f"vars.{k}" for k in keys]
                names = [normalise_name("/".join(rec.chain + (rec.name, v))) for v in leaf]
            attrs = layer_attrs(cls, rec.cfg.config if rec.cfg else {}) + notes
            for k, name in zip(keys, names, strict=True):
                fi, ds_path, shape, dtype = rec.datasets[k]
                rows.append((fi, TensorMeta(name, shape, dtype, ds_path.lstrip("/"), cls, attrs), ds_path))
        rows = self._stable(saveables, rows, from_model)
        metas = check_unique((r[1] for r in rows), f"`{self.path}`")
        where = {r[1].name: (r[0], r[2], r[1].dtype) for r in rows}
        return metas, where

    def _stable(self, saveables: Mapping[str, _Saveable], rows: list[tuple[int, TensorMeta, str]],
                done: set[str]) -> list[tuple[int, TensorMeta, str]]:
        """Names as `keras_naming` gives a built model's: without the model's own name, and with
        generated layer names numbered within their parent. `done`: names taken from the model
        itself, already stable."""
        recs = list(saveables.values())
        root = next((r.name for r in recs if not r.chain), None)
        classes = {r.name: r.cls for r in recs if r.chain or r.name != root}
        todo = [k for k, (_, meta, _) in enumerate(rows) if meta.name not in done]
        paths = []
        for k in todo:
            parts = rows[k][1].name.split(".")
            paths.append(parts[1:] if root is not None and len(parts) > 1 and parts[0] == root else parts)
        out = list(rows)
        for k, parts in zip(todo, canonical_paths(paths, classes), strict=True):
            fi, meta, ds = rows[k]
            out[k] = (fi, dataclasses.replace(meta, name=".".join(parts)), ds)
        return out

    def inventory(self) -> Inventory:
        return Inventory.from_metas(self._metas, self.label, self.framework)

    def read(self, name: str, kind: ArrayKind = "numpy") -> Array:
        loc = self._where.get(name)
        if loc is None:
            raise missing(name, self._where, f"`{self.path}`")
        fi, ds_path, dtype = loc
        try:
            ds = self._files[fi][ds_path]
        except Exception as exc:
            raise damaged(self.path, exc) from None
        arr = read_dataset(ds, dtype, self.path)
        return as_kind(arr, kind, f"`{self.path}`: `{name}`")

    def close(self) -> None:
        for f in self._files:
            with contextlib.suppress(Exception):  # a half-opened file must not mask the real error
                f.close()
        self._files = []
        if self._member is not None:
            self._member.close()
            self._member = None
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> KerasWeightsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _natural(key: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


def _child_order(group: h5py.Group, scope: LayerConfig | None, where: str) -> list[str]:
    """Model order where `config.json` gives it, else natural key order (`dense_2` before `dense_10`).

    The file itself does not record layer order (HDF5 iterates by name, and packs small
    datasets out of creation order), so inventories of bare `.weights.h5` files are sorted.
    """
    keys = sorted((k for k in group if k != "vars"), key=_natural)
    if scope is None or not scope.children:
        return keys
    rank = {name: i for i, name in enumerate(scope.children)}

    def position(k: str) -> int:
        sub = hard_child(group, k, where)
        vars_group = hard_child(sub, "vars", where) if sub is not None and hasattr(sub, "keys") else None
        name = text_attr(vars_group.attrs.get("name", "")) if vars_group is not None else ""
        return rank.get(name, len(rank))

    return sorted(keys, key=position)


def _json(raw: bytes, where: str) -> dict[str, object]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: `[[[[...`
        raise fail("WM509", f"`{where}` is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise fail("WM509", f"`{where}` is not a JSON object")
    return doc


def _shard_files(path: str) -> list[str]:
    """The h5 shards named by a Keras sharded-weights `.weights.json` (`weight_map`: group -> files)."""
    try:
        with open(path, "rb") as f:
            doc = _json(f.read(CONFIG_LIMIT + 1), path)
    except OSError as exc:
        raise fail("WM500", f"cannot read `{path}`: {exc.strerror or exc}") from None
    weight_map = doc.get("weight_map")
    if not isinstance(weight_map, dict):
        raise fail("WM507", f"`{path}` has no `weight_map`", hint="expected Keras' sharded weights layout")
    base = os.path.dirname(path)
    files: list[str] = []
    for value in weight_map.values():
        for shard in value if isinstance(value, list) else [value]:
            norm = os.path.normpath(str(shard))
            if os.path.isabs(norm) or norm.startswith(".."):
                raise fail("WM507", f"`{path}` names shard `{shard}`, outside the checkpoint directory")
            full = os.path.join(base, norm)
            if not os.path.isfile(full):
                raise fail("WM507", f"`{path}` names shard `{shard}`, but `{full}` does not exist",
                           hint="copy every shard next to the `.weights.json` file")
            if full not in files:
                files.append(full)
    return sorted(files)


def _own_variables(layer: KerasModel) -> list[KerasVariable] | None:
    """A layer's own variables in Keras' storage order (trainable first), or None if unknowable."""
    trainable = getattr(layer, "_trainable_variables", None)
    frozen = getattr(layer, "_non_trainable_variables", None)
    if trainable is None or frozen is None:
        return None
    return list(trainable) + list(frozen)


def _model_index(model: KerasModel) -> dict[tuple[str, ...], KerasModel]:
    """Every layer of a built model by the chain of names from the root, as the file records them."""
    out: dict[tuple[str, ...], KerasModel] = {}

    def visit(layer: KerasModel, chain: tuple[str, ...]) -> None:
        chain = chain + (layer.name,)
        out.setdefault(chain, layer)
        children = layer._flatten_layers(include_self=False, recursive=False) \
            if hasattr(layer, "_flatten_layers") else []
        for child in children:
            visit(child, chain)

    visit(model, ())
    return out
