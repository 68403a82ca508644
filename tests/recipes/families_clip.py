"""Image-text models (MetaCLIP 2): the same random images (NCHW for torch, NHWC for Keras) and token ids
through both models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tests.recipes.families import Family, as_np, diff, ids
from tests.recipes.families_vision import images

EOS = 2  # keras-hub's text pooler reads the state at the first token 2 (its `eos_token_id` default)


def texts(vocab: int) -> np.ndarray:
    """Token ids with one end-of-text token per row, at different places (the pooled position): neither
    backbone takes a padding mask, and both text towers are causal, so what follows it is never read
    by the pooled state."""
    x = ids(vocab)
    x[0, -1] = EOS
    x[1, 4] = EOS
    return x


def clip() -> Callable[[Any, Any, Any], dict[str, float]]:
    """Both towers' last hidden states, the projected (unit-length) image and text embeddings, and the
    image-text logits, against transformers' model on the same images and token ids."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import keras
        import torch
        x = images(cfg.vision_config.image_size, cfg.vision_config.num_channels)
        t = texts(cfg.text_config.vocab_size)
        y = backbone({"images": keras.ops.convert_to_tensor(x), "token_ids": keras.ops.convert_to_tensor(t)})
        vision_seq = as_np(backbone.vision_encoder({"images": keras.ops.convert_to_tensor(x)}))
        text_seq = as_np(backbone.text_encoder({"token_ids": keras.ops.convert_to_tensor(t)}))

        def unit(v: Any) -> np.ndarray:
            v = as_np(v)
            return v / np.linalg.norm(v, axis=-1, keepdims=True)

        image_embeds = unit(backbone.get_vision_embeddings(keras.ops.convert_to_tensor(x)))
        text_embeds = unit(backbone.get_text_embeddings(keras.ops.convert_to_tensor(t)))
        with torch.no_grad():
            o = hf(input_ids=torch.tensor(t, dtype=torch.long),
                   pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        return {"vision_sequence": diff(o.vision_model_output.last_hidden_state.numpy(), vision_seq),
                "text_sequence": diff(o.text_model_output.last_hidden_state.numpy(), text_seq),
                "image_embeds": diff(o.image_embeds.numpy(), image_embeds),
                "text_embeds": diff(o.text_embeds.numpy(), text_embeds),
                "logits_per_image": diff(o.logits_per_image.numpy(), as_np(y["vision_logits"])),
                "logits_per_text": diff(o.logits_per_text.numpy(), as_np(y["text_logits"]))}
    return f


FAMILIES = (
    # the two towers sized differently (widths, depths, heads), so a recipe that read one tower's sizes
    # for the other could not land; text `eos_token_id` as keras-hub's pooler has it (see EOS)
    Family("hf_to_keras_hub/metaclip_2", "MetaClip2Config",
           dict(projection_dim=16,
                text_config=dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, max_position_embeddings=16, bos_token_id=0,
                                 eos_token_id=EOS, pad_token_id=1),
                vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=6,
                                   image_size=32, patch_size=8)),
           "MetaClip2Model", clip()),
)
