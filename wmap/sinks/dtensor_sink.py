"""Sharded targets: each rank lands its own part of every tensor.

Two sinks, both two-phase like every sink (`stage` may fail, `commit` makes it all visible):

- `DTensorModelSink`: a model whose parameters are DTensors (FSDP2's `fully_shard`, or a
  tensor-parallel `Shard(d)` / `Replicate()` placement) and whose other tensors (buffers FSDP2
  leaves alone) are plain and whole on every rank. `stage` keeps this rank's part; `commit`
  copies each part into the local tensor the DTensor wraps (`to_local()`, which shares storage
  with the sharded parameter), so the model object, its optimizer references and FSDP's
  bookkeeping stay as they are.
- `DCPFolderSink`: a new `torch.distributed.checkpoint` folder, so a sharded job can start from
  it with `dcp.load`. Targets that are DTensors keep their placement; anything else is sharded
  along dim 0 over the process group (DCP reshards on load, so any layout will do). `commit` saves
  into a temporary folder beside the output; rank 0 renames it into place once every rank has
  written, so the output folder is complete or absent.

A rank's box of a tensor is (start, length) per dim, from torch's own placement arithmetic
(`compute_local_shape_and_global_offset`, what DTensor and DCP use for the same question).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.placement_types import Placement

from wmap.core.errors import error
from wmap.core.inventory import Inventory, TensorMeta
from wmap.formats.base import ArrayKind
from wmap.sinks.base import Check, LandedReader, defer_sigint
from wmap.sinks.torch_sink import freeze

Box = tuple[tuple[int, int], ...]


def _world() -> dist.ProcessGroup:
    world = dist.group.WORLD
    if world is None:
        raise error("WM522", "no process group is initialised", hint="call torch.distributed.init_process_group first")
    return world


def _box_of(shape: torch.Size, mesh: DeviceMesh, placements: tuple[Placement, ...]) -> Box:
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
    local, offset = compute_local_shape_and_global_offset(shape, mesh, placements)
    return tuple(zip((int(o) for o in offset), (int(n) for n in local), strict=True))


def _check_placements(name: str, t: DTensor) -> None:
    bad = [p for p in t.placements if type(p) not in (Shard, Replicate)]
    if bad:
        raise error("WM522", f"`{name}` is placed as {bad[0]}; a distributed apply writes `Shard(d)` and "
                    "`Replicate()` placements", hint="fill the model before applying other placements")


def _local(name: str, t: torch.Tensor) -> tuple[torch.Tensor, Box]:
    """This rank's local tensor of `t` and its box in the whole tensor."""
    if isinstance(t, DTensor):
        _check_placements(name, t)
        local = t.to_local()
        box = _box_of(t.shape, t.device_mesh, tuple(t.placements))
    else:
        local, box = t, tuple((0, int(n)) for n in t.shape)
    if local.is_meta:
        raise error("WM522", f"`{name}` is on the meta device: there is nothing to write into",
                    hint="materialise the sharded model first: model.to_empty(device='cpu') (or 'cuda')")
    if tuple(n for _, n in box) != tuple(local.shape):
        raise error("WM522", f"`{name}`: its local tensor {tuple(local.shape)} is not this rank's box {list(box)} "
                    "(uneven or padded local storage)", hint="use even Shard/Replicate placements")
    return local, box


class DTensorModelSink:
    """Stages this rank's part of every target; commit copies the parts into the model's local tensors."""

    array_kind: ArrayKind = "torch"
    framework: str | None = "torch"  # an in-memory model: it already holds what `keep` keeps
    checks_while_staging = False

    def __init__(self, model: nn.Module, inventory: Inventory):
        self.model = model
        self._inventory = inventory
        self._locals: dict[str, tuple[torch.Tensor, Box]] = {
            n: _local(n, t) for n, t in model.state_dict(keep_vars=True).items()}
        self._staged: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.staged_bytes = 0

    def inventory(self) -> Inventory:
        return self._inventory

    @property
    def result(self) -> nn.Module:
        return self.model

    def _entry(self, meta: TensorMeta) -> tuple[torch.Tensor, Box]:
        got = self._locals.get(meta.native or meta.name, self._locals.get(meta.name))
        if got is None:
            raise error("WM602", f"the target model has no tensor `{meta.name}`",
                        hint="the model changed since the plan was made; plan again")
        return got

    def box(self, meta: TensorMeta) -> Box:
        return self._entry(meta)[1]

    def read_current(self, meta: TensorMeta) -> torch.Tensor:
        return self._entry(meta)[0].detach()

    def landed(self) -> AbstractContextManager[LandedReader]:
        return contextlib.nullcontext(self.read_current)

    def stage(self, meta: TensorMeta, value: torch.Tensor, check: Check | None = None) -> None:
        local, _ = self._entry(meta)
        if tuple(value.shape) != tuple(local.shape):
            raise error("WM602", f"`{meta.name}`: this rank's part {tuple(value.shape)} does not fit its local "
                        f"tensor {tuple(local.shape)}", hint="the model changed since the plan was made; plan again")
        self._staged.append((local, value))
        self.staged_bytes += value.numel() * value.element_size()

    def commit(self) -> None:
        with defer_sigint(), torch.no_grad():
            for local, value in self._staged:
                local.copy_(value)
        self._staged.clear()

    def abort(self) -> None:
        self._staged.clear()

    def finish(self, frozen: set[str], options: dict[str, object]) -> list[str]:
        return freeze(self.model, frozen, options)


