"""The other expert layouts a MoE recipe reads: experts already stacked (transformers' in-memory layout,
which keras-hub's Qwen3.5-MoE converter also reads) and gpt-oss saved unquantized by transformers 5
(which keras-hub's converter cannot read, so it is proven on forward outputs against transformers)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras_hub")
pytest.importorskip("transformers")

from tests.recipes.families import FAMILIES  # noqa: E402
from tests.recipes.families_moe import yarn_as_released  # noqa: E402
from tests.recipes.harness import built, mismatches, variables  # noqa: E402


def _restack(folder: Path, out: Path) -> None:
    """The checkpoint with each layer's experts stacked: gate_up_proj (experts, 2 * inter, hidden), gate rows
    first, and down_proj (experts, hidden, inter), as transformers holds them."""
    from safetensors.numpy import load_file, save_file
    t = load_file(str(folder / "model.safetensors"))
    layers = {int(k.split(".")[3]) for k in t if ".mlp.experts." in k}
    for i in layers:
        pre = f"model.language_model.layers.{i}.mlp.experts"
        n = len({k.split(".")[6] for k in t if k.startswith(pre + ".")})
        t[f"{pre}.gate_up_proj"] = np.stack([np.concatenate([t.pop(f"{pre}.{e}.gate_proj.weight"),
                                                             t.pop(f"{pre}.{e}.up_proj.weight")]) for e in range(n)])
        t[f"{pre}.down_proj"] = np.stack([t.pop(f"{pre}.{e}.down_proj.weight") for e in range(n)])
    out.mkdir()
    save_file(t, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(folder / "config.json", out / "config.json")


def test_qwen3_5_moe_with_stacked_experts_lands_what_keras_hub_lands(tmp_path_factory: pytest.TempPathFactory
                                                                    ) -> None:
    import keras_hub

    import wmap
    from wmap.recipes import path
    b = built(FAMILIES["hf_to_keras_hub/qwen3_5_moe"], tmp_path_factory)
    stacked = tmp_path_factory.mktemp("stacked") / "ckpt"
    _restack(b.folder, stacked)
    theirs = variables(keras_hub.models.Backbone.from_preset(str(stacked)))
    ours = variables(wmap.apply(path("hf_to_keras_hub/qwen3_5_moe"), source=str(stacked / "model.safetensors"),
                                show_progress=False).target)
    assert not mismatches(ours, theirs)
    assert not mismatches(ours, variables(b.ours))  # the same weights whichever way the experts were stored


def test_gpt_oss_saved_unquantized_computes_what_transformers_does(tmp_path: Path) -> None:
    import torch
    import transformers

    import wmap
    from wmap.recipes import path
    fam = FAMILIES["hf_to_keras_hub/gpt_oss"]
    torch.manual_seed(1)
    hf = transformers.GptOssForCausalLM(transformers.GptOssConfig(**fam.config)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    yarn_as_released(tmp_path)  # keras-hub's backbone reads YaRN from `rope_scaling`, as released configs have it
    from safetensors import safe_open
    with safe_open(str(tmp_path / "model.safetensors"), "np") as f:
        assert "model.layers.0.mlp.experts.gate_up_proj" in set(f.keys())   # float experts, not MXFP4
    ours = wmap.apply(path("hf_to_keras_hub/gpt_oss"), source=str(tmp_path / "model.safetensors"),
                      show_progress=False).target
    worst = fam.forward(hf, ours, hf.config)
    assert max(worst.values()) <= fam.tol, worst
