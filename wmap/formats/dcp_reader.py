"""A `torch.distributed.checkpoint` StorageReader that reads byte ranges of safetensors files.

DCP splits a load into a plan (which boxes of which stored tensors go where) and a storage
reader that fetches them. This reader serves the boxes a `LoadPlanner` asks for straight from
the data section of safetensors files, single or sharded, reading only the bytes inside each
box: a box is a set of contiguous runs (the trailing dims it spans whole, times the first dim it
cuts), and each run is one `pread` into the planner's buffer. `bytes_read` counts them, and
`header_bytes` the headers every rank parses to plan.

Why not torch's `HuggingFaceStorageReader`: it opens every `*.safetensors` file in a folder
(ignoring the index, so a stray file joins the checkpoint), goes through `safe_open` (a memory
map, so what a rank reads is whatever pages it touches and cannot be counted), and trusts each
header as the safetensors library parses it. Here the files are the ones wmap opened and
validated (WM504-WM507: header bounds, offsets that tile the data exactly, index and shards
agreeing), and a file that changed size since is refused before a byte is read.

A storage key is `SOURCE/NAME`: the spec's source name and the tensor's name in that file.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.distributed.checkpoint.metadata import (
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import LoadItemType, LoadPlan, LoadPlanner
from torch.distributed.checkpoint.storage import StorageReader
from torch.futures import Future

from wmap.core.errors import WmapError
from wmap.formats._common import fail, pread_exactly
from wmap.formats.base import TensorSource
from wmap.formats.safetensors_file import Entry, SafetensorsFile
from wmap.formats.sharded import ShardedSource


def storage_key(source: str, name: str) -> str:
    return f"{source}/{name}"


def _files_of(name: str, src: TensorSource) -> tuple[SafetensorsFile, ...]:
    if isinstance(src, SafetensorsFile):
        return (src,)
    if isinstance(src, ShardedSource) and all(isinstance(s, SafetensorsFile) for s in src.shards()):
        return tuple(s for s in src.shards() if isinstance(s, SafetensorsFile))
    raise fail("WM522", f"source `{name}` is a {getattr(src, 'label', type(src).__name__)}; a distributed apply "
               "reads byte ranges of safetensors files (one file, or shards with a `.safetensors.index.json`)",
               hint="convert it once: safetensors.torch.save_file(state_dict, 'model.safetensors')")


def runs(shape: tuple[int, ...], box: tuple[tuple[int, int], ...], itemsize: int) -> Iterator[tuple[int, int]]:
    """The contiguous byte runs (offset from the tensor's first byte, length) that make up `box`
    of a row-major tensor of `shape`, in order."""
    if any(n == 0 for _, n in box):
        return
    rank = len(shape)
    if rank == 0:
        yield 0, itemsize
        return
    j = rank - 1  # dims after j are taken whole, so one run spans them all
    while j > 0 and box[j] == (0, shape[j]):
        j -= 1
    strides = [math.prod(shape[k + 1:]) for k in range(rank)]
    length = box[j][1] * strides[j] * itemsize
    base = box[j][0] * strides[j]
    for idx in itertools.product(*(range(s, s + n) for s, n in box[:j])):
        yield (base + sum(i * st for i, st in zip(idx, strides))) * itemsize, length


class SafetensorsRangeReader(StorageReader):
    """Serves DCP read items from validated safetensors sources, one `pread` per contiguous run.

    `sources`: the readers wmap opened for the plan's sources, by source name (each a
    `SafetensorsFile` or a `ShardedSource` of them; anything else is WM522)."""

    def __init__(self, sources: Mapping[str, TensorSource]):
        super().__init__()
        self._where: dict[str, tuple[str, Entry]] = {}
        self.header_bytes = 0
        for name, src in sources.items():
            files = _files_of(name, src)
            self.header_bytes += sum(f.header_bytes for f in files)
            for meta in src.inventory():
                shard = src.shard_of(meta.name) if isinstance(src, ShardedSource) else src
                assert isinstance(shard, SafetensorsFile)
                self._where[storage_key(name, meta.name)] = shard.locate(meta.name)
        self.bytes_read = 0
        self.failure: WmapError | None = None
        self._fds: dict[str, int] = {}

    # -- the StorageReader protocol ------------------------------------------------------------
    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        self.bytes_read = 0

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return False  # never picked by DCP's guessing: wmap hands it over explicitly

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        sd: dict[str, Any] = {}
        for key, (_, e) in self._where.items():
            dtype = getattr(torch, e.dtype)  # wmap's dtype names are torch's (float32, bfloat16, ...)
            size = torch.Size(e.shape)
            sd[key] = TensorStorageMetadata(TensorProperties(dtype=dtype), size,
                                            [ChunkStorageMetadata(torch.Size([0] * len(size)), size)])
        md = Metadata(state_dict_metadata=sd, storage_data={MetadataIndex(k): k for k in self._where})
        md.storage_meta = StorageMeta()
        return md

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        pass

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        try:
            for item in plan.items:
                if item.type != LoadItemType.TENSOR:
                    raise fail("WM601", f"read item `{item.storage_index.fqn}` is not a tensor")
                dest = planner.resolve_tensor(item)
                self._read_box(item.storage_index.fqn, tuple(item.storage_offsets), tuple(item.lengths), dest)
                planner.commit_tensor(item, dest)
        except WmapError as e:
            # DCP pickles each rank's exception to every rank; a plain message travels safely,
            # and the rank that failed keeps the WmapError itself to raise.
            self.failure = e
            raise RuntimeError(f"[{e.diagnostics[0].code}] {e.diagnostics[0].message}") from None
        finally:
            self.close()
        fut: Future[None] = Future()
        fut.set_result(None)
        return fut

    # -- reading -------------------------------------------------------------------------------
    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise fail("WM500", f"cannot read `{path}`: {exc.strerror or exc}") from None
            self._fds[path] = fd
        return fd

    def _read_box(self, key: str, starts: tuple[int, ...], lengths: tuple[int, ...], dest: torch.Tensor) -> None:
        where = self._where.get(key)
        if where is None:
            raise fail("WM503", f"no source tensor `{key}` to read")
        path, e = where
        box = tuple(zip(starts, lengths, strict=True))
        if len(box) != len(e.shape) or any(s < 0 or s + n > d for (s, n), d in zip(box, e.shape)):
            raise fail("WM601", f"`{path}`: box {list(box)} is outside `{e.name}` {list(e.shape)}")
        if not dest.is_contiguous() or tuple(dest.shape) != lengths or dest.device.type != "cpu":
            raise fail("WM601", f"`{path}`: the buffer for `{e.name}` is not a contiguous CPU tensor of {lengths}")
        if dest.numel() == 0:
            return
        itemsize = (e.end - e.begin) // max(1, math.prod(e.shape))
        if dest.element_size() != itemsize:
            raise fail("WM601", f"`{path}`: the buffer for `{e.name}` has {dest.element_size()}-byte elements, "
                       f"the file {itemsize}")
        fd = self._fd(path)
        if os.fstat(fd).st_size < e.end:
            raise fail("WM505", f"`{path}` shrank after it was opened", hint="another process is rewriting the file")
        view = dest.reshape(-1).view(torch.uint8).numpy().data  # writes land in `dest`
        pos = 0
        for off, n in runs(e.shape, box, itemsize):
            pread_exactly(fd, view[pos:pos + n], e.begin + off, path, e.name)
            pos += n
        self.bytes_read += pos

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
