"""Every recipe against the converter it replaces: keras-hub's own, bit for bit, and the original
Hugging Face model, on forward outputs."""

from __future__ import annotations

import pytest

pytest.importorskip("keras_hub")
pytest.importorskip("transformers")

from tests.recipes.families import FAMILIES  # noqa: E402
from tests.recipes.harness import built, mismatches, variables  # noqa: E402
from wmap.recipes import catalog  # noqa: E402


def test_every_recipe_in_the_catalog_has_a_family_here_and_a_file() -> None:
    from importlib import resources
    files = {f"{d.name}/{f.name[:-5]}" for d in (resources.files("wmap") / "recipes").iterdir() if d.is_dir()
             for f in d.iterdir() if f.name.endswith(".wmap")}
    assert files == {r.name for r in catalog()} == set(FAMILIES)


@pytest.mark.parametrize("recipe", sorted(FAMILIES))
def test_the_recipe_lands_what_keras_hubs_converter_lands_bit_for_bit(recipe: str,
                                                                      tmp_path_factory: pytest.TempPathFactory
                                                                      ) -> None:
    b = built(FAMILIES[recipe], tmp_path_factory)
    ours, theirs = variables(b.ours), variables(b.reference)
    assert len(ours) == len(b.ours.weights) and ours
    assert not mismatches(ours, theirs)


@pytest.mark.parametrize("recipe", sorted(FAMILIES))
def test_the_ported_backbone_computes_what_the_hugging_face_model_does(
        recipe: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    b = built(FAMILIES[recipe], tmp_path_factory)
    worst = b.family.forward(b.hf, b.ours, b.hf_config)
    assert max(worst.values()) <= b.family.tol, worst


def test_the_comparison_can_fail(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One value off by one ulp in one variable is a mismatch."""
    import numpy as np
    b = built(FAMILIES["hf_to_keras_hub/gpt2"], tmp_path_factory)
    ours = variables(b.ours)
    name = "transformer_layer_1.self_attention.key.kernel"
    bumped = dict(ours, **{name: np.nextafter(ours[name], np.inf)})
    assert mismatches(bumped, variables(b.reference)) == [name]


def test_the_cli_lists_prints_and_applies_a_recipe(tmp_path_factory: pytest.TempPathFactory,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from tests.recipes.harness import variables as vars_of
    from wmap.cli import main
    b = built(FAMILIES["hf_to_keras_hub/gpt2"], tmp_path_factory)
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    import re
    assert re.search(r"^hf_to_keras_hub/gpt2 +GPT-2 \(gpt2\) -> keras_hub\.models\.GPT2Backbone$", listing, re.M)
    assert main(["recipes", "hf_to_keras_hub/gpt2"]) == 0
    assert "config hf" in capsys.readouterr().out
    out = tmp_path_factory.mktemp("cli") / "gpt2.weights.h5"
    assert main(["apply", "--recipe", "hf_to_keras_hub/gpt2", "--source", str(b.folder), "--out", str(out)]) == 0
    import keras_hub
    again = keras_hub.models.Backbone.from_preset(str(b.folder), load_weights=False)
    again.load_weights(str(out))
    assert not mismatches(vars_of(again), variables(b.reference))
    assert main(["plan", "--recipe", "hf_to_keras_hub/gtp2"]) == 1
    assert "did you mean `hf_to_keras_hub/gpt2`" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", sorted(FAMILIES))
def test_a_recipe_applies_with_no_warning_left_unreviewed(recipe: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A recipe is proven bit for bit against its converter, so every warning its plan raises (a same-shape
    split whose order the shapes cannot check, WM311, ...) has been reviewed: it is acknowledged in the
    recipe (`ack`), with the reason, and a user's apply prints nothing they must judge."""
    b = built(FAMILIES[recipe], tmp_path_factory)
    assert [(w.code, w.message) for w in b.report.warnings] == []
