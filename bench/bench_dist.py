"""Distributed apply: what each rank reads and holds, against every rank loading the whole checkpoint.

    python -m bench.bench_dist                 # 2 and 4 gloo ranks on this machine, a table
    python -m bench.bench_dist --layers 12     # a bigger model (default: 6 layers, ~100 MB)

The transfer is the fused-QKV example (`specs/examples/fused_qkv_split.wmap`, GPT-2's `c_attn` cut
into q/k/v, every Conv1D weight transposed) on a GPT-2-shaped checkpoint (hidden 512, vocabulary
8192), into a decoder sharded with FSDP2 over N ranks. The target is built on the meta device and
only its shards are allocated (`to_empty`), as a real sharded job does.

Two cases, each in fresh processes (one per rank):
- wmap: `wmap.run.distributed.apply`; bytes read are counted by its storage reader.
- naive: every rank `safetensors.torch.load_file`s the whole checkpoint, computes each target
  tensor by hand (transpose, split) and copies its shard into the DTensor's local tensor.

Memory is each rank's peak resident memory (VmRSS, sampled every 2 ms) during the case over its
resident memory before it: resident, not anonymous only, since `load_file` maps the checkpoint and
the pages a rank touches are memory it holds (the page cache keeps one copy per machine, but every
rank maps and touches all of it). The goal: each rank
reads at most 1/N of the tensor bytes (plus headers) and holds at most 1/N of the model plus one
tensor's working set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "specs", "examples",
                    "fused_qkv_split.wmap")


def shapes(layers: int, e: int = 512, vocab: int = 8192, ctx: int = 256) -> tuple[dict[str, tuple[int, ...]],
                                                                                 dict[str, tuple[int, ...]]]:
    """GPT-2's tensor names and shapes (source), and the decoder's (target), as in the example spec: the
    shapes the example's tests plan against, at a bench's size."""
    from tests.support.example_inventories import CHECKPOINTS
    sources, target = CHECKPOINTS["fused_qkv_split"](e=e, layers=layers, vocab=vocab, ctx=ctx)
    return sources["src"], target


def build(tgt: dict[str, tuple[int, ...]]) -> Any:
    """A module tree with exactly these parameter names and shapes."""
    import torch
    from torch import nn
    root = nn.Module()
    for name, shape in sorted(tgt.items()):
        *path, leaf = name.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, nn.Parameter(torch.empty(shape)))
    return root


def naive_full(sd: dict[str, Any], name: str) -> Any:
    """The hand-written loop's value of target `name` from the whole state dict (the spec, by hand)."""
    parts = name.split(".")
    if parts[0] != "layers":
        src = {"embed_tokens.weight": "wte.weight", "embed_positions.weight": "wpe.weight", "norm.weight": "ln_f.weight",
               "norm.bias": "ln_f.bias", "lm_head.weight": "wte.weight"}[name]
        return sd[src]
    i, block, what, p = parts[1], parts[2], parts[3], parts[-1]
    if block.startswith("norm"):
        return sd[f"h.{i}.ln_{block[-1]}.{p}"]
    if what in "qkv":
        w = sd[f"h.{i}.attn.c_attn.{p}"]
        w = w.t() if p == "weight" else w
        return w.chunk(3, 0)["qkv".index(what)]
    src = {"o": "attn.c_proj", "up": "mlp.c_fc", "down": "mlp.c_proj"}[what]
    w = sd[f"h.{i}.{src}.{p}"]
    return w.t() if p == "weight" else w


def measure_rss(fn: Any) -> dict[str, float]:
    """Run fn; peak resident memory over the run (sampled every 2 ms) and before it. Resident, not
    anonymous only: `load_file` maps the checkpoint, and what a rank touches of it is memory it holds."""
    from bench.harness import sample_peaks
    seconds, base, peak = sample_peaks(fn, ("VmRSS", "RssAnon"))
    return {"seconds": seconds, "peak_mb": peak["VmRSS"], "base_mb": base["VmRSS"],
            "peak_anon_mb": peak["RssAnon"], "base_anon_mb": base["RssAnon"]}


