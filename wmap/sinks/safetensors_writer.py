"""A streaming, atomic, deterministic safetensors writer.

All offsets follow from the plan's metadata, so each file's header is written first and
tensor bytes are then streamed one at a time: peak memory is one tensor, not the model.
Tensors must arrive in `metas` order (simplest, and the order fixes the bytes); a tensor
out of order, of the wrong shape or dtype, or missing at `commit` is WM514.

Targets:
- a path ending `.safetensors`: one file. If `shard_size` would split it, WM512 (pass a
  directory instead);
- any other path: a directory (created if absent) in the Hugging Face layout: one
  `model.safetensors`, or `model-00001-of-0000N.safetensors` shards plus
  `model.safetensors.index.json` when the total exceeds `shard_size`. Greedy sharding in
  `metas` order; a tensor larger than `shard_size` gets a shard of its own.

Atomicity: everything is written to hidden temp files beside the targets; `commit()`
fsyncs them, renames shards into place, then the index (the commit point), then fsyncs the
directory and removes files of the *other* layout left by an earlier run (a stale
`model.safetensors` would otherwise shadow a new index in loaders that prefer it).
`abort()` (or an exception inside `with`) removes the temps; a failure while writing (disk
full, unwritable directory) is WM512 and leaves any previous output untouched.

Determinism: headers are JSON with sorted keys and no timestamps, padded with spaces to
an 8-byte boundary (as safetensors does), so the same plan gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from wmap.core.atomic import fsync_dir, sweep, temp_file
from wmap.core.inventory import TensorMeta
from wmap.formats._common import dtype_name, fail, is_torch_tensor, shown, to_numpy, torch_dtype_name
from wmap.formats.safetensors_file import NAME_TO_ST

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_SHARD_RE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")


@dataclass(frozen=True)
class _Shard:
    filename: str
    metas: tuple[TensorMeta, ...]
    header: bytes


def _nbytes(meta: TensorMeta) -> int:
    from wmap.formats._common import np_dtype

    n = 1
    for d in meta.shape:
        n *= d
    return n * np_dtype(meta.dtype).itemsize


def _header(metas: Sequence[TensorMeta], metadata: Mapping[str, str]) -> bytes:
    doc: dict[str, Any] = {}
    if metadata:
        doc["__metadata__"] = dict(metadata)
    pos = 0
    for m in metas:
        size = _nbytes(m)
        doc[m.name] = {"dtype": NAME_TO_ST[m.dtype], "shape": list(m.shape), "data_offsets": [pos, pos + size]}
        pos += size
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-(len(raw) + 8) % 8)
    return len(raw).to_bytes(8, "little") + raw


def plan_shards(metas: Sequence[TensorMeta], shard_size: int | None) -> list[list[TensorMeta]]:
    """Greedy split in order; an oversized tensor gets its own shard."""
    if shard_size is None:
        return [list(metas)]
    shards: list[list[TensorMeta]] = [[]]
    used = 0
    for m in metas:
        size = _nbytes(m)
        if shards[-1] and used + size > shard_size:
            shards.append([])
            used = 0
        shards[-1].append(m)
        used += size
    return shards


class SafetensorsWriter:
    """Write tensors, in `metas` order, to a `.safetensors` file or a sharded directory.

    As a context manager it commits on a clean exit and aborts on an exception.
    """

    def __init__(self, path: str | os.PathLike[str], metas: Sequence[TensorMeta],
                 metadata: Mapping[str, str] | None = None, shard_size: int | None = None):
        self.path = shown(path)
        self.metas = tuple(metas)
        self.metadata = dict(metadata or {})
        self._check_metas()
        groups = plan_shards(self.metas, shard_size)
        self.single_file = self.path.endswith(".safetensors")
        if self.single_file and len(groups) > 1:
            raise fail("WM512", f"`{self.path}` is one file, but {len(groups)} shards of at most "
                       f"{shard_size:,} bytes are needed", hint="write to a directory to get a sharded checkpoint")
        self.directory = (os.path.dirname(self.path) or ".") if self.single_file else self.path
        if len(groups) == 1:
            names = [os.path.basename(self.path) if self.single_file else SINGLE_NAME]
        else:
            names = [f"model-{i:05d}-of-{len(groups):05d}.safetensors" for i in range(1, len(groups) + 1)]
        self._shards = [_Shard(n, tuple(g), _header(g, self.metadata)) for n, g in zip(names, groups, strict=True)]
        self._temps: dict[str, str] = {}
        self._made: list[str] = []  # output folders this writer created
        self._files: list[IO[bytes]] = []
        self._next = 0
        self._shard_i = 0
        self._in_shard = 0
        self._done = False
        self._prepare()

    def _check_metas(self) -> None:
        seen = set()
        for m in self.metas:
            if m.dtype not in NAME_TO_ST:
                raise fail("WM506", f"cannot write `{m.name}`: safetensors has no dtype `{m.dtype}`")
            if m.name in seen or m.name == "__metadata__":
                raise fail("WM514", f"cannot write `{m.name}` twice to `{self.path}`")
            seen.add(m.name)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()):
            raise fail("WM514", "safetensors metadata must map strings to strings")

    # -- setup -------------------------------------------------------------------------

    def _prepare(self) -> None:
        try:
            if self.single_file:
                if os.path.isdir(self.path):
                    raise fail("WM512", f"`{self.path}` is a directory, but a `.safetensors` file was asked for",
                               hint="remove the directory or choose another output path")
            elif os.path.exists(self.path) and not os.path.isdir(self.path):
                raise fail("WM512", f"`{self.path}` is a file, but a checkpoint directory was asked for",
                           hint="end the path in `.safetensors` for a single file, or choose a directory")
            else:
                self._made = _missing_folders(self.path)  # removed again by abort, if still empty
                os.makedirs(self.path, exist_ok=True)
            sweep(self.directory)  # temporaries a killed run left behind
            for shard in self._shards:
                fd, tmp = temp_file(os.path.join(self.directory, shard.filename))
                self._temps[shard.filename] = tmp
                self._files.append(os.fdopen(fd, "wb"))
            if len(self._shards) > 1:
                fd, tmp = temp_file(os.path.join(self.directory, INDEX_NAME))
                os.close(fd)
                self._temps[INDEX_NAME] = tmp
            for f, shard in zip(self._files, self._shards, strict=True):
                f.write(shard.header)
        except OSError as exc:
            self.abort()
            raise self._os_error(exc) from None
        except BaseException:
            self.abort()
            raise

    def _os_error(self, exc: OSError) -> Exception:
        reason = exc.strerror or str(exc)
        hint = {28: "free disk space or write elsewhere", 13: "choose a directory you can write to",
                30: "the file system is read-only; write elsewhere"}.get(exc.errno or 0)
        return fail("WM512", f"cannot write `{self.path}`: {reason}; nothing was changed", hint=hint)

    # -- streaming ---------------------------------------------------------------------

    def write(self, name: str, array: Any) -> None:
        """Append the next tensor (numpy array or torch tensor); must follow `metas` order."""
        if self._done or self._next >= len(self.metas):
            raise fail("WM514", f"`{name}` written to `{self.path}` after every planned tensor")
        meta = self.metas[self._next]
        if name != meta.name:
            raise fail("WM514", f"`{name}` written to `{self.path}` out of order: `{meta.name}` comes next")
        data = self._bytes(meta, array)
        try:
            self._files[self._shard_i].write(data)
        except OSError as exc:
            self.abort()
            raise self._os_error(exc) from None
        self._next += 1
        self._in_shard += 1
        if self._in_shard == len(self._shards[self._shard_i].metas):
            self._shard_i += 1
            self._in_shard = 0

    def _bytes(self, meta: TensorMeta, array: Any) -> memoryview:
        if is_torch_tensor(array):
            dtype, shape = torch_dtype_name(array.dtype), tuple(array.shape)
        else:
            array = np.asarray(array)
            dtype, shape = dtype_name(array.dtype) or str(array.dtype), tuple(array.shape)
        if dtype != meta.dtype or shape != meta.shape:
            raise fail("WM514", f"`{meta.name}` is {dtype}{list(shape)} but the plan says "
                       f"{meta.dtype}{list(meta.shape)}")
        if is_torch_tensor(array):
            array = to_numpy(array.detach().contiguous(), f"`{meta.name}`")
        arr = np.ascontiguousarray(array)
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        return arr.reshape(-1).view(np.uint8).data

    # -- finish ------------------------------------------------------------------------

    def commit(self) -> None:
        """fsync, then rename into place (shards, then index); removes the other layout's leftovers."""
        if self._done:
            raise fail("WM514", f"`{self.path}` was already committed or aborted")
        if self._next != len(self.metas):
            missing = self.metas[self._next].name
            self.abort()
            raise fail("WM514", f"`{self.path}` is missing {len(self.metas) - self._next} planned tensors "
                       f"(next: `{missing}`); nothing was written")
        try:
            for f in self._files:
                f.flush()
                os.fsync(f.fileno())
                f.close()
            if INDEX_NAME in self._temps:
                with open(self._temps[INDEX_NAME], "wb") as f:
                    f.write(self._index())
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as exc:
            self.abort()
            raise self._os_error(exc) from None
        names = [s.filename for s in self._shards] + ([INDEX_NAME] if INDEX_NAME in self._temps else [])
        placed: list[tuple[str, str | None]] = []  # (destination, the old file moved aside, if any)
        try:
            for name in names:
                dest = os.path.join(self.directory, name)
                # Several files cannot be renamed at once: keep each old file aside until all are in
                # place, so a failure halfway can put the previous checkpoint back exactly.
                old = self._set_aside(dest) if len(names) > 1 else None
                try:
                    os.replace(self._temps[name], dest)
                except OSError:
                    if old is not None:
                        os.replace(old, dest)
                    raise
                del self._temps[name]
                placed.append((dest, old))
            fsync_dir(self.directory)
        except OSError as exc:
            for dest, old in reversed(placed):
                with contextlib.suppress(OSError):
                    if old is not None:
                        os.replace(old, dest)
                    else:
                        os.remove(dest)
            self.abort()
            raise fail("WM512", f"cannot move the output into `{self.path}`: {exc.strerror or exc}; "
                       "nothing was changed") from None
        for _, old in placed:
            if old is not None:
                with contextlib.suppress(OSError):
                    os.remove(old)
        self._done = True
        if not self.single_file:
            self._remove_stale()

    def _set_aside(self, dest: str) -> str | None:
        """Rename an existing `dest` to a hidden name beside it; returns that name (None if absent)."""
        if not os.path.lexists(dest):
            return None
        fd, old = temp_file(dest, ".old")
        os.close(fd)
        try:
            os.replace(dest, old)
        except OSError:
            with contextlib.suppress(OSError):
                os.remove(old)
            raise
        return old

    def _index(self) -> bytes:
        weight_map = {m.name: s.filename for s in self._shards for m in s.metas}
        total = sum(_nbytes(m) for m in self.metas)
        doc = {"metadata": {**self.metadata, "total_size": total}, "weight_map": weight_map}
        return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("utf-8")

    def _remove_stale(self) -> None:
        keep = {s.filename for s in self._shards} | ({INDEX_NAME} if len(self._shards) > 1 else set())
        for name in os.listdir(self.directory):
            ours = name in (SINGLE_NAME, INDEX_NAME) or _SHARD_RE.match(name)
            if ours and name not in keep:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(self.directory, name))

    def abort(self) -> None:
        """Drop everything written so far; previous output is untouched."""
        for f in self._files:
            with contextlib.suppress(OSError):
                f.close()
        for tmp in self._temps.values():
            with contextlib.suppress(OSError):
                os.remove(tmp)
        self._temps.clear()
        for folder in self._made:  # innermost first; a folder someone filled meanwhile stays
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        self._made = []
        self._done = True

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None or not self._done:
            if exc_type is None:
                self.commit()
            else:
                self.abort()


def _missing_folders(path: str) -> list[str]:
    """The folders `os.makedirs(path)` would create, innermost first."""
    out: list[str] = []
    p = os.path.abspath(path)
    while not os.path.exists(p):
        out.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return out
