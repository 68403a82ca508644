"""PyTorch transfers: wmap against the hand-written baseline, in the same run.

    python -m bench.bench_torch            # all cases, a table, and bench/out/torch.json

Cases (issue 4): identity from safetensors into an existing model; from a .pt file; a
`module:callable` target built on meta (build + transfer); a transposing transfer.

Each case first runs once on a tiny model (2 x Linear 8x8) in the same process, on both sides, so
that first-call imports and lazily loaded code paths are outside the timed run (`import wmap`
stays light so that a CLI `wmap check` does not pay for torch).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.harness import emit, measure, run_pair

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
ST = os.path.join(OUT, "big.safetensors")
PT = os.path.join(OUT, "big.pt")
ST_T = os.path.join(OUT, "big_transposed.safetensors")
IDENTITY = "wmap 1\n{p:**} -> {p}\n"
IDENTITY_CHECKED = 'wmap 1\noption nonfinite = "error"\n{p:**} -> {p}\n'  # + a NaN/Inf scan before any write
TRANSPOSE = "wmap 1\n{i:int}.weight -> {i}.weight | transpose\n{i:int}.bias -> {i}.bias\n"


def _write_checkpoints(folder: str, factory: str) -> tuple[str, str, str]:
    """The model's state dict as safetensors, .pt, and safetensors with every matrix transposed."""
    import torch
    from safetensors.torch import save_file

    from wmap.run.factory import resolve_factory
    paths = tuple(os.path.join(folder, n) for n in ("big.safetensors", "big.pt", "big_transposed.safetensors"))
    st, pt, st_t = paths
    if all(os.path.exists(p) for p in paths):
        return st, pt, st_t
    torch.manual_seed(0)
    sd = resolve_factory(factory)().state_dict()
    save_file(sd, st)
    torch.save(sd, pt)
    save_file({k: (v.t().contiguous() if v.dim() == 2 else v) for k, v in sd.items()}, st_t)
    return st, pt, st_t


def prepare() -> None:
    os.makedirs(OUT, exist_ok=True)
    _write_checkpoints(OUT, "bench.models:big_mlp")


def job(name: str, st: str, pt: str, st_t: str, factory: str) -> Callable[[], Any]:
    """The transfer a case times, on the given files (the full ones, or tiny ones to warm up)."""
    import torch
    from safetensors.torch import load_file

    import wmap
    from wmap.run.factory import resolve_factory
    make = resolve_factory(factory)
    if name.startswith("identity"):
        model = make()
        if name.endswith("baseline"):
            return lambda: model.load_state_dict(load_file(st))
        spec = wmap.parse_spec(IDENTITY_CHECKED if name.startswith("identity_checked") else IDENTITY)
        return lambda: wmap.apply(spec, source=st, target=model)
    if name.startswith("pt"):
        model = make()
        if name.endswith("baseline"):
            return lambda: model.load_state_dict(torch.load(pt, weights_only=True))
        spec = wmap.parse_spec(IDENTITY)
        return lambda: wmap.apply(spec, source=pt, target=model)
    if name.startswith("factory"):
        if name.endswith("baseline"):
            return lambda: make().load_state_dict(load_file(st))
        spec = wmap.parse_spec(IDENTITY)
        return lambda: wmap.apply(spec, source=st, target=factory)
    if name.startswith("transpose"):
        model = make()
        if name.endswith("baseline"):
            def loop() -> None:  # the usual hand-written port: transpose, make contiguous, load
                sd = load_file(st_t)
                model.load_state_dict({k: (v.t().contiguous() if v.dim() == 2 else v) for k, v in sd.items()})
            return loop
        spec = wmap.parse_spec(TRANSPOSE)
        return lambda: wmap.apply(spec, source=st_t, target=model)
    raise SystemExit(f"unknown case {name}")


def case(name: str) -> dict[str, float]:
    """Time one case in this process, after running it once on a tiny model: both sides' first-call
    imports and lazily loaded code paths stay out of the timed run."""
    import torch
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = _write_checkpoints(tmp, "bench.models:tiny_mlp")
        job(name, *tiny, "bench.models:tiny_mlp")()
    return measure(job(name, ST, PT, ST_T, "bench.models:big_mlp"))


CASES = [
    ("identity from safetensors into an existing model", "identity", ST, "time <= 1.0, memory no higher"),
    ("  the same with the NaN/Inf scan (nonfinite=error)", "identity_checked", ST, "(opt-in check)"),
    ("from a .pt file", "pt", PT, "time <= 0.5x, memory <= 0.6x"),
    ("module:callable target (build + transfer)", "factory", ST, "time <= 0.5x"),
    ("transposing transfer", "transpose", ST_T, "time <= 0.8x"),
]


def main() -> None:
    prepare()
    gb = os.path.getsize(ST) / 1e9
    rows = []
    for title, key, path, goal in CASES:
        base, ours = run_pair("bench.bench_torch", (f"{key}-baseline", f"{key}-wmap"), path)
        rows.append({"case": title, "goal": goal, "baseline_s": base["seconds"], "wmap_s": ours["seconds"],
                     "time_ratio": ours["seconds"] / base["seconds"], "baseline_peak_anon_mb": base["peak_anon_mb"],
                     "wmap_peak_anon_mb": ours["peak_anon_mb"],
                     "baseline_added_anon_mb": base["peak_anon_mb"] - base["base_anon_mb"],
                     "wmap_added_anon_mb": ours["peak_anon_mb"] - ours["base_anon_mb"],
                     "mem_ratio": ours["peak_anon_mb"] / base["peak_anon_mb"], "wmap_gb_s": gb / ours["seconds"]})
    print(f"model: {gb:.2f} GB float32 ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    print(f"{'case':52} {'baseline':>9} {'wmap':>8} {'ratio':>6} {'GB/s':>6} {'peak anon MB':>14} "
          f"{'added MB':>12}  goal")
    for r in rows:
        print(f"{r['case']:52} {r['baseline_s']:8.3f}s {r['wmap_s']:7.3f}s {r['time_ratio']:6.2f} {r['wmap_gb_s']:6.2f} "
              f"{r['baseline_peak_anon_mb']:6.0f} / {r['wmap_peak_anon_mb']:5.0f} "
              f"{r['baseline_added_anon_mb']:5.0f} / {r['wmap_added_anon_mb']:4.0f}  {r['goal']}")
    print("peak anon: RssAnon at its highest during the transfer (the model included); added: that peak minus RssAnon "
          "just before the transfer (baseline / wmap)")
    with open(os.path.join(OUT, "torch.json"), "w") as f:
        json.dump({"gb": gb, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        emit(case(sys.argv[1]))
    else:
        main()
