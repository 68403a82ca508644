"""PyTorch sink: lands values in an nn.Module, atomically.

Two cases, one copy each:
- real parameters: `stage` keeps the value (often a zero-copy view of a memory-mapped
  source, so staging costs no memory); `commit` does the one fused copy into each
  parameter, with Ctrl-C deferred until it finishes. A plain copy from a file whose bytes
  are the parameter's exactly (`stage_span`) is read by the kernel straight into the
  parameter's memory at commit, in pieces on a few threads: no mapping of the file;
- parameters on the meta device (a `module:callable` target built on meta, or a user's
  meta model): `stage` copies into freshly allocated storage; `commit` swaps it in,
  everywhere the parameter is referenced (so tied weights stay tied).
`abort` drops what was staged: the model is as it was.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from wmap.core.errors import WmapError, error
from wmap.core.inventory import Inventory, TensorMeta
from wmap.formats.base import Array, ArrayKind, ByteSpan
from wmap.sinks.base import (
    PARALLEL_MIN_ELEMENTS,
    Check,
    LandedReader,
    StagedValues,
    defer_sigint,
    pool_size,
    worker_pool,
)
from wmap.transforms.ops_torch import torch_dtype


def _copy_in_parallel(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """`dst.copy_(src)` for each pair of large strided copies, several at once."""
    if len(pairs) < 2:
        for dst, src in pairs:
            dst.copy_(src)
        return
    with worker_pool("wmap-copy") as pool:
        # detached: grad mode is per thread, and the caller's no_grad does not reach the workers
        for f in [pool.submit(dst.detach().copy_, src) for dst, src in pairs]:
            f.result()


# A span is read in pieces of at most this many bytes, so one large tensor (stacked experts) still
# spreads over the threads; pieces this size keep each `preadv` long enough to amortise the call.
SPAN_PIECE = 1 << 25


def _read_spans(spans: list[tuple[torch.Tensor, ByteSpan]]) -> None:
    """Each span's bytes straight into its tensor's memory (contiguous, on the CPU), in pieces on a
    few threads: `preadv` releases the GIL, and two readers here took a 1 GB file from the page cache
    in 48-83 ms (median 67 of 12 fresh processes) where one took 85-104. Each thread gets one run of consecutive pieces of about equal
    bytes (one task each, not one per tensor: a model of many small tensors pays no dispatch per
    tensor), and below `SPAN_PIECE` bytes in all they are read here."""
    pieces: list[tuple[ByteSpan, memoryview, int, int]] = []
    for dst, span in spans:
        buf = dst.detach().reshape(-1).view(torch.uint8).numpy().data
        pieces += [(span, buf, a, min(a + SPAN_PIECE, span.nbytes)) for a in range(0, span.nbytes, SPAN_PIECE)]
    total = sum(b - a for _, _, a, b in pieces)
    runs = _runs(pieces, total, pool_size() if total >= SPAN_PIECE else 1)
    if len(runs) < 2:
        for run in runs:
            _read_run(run)
        return
    with worker_pool("wmap-read") as pool:
        for f in [pool.submit(_read_run, run) for run in runs]:
            f.result()


def _runs(pieces: list[tuple[ByteSpan, memoryview, int, int]], total: int, n: int
          ) -> list[list[tuple[ByteSpan, memoryview, int, int]]]:
    """`pieces` cut into at most `n` runs of consecutive pieces, each about `total / n` bytes."""
    runs: list[list[tuple[ByteSpan, memoryview, int, int]]] = [[]]
    filled = 0
    for piece in pieces:
        if filled >= total * len(runs) / n and len(runs) < n:
            runs.append([])
        runs[-1].append(piece)
        filled += piece[3] - piece[2]
    return [r for r in runs if r]


def _read_run(run: list[tuple[ByteSpan, memoryview, int, int]]) -> None:
    for span, buf, a, b in run:
        span.read_into(buf, a, b)


class TorchModuleSink:
    """Stages values for an `nn.Module`'s state; commit copies them in (or swaps meta tensors out)."""

    array_kind: ArrayKind = "torch"
    framework = "torch"
    checks_while_staging = False

    def __init__(self, model: nn.Module, inventory: Inventory):
        self.model = model
        self._inventory = inventory
        self.entries: dict[str, torch.Tensor] = dict(model.state_dict(keep_vars=True))
        self.staged: StagedValues[torch.Tensor | ByteSpan] = StagedValues()
        self._own_storage = {t.untyped_storage().data_ptr() for t in self.entries.values() if not t.is_meta}

    def inventory(self) -> Inventory:
        return self._inventory

    @property
    def result(self) -> nn.Module:
        return self.model

    def _entry(self, meta: TensorMeta) -> torch.Tensor:
        name = meta.native or meta.name
        t = self.entries.get(name, self.entries.get(meta.name))
        if t is None:
            raise error("WM602", f"the target model has no tensor `{meta.name}`",
                        hint="the model changed since the plan was made; plan again")
        return t

    def read_current(self, meta: TensorMeta) -> torch.Tensor:
        cur = self._entry(meta)
        if cur.is_meta:
            raise error("WM602", f"cannot read `{meta.name}`: the target is on the meta device and has no values",
                        hint="`keep` and `verify` need a target with real weights")
        return cur.detach()

    def landed(self) -> AbstractContextManager[LandedReader]:
        return contextlib.nullcontext(self.read_current)

    def stage(self, meta: TensorMeta, value: Array, check: Check | None = None) -> None:
        if not isinstance(value, torch.Tensor):  # the executor computes in this sink's array_kind
            raise TypeError(f"a {type(value).__name__} was staged into a PyTorch model")
        cur = self._entry(meta)
        if tuple(value.shape) != tuple(cur.shape):
            raise error("WM602", f"`{meta.name}`: value {tuple(value.shape)} does not fit {tuple(cur.shape)}",
                        hint="the model changed since the plan was made; plan again")
        if cur.is_meta:
            fresh = torch.empty(cur.shape, dtype=cur.dtype)
            fresh.copy_(value)
            self.staged.add(meta, fresh)
            return
        if value.untyped_storage().data_ptr() in self._own_storage:
            value = value.clone()  # source and target are the same model: read before anything is written
        self.staged.add(meta, value)

    def stage_span(self, meta: TensorMeta, span: ByteSpan) -> bool:
        """Take a plain copy as its source bytes, to be read into the parameter at commit; False when
        the parameter is not plain contiguous CPU memory of exactly those bytes (then `stage` it)."""
        cur = self._entry(meta)
        if (type(cur) not in (torch.Tensor, nn.Parameter) or cur.is_meta or cur.device.type != "cpu"
                or not cur.is_contiguous() or cur.is_conj() or cur.is_neg() or tuple(cur.shape) != meta.shape
                or cur.dtype != torch_dtype(meta.dtype) or cur.numel() * cur.element_size() != span.nbytes):
            return False
        self.staged.add(meta, span)
        return True

    def commit(self) -> None:
        with defer_sigint(), torch.no_grad():
            swaps: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
            strided: list[tuple[torch.Tensor, torch.Tensor]] = []
            spans: list[tuple[torch.Tensor, ByteSpan]] = []
            for meta, value in self.staged.items:
                cur = self._entry(meta)
                if not isinstance(value, torch.Tensor):
                    spans.append((cur, value))
                elif cur.is_meta:
                    swaps[id(cur)] = (cur, value)
                elif value.numel() >= PARALLEL_MIN_ELEMENTS and not value.is_contiguous():
                    strided.append((cur, value))
                else:
                    cur.copy_(value)
            _copy_in_parallel(strided)
            try:
                _read_spans(spans)
            except WmapError as e:
                # The lease (core/lease.py) holds writers off until the commit is done; a file that could
                # not be leased and was cut short meanwhile, or a failing disk, is the way here, where a
                # read from the mapping would have been a SIGBUS. Say what it leaves.
                d = e.diagnostics[0]
                raise error(d.code, f"{d.message}; the model is partially written",
                            hint="discard this model (or load it again) and retry once the file is stable") from None
            if swaps:
                _swap_in(self.model, swaps)
                self.entries = dict(self.model.state_dict(keep_vars=True))
        self.staged.clear()

    def abort(self) -> None:
        self.staged.clear()

    def finish(self, frozen: set[str], options: dict[str, object]) -> list[str]:
        return freeze(self.model, frozen, options)


