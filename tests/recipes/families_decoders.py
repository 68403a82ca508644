"""Decoder-only language models (dense attention and MLP)."""

from __future__ import annotations

from tests.recipes.families import Family, decoder

FAMILIES = (
    Family("hf_to_keras_hub/gpt2", "GPT2Config", dict(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64),
           "GPT2LMHeadModel", decoder()),
    Family("hf_to_keras_hub/llama3", "LlamaConfig",
           dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False),
           "LlamaForCausalLM", decoder()),
)
