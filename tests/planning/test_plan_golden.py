"""Golden plans: every example spec, compiled on metadata-only inventory fixtures (no framework).

The text and JSON plans are what reviewers read and what `apply PLAN.json` runs, so any change
to them must be deliberate: regenerate with `UPDATE_GOLDEN=1` and review the diff.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.support import paths
from tests.support.example_inventories import CHECKPOINTS
from tests.support.paths import EXAMPLES
from wmap.core.inventory import Inventory, TensorMeta
from wmap.lang import load_spec
from wmap.planning.compiler import compile_plan

GOLDEN = paths.GOLDEN / "plans"
FIXTURES = paths.FIXTURES / "inventories"


def _inv(shapes: dict[str, tuple[int, ...]], framework: str | None) -> Inventory:
    return Inventory.from_metas([TensorMeta(n, s, "int64" if not s else "float32") for n, s in shapes.items()],
                                label="fixture", framework=framework)


def _fixture(name: str) -> Inventory:
    return Inventory.from_json(json.loads((FIXTURES / f"{name}.json").read_text()))


def _inventories(stem: str) -> tuple[dict[str, Inventory], Inventory]:
    if stem in CHECKPOINTS:
        sources, target = CHECKPOINTS[stem]()
        fw = "keras" if stem == "torch_to_keras" else None
        return {n: _inv(s, None) for n, s in sources.items()}, _inv(target, fw)
    if stem in FIXTURE_PAIRS:
        srcs, tgt = FIXTURE_PAIRS[stem]
        return {n: _fixture(f) for n, f in srcs.items()}, _fixture(tgt)
    torch_inv, keras_inv = _fixture("torch_cnn"), _fixture("keras_cnn")
    if stem.startswith("keras_to_torch"):
        return {"src": keras_inv}, torch_inv
    return {"src": torch_inv}, keras_inv


FIXTURE_PAIRS: dict[str, tuple[dict[str, str], str]] = {
    "bert_rename": ({"src": "hf_bert"}, "renamed_encoder"),
    "vit_new_head": ({"src": "vit_8"}, "vit_12"),
    "lora_merge": ({"base": "lora_base", "lora": "lora_adapter"}, "lora_base"),
}
STEMS = sorted(p.stem for p in EXAMPLES.glob("*.wmap"))


def test_every_example_has_a_golden_plan_and_every_golden_an_example() -> None:
    goldens = {p.name for p in GOLDEN.iterdir()}
    expected = {f"{stem}.{ext}" for stem in STEMS for ext in ("txt", "md", "json")}
    assert goldens == expected, {"missing": sorted(expected - goldens), "orphaned": sorted(goldens - expected)}
    assert {p.stem for p in EXAMPLES.glob("*.yaml")} == set(STEMS)  # each is also checked in YAML below


@pytest.mark.parametrize("stem", STEMS)
def test_example_plan_matches_golden(stem: str) -> None:
    sources, target = _inventories(stem)
    spec = load_spec(EXAMPLES / f"{stem}.wmap")  # absolute: the saved plan must still name no absolute path
    plan = compile_plan(spec, sources, target)
    outputs = {"txt": plan.render(), "md": plan.render("markdown"), "json": plan.dumps()}
    for ext, text in outputs.items():
        path = GOLDEN / f"{stem}.{ext}"
        if os.environ.get("UPDATE_GOLDEN"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"missing golden {path.name}: run with UPDATE_GOLDEN=1"
        assert text == path.read_text(), f"{path.name} changed: review, then UPDATE_GOLDEN=1"
    # the same spec in YAML gives the same plan: same digest, same steps (only spans differ)
    yaml_plan = compile_plan(load_spec(EXAMPLES / f"{stem}.yaml"), sources, target)
    assert yaml_plan.spec_digest == plan.spec_digest and yaml_plan.steps == plan.steps
