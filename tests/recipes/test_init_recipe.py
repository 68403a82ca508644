"""`wmap init` on a pair the library ports: it proposes the recipe (endpoints filled in) instead of
guessing by names, and what it writes lands every variable as keras-hub's own converter does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras_hub")
pytest.importorskip("transformers")

from tests.recipes.families import FAMILIES  # noqa: E402
from tests.recipes.harness import built, mismatches, variables  # noqa: E402

GPT2 = FAMILIES["hf_to_keras_hub/gpt2"]


def gpt2_backbone(config: dict[str, Any]) -> Any:
    """A project's own factory, as a user writes one: keras-hub's GPT2Backbone from the HF config."""
    import keras_hub
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=config["vocab_size"], num_layers=config["n_layer"], num_heads=config["n_head"],
        hidden_dim=config["n_embd"], intermediate_dim=config.get("n_inner") or 4 * config["n_embd"],
        dropout=0.0, max_sequence_length=config["n_positions"])


def dense_model() -> Any:
    """A target the GPT-2 recipe does not build."""
    import keras
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(4, name="head")])
    return model


def _init(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from wmap.cli import main
    rc = main(["init", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("target", ["wmap.recipes.keras_hub:backbone", f"{__name__}:gpt2_backbone"])
def test_init_proposes_the_recipe_and_what_it_writes_equals_keras_hub(
        target: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    import wmap
    b = built(GPT2, tmp_path_factory)
    out = tmp_path / "port.wmap"
    rc, _, err = _init("--source", str(b.folder / "model.safetensors"), "--target", target, "-o", str(out),
                       capsys=capsys)
    assert rc == 0, err
    assert "recipe hf_to_keras_hub/gpt2 (GPT-2), recognised from model_type `gpt2`" in err
    assert "unresolved" not in out.read_text()
    report = wmap.apply(str(out), show_progress=False)
    assert not mismatches(variables(report.target), variables(b.reference))


def test_init_json_names_the_recipe(tmp_path_factory: pytest.TempPathFactory,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    b = built(GPT2, tmp_path_factory)
    rc, stdout, _ = _init("--source", str(b.folder), "--target", "wmap.recipes.keras_hub:backbone",
                          "--format", "json", capsys=capsys)
    doc = json.loads(stdout)
    assert rc == 0 and doc["complete"] and doc["recipe"]["name"] == "hf_to_keras_hub/gpt2"
    assert doc["recipe"]["target_class"] == "GPT2Backbone" and doc["recipe"]["proven"]


def test_another_target_is_matched_by_names_and_the_recipe_is_mentioned(
        tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    b = built(GPT2, tmp_path_factory)
    rc, stdout, err = _init("--source", str(b.folder / "model.safetensors"), "--target", f"{__name__}:dense_model",
                            capsys=capsys)
    assert rc == 2 and "unresolved" in stdout           # ordinary matching: nothing fits a Dense head
    assert "note: recipe hf_to_keras_hub/gpt2 ports Hugging Face `gpt2` checkpoints" in err
    assert "--target wmap.recipes.keras_hub:backbone" in err


def test_no_recipe_matches_tensors_instead(tmp_path_factory: pytest.TempPathFactory,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    b = built(GPT2, tmp_path_factory)
    rc, stdout, err = _init("--source", str(b.folder / "model.safetensors"), "--target", f"{__name__}:dense_model",
                            "--no-recipe", capsys=capsys)
    assert rc == 2 and "unresolved" in stdout and "note: recipe" not in err
