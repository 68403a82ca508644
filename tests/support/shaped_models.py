"""Models and checkpoints made from the example inventories' shapes (`example_inventories.py`):
a module tree whose state dict has exactly those names and shapes (running statistics and counters
as buffers, as in torchvision), and a safetensors checkpoint of seeded random values."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests.support.example_inventories import Shapes

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def module_from_shapes(shapes: Shapes, seed: int = 0) -> nn.Module:
    """A module whose state dict holds exactly `shapes` (values seeded, so every rank builds the same)."""
    g = torch.Generator().manual_seed(seed)
    root = nn.Module()
    for name, shape in sorted(shapes.items()):
        *path, leaf = name.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        if leaf in BUFFERS:
            value = torch.zeros(shape, dtype=torch.int64) if leaf == "num_batches_tracked" else torch.rand(shape, generator=g)
            mod.register_buffer(leaf, value)
        else:
            mod.register_parameter(leaf, nn.Parameter(torch.randn(shape, generator=g)))
    return root


def checkpoint_from_shapes(shapes: Shapes, path: Path, seed: int = 1, shard_at: int | None = None) -> Path:
    """A safetensors checkpoint of `shapes` with seeded random values. `shard_at`: split it into two
    shards after that many tensors, with a Hugging Face index (returns the index's path)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tensors = {n: (torch.zeros(s, dtype=torch.int64) if n.endswith("num_batches_tracked") else torch.randn(s, generator=g))
               for n, s in sorted(shapes.items())}
    if shard_at is None:
        save_file(tensors, str(path))
        return path
    import json
    names = list(tensors)
    parts = {f"{path.stem}-0000{i + 1}-of-00002.safetensors": names[a:b]
             for i, (a, b) in enumerate(((0, shard_at), (shard_at, len(names))))}
    for fname, part in parts.items():
        save_file({n: tensors[n] for n in part}, str(path.parent / fname))
    index = path.parent / f"{path.stem}.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {n: f for f, ns in parts.items() for n in ns}}))
    return index
