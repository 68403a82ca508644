"""Mixture-of-experts decoders (16 experts each, grouped-query attention) and encoder-decoder decoders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.recipes.families import Family, decoder

_DECODER = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=64, tie_word_embeddings=False)


def renamed_config(**keys: str) -> Callable[[Path, Any], None]:
    """Rename keys of the saved config.json to what the hub's checkpoints (and keras-hub) call them:
    transformers 5 writes its own attribute name (`num_local_experts`) where Qwen3-MoE's released
    configs say `num_experts`."""
    def f(folder: Path, hf: Any) -> None:
        p = folder / "config.json"
        cfg = json.loads(p.read_text())
        for old, new in keys.items():
            cfg[new] = cfg.pop(old)
        p.write_text(json.dumps(cfg, indent=2))
    return f


FAMILIES = (
    Family("hf_to_keras_hub/mixtral", "MixtralConfig",
           dict(_DECODER, intermediate_size=64, num_local_experts=16, num_experts_per_tok=2),
           "MixtralForCausalLM", decoder()),
    Family("hf_to_keras_hub/qwen_moe", "Qwen2MoeConfig",
           dict(_DECODER, intermediate_size=64, moe_intermediate_size=16, shared_expert_intermediate_size=48,
                num_experts=16, num_experts_per_tok=2),
           "Qwen2MoeForCausalLM", decoder()),
    # head_dim 16 is not hidden_size / heads (8): the recipe must take it from the config
    Family("hf_to_keras_hub/qwen3_moe", "Qwen3MoeConfig",
           dict(_DECODER, intermediate_size=64, moe_intermediate_size=16, num_experts=16, num_experts_per_tok=2,
                head_dim=16),
           "Qwen3MoeForCausalLM", decoder(), prepare=renamed_config(num_local_experts="num_experts")),
)
