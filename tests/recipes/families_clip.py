"""Image-text models (MetaCLIP 2, BLIP-2): the same random images (NCHW for torch, NHWC for Keras) and token
ids through both models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tests.recipes.families import Family, as_np, diff, ids, mask
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


def blip2(pad: int = 2) -> Callable[[Any, Any, Any], dict[str, float]]:
    """The vision tower's and the Q-Former's last hidden states, and the language model's logits over the
    image queries and the (padded) text: Hugging Face reads the queries at `image_token_index` placeholders
    ahead of the text, keras-hub puts them there itself (padded text positions are left out)."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import keras
        import torch
        x = images(cfg.vision_config.image_size)  # RGB: BLIP-2's vision config has no channel count
        t, m = ids(cfg.text_config.vocab_size), mask(pad)
        t = np.where(t == cfg.image_token_index, t + 1, t)
        q = cfg.num_query_tokens
        y = as_np(backbone({"images": keras.ops.convert_to_tensor(x), "token_ids": keras.ops.convert_to_tensor(t),
                            "padding_mask": keras.ops.convert_to_tensor(m)}))
        patches = backbone.vision_encoder(keras.ops.convert_to_tensor(x))
        queries = as_np(backbone.qformer(patches))
        table = as_np(backbone.token_embedding.embeddings)
        hf_ids = np.concatenate([np.full((t.shape[0], q), cfg.image_token_index), t], axis=1)
        hf_mask = np.concatenate([np.ones((t.shape[0], q), dtype=m.dtype), m], axis=1)
        with torch.no_grad():
            o = hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                   input_ids=torch.tensor(hf_ids, dtype=torch.long), attention_mask=torch.tensor(hf_mask))
        return {"vision": diff(o.vision_outputs.last_hidden_state.numpy(), as_np(patches)),
                "qformer": diff(o.qformer_outputs.last_hidden_state.numpy(), queries),
                "logits": diff(o.logits.numpy(), y @ table.T, hf_mask)}
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
    # OPT as the language model; two Q-Former layers, cross-attention in the first only (frequency 2);
    # `image_token_index` marks where Hugging Face puts the queries (transformers 5 reads them there)
    Family("hf_to_keras_hub/blip2", "Blip2Config",
           dict(num_query_tokens=4, image_token_index=3,
                vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   image_size=32, patch_size=8),
                qformer_config=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                                    cross_attention_frequency=2, encoder_hidden_size=32),
                text_config=dict(model_type="opt", vocab_size=128, hidden_size=40, word_embed_proj_dim=40,
                                 ffn_dim=80, num_hidden_layers=2, num_attention_heads=5, max_position_embeddings=64)),
           "Blip2ForConditionalGeneration", blip2()),
)
