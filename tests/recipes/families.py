"""Tiny random Hugging Face models for every recipe, and how to compare their forward outputs.

Each family is built from a small config with transformers, given N(0, 0.02) noise on every
parameter (so no LayerNorm is all ones and no two values coincide), and saved with
`save_pretrained` as safetensors: the checkpoint a user would have. MoE families use 16 experts
and attention families grouped-query attention where the family has it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BATCH, SEQ = 2, 7


@dataclass(frozen=True)
class Family:
    recipe: str                                   # `hf_to_keras_hub/gpt2`
    config_cls: str                               # transformers config class
    config: dict[str, Any]
    hf_cls: str                                   # the model class whose checkpoint the recipe reads
    forward: Callable[[Any, Any, Any], dict[str, float]]  # (hf model, keras backbone, hf config) -> max |diff|
    tol: float = 1e-5
    prepare: Callable[[Path, Any], None] | None = None    # rewrite a transformers-5 checkpoint to the hub layout
    notes: tuple[str, ...] = field(default=())


def ids(vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(3, vocab, size=(BATCH, SEQ)).astype("int32")


def mask(pad_last: int = 0) -> np.ndarray:
    m = np.ones((BATCH, SEQ), dtype="int32")
    if pad_last:
        m[1, -pad_last:] = 0
    return m


def as_np(x: Any) -> np.ndarray:
    import keras
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def call(backbone: Any, inputs: dict[str, np.ndarray]) -> Any:
    """Call a backbone with only the inputs it declares (a Functional model maps extra keys by position)."""
    import keras
    spec = backbone.input
    if isinstance(spec, dict):
        inputs = {k: v for k, v in inputs.items() if k in spec}
    return backbone({k: keras.ops.convert_to_tensor(v) for k, v in inputs.items()})


def diff(a: Any, b: Any, m: np.ndarray | None = None) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    d = np.abs(a - b)
    return float((d[m.astype(bool)] if m is not None else d).max())


def base(hf: Any) -> Any:
    """The base model under a *ForXxx head (or the model itself)."""
    for attr in ("model", "transformer", "bert", "vit", "deit", "dinov2", "swin", "roberta", "albert", "distilbert",
                 "esm"):
        m = getattr(hf, attr, None)
        if m is not None and m is not hf and hasattr(m, "forward"):
            return m
    return hf


def decoder(pad: int = 2) -> Callable[[Any, Any, Any], dict[str, float]]:
    """Last hidden states of a decoder-only LM, and its logits through the (tied or untied) head."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import torch
        x, m = ids(cfg.vocab_size), mask(pad)
        y = call(backbone, {"token_ids": x, "padding_mask": m})
        seq = y["sequence_output"] if isinstance(y, dict) else y
        with torch.no_grad():
            o = base(hf)(input_ids=torch.tensor(x, dtype=torch.long), attention_mask=torch.tensor(m))
            logits = hf(input_ids=torch.tensor(x, dtype=torch.long), attention_mask=torch.tensor(m)).logits
        out = {"sequence": diff(o.last_hidden_state.numpy(), as_np(seq), m)}
        out["logits"] = diff(logits.numpy(), as_np(backbone.get_layer("token_embedding")(seq, reverse=True)), m)
        return out
    return f


def _discover() -> dict[str, Family]:
    """Every `FAMILIES` tuple of the `families_*.py` modules beside this one (one module per group of
    families, so groups are added side by side)."""
    import importlib
    import pkgutil

    import tests.recipes as pkg
    out: dict[str, Family] = {}
    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("families_")):
        for fam in importlib.import_module(f"tests.recipes.{mod}").FAMILIES:
            assert fam.recipe not in out, f"{fam.recipe} is defined twice"
            out[fam.recipe] = fam
    return out


FAMILIES: dict[str, Family] = _discover()
