"""What each rank runs in tests/dist: every scenario in one process group (ranks are slow to start),
each writing what the tests check into the shared work folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from tests.support import paths
from tests.support.example_inventories import CHECKPOINTS
from tests.support.shaped_models import module_from_shapes

SPEC = {"gpt2": paths.EXAMPLES / "fused_qkv_split.wmap", "resnet": paths.EXAMPLES / "backbone_new_head.wmap",
        "freeze": paths.EXAMPLES / "freeze_lr.wmap", "vocab": paths.EXAMPLES / "vocab_growth.wmap"}
EXAMPLE = {"gpt2": "fused_qkv_split", "resnet": "backbone_new_head", "freeze": "freeze_lr", "vocab": "vocab_growth"}
# The scenarios: (example, source file in the work folder, how the target is sharded)
SHARDED = {
    "gpt2_fsdp": ("gpt2", "gpt2.safetensors", "fsdp"),
    "gpt2_tp": ("gpt2", "gpt2.safetensors.index.json", "tp"),
    "resnet_fsdp": ("resnet", "resnet.safetensors", "fsdp"),
    "freeze_fsdp": ("freeze", "freeze.safetensors", "fsdp"),
    "vocab_fsdp": ("vocab", "vocab.safetensors", "fsdp"),
}


def target_model(example: str) -> nn.Module:
    _, tgt = CHECKPOINTS[EXAMPLE[example]]()
    return module_from_shapes(tgt)


def _tp_placement(name: str) -> Any:
    """Megatron-style: q/k/v/up column-parallel (Shard(0) of an (out, in) weight and its bias), o/down
    row-parallel (Shard(1)), the embeddings split along the hidden dim, everything else replicated."""
    from torch.distributed.tensor import Replicate, Shard
    if any(k in name for k in ("attn.q.", "attn.k.", "attn.v.", "mlp.up.")) or name == "lm_head.weight":
        return Shard(0)
    if name.endswith(("attn.o.weight", "mlp.down.weight", "embed_tokens.weight", "embed_positions.weight")):
        return Shard(1)
    return Replicate()


def shard(model: nn.Module, how: str, world: int) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    if how == "fsdp":
        fully_shard(model, mesh=mesh)
        return model
    for name, p in list(model.named_parameters()):
        *path, leaf = name.split(".")
        owner = model.get_submodule(".".join(path))
        owner.register_parameter(leaf, nn.Parameter(distribute_tensor(p.detach(), mesh, [_tp_placement(name)])))
    return model


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of the model, whole (a collective: every rank calls it)."""
    from torch.distributed.tensor import DTensor
    return {n: (t.full_tensor() if isinstance(t, DTensor) else t).detach().clone().contiguous()
            for n, t in model.state_dict().items()}


