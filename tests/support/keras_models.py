"""Shared by the Keras tests: the twin models, reproducible non-trivial weights, and forward passes.

The twins themselves live in `wmap.examples.models` (the example specs name them as
`module:callable` targets); this module adds what tests need around them. Import it after
`pytest.importorskip("keras")`: it sets the Keras backend before Keras is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from tests.support import paths
from wmap.examples.models import IMAGE, keras_cnn, keras_cnn_keras_eps, torch_cnn  # noqa: E402

ROOT = paths.ROOT
EXAMPLES = ROOT / "specs" / "examples"
TORCH_TO_KERAS = EXAMPLES / "torch_to_keras_cnn.wmap"
KERAS_TO_TORCH = EXAMPLES / "keras_to_torch_cnn.wmap"
TORCH_TO_KERAS_AUTO = EXAMPLES / "torch_to_keras_auto.wmap"
TOL = 1e-4

__all__ = ["EXAMPLES", "IMAGE", "KERAS_TO_TORCH", "ROOT", "TOL", "TORCH_TO_KERAS", "TORCH_TO_KERAS_AUTO", "images",
           "keras_cnn", "keras_cnn_keras_eps", "keras_out", "keras_weights", "random_keras", "random_torch",
           "torch_cnn", "torch_out", "torch_state"]


def random_torch(seed: int = 0) -> Any:
    """The PyTorch twin with every tensor random, BatchNorm statistics and PReLU slopes included
    (fresh BatchNorm is the identity and fresh PReLU is 0.25 everywhere: they would hide mistakes)."""
    import torch

    torch.manual_seed(seed)
    model = torch_cnn()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
    return model


def random_keras(seed: int = 0, model: Any = None) -> Any:
    """The Keras twin (or `model`) with every variable random; moving variances positive."""
    model = model if model is not None else keras_cnn()
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape = tuple(v.shape)
        if v.path.endswith("moving_variance"):
            v.assign((rng.random(shape) + 0.5).astype("float32"))
        else:
            v.assign((rng.standard_normal(shape) * 0.3).astype("float32"))
    return model


def images(n: int = 3, seed: int = 1) -> np.ndarray:
    """A batch in PyTorch layout (N, C, H, W)."""
    return np.random.default_rng(seed).standard_normal((n, *IMAGE)).astype("float32")


def torch_out(model: Any, x: np.ndarray) -> np.ndarray:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # TensorFlow's spinning thread pool makes torch's threads crawl (1 s -> 10 ms)
    try:
        with torch.no_grad():
            return model.eval()(torch.from_numpy(x)).numpy()  # type: ignore[no-any-return]
    finally:
        torch.set_num_threads(threads)


def keras_out(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), training=False))


def keras_weights(model: Any) -> dict[str, np.ndarray]:
    """Every variable by path, copied."""
    return {v.path: np.array(v.numpy(), copy=True) for v in model.weights}


def torch_state(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
