"""What a fresh process imports on the way to its answer (issue 11): not timed, pinned by name.

A CLI `wmap check`, a pre-commit hook or a training script pays for every module imported on its
path in every run. These tests run each path in a fresh interpreter and list the heavy modules it
pulled in; an eager import added anywhere on the path (a framework, ml_dtypes, jsonschema, numpy,
YAML) fails here. `bench/bench_cold.py` times the same paths.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import paths

# Every kind of statement a small spec has: sources, target, options, rules with transforms from
# several families (presets, layout, routing, values), drop, init (the initialiser table), keep,
# freeze, lr.
SMALL_WMAP = """\
wmap 1
source torch "a.safetensors"
target keras "pkg.models:build"
option seed = 1
conv1.weight -> conv1.kernel | conv_to_keras
fc.weight -> fc.kernel | linear_to_dense
qkv.weight -> {q,k,v}.kernel | split(0) | transpose
w.{a,b} -> w.c | concat(0) | scale(2.0)
drop **.num_batches_tracked
init head.bias = zeros
init head.kernel = normal(std=0.02)
keep frozen.*
freeze conv1.*
lr fc.* * 10
"""

HEAVY = ("torch", "tensorflow", "keras", "ml_dtypes", "jsonschema", "numpy", "yaml", "rich", "lark", "regex")


def _imported(code: str, *args: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter; it prints one JSON object last."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=paths.ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _heavy_after(body: str, *args: str) -> list[str]:
    code = ("import json, sys\n" + body +
            f"\nprint(json.dumps({{'heavy': sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))}}))\n")
    return list(_imported(code, *args)["heavy"])  # type: ignore[call-overload]


def test_import_wmap_and_parse_a_small_wmap_spec_imports_nothing_heavy() -> None:
    """numpy and YAML are on the list too: parsing and checking names needs neither, and together
    they are most of what a `wmap check` would otherwise spend. So is lark: the parser is the module
    generated from the grammar ahead of time (wmap/lang/grammar.py), which imports nothing of lark's, nor
    the third-party `regex` module lark's generated code imports when it is installed."""
    heavy = _heavy_after("import wmap\nspec = wmap.parse_spec(sys.argv[1])\nassert len(spec.rules) == 4",
                         SMALL_WMAP)
    assert heavy == []


def test_a_yaml_spec_imports_no_framework_and_no_ml_dtypes() -> None:
    """YAML needs PyYAML and the schema's validator (jsonschema), nothing else that is heavy."""
    spec = paths.EXAMPLES / "torch_to_keras_cnn.yaml"
    heavy = _heavy_after("import wmap\nspec = wmap.load_spec(sys.argv[1])\nassert spec.rules", str(spec))
    assert not set(heavy) & {"torch", "tensorflow", "keras", "ml_dtypes", "numpy"}, heavy


def test_an_unknown_transform_is_still_found_without_importing_the_families() -> None:
    """The name check keeps its code and position when the registry no longer imports every family."""
    out = _imported(
        "import json, sys, wmap\n"
        "try:\n"
        "    wmap.parse_spec('wmap 1\\na -> b | transpos\\nc -> d | trnspose(0, 1)\\n')\n"
        "except wmap.WmapError as e:\n"
        "    d = [(x.code, x.span.line, x.span.column, x.hint) for x in e.diagnostics]\n"
        "from wmap.transforms.catalog import FAMILIES\n"
        "print(json.dumps({'d': d, 'families': sorted(f for f in FAMILIES if 'wmap.transforms.' + f in sys.modules)}))\n")
    assert out["d"] == [["WM103", 2, 10, "did you mean `transpose`?"], ["WM103", 3, 10, "did you mean `transpose`?"]]
    assert out["families"] == []


