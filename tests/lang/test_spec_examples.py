"""The example specs in `specs/examples/`: each pair says the same thing in both syntaxes, every
spec in `specs/` is in canonical form, and the examples plan against checkpoints shaped like the
real ones (tiny synthetic tensors, the real names)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.support import paths
from tests.support.example_inventories import CHECKPOINTS, Shapes
from wmap.cli import main
from wmap.lang import format_spec, load_spec
from wmap.lang.validate import check_names

ROOT = paths.ROOT
SPECS = ROOT / "specs"
EXAMPLES = SPECS / "examples"
# The examples this suite owns (other example files in the folder are covered pairwise too).
OWN = ("backbone_new_head", "torch_to_keras", "fused_qkv_split", "vocab_growth", "two_source_merge", "freeze_lr",
       "moe_experts")
PAIRS = sorted(p.stem for p in EXAMPLES.glob("*.wmap"))
SPEC_FILES = sorted(p for p in SPECS.rglob("*") if p.suffix in (".wmap", ".yaml", ".yml"))


def test_every_owned_example_exists_in_both_syntaxes() -> None:
    for stem in OWN:
        assert (EXAMPLES / f"{stem}.wmap").is_file() and (EXAMPLES / f"{stem}.yaml").is_file(), stem
    yaml_stems = {p.stem for p in EXAMPLES.glob("*.yaml")}
    assert yaml_stems == set(PAIRS), f"unpaired: {sorted(yaml_stems ^ set(PAIRS))}"


@pytest.mark.parametrize("stem", PAIRS)
def test_pair_parses_to_equal_asts(stem: str) -> None:
    a = load_spec(EXAMPLES / f"{stem}.wmap")
    b = load_spec(EXAMPLES / f"{stem}.yaml")
    assert a == b
    assert a.rules and a.sources and a.target is not None
    check_names(a)
    check_names(b)


@pytest.mark.parametrize("stem", PAIRS)
def test_pair_converts_both_ways_byte_for_byte(stem: str) -> None:
    """`wmap fmt --to yaml X.wmap` is X.yaml, and back again loses only the comments."""
    wmap_text = (EXAMPLES / f"{stem}.wmap").read_text(encoding="utf-8")
    yaml_text = (EXAMPLES / f"{stem}.yaml").read_text(encoding="utf-8")
    a = load_spec(EXAMPLES / f"{stem}.wmap")
    assert format_spec(a, "yaml") == yaml_text
    without_comments = "\n".join(ln for ln in wmap_text.splitlines() if not ln.lstrip().startswith("#"))
    without_comments = re.sub(r"  #.*", "", without_comments)
    back = format_spec(load_spec(EXAMPLES / f"{stem}.yaml"), "wmap")
    assert [ln for ln in back.splitlines() if ln] == [ln for ln in without_comments.splitlines() if ln]


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_fmt_check_is_clean(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt", "--check", str(path)]) == 0, capsys.readouterr().err


def test_fmt_check_notices_a_non_canonical_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The check above can fail: a reformatted copy of an example is reported."""
    messy = tmp_path / "messy.wmap"
    messy.write_text((EXAMPLES / "freeze_lr.wmap").read_text(encoding="utf-8").replace(" -> ", "   ->   "))
    assert main(["fmt", "--check", str(messy)]) == 1
    assert "would reformat" in capsys.readouterr().err


@pytest.mark.parametrize("stem", OWN)
def test_example_comments_explain_it(stem: str) -> None:
    """Examples teach: each opens with a comment saying what the transfer is."""
    spec = load_spec(EXAMPLES / f"{stem}.wmap")
    first = spec.sources[0].comments
    assert first and all(c.startswith("# ") for c in first), stem


# -- planning against checkpoints shaped like the real ones ----------------------------------------

def _save(path: Path, shapes: Shapes, rng: np.random.Generator | None) -> str:
    from safetensors.numpy import save_file

    tensors = {k: (np.zeros((), np.int64) if not s else
                   rng.standard_normal(s).astype(np.float32) if rng is not None else np.zeros(s, np.float32))
               for k, s in shapes.items()}
    save_file(tensors, str(path))
    return str(path)


@pytest.mark.parametrize("stem", OWN)
@pytest.mark.parametrize("syntax", ["wmap", "yaml"])
def test_example_plans_against_checkpoints_of_the_right_shape(stem: str, syntax: str, tmp_path: Path) -> None:
    """Strict mode: every source tensor used or dropped, every target filled, initialised or kept."""
    import wmap

    sources, target = CHECKPOINTS[stem]()
    rng = np.random.default_rng(0)
    paths = {name: _save(tmp_path / f"{name}.safetensors", shapes, rng) for name, shapes in sources.items()}
    tpath = _save(tmp_path / "target.safetensors", target, None)
    plan = wmap.plan(EXAMPLES / f"{stem}.{syntax}", paths["src"] if list(paths) == ["src"] else paths, tpath)
    assert {t.name for t in plan.targets} == set(target)
    assert not [w for w in plan.warnings if w.code != "WM311"]  # WM311: equal q/k/v blocks, by design
    if stem == "freeze_lr":
        assert set(plan.frozen) >= {"conv1.weight", "layer2.1.conv3.weight"} and "layer3.0.conv1.weight" \
            not in plan.frozen
        assert plan.lr_scales["fc.weight"] == 10 and plan.lr_scales["layer3.0.conv1.weight"] == 0.25
