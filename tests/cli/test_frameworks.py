"""One table of frameworks: `wmap check` and `wmap plan` agree on every framework name.

`source numpy "a.npz"` used to pass `check` and fail `plan` with WM501 "unknown framework
numpy" (the same for `safetensors`): the parser and the readers kept two tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from wmap.cli import main
from wmap.core.frameworks import ALIASES, FRAMEWORKS, layout_of

NAMES = [*FRAMEWORKS, *ALIASES, "jax", "Torch"]


@pytest.mark.parametrize("name", NAMES)
def test_check_and_plan_agree_on_a_framework_name(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    save_file({"w": np.zeros((2, 3), np.float32)}, str(tmp_path / "a.safetensors"))
    save_file({"v": np.zeros((2, 3), np.float32)}, str(tmp_path / "b.safetensors"))
    spec = tmp_path / "s.wmap"
    spec.write_text(f'wmap 1\nsource {name} "a.safetensors"\ntarget {name} "b.safetensors"\nw -> v\n')
    checked = main(["check", str(spec)])
    check_err = capsys.readouterr().err
    planned = main(["plan", str(spec)])
    plan_err = capsys.readouterr().err
    assert (checked == 0) == (planned == 0), (check_err, plan_err)
    if name in FRAMEWORKS:
        assert checked == 0 and planned == 0, (check_err, plan_err)
    else:
        assert "error[WM110]: unknown framework" in check_err and "error[WM110]" in plan_err
    if name in ALIASES:
        assert f"write `{ALIASES[name]}`" in check_err


def test_layouts_of_frameworks() -> None:
    assert [layout_of(n) for n in FRAMEWORKS] == ["torch", "keras", "keras", None, None]
    assert layout_of("PyTorch") == "torch" and layout_of("tensorflow") == "keras"


def test_one_factory_syntax_for_the_resolver_the_formatter_and_the_schema() -> None:
    """`a..b:c` was accepted by one resolver and refused by the other; the schema had a third rule."""
    import json

    from tests.support.paths import SPECS
    from wmap.core.names import FACTORY_SYNTAX, is_factory_syntax
    from wmap.lang import format_spec, parse_spec
    from wmap.run.factory import is_factory_spec

    schema = json.loads((SPECS / "wmap.schema.json").read_text())
    assert schema["$defs"]["endpoint"]["oneOf"][1]["properties"]["model"]["pattern"] == FACTORY_SYNTAX
    for text, ok in [("pkg.models:build", True), ("models:Net.tiny", True), ("a..b:c", False), ("a:b:c", False),
                     (".a:b", False), ("a:", False), ("módulo:f", False)]:
        assert is_factory_syntax(text) is ok and is_factory_spec(text) is ok, text
        yaml = format_spec(parse_spec(f'wmap 1\ntarget "{text}"\n'), "yaml")
        assert (f"model: '{text}'" in yaml) is ok, yaml
