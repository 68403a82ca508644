"""Into Keras: wmap's recipes against keras-hub's own Hugging Face converters, on the same backbone.

    python -m bench.bench_keras_hub [--repeat 11] [--dir /tmp] [--keep]

Two checkpoints are built from random weights with transformers and saved with `save_pretrained`
(into a temporary folder under --dir, deleted afterwards unless --keep):

- `gpt2`: GPT-2 small's shape (12 layers, hidden 768, vocab 50257; 498 MB);
- `llama`: a ~155M-parameter Llama (12 layers, hidden 768, MLP 2816, vocab 32000, untied head; 622 MB).

For each, one process builds the keras-hub backbone from the converted config once (not timed),
then alternates the two transfers into that same, already-built backbone, `--repeat` times each:

- keras-hub: `convert_weights(backbone, SafetensorLoader(folder), config)`, what
  `Backbone.from_preset` runs after building the model (keras_hub/src/utils/transformers/);
- wmap: `wmap.apply(<recipe>, source=<model.safetensors>, target=backbone)` with the library's
  recipe (wmap/recipes/hf_to_keras_hub/), planning included.

Both run once before timing (first-call imports and lazy code paths). The medians are reported,
and the ratio wmap / keras-hub. After timing, the two results are compared variable by variable:
they must be equal bit for bit. A tiny model of each family (2 layers, hidden 32) gives the fixed
cost per call: wmap's median minus keras-hub's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import run_once, warm

# (transformers config class, its arguments, model class, recipe, keras-hub converter module)
SHAPES: dict[str, tuple[str, dict[str, Any], str, str, str]] = {
    "gpt2": ("GPT2Config", dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024),
             "GPT2LMHeadModel", "hf_to_keras_hub/gpt2", "convert_gpt2"),
    "llama": ("LlamaConfig", dict(vocab_size=32000, hidden_size=768, intermediate_size=2816, num_hidden_layers=12,
                                  num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=2048,
                                  tie_word_embeddings=False),
              "LlamaForCausalLM", "hf_to_keras_hub/llama3", "convert_llama3"),
    "gpt2-tiny": ("GPT2Config", dict(n_layer=2, n_embd=32, n_head=4, vocab_size=128, n_positions=64),
                  "GPT2LMHeadModel", "hf_to_keras_hub/gpt2", "convert_gpt2"),
    "llama-tiny": ("LlamaConfig", dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                       tie_word_embeddings=False),
                   "LlamaForCausalLM", "hf_to_keras_hub/llama3", "convert_llama3"),
}


def make_checkpoint(shape: str, folder: Path) -> None:
    import torch
    import transformers

    cfg_cls, kwargs, model_cls, _, _ = SHAPES[shape]
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**kwargs))
    model.save_pretrained(folder, safe_serialization=True)


def run_case(shape: str, folder: str, repeat: int) -> dict[str, Any]:
    """In this process: build the backbone, then alternate keras-hub's converter and wmap into it."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import importlib

    import numpy as np
    import torch  # noqa: F401  (a user porting from Hugging Face has torch loaded)
    from keras_hub.src.utils.transformers.safetensor_utils import SafetensorLoader

    import wmap
    from wmap.formats.keras_naming import keras_names
    from wmap.recipes import path as recipe_path

    _, _, _, recipe, converter = SHAPES[shape]
    conv = importlib.import_module(f"keras_hub.src.utils.transformers.{converter}")
    config = json.loads((Path(folder) / "config.json").read_text())
    backbone = conv.backbone_cls(**conv.convert_backbone_config(config))
    spec = recipe_path(recipe)
    source = str(Path(folder) / "model.safetensors")

    def hub() -> None:
        with SafetensorLoader(folder) as loader:
            conv.convert_weights(backbone, loader, config)

    def ours() -> None:
        wmap.apply(spec, source=source, target=backbone, show_progress=False)

    def values() -> dict[str, Any]:
        return {n: np.array(v.numpy()) for n, v in keras_names(backbone)}

    hub()
    ours()  # first calls: lazy imports and code paths, on both sides
    times: dict[str, list[float]] = {"keras-hub": [], "wmap": []}
    cpu: dict[str, list[float]] = {"keras-hub": [], "wmap": []}
    for _ in range(repeat):
        for name, fn in (("keras-hub", hub), ("wmap", ours)):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)  # all threads: wmap's copy workers too
    hub()
    theirs = values()
    ours()
    mine = values()
    differ = [n for n in theirs if theirs[n].dtype != mine[n].dtype or theirs[n].tobytes() != mine[n].tobytes()]
    assert not differ and theirs.keys() == mine.keys(), f"wmap and keras-hub disagree on {differ[:5]}"
    nbytes = sum(v.nbytes for v in mine.values())
    return {"shape": shape, "bytes": nbytes, "variables": len(mine), "runs": times, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=11, help="timed runs of each side (alternating)")
    ap.add_argument("--dir", default="/tmp", help="where the checkpoints are written (and deleted)")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoints (reused by the next run)")
    ap.add_argument("--shapes", default="gpt2,llama,gpt2-tiny,llama-tiny")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.folder, args.repeat)))
        return
    root = Path(args.dir) / "wmap_bench_keras_hub"
    results = []
    try:
        for shape in args.shapes.split(","):
            folder = root / shape
            if not (folder / "model.safetensors").exists():
                print(f"writing {folder} ...", file=sys.stderr, flush=True)
                make_checkpoint(shape, folder)
            warm(str(folder))
            repeat = args.repeat if not shape.endswith("tiny") else max(args.repeat, 21)
            results.append(run_once("bench.bench_keras_hub", "--case", shape, "--folder", str(folder),
                                    "--repeat", str(repeat)))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\ninto a built keras-hub backbone: medians of alternating runs (keras {_version('keras')}, "
          f"keras-hub {_version('keras_hub')})")
    print("wall ms, and in brackets the CPU ms of the process (every thread)")
    print(f"{'shape':11} {'MB':>6} {'vars':>5} {'keras-hub ms':>16} {'wmap ms':>16} {'ratio':>11} "
          f"{'wmap - hub ms':>16}")
    for r in results:
        hub, ours = (statistics.median(r["runs"][k]) * 1e3 for k in ("keras-hub", "wmap"))
        hub_c, ours_c = (statistics.median(r["cpu"][k]) * 1e3 for k in ("keras-hub", "wmap"))
        print(f"{r['shape']:11} {r['bytes'] / 1e6:6.0f} {r['variables']:5} {hub:7.1f} ({hub_c:6.1f}) "
              f"{ours:7.1f} ({ours_c:6.1f}) {ours / hub:4.2f} ({ours_c / hub_c:4.2f}) "
              f"{ours - hub:6.1f} ({ours_c - hub_c:6.1f})")
        print(f"{'':11} wmap runs (ms): " + ", ".join(f"{x * 1e3:.0f}" for x in r["runs"]["wmap"]))


def _version(module: str) -> str:
    import subprocess
    out = subprocess.run([sys.executable, "-c", f"import {module}; print({module}.__version__)"], capture_output=True,
                         text=True, env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"})
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "?"


if __name__ == "__main__":
    main()
