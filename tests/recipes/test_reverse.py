"""Every recipe backwards: Keras -> Hugging Face through the recipe's reverse (`wmap.apply(...,
reverse=True)`), bit-identical to the checkpoint it came from, and, where keras-hub ships an exporter
(`keras_hub/src/utils/transformers/export/`), bit-identical to what that exporter writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras_hub")
pytest.importorskip("transformers")

from tests.recipes.families import FAMILIES  # noqa: E402
from tests.recipes.harness import Built, built  # noqa: E402

# Recipes whose reverse wmap refuses, and the code it refuses with: the list is checked both ways,
# so a recipe that stops inverting, or starts, changes this file.
ONE_WAY: dict[str, str] = {
    "hf_to_keras_hub/mistral": "WM130",  # keras-hub's converter rounds every weight to float16: lossy
    "hf_to_keras_hub/gpt_oss": "WM130",  # experts are dequantized from MXFP4: no exact way back
    "hf_to_keras_hub/xlm_roberta": "WM130",  # token-type row 0 is summed into the position rows
}


# Recipes whose backbone class keras-hub's exporter takes but writes wrongly, and how: the test checks
# that it still does (and that the reverse equals the checkpoint), so a fixed exporter changes this file.
EXPORTER_WRONG: dict[str, str] = {
    "hf_to_keras_hub/gemma2": "Gemma 1's names (no pre/post_feedforward norms) and key/value head 0 only",
}


def _tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    return load_file(str(path))


def _differ(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    out = sorted(set(a) ^ set(b))
    out += [k for k in sorted(set(a) & set(b))
            if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes()]
    return out


def _back(b: Built, out: Path) -> Path:
    import wmap
    from wmap.recipes import path
    wmap.apply(path(b.family.recipe), source=b.ours, target=str(b.folder / "model.safetensors"), out=str(out),
               reverse=True, show_progress=False)
    return out


def test_the_one_way_recipes_are_exactly_those_wmap_refuses_to_invert() -> None:
    import wmap
    from wmap.recipes import path
    refused: dict[str, str] = {}
    for name in sorted(FAMILIES):
        try:
            wmap.invert(path(name))
        except wmap.WmapError as e:
            refused[name] = e.diagnostics[0].code
    assert refused == ONE_WAY


@pytest.mark.parametrize("recipe", sorted(set(FAMILIES) - set(ONE_WAY)))
def test_hf_to_keras_to_hf_is_bit_identical(recipe: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    b = built(FAMILIES[recipe], tmp_path_factory)
    back = _back(b, tmp_path_factory.mktemp("back") / "model.safetensors")
    assert not _differ(_tensors(back), _tensors(b.folder / "model.safetensors"))


def _exporters() -> set[str]:
    from keras_hub.src.utils.transformers.export.hf_exporter import MODEL_EXPORTERS
    return set(MODEL_EXPORTERS)


@pytest.mark.parametrize("recipe", sorted(set(FAMILIES) - set(ONE_WAY)))
def test_the_reverse_writes_what_keras_hubs_exporter_writes(recipe: str,
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    b = built(FAMILIES[recipe], tmp_path_factory)
    if type(b.reference).__name__ not in _exporters():
        pytest.skip(f"keras-hub has no exporter for {type(b.reference).__name__}")
    from keras_hub.src.utils.transformers.export.hf_exporter import export_backbone
    original = _tensors(b.folder / "model.safetensors")
    exported = tmp_path_factory.mktemp("exported")
    # the exporter writes the LM head (and Gemma 3's `model.` names, as a *ForCausalLM has them) only when asked
    causal_lm = "lm_head.weight" in original or any(k.startswith("model.") for k in original)
    export_backbone(b.reference, str(exported), include_lm_head=causal_lm)
    ours = _tensors(_back(b, tmp_path_factory.mktemp("back") / "model.safetensors"))
    theirs = _tensors(exported / "model.safetensors")
    assert theirs and bool(_differ(ours, theirs)) == (recipe in EXPORTER_WRONG)


def test_the_round_trip_comparison_can_fail(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The reverse of a wrong forward transfer is caught: one transposed kernel, same shape."""
    b = built(FAMILIES["hf_to_keras_hub/llama3"], tmp_path_factory)
    layer = b.ours.get_layer("transformer_layer_0")._feedforward_gate_dense
    saved = np.asarray(layer.kernel.numpy())
    try:
        layer.kernel.assign(saved[::-1])
        back = _back(b, tmp_path_factory.mktemp("back") / "model.safetensors")
        assert _differ(_tensors(back), _tensors(b.folder / "model.safetensors")) == [
            "model.layers.0.mlp.gate_proj.weight"]
    finally:
        layer.kernel.assign(saved)