def _local_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor
    return {n: (t.to_local() if isinstance(t, DTensor) else t).detach().clone() for n, t in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    now = _local_snapshot(model)
    return now.keys() == before.keys() and all(torch.equal(now[n], before[n]) for n in before)


def _fails(run: Callable[[], Any]) -> str:
    from wmap.core.errors import WmapError
    try:
        run()
    except WmapError as e:
        return e.diagnostics[0].code
    return "no error"


def scenarios(rank: int, world: int, work: str) -> None:
    from safetensors.torch import save_file

    from wmap.run import distributed as D
    import time
    w = Path(work)
    out: dict[str, Any] = {"seconds": {}}
    t0 = time.perf_counter()
    for name, (example, source, how) in SHARDED.items():
        model = shard(target_model(example), how, world)
        report = D.apply(SPEC[example], source=str(w / source), target=model)
        out[name] = report.to_json() | {
            "frozen": sorted(n for n, p in model.named_parameters() if not p.requires_grad),
            "groups": _groups(report.plan, model) if example == "freeze" else None,
            "placements": sorted({str(getattr(p, "placements", None)) for p in model.parameters()}),
        }
        state = full_state(model)
        if rank == 0:
            save_file(state, str(w / f"{name}.safetensors"))
        out["seconds"][name] = time.perf_counter() - t0

    # a DCP folder as the output, from a plain (unsharded) target
    report = D.apply(SPEC["gpt2"], source=str(w / "gpt2.safetensors"), target=target_model("gpt2"),
                     out=str(w / "gpt2_ckpt"))
    out["gpt2_dcp"] = report.to_json()
    # a sharded job starts from it: DCP loads the folder (sharded along dim 0) into tensor-parallel shards
    import torch.distributed.checkpoint as dcp
    model = shard(target_model("gpt2"), "tp", world)
    dcp.load(model.state_dict(), checkpoint_id=str(w / "gpt2_ckpt"))
    state = full_state(model)
    if rank == 0:
        save_file(state, str(w / "gpt2_ckpt_into_tp.safetensors"))
    out["seconds"]["dcp"] = time.perf_counter() - t0

    # the command line, as torchrun runs it on every rank (the group is up already, so it is used)
    from wmap.cli import main
    out["cli"] = {"rc": main(["apply", str(SPEC["gpt2"]), "--distributed", "--source", str(w / "gpt2.safetensors"),
                              "--target", "tests.dist.workers:gpt2_model", "--out", str(w / "cli_ckpt"),
                              "--report", str(w / "cli_report.json")])}

    # faults: one rank fails, every rank refuses and none writes
    last = world - 1
    from wmap.formats.dcp_reader import SafetensorsRangeReader
    from wmap.sinks.dtensor_sink import DCPFolderSink, DTensorModelSink

    model = shard(target_model("gpt2"), "fsdp", world)
    before = _local_snapshot(model)
    with _fault_on(rank == last, DTensorModelSink, "stage", after=3):
        code = _fails(lambda: D.apply(SPEC["gpt2"], source=str(w / "gpt2.safetensors"), target=model))
    out["fault_stage"] = {"code": code, "unchanged": _unchanged(model, before)}

    with _fault_on(rank == last, SafetensorsRangeReader, "_read_box", after=2):
        code = _fails(lambda: D.apply(SPEC["gpt2"], source=str(w / "gpt2.safetensors"), target=model))
    out["fault_read"] = {"code": code, "unchanged": _unchanged(model, before)}

    with _fault_on(rank == last, DCPFolderSink, "stage", after=5):
        code = _fails(lambda: D.apply(SPEC["gpt2"], source=str(w / "gpt2.safetensors"), target=target_model("gpt2"),
                                      out=str(w / "never_ckpt")))
    out["fault_dcp"] = {"code": code}

    # the disk fills up on one rank while the folder is written: DCP fails on every rank, nothing appears
    from torch.distributed.checkpoint import FileSystemWriter
    with _fault_on(rank == last, FileSystemWriter, "write_data", after=1, exc=lambda: OSError(28, "No space left")):
        code = _fails(lambda: D.apply(SPEC["gpt2"], source=str(w / "gpt2.safetensors"), target=target_model("gpt2"),
                                      out=str(w / "never_ckpt2")))
    out["fault_save"] = {"code": code}

    # ranks that would run different plans refuse before reading
    from wmap.lang import parse_spec
    text = SPEC["resnet"].read_text()
    spec = parse_spec(text.replace("option seed = 42", "option seed = 43") if rank == last else text)
    model = shard(target_model("resnet"), "fsdp", world)
    before = _local_snapshot(model)
    code = _fails(lambda: D.apply(spec, source=str(w / "resnet.safetensors"), target=model))
    out["digest"] = {"code": code, "unchanged": _unchanged(model, before)}

    out["seconds"]["all"] = time.perf_counter() - t0
    (w / f"rank{rank}.json").write_text(json.dumps(out, default=str))
    dist.barrier()


def _groups(plan: Any, model: nn.Module) -> list[tuple[float, list[str]]]:
    """The optimizer groups `Plan.param_groups` makes for the sharded model (lr scale, names)."""
    import wmap
    return [(g["lr_scale"], g["names"]) for g in wmap.Plan.of(plan).param_groups(model, base_lr=1.0)]


class _fault_on:
    """Make `cls.method` raise on its `after`-th call, in this rank only (`active`)."""

    def __init__(self, active: bool, cls: type, method: str, after: int,
                 exc: Callable[[], BaseException] | None = None):
        self.active, self.cls, self.method, self.after, self.exc = active, cls, method, after, exc

    def __enter__(self) -> None:
        if not self.active:
            return
        original = getattr(self.cls, self.method)
        calls = [0]

        def faulty(obj: Any, *a: Any, **k: Any) -> Any:
            calls[0] += 1
            if calls[0] == self.after:
                from wmap.core.errors import error
                raise self.exc() if self.exc is not None else error("WM500", "injected fault: the disk went away")
            return original(obj, *a, **k)

        self.original = original
        setattr(self.cls, self.method, faulty)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            setattr(self.cls, self.method, self.original)


def gpt2_model() -> nn.Module:
    """The fused-QKV example's target, for `--target tests.dist.workers:gpt2_model`."""
    return target_model("gpt2")