def test_wmap_plan_between_two_safetensors_files_imports_no_framework(tmp_path: Path) -> None:
    """A plan from file headers needs neither torch nor TensorFlow; ml_dtypes only for bf16/fp8 files;
    and no PyYAML for a `.wmap` spec (the plan's spec digest is JSON of the spec's document)."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({f"{i}.weight": np.zeros((4, 3), np.float32) for i in range(3)}, str(tmp_path / "a.safetensors"))
    save_file({f"{i}.weight": np.zeros((3, 4), np.float32) for i in range(3)}, str(tmp_path / "b.safetensors"))
    (tmp_path / "t.wmap").write_text("wmap 1\n{i:int}.weight -> {i}.weight | transpose\n")
    heavy = _heavy_after(
        "from wmap.cli import main\n"
        "rc = main(['plan', sys.argv[1], '--source', sys.argv[2], '--target', sys.argv[3]])\n"
        "assert rc == 0, rc",
        str(tmp_path / "t.wmap"), str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"))
    assert not set(heavy) & {"torch", "tensorflow", "keras", "ml_dtypes", "yaml"}, heavy


# What an identity transfer from a safetensors file into a torch model has no use for: the Keras
# formats, TensorFlow checkpoints, `let` bindings and model configs, initialisers and `layout(auto)`'s
# layer kinds. Each is imported by the feature that needs it, when a spec or an endpoint asks for it.
NOT_FOR_A_PLAIN_TORCH_LOAD = (
    "wmap.formats.keras_layers", "wmap.formats.keras_naming", "wmap.formats.tf_checkpoint",
    "wmap.lang.bindings", "wmap.run.config", "wmap.transforms.initializers", "wmap.transforms.auto",
)


def test_an_identity_load_into_a_torch_model_imports_only_what_it_uses(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    out = _imported(
        "import json, sys, torch, wmap\n"
        "model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))\n"
        "wmap.apply(wmap.parse_spec('wmap 1\\n{p:**} -> {p}\\n'), source=sys.argv[1], target=model)\n"
        f"print(json.dumps({{'unneeded': sorted(set(sys.modules) & set({NOT_FOR_A_PLAIN_TORCH_LOAD!r}))}}))\n",
        str(tmp_path / "m.safetensors"))
    assert out["unneeded"] == []


def test_the_features_that_need_those_modules_still_import_them() -> None:
    """The other side of the test above: a spec with a `let`, an `init` and `layout(auto)` (from a
    model, which records layer kinds) still gets its modules, by the feature, and the transfer lands."""
    out = _imported(
        "import json, sys, torch, wmap\n"
        "src = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))\n"
        "model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))\n"
        "spec = 'wmap 1\\nlet k = 2\\n0.{p} -> 0.{p}\\n1.weight -> 1.weight | layout(auto)\\n"
        "drop 1.bias\\ninit 1.bias = constant($k)\\n'\n"
        "wmap.apply(wmap.parse_spec(spec), source=src, target=model)\n"
        "assert bool((model[1].bias == 2).all()) and bool((model[1].weight == src[1].weight).all())\n"
        f"print(json.dumps({{'used': sorted(set(sys.modules) & set({NOT_FOR_A_PLAIN_TORCH_LOAD!r}))}}))\n")
    assert {"wmap.lang.bindings", "wmap.transforms.initializers", "wmap.transforms.auto"} <= set(out["used"])


def test_hints_import_difflib_only_when_a_spec_is_wrong() -> None:
    """'Did you mean' hints are made with difflib; a spec with nothing to hint about never needs it
    (a `wmap check` in a pre-commit hook mostly sees correct specs)."""
    out = _imported(
        "import json, sys, wmap\n"
        "wmap.parse_spec(sys.argv[1])\n"
        "clean = 'difflib' in sys.modules\n"
        "try:\n"
        "    wmap.parse_spec('wmap 1\\na -> b | transpos\\n')\n"
        "except wmap.WmapError as e:\n"
        "    hint = e.diagnostics[0].hint\n"
        "print(json.dumps({'clean': clean, 'hint': hint}))\n", SMALL_WMAP)
    assert out == {"clean": False, "hint": "did you mean `transpose`?"}
