"""Vision-language models: an image and a prompt into one decoder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.recipes.families import BATCH, SEQ, Family, as_np, base, call, diff, ids, mask


def prefix_lm(pad: int = 2, suffix: int = 3) -> Callable[[Any, Any, Any], dict[str, float]]:
    """PaliGemma's forward: one random image per prompt (NCHW for torch, the same pixels NHWC for Keras)
    and a prompt whose last `suffix` tokens are the answer (causal) and the rest the prefix (bidirectional,
    with the image). Hugging Face reads the image tokens in the ids (`image_token_index`, one per patch,
    in front) and the split as `token_type_ids`; keras-hub puts the image in front itself and reads the
    split as `response_mask`. Last hidden states over every position, padded ones left out."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import torch
        tok = cfg.image_token_index
        n_img = cfg.text_config.num_image_tokens
        size = cfg.vision_config.image_size
        x, m = ids(tok), mask(pad)
        response = np.zeros((BATCH, SEQ), dtype="int32")
        response[:, SEQ - suffix:] = 1
        pixels = np.random.RandomState(3).standard_normal((BATCH, 3, size, size)).astype("float32")
        y = call(backbone, {"images": pixels.transpose(0, 2, 3, 1), "token_ids": x, "padding_mask": m,
                            "response_mask": response})
        full_ids = np.concatenate([np.full((BATCH, n_img), tok, dtype="int32"), x], axis=1)
        full_mask = np.concatenate([np.ones((BATCH, n_img), dtype="int32"), m], axis=1)
        types = np.concatenate([np.zeros((BATCH, n_img), dtype="int32"), response], axis=1)
        with torch.no_grad():
            o = base(hf)(input_ids=torch.tensor(full_ids, dtype=torch.long), attention_mask=torch.tensor(full_mask),
                         token_type_ids=torch.tensor(types, dtype=torch.long), pixel_values=torch.tensor(pixels))
        return {"sequence": diff(o.last_hidden_state.numpy(), as_np(y), full_mask)}
    return f


def siglip_hub_layout(folder: Path, hf: Any) -> None:
    """The checkpoint as the hub's PaliGemma files have it and keras-hub's converter reads it: SigLIP under
    `vision_tower.vision_model.` (transformers 5 saves it as `vision_tower.`)."""
    from safetensors.torch import load_file, save_file
    path = str(folder / "model.safetensors")
    state = {(k.replace("vision_tower.", "vision_tower.vision_model.", 1) if k.startswith("vision_tower.") else k): v
             for k, v in load_file(path).items()}
    save_file(state, path, metadata={"format": "pt"})


# Gemma 1 text with multi-query attention (4 query heads, 1 key/value head) as PaliGemma 1 has it. keras-hub's
# converter takes the decoder's head_dim from `text_config.num_image_tokens` ((image_size / patch_size)^2,
# 16 here), which equals head_dim in the 224-pixel releases only: head_dim is 16 here to match.
_TEXT = dict(model_type="gemma", vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=64)
_VISION = dict(model_type="siglip_vision_model", hidden_size=24, intermediate_size=32, num_hidden_layers=2,
               num_attention_heads=2, image_size=32, patch_size=8, vision_use_head=False)

FAMILIES = (
    # the image token sits below the end of the vocabulary, as in the releases (257152 of 257216)
    Family("hf_to_keras_hub/pali_gemma", "PaliGemmaConfig",
           dict(image_token_index=120, projection_dim=32, text_config=_TEXT, vision_config=_VISION),
           "PaliGemmaForConditionalGeneration", prefix_lm(), prepare=siglip_hub_layout),
)
