"""Vision encoders (ViT and its kin, Swin): the same random images through both models, NCHW for torch and
NHWC for Keras."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tests.recipes.families import BATCH, Family, as_np, base, diff


def images(size: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A batch of random images, channels last (Keras' layout), in roughly the range a normalised image has."""
    return np.random.RandomState(seed).standard_normal((BATCH, size, size, channels)).astype("float32")


def vision(output: str = "sequence_output") -> Callable[[Any, Any, Any], dict[str, float]]:
    """The backbone's token sequence against the Hugging Face base model's last hidden state, on the same
    images: the torch side reads them as NCHW, the Keras side as NHWC. A backbone that returns a feature
    map (B, H, W, C) is compared as the (B, H*W, C) sequence it flattens to, row by row."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import keras
        import torch
        x = images(cfg.image_size, cfg.num_channels)
        spec = backbone.input
        y = backbone({k: keras.ops.convert_to_tensor(x) for k in spec} if isinstance(spec, dict)
                     else keras.ops.convert_to_tensor(x))
        out = as_np(y[output] if isinstance(y, dict) else y)
        with torch.no_grad():
            model = hf if type(hf).__name__.endswith("Model") else base(hf)  # a bare model is its own base
            o = model(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        want = o.last_hidden_state.numpy()
        if out.ndim == 4:
            out = out.reshape(out.shape[0], -1, out.shape[-1])
        return {"sequence": diff(want, out)}
    return f


_VIT = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64)

FAMILIES = (
    # layer_norm_eps 1e-6: keras-hub's ViT fixes its LayerNorm epsilon at 1e-6 and convert_vit does not read
    # the config's (transformers' default is 1e-12); at 1e-6 both models compute the same function
    Family("hf_to_keras_hub/vit", "ViTConfig", dict(_VIT, num_labels=5, layer_norm_eps=1e-6),
           "ViTForImageClassification", vision()),
    Family("hf_to_keras_hub/deit", "DeiTConfig", dict(_VIT, num_labels=5), "DeiTForImageClassificationWithTeacher",
           vision()),
    Family("hf_to_keras_hub/dinov2", "Dinov2Config",
           dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2),
           "Dinov2Model", vision()),
    Family("hf_to_keras_hub/dinov3", "DINOv3ViTConfig",
           dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, num_register_tokens=4),
           "DINOv3ViTModel", vision()),
    # two stages (one patch merging), windows of 4 on a 16 x 16 token grid: shifted windows in each stage's
    # second block
    Family("hf_to_keras_hub/swin_transformer", "SwinConfig",
           dict(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4),
           "SwinModel", vision()),
)
