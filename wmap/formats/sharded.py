"""Sharded checkpoints: `*.index.json` with a `weight_map` (the Hugging Face layout).

Every shard header is read (its shapes are needed anyway), so the index is checked
against the shards both ways, each problem a WM507: a shard file that is missing or
escapes the checkpoint directory, a tensor mapped twice, a tensor listed in the index but
absent from its shard, or a tensor in a shard that the index does not map there. A loader
that trusted the index alone would silently drop or duplicate those tensors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from wmap.core.errors import WmapError
from wmap.core.inventory import Inventory, TensorMeta
from wmap.formats._common import canonical_framework, fail, missing, shown
from wmap.formats.base import Array, ArrayKind, ByteSpan, TensorSource

INDEX_SUFFIX = ".index.json"


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise KeyError(k)
        out[k] = v
    return out


def _open_shard(path: Path, shown_path: str, framework: str | None) -> TensorSource:
    if path.name.endswith(".safetensors"):
        from wmap.formats.safetensors_file import SafetensorsFile

        return SafetensorsFile(shown_path, framework)
    from wmap.formats.torch_file import TorchFile

    return TorchFile(shown_path, framework)


class ShardedSource:
    """A checkpoint split over shards by an index file; shards stay open, data is read lazily."""

    def __init__(self, index_path: str | os.PathLike[str], framework: str | None = None,
                 open_shard: Callable[[Path, str, str | None], TensorSource] = _open_shard):
        self.path = shown(index_path)
        self.framework = canonical_framework(framework)
        weight_map, self.metadata = _read_index(self.path)
        base = os.path.dirname(self.path)
        self._shards: dict[str, TensorSource] = {}
        self._where: dict[str, str] = {}
        metas: list[TensorMeta] = []
        kinds: set[str] = set()
        frameworks: set[str | None] = set()
        try:
            for shard in sorted(set(weight_map.values())):
                src = self._open(shard, base, open_shard)
                inv = src.inventory()
                kinds.add(inv.label)
                frameworks.add(inv.framework)
                metas.extend(self._reconcile(shard, inv, weight_map))
            for name, shard in weight_map.items():
                if name not in self._where:
                    raise fail("WM507", f"`{self.path}` maps `{name}` to shard `{shard}`, which does not "
                               "hold it", hint="the index is stale; regenerate it or re-save the checkpoint")
        except WmapError:
            self.close()
            raise
        self._metas = tuple(metas)
        self.label = "sharded " + (kinds.pop() if len(kinds) == 1 else "checkpoint")
        if self.framework is None and len(frameworks) == 1:
            self.framework = frameworks.pop()

    def _open(self, shard: str, base: str, open_shard: Callable[[Path, str, str | None], TensorSource]
              ) -> TensorSource:
        # Lexical check only: hub caches symlink shards into a blob store elsewhere.
        norm = os.path.normpath(shard)
        if os.path.isabs(shard) or norm == ".." or norm.startswith(".." + os.sep) or norm == ".":
            raise fail("WM507", f"`{self.path}` names shard `{shard}`, which is outside the checkpoint "
                       "directory", hint="shard names must be file names next to the index")
        shown_path = os.path.join(base, shard)
        target = Path(base or ".") / norm
        if not target.is_file():
            raise fail("WM507", f"`{self.path}` names shard `{shard}`, but `{shown_path}` does not exist",
                       hint="download every shard listed in the index")
        src = open_shard(target, shown_path, self.framework)
        self._shards[shard] = src
        return src

    def _reconcile(self, shard: str, inv: Inventory, weight_map: Mapping[str, str]) -> list[TensorMeta]:
        out = []
        for meta in inv:
            mapped = weight_map.get(meta.name)
            if mapped is None:
                raise fail("WM507", f"shard `{shard}` holds `{meta.name}`, which `{self.path}` does not list",
                           hint="the index is stale; regenerate it or re-save the checkpoint")
            if mapped != shard:
                raise fail("WM507", f"`{meta.name}` is in shard `{shard}` but `{self.path}` maps it to "
                           f"`{mapped}`", hint="a tensor must live in exactly one shard; re-save the checkpoint")
            self._where[meta.name] = shard
            out.append(meta)
        return out

    def inventory(self) -> Inventory:
        return Inventory.from_metas(self._metas, self.label, self.framework)

    def read(self, name: str, kind: ArrayKind = "numpy") -> Array:
        shard = self._where.get(name)
        if shard is None:
            raise missing(name, self._where, f"`{self.path}`")
        return self._shards[shard].read(name, kind)

    def byte_span(self, name: str, shape: tuple[int, ...], dtype: str) -> ByteSpan | None:
        """The holding shard's `byte_span`, where it has one (see `formats/base.ByteSpan`)."""
        span_of = getattr(self.shard_of(name), "byte_span", None)
        return None if span_of is None else cast("ByteSpan | None", span_of(name, shape, dtype))

    def shards(self) -> tuple[TensorSource, ...]:
        """The open shard readers (their headers were validated at open)."""
        return tuple(self._shards.values())

    def shard_of(self, name: str) -> TensorSource:
        """The reader of the shard that holds `name`."""
        shard = self._where.get(name)
        if shard is None:
            raise missing(name, self._where, f"`{self.path}`")
        return self._shards[shard]

    def close(self) -> None:
        for src in self._shards.values():
            src.close()

    def __enter__(self) -> ShardedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_index(path: str) -> tuple[dict[str, str], dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"), object_pairs_hook=_pairs)
    except OSError as exc:
        raise fail("WM500", f"cannot read `{path}`: {exc.strerror or exc}") from None
    except KeyError as exc:
        raise fail("WM507", f"`{path}` lists {exc} more than once (a tensor mapped twice?)",
                   hint="a tensor must live in exactly one shard; regenerate the index") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: `[[[[...`
        raise fail("WM507", f"`{path}` is not valid JSON: {exc}") from None
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise fail("WM507", f"`{path}` has no `weight_map` of tensor names to shard files",
                   hint="expected the Hugging Face layout: {\"metadata\": {...}, \"weight_map\": {name: file}}")
    meta = doc.get("metadata")
    return weight_map, dict(meta) if isinstance(meta, dict) else {}
