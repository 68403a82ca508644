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


def mxfp4_experts(folder: Path, hf: Any) -> None:
    """Store the experts as gpt-oss is released: MXFP4 (`*_blocks`: two 4-bit E2M1 values a byte, 32 a
    block; `*_scales`: one E8M0 power of two a block), the only layout keras-hub's converter reads. The
    values are random codes, and the Hugging Face model gets them as transformers itself dequantizes
    them (`convert_moe_packed_tensors`), so the forward comparison runs on exactly the stored weights."""
    import numpy as np
    import torch
    from safetensors.numpy import load_file, save_file
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    rng = np.random.default_rng(0)
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    for i, layer in enumerate(hf.model.layers):
        experts = layer.mlp.experts
        for name in ("gate_up_proj", "down_proj"):
            key = f"model.layers.{i}.mlp.experts.{name}"
            e, n_in, n_out = tensors.pop(key).shape                   # (experts, in, out) in memory
            blocks = rng.integers(0, 256, size=(e, n_out, n_in // 32, 16), dtype=np.uint8)
            scales = rng.integers(118, 124, size=(e, n_out, n_in // 32), dtype=np.uint8)  # 2^-9 .. 2^-4
            tensors[f"{key}_blocks"], tensors[f"{key}_scales"] = blocks, scales
            with torch.no_grad():
                getattr(experts, name).copy_(convert_moe_packed_tensors(torch.from_numpy(blocks),
                                                                        torch.from_numpy(scales),
                                                                        dtype=torch.float32))
    save_file(tensors, str(path), metadata={"format": "pt"})


def with_vision(compare: Callable[[Any, Any, Any], dict[str, float]]) -> Callable[[Any, Any, Any], dict[str, float]]:
    """`compare` on the language model (with its config: a vision-language config keeps its sizes there),
    and the vision tower on its own: one image of 4 x 4 patches, flattened as transformers takes them
    (channels, time, height, width per patch) and as keras-hub takes them (time, height, width, channels),
    compared after the patch merger."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import keras
        import numpy as np
        import torch

        from tests.recipes.families import as_np, diff
        out = compare(hf, backbone, cfg.text_config)
        vc = cfg.vision_config
        grid = np.array([[1, 4, 4]])
        n = int(grid.prod())
        x = np.random.RandomState(0).standard_normal(
            (n, vc.in_channels, vc.temporal_patch_size, vc.patch_size, vc.patch_size)).astype("float32")
        with torch.no_grad():
            want = hf.model.visual(torch.from_numpy(x.reshape(n, -1)), grid_thw=torch.from_numpy(grid)).pooler_output
        got = backbone.vision_encoder(keras.ops.convert_to_tensor(x.transpose(0, 2, 3, 4, 1)),
                                      keras.ops.convert_to_tensor(grid))
        out["vision"] = diff(want.numpy(), as_np(got))
        return out
    return f


def as_released(folder: Path, hf: Any) -> None:
    """gpt-oss as released: MXFP4 experts, and the YaRN settings under `rope_scaling` as well, where the
    released config.json has them and keras-hub reads them (transformers 5 writes only `rope_parameters`)."""
    mxfp4_experts(folder, hf)
    yarn_as_released(folder)


def yarn_as_released(folder: Path) -> None:
    p = folder / "config.json"
    cfg = json.loads(p.read_text())
    cfg["rope_scaling"] = {k: v for k, v in cfg["rope_parameters"].items() if k != "rope_theta"}
    p.write_text(json.dumps(cfg, indent=2))


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
    # hidden and intermediate 64: two MXFP4 blocks of 32 per row; layer 0 slides, layer 1 attends fully
    Family("hf_to_keras_hub/gpt_oss", "GptOssConfig",
           dict(_DECODER, hidden_size=64, intermediate_size=64, head_dim=16, num_local_experts=16,
                num_experts_per_tok=2),
           "GptOssForCausalLM", decoder(), prepare=as_released),
    # three linear-attention layers, then one full-attention layer (the family's 3:1 pattern), and a tiny
    # vision tower (keras-hub's converter always ports one when the config has it)
    Family("hf_to_keras_hub/qwen3_5_moe", "Qwen3_5MoeConfig",
           dict(text_config=dict(_DECODER, num_hidden_layers=4, head_dim=16, linear_key_head_dim=8,
                                 linear_value_head_dim=8, linear_num_key_heads=2, linear_num_value_heads=4,
                                 linear_conv_kernel_dim=4, moe_intermediate_size=16,
                                 shared_expert_intermediate_size=24, num_experts=16, num_experts_per_tok=2),
                vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, in_channels=3,
                                   patch_size=4, spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=32,
                                   num_position_embeddings=16),
                tie_word_embeddings=False),
           "Qwen3_5MoeForConditionalGeneration", with_vision(decoder())),
)
