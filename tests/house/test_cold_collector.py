"""The full garbage collection `import torch` leaves due is not run by wmap's first parse and apply (issue 11).

After `import torch` a fresh interpreter is a few thousand allocations away from a full pass over
torch's ~10^5 objects (~80 ms here). wmap's lazy imports and its first parse used to trigger it, a
pass that found nothing of wmap's; `parse_spec` and `apply` now run with the collector paused (see
wmap/core/bulk.py). A model factory is the caller's code and runs with the collector as the caller
left it.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

from tests.support import paths
from wmap.core.bulk import collector_as_caller_left_it, collector_paused

FRESH = """\
import gc, json, sys
import torch
from safetensors.torch import save_file
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
save_file({k: v.clone() for k, v in model.state_dict().items()}, sys.argv[1])
full = []
gc.callbacks.append(lambda phase, info: full.append(info["generation"]) if phase == "start" else None)
import wmap
spec = wmap.parse_spec("wmap 1\\n{p:**} -> {p}\\n")
target = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
report = wmap.apply(spec, source=sys.argv[1], target=target)
same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), target.state_dict().values()))
print(json.dumps({"full": full.count(2), "young": len(full) - full.count(2), "same": same,
                  "enabled": gc.isenabled()}))
"""


def test_first_parse_and_apply_after_import_torch_run_no_full_collection(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "m.safetensors")], capture_output=True,
                         text=True, cwd=paths.ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["same"] and got["enabled"]
    assert got["full"] == 0, got


def test_a_model_factory_runs_with_the_collector_as_the_caller_left_it() -> None:
    was = gc.isenabled()
    try:
        gc.enable()
        with collector_paused():
            assert not gc.isenabled()
            with collector_as_caller_left_it():
                assert gc.isenabled()  # the caller's code: collected as usual
                with collector_paused():  # wmap again, inside the factory (a nested apply)
                    assert not gc.isenabled()
                assert gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()
        gc.disable()  # a caller who turned it off keeps it off, in their factory too
        with collector_paused(), collector_as_caller_left_it():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_apply_calls_a_factory_with_the_collector_enabled(tmp_path: Path) -> None:
    """Through the real path: `wmap.apply` into a `module:callable` target."""
    import torch
    from safetensors.torch import save_file

    import wmap

    (tmp_path / "gc_probe_models.py").write_text(
        "import gc\nimport torch\nSEEN = []\n"
        "def build():\n    SEEN.append(gc.isenabled())\n    return torch.nn.Sequential(torch.nn.Linear(3, 2))\n")
    save_file({"0.weight": torch.ones(2, 3), "0.bias": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    sys.path.insert(0, str(tmp_path))
    try:
        report = wmap.apply(wmap.parse_spec("wmap 1\n{p:**} -> {p}\n"), source=str(tmp_path / "w.safetensors"),
                            target="gc_probe_models:build")
        import gc_probe_models  # type: ignore[import-not-found]
        assert gc_probe_models.SEEN and all(gc_probe_models.SEEN), gc_probe_models.SEEN
        assert torch.equal(report.target[0].weight, torch.ones(2, 3))  # type: ignore[index]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("gc_probe_models", None)
