"""Dense decoder-only language models beside Llama: Mistral, Qwen, Gemma, SmolLM3."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.recipes.families import SEQ, Family, as_np, base, call, decoder, diff, ids, mask


def rounded(dtype: str, compare: Callable[[Any, Any, Any], dict[str, float]]) -> Callable[[Any, Any, Any], dict[str, float]]:
    """`compare` against a copy of the Hugging Face model whose weights went through `dtype` and back,
    as a converter that rounds them (keras-hub's Mistral one, to float16) lands them: what is left to
    compare is the modelling, at full tolerance, not the rounding."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import torch
        twin = copy.deepcopy(hf)
        with torch.no_grad():
            for p in twin.parameters():
                p.copy_(p.to(getattr(torch, dtype)).to(p.dtype))
        return compare(twin, backbone, cfg)
    return f


def positioned_decoder(pad: int = 2) -> Callable[[Any, Any, Any], dict[str, float]]:
    """`decoder()` for a backbone that also takes position ids (Gemma 4's): 0, 1, 2, ... in every row, the
    positions transformers uses when it is given none."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import numpy as np
        import torch
        x, m = ids(cfg.vocab_size), mask(pad)
        positions = np.broadcast_to(np.arange(SEQ, dtype="int32"), x.shape).copy()
        seq = call(backbone, {"token_ids": x, "padding_mask": m, "position_ids": positions})
        with torch.no_grad():
            kwargs = {"input_ids": torch.tensor(x, dtype=torch.long), "attention_mask": torch.tensor(m)}
            o, logits = base(hf)(**kwargs), hf(**kwargs).logits
        return {"sequence": diff(o.last_hidden_state.numpy(), as_np(seq), m),
                "logits": diff(logits.numpy(), as_np(backbone.get_layer("token_embedding")(seq, reverse=True)), m)}
    return f


def qwen3_5_hub_layout(folder: Path, hf: Any) -> None:
    """A text-only Qwen3_5ForCausalLM checkpoint as the hub ships Qwen3.5 (and keras-hub's loader reads it):
    a `qwen3_5` config with the text model's under `text_config` (no vision_config), and the language
    model's tensors under `model.language_model.`."""
    from safetensors.numpy import load_file, save_file
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    save_file({("model.language_model." + k[len("model."):] if k.startswith("model.") else k): v
               for k, v in tensors.items()}, str(weights), metadata={"format": "pt"})
    text = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5",
        "tie_word_embeddings": text["tie_word_embeddings"], "text_config": text}))


def gemma4_hub_layout(folder: Path, hf: Any) -> None:
    """The full-attention head size written as the hub's Gemma 4 configs write it, `global_head_dim` (which
    keras-hub's loader reads); transformers 5 saves it only inside `per_layer_config`."""
    cfg = json.loads((folder / "config.json").read_text())
    full = [v["head_dim"] for v in cfg["per_layer_config"].values() if "head_dim" in v]
    (folder / "config.json").write_text(json.dumps(dict(cfg, global_head_dim=full[0])))


# grouped-query attention (4 query heads over 2 key/value heads), head_dim 8
_DECODER = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64)

FAMILIES = (
    Family("hf_to_keras_hub/mistral", "MistralConfig",
           dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False),
           "MistralForCausalLM", rounded("float16", decoder())),
    Family("hf_to_keras_hub/qwen", "Qwen2Config", dict(_DECODER, tie_word_embeddings=False), "Qwen2ForCausalLM",
           decoder()),
    # head_dim 16, not hidden / heads: Qwen3 sets it on its own. rms_norm_eps 1e-5: keras-hub's
    # Qwen3Attention is built without the config's epsilon, so its q/k norms always use 1e-5 (with
    # transformers' default 1e-6 the outputs differ by 6e-4 from the second position on; the weights
    # are bit-identical either way)
    Family("hf_to_keras_hub/qwen3", "Qwen3Config",
           dict(_DECODER, head_dim=16, rms_norm_eps=1e-5, tie_word_embeddings=False), "Qwen3ForCausalLM", decoder()),
    # multi-query attention, as Gemma 2B (Gemma 7B has as many key/value heads as query heads; no Gemma has a
    # grouped size between): keras-hub's Gemma exporter writes key/value head 0 only, right for multi-query
    # attention alone (with 2 key/value heads it writes k_proj (8, 32) where the model has (16, 32))
    Family("hf_to_keras_hub/gemma", "GemmaConfig", dict(_DECODER, num_key_value_heads=1, head_dim=8),
           "GemmaForCausalLM", decoder()),
    # grouped-query attention (Gemma 2 9B/27B have it), attention soft cap on, a sliding window shorter than the
    # test sequence; no final logit soft cap, which keras-hub applies in its CausalLM, not in the backbone
    Family("hf_to_keras_hub/gemma2", "Gemma2Config",
           dict(_DECODER, head_dim=8, query_pre_attn_scalar=8, sliding_window=4, final_logit_softcapping=None),
           "Gemma2ForCausalLM", decoder()),
    # query_pre_attn_scalar = head_dim, as in Gemma 3 1B/4B/12B: keras-hub reads any other value as
    # hidden / heads (27B's). A sliding window shorter than the test sequence, so the window is exercised.
    Family("hf_to_keras_hub/gemma3", "Gemma3TextConfig",
           dict(_DECODER, head_dim=8, query_pre_attn_scalar=8, sliding_window=4), "Gemma3ForCausalLM", decoder()),
    # every second layer without RoPE (SmolLM3's 3B has every fourth), so both kinds of layer are exercised
    Family("hf_to_keras_hub/smollm3", "SmolLM3Config",
           dict(_DECODER, no_rope_layer_interval=2, pad_token_id=0, bos_token_id=1, eos_token_id=2),
           "SmolLM3ForCausalLM", decoder()),
    # a linear-attention (Gated DeltaNet) layer and a full-attention one; 2 key heads, 4 value heads
    Family("hf_to_keras_hub/qwen3_5", "Qwen3_5TextConfig",
           dict(_DECODER, head_dim=8, layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2,
                linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8, tie_word_embeddings=False),
           "Qwen3_5ForCausalLM", decoder(), prepare=qwen3_5_hub_layout),
    # a sliding and a full-attention layer with different head sizes (8 and 16), and per-layer token
    # conditioning (as E2B/E4B)
    Family("hf_to_keras_hub/gemma4", "Gemma4TextConfig",
           dict(_DECODER, head_dim=8, global_head_dim=16, hidden_size_per_layer_input=8, vocab_size_per_layer_input=128),
           "Gemma4ForCausalLM", positioned_decoder(), prepare=gemma4_hub_layout),
)
