"""A spec run backwards moves every byte back: files through the CLI (`wmap invert`, `apply
--reverse`), 16 experts stacked and unstacked in numeric order, a fused projection split and joined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from wmap.cli import main

SPEC = """wmap 1
source src "src.safetensors"
target "dst.safetensors"
let heads = 4

layers.{l:int}.experts.{e:int}.w1.weight -> blocks.{l+1}.moe.w1 | stack(0)
layers.{l:int}.attn.c_attn.weight -> blocks.{l+1}.attn.{q,k,v}.kernel | split(1) | rearrange("e (h d) -> e h d", h=$heads)
layers.{l:int}.fc.weight -> blocks.{l+1}.fc.kernel | transpose
drop ?layers.*.attn.masked_bias
"""


def _checkpoints(folder: Path, n_experts: int = 16) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    src: dict[str, np.ndarray] = {}
    dst: dict[str, np.ndarray] = {}
    for lay in range(2):
        for e in range(n_experts):
            src[f"layers.{lay}.experts.{e}.w1.weight"] = np.full((2, 3), e + 100 * lay, np.float32)
        src[f"layers.{lay}.attn.c_attn.weight"] = rng.standard_normal((8, 24)).astype(np.float32)
        src[f"layers.{lay}.attn.masked_bias"] = np.array([-1e4], np.float32)
        src[f"layers.{lay}.fc.weight"] = rng.standard_normal((5, 8)).astype(np.float32)
        dst[f"blocks.{lay + 1}.moe.w1"] = np.zeros((n_experts, 2, 3), np.float32)
        for p in "qkv":
            dst[f"blocks.{lay + 1}.attn.{p}.kernel"] = np.zeros((8, 4, 2), np.float32)
        dst[f"blocks.{lay + 1}.fc.kernel"] = np.zeros((8, 5), np.float32)
    save_file(src, str(folder / "src.safetensors"))
    save_file(dst, str(folder / "dst.safetensors"))
    (folder / "port.wmap").write_text(SPEC)
    return src, dst


def test_forward_then_reverse_gives_back_every_byte_through_the_cli(tmp_path: Path) -> None:
    src, _ = _checkpoints(tmp_path)
    fwd, back = tmp_path / "ported.safetensors", tmp_path / "back.safetensors"
    assert main(["apply", str(tmp_path / "port.wmap"), "--out", str(fwd)]) == 0
    ported = load_file(str(fwd))
    assert ported["blocks.2.moe.w1"][:, 0, 0].tolist() == list(range(100, 116))  # numeric order, not 0,1,10,...
    assert main(["apply", str(tmp_path / "port.wmap"), "--reverse", "--source", str(fwd),
                 "--target", str(tmp_path / "src.safetensors"), "--out", str(back)]) == 0
    got = load_file(str(back))
    assert set(got) == set(src)
    for k, v in src.items():
        assert got[k].dtype == v.dtype and got[k].tobytes() == v.tobytes(), k


def test_invert_writes_a_spec_that_checks_plans_and_runs(tmp_path: Path, capsys) -> None:
    src, _ = _checkpoints(tmp_path)
    fwd = tmp_path / "ported.safetensors"
    assert main(["apply", str(tmp_path / "port.wmap"), "--out", str(fwd)]) == 0
    back_spec = tmp_path / "back.wmap"
    assert main(["invert", str(tmp_path / "port.wmap"), "-o", str(back_spec)]) == 0
    text = " ".join(back_spec.read_text().split())
    assert "blocks.{l:int}.moe.w1 -> layers.{l-1}.experts.{e:int}.w1.weight" in text
    assert "keep ?layers.*.attn.masked_bias" in text
    assert main(["check", str(back_spec)]) == 0
    capsys.readouterr()
    assert main(["plan", str(back_spec), "--source", str(fwd), "--target", str(tmp_path / "src.safetensors")]) == 0
    plan = capsys.readouterr().out
    assert "unstack" in plan and "concat" in plan
    out = tmp_path / "again.safetensors"
    assert main(["apply", str(back_spec), "--source", str(fwd), "--target", str(tmp_path / "src.safetensors"),
                 "--out", str(out)]) == 0
    got = load_file(str(out))
    assert all(got[k].tobytes() == v.tobytes() for k, v in src.items())


def test_a_one_way_spec_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    _checkpoints(tmp_path)
    spec = tmp_path / "oneway.wmap"
    spec.write_text(SPEC.replace("| transpose", "| transpose | prune(0.01)"))
    out = tmp_path / "never.safetensors"
    assert main(["apply", str(spec), "--reverse", "--source", str(tmp_path / "dst.safetensors"),
                 "--target", str(tmp_path / "src.safetensors"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "oneway.wmap:8:1: error[WM130]" in err and "`prune` loses information" in err
    assert not out.exists()