def freeze(model: nn.Module, frozen: set[str], options: dict[str, object]) -> list[str]:
    """After a commit: frozen parameters stop requiring grad, and BatchNorm layers inside frozen parts
    are pinned to eval (`option bn_eval`) or named in a note. Works on DTensor parameters as they are."""
    notes: list[str] = []
    params = dict(model.named_parameters(remove_duplicate=False))
    for name in sorted(frozen):
        p = params.get(name)
        if p is not None:
            p.requires_grad_(False)
    bn = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
          and any(p is not None for p in (m.weight, m.bias))
          and all(f"{n}.{k}" in frozen for k in ("weight", "bias") if getattr(m, k) is not None)]
    if bn:
        if options.get("bn_eval"):
            for n in bn:
                _pin_eval(model.get_submodule(n))
            notes.append(f"{len(bn)} BatchNorm layer(s) in frozen parts are pinned to eval mode: {', '.join(bn)}")
        else:
            notes.append(f"{len(bn)} BatchNorm layer(s) in frozen parts still update running statistics in "
                         f"train mode: {', '.join(bn)} (set `option bn_eval = true` to pin them to eval)")
    return notes


def _swap_in(model: nn.Module, swaps: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Replace meta tensors by real ones in every module that references them (ties stay tied)."""
    new_params: dict[int, nn.Parameter] = {}
    for mod in model.modules():
        for key, p in list(mod._parameters.items()):
            if p is not None and id(p) in swaps:
                if id(p) not in new_params:
                    new_params[id(p)] = nn.Parameter(swaps[id(p)][1], requires_grad=p.requires_grad)
                mod._parameters[key] = new_params[id(p)]
        for key, b in list(mod._buffers.items()):
            if b is not None and id(b) in swaps:
                mod._buffers[key] = swaps[id(b)][1]


def _pin_eval(module: nn.Module) -> None:
    """Keep a frozen BatchNorm in eval mode even when the model is later put in train mode."""
    module.eval()
    module.train = lambda mode=True: nn.Module.train(module, False)  # type: ignore[method-assign]




def meta_leftovers(model: nn.Module) -> list[str]:
    """Tensors still on meta after a transfer (non-persistent buffers no checkpoint carries)."""
    names = [n for n, p in model.named_parameters() if p.is_meta]
    names += [n for n, b in model.named_buffers() if b is not None and b.is_meta]
    return names


def param_groups(plan: Any, model: nn.Module, base_lr: float, **extra: Any) -> list[dict[str, Any]]:
    """Optimizer param groups from the plan's lr multipliers; frozen parameters are left out."""
    scales: dict[str, float] = plan.lr_scales
    groups: dict[float, dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = scales.get(name, 1.0)
        g = groups.setdefault(scale, {"params": [], "names": [], "lr": base_lr * scale, "lr_scale": scale, **extra})
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def to_torch(value: Any, dtype: str) -> torch.Tensor:
    t = value if isinstance(value, torch.Tensor) else torch.from_numpy(value)
    want = torch_dtype(dtype)
    return t if t.dtype == want else t.to(want)
