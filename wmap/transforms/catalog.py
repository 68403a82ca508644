"""Which family module registers each transform: the names, without importing any family.

Checking a spec's transform names (WM103) needs the names only; a transform's class is needed
when it is built. So the registry (`base.REGISTRY`) answers `in`, iteration and did-you-mean from
this table, and imports a family module the first time one of its transforms is looked up: a
spec that uses only presets never imports layout's numpy and einops, and a spec that uses none
imports no family at all. `register` refuses a transform missing from here (so the table cannot
fall behind), and `tests/transforms/test_catalog.py` checks it against every family's
registrations.
"""

from __future__ import annotations

FAMILIES: dict[str, tuple[str, ...]] = {
    "auto": ("layout",),
    "channels": ("adapt_channels", "sum", "mean", "repeat"),
    "gates": ("reorder_gates",),
    "layout": ("transpose", "permute", "rearrange", "reshape", "flip", "unsqueeze", "squeeze"),
    "presets": ("linear_to_dense", "dense_to_linear", "conv_to_keras", "conv_from_keras", "conv_transpose_to_keras",
                "conv_transpose_from_keras", "depthwise_to_keras", "depthwise_from_keras", "prelu_to_keras",
                "prelu_from_keras", "flatten_dense_to_keras", "flatten_dense_from_keras"),
    "presets_attention": ("mha_in_to_keras", "mha_in_from_keras", "mha_in_bias_to_keras", "mha_in_bias_from_keras",
                          "mha_out_to_keras", "mha_out_from_keras", "mha_proj_to_keras", "mha_proj_from_keras"),
    "presets_rnn": ("lstm_kernel_to_keras", "lstm_kernel_from_keras", "lstm_bias_to_keras", "lstm_bias_from_keras",
                    "gru_kernel_to_keras", "gru_kernel_from_keras", "gru_bias_to_keras", "gru_bias_from_keras"),
    "resize": ("pad", "truncate", "resize"),
    "quant": ("dequant_mxfp4",),
    "routing": ("split", "chunk", "duplicate", "deduplicate", "concat", "stack", "unstack", "slice", "splice", "select"),
    "values": ("identity", "cast", "scale", "prune", "add", "add_row", "sub", "lerp", "average", "update", "lora"),
}

# transform name -> the module whose import registers it
MODULE_OF: dict[str, str] = {name: f"wmap.transforms.{family}" for family, names in FAMILIES.items()
                             for name in names}
