"""PyTorch transfers: wmap against the hand-written baseline, in the same run.

    python -m bench.bench_torch            # all cases, a table, and bench/out/torch.json

Cases (issue 4): identity from safetensors into an existing model; from a .pt file; a
`module:callable` target built on meta (build + transfer); a transposing transfer.

Imports are outside the timed region on both sides: the baseline's `safetensors.torch`, and
the wmap modules that `wmap.apply` imports lazily on its first call (`import wmap` stays light
so that a CLI `wmap check` does not pay for torch).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

from bench.harness import emit, measure, run_case, warm

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
ST = os.path.join(OUT, "big.safetensors")
PT = os.path.join(OUT, "big.pt")
ST_T = os.path.join(OUT, "big_transposed.safetensors")
LAZY_MODULES = ("wmap.api", "wmap.execute", "wmap.endpoints", "wmap.parse.fmt", "wmap.backends.torch_backend",
                "wmap.formats.safetensors_file", "wmap.formats.torch_file", "wmap.formats.factory", "wmap.formats.memory",
                "wmap.transforms.ops_torch")
IDENTITY = "wmap 1\n{p:**} -> {p}\n"
IDENTITY_NO_SCAN = 'wmap 1\noption nonfinite = "allow"\n{p:**} -> {p}\n'
TRANSPOSE = "wmap 1\n{i:int}.weight -> {i}.weight | transpose\n{i:int}.bias -> {i}.bias\n"


def prepare() -> None:
    import torch
    from safetensors.torch import save_file

    from bench.models import big_mlp
    os.makedirs(OUT, exist_ok=True)
    if all(os.path.exists(p) for p in (ST, PT, ST_T)):
        return
    torch.manual_seed(0)
    sd = big_mlp().state_dict()
    save_file(sd, ST)
    torch.save(sd, PT)
    save_file({k: (v.t().contiguous() if v.dim() == 2 else v) for k, v in sd.items()}, ST_T)


def case(name: str) -> dict[str, float]:
    import torch
    from safetensors.torch import load_file

    import wmap
    from bench.models import big_mlp
    for module in LAZY_MODULES:
        importlib.import_module(module)
    torch.set_grad_enabled(False)
    if name.startswith("identity"):
        model = big_mlp()
        if name.endswith("baseline"):
            return measure(lambda: model.load_state_dict(load_file(ST)))
        spec = wmap.parse_spec(IDENTITY_NO_SCAN if name.startswith("identity_noscan") else IDENTITY)
        return measure(lambda: wmap.apply(spec, source=ST, target=model))
    if name.startswith("pt"):
        model = big_mlp()
        if name.endswith("baseline"):
            return measure(lambda: model.load_state_dict(torch.load(PT, weights_only=True)))
        spec = wmap.parse_spec(IDENTITY)
        return measure(lambda: wmap.apply(spec, source=PT, target=model))
    if name.startswith("factory"):
        if name.endswith("baseline"):
            return measure(lambda: big_mlp().load_state_dict(load_file(ST)))
        spec = wmap.parse_spec(IDENTITY)
        return measure(lambda: wmap.apply(spec, source=ST, target="bench.models:big_mlp"))
    if name.startswith("transpose"):
        model = big_mlp()
        if name.endswith("baseline"):
            def loop() -> None:  # the usual hand-written port: transpose, make contiguous, load
                sd = load_file(ST_T)
                model.load_state_dict({k: (v.t().contiguous() if v.dim() == 2 else v) for k, v in sd.items()})
            return measure(loop)
        spec = wmap.parse_spec(TRANSPOSE)
        return measure(lambda: wmap.apply(spec, source=ST_T, target=model))
    raise SystemExit(f"unknown case {name}")


CASES = [
    ("identity from safetensors into an existing model", "identity", ST, "time <= 1.0, memory no higher"),
    ("  the same without the NaN/Inf scan (nonfinite=allow)", "identity_noscan", ST, "time <= 1.0"),
    ("from a .pt file", "pt", PT, "time <= 0.5x, memory <= 0.6x"),
    ("module:callable target (build + transfer)", "factory", ST, "time <= 0.5x"),
    ("transposing transfer", "transpose", ST_T, "time <= 0.8x"),
]


def main() -> None:
    prepare()
    gb = os.path.getsize(ST) / 1e9
    rows = []
    for title, key, path, goal in CASES:
        warm(path)
        base = run_case("bench.bench_torch", f"{key}-baseline")
        warm(path)
        ours = run_case("bench.bench_torch", f"{key}-wmap")
        rows.append({"case": title, "goal": goal, "baseline_s": base["seconds"], "wmap_s": ours["seconds"],
                     "time_ratio": ours["seconds"] / base["seconds"], "baseline_peak_anon_mb": base["peak_anon_mb"],
                     "wmap_peak_anon_mb": ours["peak_anon_mb"],
                     "mem_ratio": ours["peak_anon_mb"] / base["peak_anon_mb"], "wmap_gb_s": gb / ours["seconds"]})
    print(f"model: {gb:.2f} GB float32 ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    print(f"{'case':50} {'baseline':>9} {'wmap':>8} {'ratio':>6} {'GB/s':>6} {'peak anon MB (base/wmap)':>26}  goal")
    for r in rows:
        print(f"{r['case']:50} {r['baseline_s']:8.3f}s {r['wmap_s']:7.3f}s {r['time_ratio']:6.2f} {r['wmap_gb_s']:6.2f} "
              f"{r['baseline_peak_anon_mb']:12.0f} / {r['wmap_peak_anon_mb']:6.0f}    {r['goal']}")
    with open(os.path.join(OUT, "torch.json"), "w") as f:
        json.dump({"gb": gb, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        emit(case(sys.argv[1]))
    else:
        main()
