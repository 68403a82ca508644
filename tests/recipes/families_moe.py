"""Mixture-of-experts decoders (16 experts each, grouped-query attention) and encoder-decoder decoders."""

from __future__ import annotations

from tests.recipes.families import Family, decoder

_DECODER = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=64, tie_word_embeddings=False)

FAMILIES = (
    Family("hf_to_keras_hub/mixtral", "MixtralConfig",
           dict(_DECODER, intermediate_size=64, num_local_experts=16, num_experts_per_tok=2),
           "MixtralForCausalLM", decoder()),
    Family("hf_to_keras_hub/qwen_moe", "Qwen2MoeConfig",
           dict(_DECODER, intermediate_size=64, moe_intermediate_size=16, shared_expert_intermediate_size=48,
                num_experts=16, num_experts_per_tok=2),
           "Qwen2MoeForCausalLM", decoder()),
)
