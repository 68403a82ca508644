"""Benchmark models: big enough to measure (>= 1 GB), built locally with random weights."""

from __future__ import annotations

import os

LAYERS = int(os.environ.get("WMAP_BENCH_LAYERS", "64"))
WIDTH = int(os.environ.get("WMAP_BENCH_WIDTH", "2048"))


def big_mlp():  # type: ignore[no-untyped-def]
    """64 x Linear(2048, 2048): 1.07 GB of float32, the size the hand-written baselines were first measured at."""
    import torch
    return torch.nn.Sequential(*[torch.nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)])


def tiny_mlp():  # type: ignore[no-untyped-def]
    """2 x Linear(8, 8): the same structure, to run each case once before timing it."""
    import torch
    return torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(2)])