class DCPFolderSink:
    """Stages this rank's part of every target, then writes a DCP checkpoint folder, all or nothing.

    `placed`: a model whose tensors give the layout (DTensors keep theirs) and the values `keep`
    keeps, or None for targets known by name and shape only (each sharded along dim 0)."""

    array_kind: ArrayKind = "torch"
    framework: str | None = None  # files: `keep` reads the target's current values
    checks_while_staging = False

    def __init__(self, out: str, inventory: Inventory, placed: nn.Module | None, group: dist.ProcessGroup | None):
        from torch.distributed.device_mesh import DeviceMesh

        self.out, self._inventory, self.group = out, inventory, group
        device = "cuda" if dist.get_backend(group) == "nccl" else "cpu"
        # the default group when none is given: every rank of the job (dist.group.WORLD)
        self.mesh = DeviceMesh.from_group(group if group is not None else _world(), device)
        state = placed.state_dict(keep_vars=True) if placed is not None else {}
        self._layout: dict[str, tuple[tuple[Placement, ...], Box, torch.Tensor | None]] = {}
        for meta in inventory:
            t = state.get(meta.native or meta.name)
            if isinstance(t, DTensor):
                _check_placements(meta.name, t)
                self._layout[meta.name] = (tuple(t.placements), _box_of(t.shape, t.device_mesh, tuple(t.placements)),
                                           None if t.to_local().is_meta else t.to_local())
                continue
            placements = (Shard(0),) if meta.shape else (Replicate(),)
            current = t if t is not None and not t.is_meta else None
            box = _box_of(torch.Size(meta.shape), self.mesh, placements)
            if current is not None:
                current = current[tuple(slice(s, s + n) for s, n in box)]
            self._layout[meta.name] = (placements, box, current)
        self._staged: dict[str, torch.Tensor] = {}
        self.staged_bytes = 0

    def inventory(self) -> Inventory:
        return self._inventory

    @property
    def result(self) -> str:
        return self.out

    def box(self, meta: TensorMeta) -> Box:
        return self._layout[meta.name][1]

    def read_current(self, meta: TensorMeta) -> torch.Tensor:
        current = self._layout[meta.name][2]
        if current is None:
            raise error("WM602", f"cannot keep `{meta.name}`: the target has no values (a `module:callable` "
                        "builds it on the meta device)", hint="pass a model with real weights as the target")
        return current.detach()

    def stage(self, meta: TensorMeta, value: torch.Tensor, check: Check | None = None) -> None:
        want = tuple(n for _, n in self.box(meta))
        if tuple(value.shape) != want:
            raise error("WM602", f"`{meta.name}`: this rank's part {tuple(value.shape)} is not its box {want}")
        self._staged[meta.name] = value.contiguous()
        self.staged_bytes += value.numel() * value.element_size()

    def state_dict(self) -> dict[str, DTensor]:
        out: dict[str, DTensor] = {}
        for meta in self._inventory:
            placements, _, _ = self._layout[meta.name]
            value = self._staged[meta.name]
            stride = torch.empty(meta.shape, device="meta").stride()
            out[meta.name] = DTensor.from_local(value, self.mesh, placements, run_check=False,
                                                shape=torch.Size(meta.shape), stride=stride)
        return out

    def commit(self) -> None:
        """Write the folder: every rank saves into one temporary folder beside the output (a name rank 0
        draws and broadcasts), DCP agrees on success across ranks, and rank 0 renames it into place after
        a barrier. On any failure the temporary folder is removed and the output never appears."""
        import torch.distributed.checkpoint as dcp

        token = [secrets.token_hex(6) if dist.get_rank(self.group) == 0 else None]
        dist.broadcast_object_list(token, group_src=0, group=self.group)
        tmp = f"{self.out}.wmap-tmp-{token[0]}"
        rank0 = dist.get_rank(self.group) == 0
        from torch.distributed.checkpoint.api import CheckpointException
        try:
            try:
                dcp.save(self.state_dict(), storage_writer=dcp.FileSystemWriter(tmp), process_group=self.group)
            except CheckpointException as e:  # DCP raises it on every rank when any rank failed to write
                ranks = sorted(e.failures)
                exc = e.failures[ranks[0]][0]
                raise error("WM512", f"writing the checkpoint failed on rank(s) {ranks}: {type(exc).__name__}: "
                            f"{exc}", hint=f"nothing was written: `{self.out}` does not exist") from None
            dist.barrier(group=self.group)
            verdict: list[str | None] = [None]
            if rank0:
                try:
                    os.rename(tmp, self.out)
                except OSError as exc:
                    verdict[0] = f"cannot move the finished checkpoint into `{self.out}`: {exc.strerror or exc}"
            dist.broadcast_object_list(verdict, group_src=0, group=self.group)
            if verdict[0] is not None:
                raise error("WM512", verdict[0], hint="nothing was written; check the output folder's parent")
        except BaseException:
            if rank0:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            self._staged.clear()

    def abort(self) -> None:
        self._staged.clear()

    def finish(self, frozen: set[str], options: dict[str, object]) -> list[str]:
        return []


def sharded_entries(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's tensors that are DTensors (what makes a model a distributed target)."""
    for name, t in model.state_dict(keep_vars=True).items():
        if isinstance(t, DTensor):
            yield name, t

