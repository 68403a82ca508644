"""`make demo`: a real PyTorch -> Keras port of a model with one layer of every family.

1. build the PyTorch twin CNN (random weights, fixed seed) and save its checkpoint;
2. show the plan for the bundled spec `specs/examples/torch_to_keras_cnn.wmap`;
3. apply it, writing a Keras `.weights.h5`;
4. load that into the Keras twin, run both models on the same input, and print the largest
   difference, the coverage summary and a byte-for-byte verification.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "examples" / "torch_to_keras_cnn.wmap"
OUT = ROOT / "demo_out"


def _say(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def _cli(*argv: str) -> None:
    from wmap.cli import main
    print("$ wmap " + " ".join(argv), flush=True)
    code = main(list(argv))
    if code != 0:
        raise SystemExit(f"demo failed: `wmap {' '.join(argv)}` exited {code}")


def main() -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import torch
    from safetensors.torch import save_file

    import wmap
    from wmap.examples.models import keras_cnn, torch_cnn

    OUT.mkdir(exist_ok=True)
    ckpt = OUT / "twin_cnn.safetensors"
    keras_out = OUT / "twin_cnn_keras.weights.h5"
    rel = os.path.relpath

    _say("1. a PyTorch model with Conv2d, BatchNorm, PReLU, depthwise conv, ConvTranspose, MaxPool, "
         "Flatten->Linear, LSTM, GRU, MultiheadAttention")
    torch.manual_seed(0)
    model = torch_cnn()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a wrong mapping would show
        model.get_buffer("bn1.running_mean").uniform_(-0.5, 0.5)
        model.get_buffer("bn1.running_var").uniform_(0.5, 2.0)
    save_file(model.state_dict(), str(ckpt))
    print(f"saved {rel(ckpt)} ({ckpt.stat().st_size / 1e3:.0f} kB)")
    _cli("inspect", rel(ckpt))

    _say(f"2. the plan for {rel(SPEC)} (metadata only: nothing is read but headers)")
    _cli("plan", rel(SPEC), "--source", rel(ckpt))

    _say("3. apply: stream, check for NaN/Inf, and write the Keras weights atomically")
    if keras_out.exists():
        keras_out.unlink()
    _cli("apply", rel(SPEC), "--source", rel(ckpt), "--out", rel(keras_out))

    _say("4. the same input through both models")
    twin = keras_cnn()
    twin.load_weights(str(keras_out))
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        y_torch = model(torch.from_numpy(x)).numpy()
    y_keras = np.asarray(twin(x.transpose(0, 2, 3, 1), training=False))
    diff = float(np.abs(y_torch - y_keras).max())
    print(f"max |torch - keras| over {y_torch.size} outputs: {diff:.2e}  "
          f"({'OK' if diff < 1e-4 else 'MISMATCH'}: tolerance 1e-4)")
    plan = wmap.plan(wmap.load_spec(SPEC), source=str(ckpt))
    print(plan.render().strip().splitlines()[-1])
    report = wmap.verify(plan, source=str(ckpt), target=str(keras_out))
    print(report.render().strip())
    if diff >= 1e-4 or not report.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
