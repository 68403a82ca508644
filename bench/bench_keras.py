"""PyTorch -> Keras transfer of a ~1.07 GB model: wmap against the hand-written Keras loop.

    python -m bench.bench_keras [--layers 64] [--dim 2048] [--repeat 1] [--dir /tmp]

The model is 64 Linear 2048x2048 layers (the size the hand-written baselines were first measured at) saved as safetensors;
the target is the same stack of Keras Dense layers. Each case runs in a fresh subprocess, so
peak memory does not carry over from one case to the next:

- `hand`: the loop users write today, `layer.set_weights([W.T, b])`, reading each tensor with
  `safetensors.safe_open(..., framework="numpy")`;
- `wmap`: `wmap.apply(spec, source=file, target=model)`, planning included (it reads metadata
  only);
- `wmap-checked`: the same with `option nonfinite = "error"`, which also scans every value for
  NaN/Inf before anything is assigned.

Both start from a built Keras model, whose construction (random init) is timed separately and
is the same for both. Peak RssAnon is sampled every 2 ms during the transfer (Linux has no
high-water mark for anonymous memory alone); VmHWM, the kernel's peak RSS, includes the
memory-mapped file pages. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import measure, run_once, warm

SPEC = """wmap 1
layers.{i:int}.weight -> dense_{i}.kernel | linear_to_dense
layers.{i:int}.bias   -> dense_{i}.bias
"""
# The hand-written loop checks nothing, nor does wmap by default; `nonfinite = "error"` adds a NaN/Inf
# scan of every value, run on the staging copy while it is in cache, before anything is assigned.
CHECKED = 'option nonfinite = "error"\n'
CASES = ("hand", "wmap", "wmap-checked")


def vmhwm() -> int:
    """The kernel's peak RSS in bytes (file-backed pages included), or 0 where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def make_checkpoint(path: Path, layers: int, dim: int) -> None:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {}
    for i in range(layers):
        tensors[f"layers.{i}.weight"] = torch.randn(dim, dim, generator=g) * 0.02
        tensors[f"layers.{i}.bias"] = torch.randn(dim, generator=g) * 0.02
    save_file(tensors, str(path))


def build_keras(layers: int, dim: int) -> Any:
    import keras

    inp = keras.Input((dim,))
    x = inp
    for i in range(layers):
        x = keras.layers.Dense(dim, name=f"dense_{i}")(x)
    return keras.Model(inp, x)


def _warm_up(case: str, wmap: Any) -> None:
    """The same transfer on a tiny model first, on both sides, so that neither side's timed run
    includes the modules and code paths a first call loads lazily."""
    import tempfile

    tiny = Path(tempfile.mkdtemp()) / "tiny.safetensors"
    make_checkpoint(tiny, 2, 8)
    model = build_keras(2, 8)
    if wmap is None:
        from safetensors import safe_open

        with safe_open(str(tiny), framework="numpy") as f:
            model.get_layer("dense_0").set_weights([f.get_tensor("layers.0.weight").T, f.get_tensor("layers.0.bias")])
    else:
        wmap.apply(wmap.parse_spec(SPEC + (CHECKED if case == "wmap-checked" else "")), source=str(tiny), target=model)
    tiny.unlink()


def run_case(case: str, path: str, layers: int, dim: int) -> dict[str, Any]:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    t0 = time.perf_counter()
    import keras  # noqa: F401  (import time is not part of either case)

    wmap: Any = None
    if case.startswith("wmap"):
        import torch  # noqa: F401  (likewise: a torch->keras user has torch loaded)

        import wmap
    _warm_up(case, wmap)  # first-call imports and code paths, on a 2-layer model
    t1 = time.perf_counter()
    model = build_keras(layers, dim)
    t2 = time.perf_counter()

    def transfer() -> None:
        if case == "hand":
            from safetensors import safe_open

            with safe_open(path, framework="numpy") as f:
                for i in range(layers):
                    layer = model.get_layer(f"dense_{i}")
                    layer.set_weights([f.get_tensor(f"layers.{i}.weight").T, f.get_tensor(f"layers.{i}.bias")])
        else:
            wmap.apply(wmap.parse_spec(SPEC + (CHECKED if case == "wmap-checked" else "")), source=path, target=model)

    measured = measure(transfer)
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:  # spot-check the result
        for i in (0, layers // 2, layers - 1):
            assert np.array_equal(model.get_layer(f"dense_{i}").kernel.numpy(), f.get_tensor(f"layers.{i}.weight").T)
            assert np.array_equal(model.get_layer(f"dense_{i}").bias.numpy(), f.get_tensor(f"layers.{i}.bias"))
    return {"case": case, "seconds": measured["seconds"], "import_s": t1 - t0, "build_s": t2 - t1,
            "base_anon": measured["base_anon_mb"] * 2**20, "peak_anon": measured["peak_anon_mb"] * 2**20,
            "vmhwm": vmhwm()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=1, help="runs per case (the best time is reported)")
    ap.add_argument("--dir", default="/tmp", help="where the checkpoint is written (kept for reuse)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.path, args.layers, args.dim)))
        return
    path = Path(args.dir) / f"bench_keras_{args.layers}x{args.dim}.safetensors"
    if not path.exists():
        print(f"writing {path} ...", flush=True)
        make_checkpoint(path, args.layers, args.dim)
    size = path.stat().st_size
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in CASES}
    for _ in range(args.repeat):
        for case in CASES:
            warm(str(path))  # every case starts from a warm page cache (the kernel may reclaim it in between)
            results[case].append(run_once("bench.bench_keras", "--case", case, "--path", str(path),
                                          "--layers", str(args.layers), "--dim", str(args.dim)))
    best = {c: min(rs, key=lambda r: r["seconds"]) for c, rs in results.items()}
    gb = size / 1e9
    print(f"\nPyTorch -> Keras, {args.layers} x Linear {args.dim}x{args.dim} ({gb:.2f} GB safetensors), "
          f"best of {args.repeat}, Keras {_keras_version()}")
    print(f"{'case':12} {'transfer s':>10} {'GB/s':>6} {'speedup':>8} {'build s':>8} {'base anon':>10} "
          f"{'peak anon':>10} {'+anon':>7} {'VmHWM':>7}")
    for c in CASES:
        r = best[c]
        print(f"{c:12} {r['seconds']:10.2f} {gb / r['seconds']:6.2f} {best['hand']['seconds'] / r['seconds']:7.1f}x "
              f"{r['build_s']:8.1f} {r['base_anon'] / 1e9:8.2f}GB {r['peak_anon'] / 1e9:8.2f}GB "
              f"{(r['peak_anon'] - r['base_anon']) / 1e9:5.2f}GB {r['vmhwm'] / 1e9:5.2f}GB")
    if args.repeat > 1:
        for c in CASES:
            print(f"  {c} runs (s): " + ", ".join(f"{r['seconds']:.2f}" for r in results[c]))


def _keras_version() -> str:
    out = subprocess.run([sys.executable, "-c", "import keras; print(keras.__version__)"], capture_output=True,
                         text=True, env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"})
    return out.stdout.strip() or "?"


if __name__ == "__main__":
    main()