def rank_main(rank: int, world: int, port: int, case: str, ckpt: str, layers: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=600))
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    from wmap.run import distributed
    _, tgt = shapes(layers)
    with torch.device("meta"):
        model = build(tgt)
    fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
    model.to_empty(device="cpu")  # only this rank's shards are allocated
    with torch.no_grad():
        for p in model.parameters():
            p.to_local().zero_()  # and touched, as an initialised model's are, so the case does not pay for it
    shard_bytes = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    got: dict[str, Any] = {}

    def run_wmap() -> None:
        report = distributed.apply(SPEC, source=ckpt, target=model)
        got["bytes_read"], got["header_bytes"] = report.bytes_read, report.header_bytes
        got["gathered"] = len(report.gathered)

    def run_naive() -> None:
        from safetensors.torch import load_file
        sd = load_file(ckpt)
        got["bytes_read"] = sum(t.numel() * t.element_size() for t in sd.values())
        with torch.no_grad():
            for name, p in model.named_parameters():
                assert isinstance(p, DTensor)
                local, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
                box = tuple(slice(o, o + n) for o, n in zip(offset, local))
                p.to_local().copy_(naive_full(sd, name)[box])

    dist.barrier()
    m = measure_rss(run_wmap if case == "wmap" else run_naive)
    got |= {"rank": rank, "seconds": m["seconds"], "held_mb": m["peak_mb"] - m["base_mb"],
            "anon_mb": m["peak_anon_mb"] - m["base_anon_mb"], "shard_mb": shard_bytes / 2**20}
    with open(os.path.join(out, f"{case}-{world}-{rank}.json"), "w") as f:
        json.dump(got, f)
    dist.barrier()
    dist.destroy_process_group()


def spawn(case: str, world: int, ckpt: str, layers: int, out: str) -> list[dict[str, Any]]:
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.start_processes(rank_main, args=(world, port, case, ckpt, layers, out), nprocs=world, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 900
    try:
        while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{case} on {world} ranks took over 900 s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
            p.join(timeout=10)
    return [json.load(open(os.path.join(out, f"{case}-{world}-{r}.json"))) for r in range(world)]


def main(argv: list[str] | None = None) -> int:
    import torch
    from safetensors.torch import save_file

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="wmap-bench-dist-")  # removed at the end: nothing big is left behind
    try:
        src, tgt = shapes(args.layers)
        g = torch.Generator().manual_seed(0)
        ckpt = os.path.join(work, "gpt2.safetensors")
        save_file({n: torch.randn(s, generator=g) for n, s in src.items()}, ckpt)
        data = sum(torch.Size(s).numel() * 4 for s in src.values())
        model = sum(torch.Size(s).numel() * 4 for s in tgt.values())
        largest = max(torch.Size(s).numel() * 4 for s in tgt.values())
        print(f"checkpoint {data / 2**20:.1f} MiB of tensor data ({len(src)} tensors), target model "
              f"{model / 2**20:.1f} MiB, largest tensor {largest / 2**20:.1f} MiB")
        print(f"{'ranks':>5} {'case':>6} {'read/rank MiB':>14} {'goal':>7} {'held/rank MiB':>14} {'goal':>7} "
              f"{'seconds':>8}")
        results: dict[str, Any] = {}
        for n in args.ranks:
            for case in ("wmap", "naive"):
                ranks = spawn(case, n, ckpt, args.layers, work)
                results[f"{case}-{n}"] = ranks
                read = max(r["bytes_read"] for r in ranks) / 2**20
                held = max(r["held_mb"] for r in ranks)
                print(f"{n:>5} {case:>6} {read:>14.1f} {data / n / 2**20:>7.1f} {held:>14.1f} "
                      f"{(model / n + largest) / 2**20:>7.1f} {max(r['seconds'] for r in ranks):>8.2f}")
        print(json.dumps(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
