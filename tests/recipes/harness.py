"""Build a family's checkpoint once, convert it with keras-hub's own converter and with the recipe,
and compare the two backbones variable by variable, bit for bit.

keras-hub's `Backbone.from_preset(<local dir>)` runs the converter the recipe replaces
(`keras_hub/src/utils/transformers/convert_*.py`) on the checkpoint folder, offline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.recipes.families import Family


@dataclass
class Built:
    family: Family
    folder: Path
    hf: Any          # the transformers model the checkpoint was saved from
    hf_config: Any
    reference: Any   # keras-hub's conversion of the checkpoint
    ours: Any        # the recipe's
    report: Any


def build(family: Family, folder: Path) -> Built:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import keras_hub
    import torch
    import transformers

    import wmap
    from wmap.recipes import path

    torch.manual_seed(0)
    cfg = getattr(transformers, family.config_cls)(**family.config)
    hf = getattr(transformers, family.hf_cls)(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf.save_pretrained(folder, safe_serialization=True)
    if family.prepare is not None:
        family.prepare(folder, hf)
    reference = keras_hub.models.Backbone.from_preset(str(folder))
    report = wmap.apply(path(family.recipe), source=str(folder / "model.safetensors"), show_progress=False)
    return Built(family, folder, hf, cfg, reference, report.target, report)


_BUILT: dict[str, Built] = {}


def built(family: Family, tmp_path_factory: Any) -> Built:
    """`build`, once per family per process (every test module of the recipes shares it)."""
    if family.recipe not in _BUILT:
        _BUILT[family.recipe] = build(family, tmp_path_factory.mktemp(family.recipe.replace("/", "_")))
    return _BUILT[family.recipe]


def variables(model: Any) -> dict[str, np.ndarray]:
    from wmap.formats.keras_naming import keras_names
    return {n: np.asarray(v.numpy()) for n, v in keras_names(model)}


def mismatches(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    """Names whose bytes differ (dtype and shape included), plus names only one side has."""
    out = sorted(set(a) ^ set(b))
    for n in sorted(set(a) & set(b)):
        x, y = a[n], b[n]
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            out.append(n)
    return out
