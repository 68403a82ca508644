"""A real sharded apply: 2 and 4 gloo ranks on this machine, each scenario checked against a
single-process `wmap.apply` of the same spec, bit for bit (tests/dist/workers.py runs the ranks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed.checkpoint")

import wmap  # noqa: E402
from tests.dist import workers as W  # noqa: E402
from tests.dist.harness import run_ranks, stop_forkserver  # noqa: E402
from tests.support.example_inventories import CHECKPOINTS  # noqa: E402
from tests.support.shaped_models import checkpoint_from_shapes  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _no_forkserver_left() -> Any:
    yield
    stop_forkserver()


def _sources(work: Path) -> None:
    for example, name in W.EXAMPLE.items():
        src, _ = CHECKPOINTS[name]()
        checkpoint_from_shapes(src["src"], work / f"{example}.safetensors")
    src, _ = CHECKPOINTS["fused_qkv_split"]()
    checkpoint_from_shapes(src["src"], work / "gpt2.safetensors", shard_at=9)  # and as two shards with an index


def _reference(example: str, source: Path) -> tuple[Any, dict[str, Any]]:
    report = wmap.apply(W.SPEC[example], source=str(source), target=W.target_model(example), show_progress=False)
    return report, {n: t.detach() for n, t in report.target.state_dict().items()}


def _assert_identical(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    assert got.keys() == want.keys(), what
    diff = [n for n in want if got[n].dtype != want[n].dtype or not torch.equal(got[n], want[n])]
    assert not diff, f"{what}: {len(diff)} tensor(s) differ from the single-process apply, e.g. {diff[:3]}"


def _source_bytes(plan: Any) -> int:
    """The bytes of every source tensor the plan uses, each counted once."""
    return sum({(r.source, r.name): r.meta.nbytes for s in plan.steps for r in s.sources}.values())


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
@pytest.mark.parametrize("world", [2, 4])
def test_sharded_apply_matches_single_process_bit_for_bit(world: int, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    _sources(tmp_path)
    run_ranks(W.scenarios, world, str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]

    # every parameter and buffer, gathered with full_tensor(), equals a single-process apply
    for name, (example, source, how) in W.SHARDED.items():
        ref, want = _reference(example, tmp_path / source)
        _assert_identical(load_file(str(tmp_path / f"{name}.safetensors")), want, f"{name} on {world} ranks")
        if how == "tp":
            assert {"(Shard(dim=0),)", "(Shard(dim=1),)", "(Replicate(),)"} <= set(ranks[0][name]["placements"])
        if example == "freeze":  # freeze and lr groups on the sharded model are those of the plan
            assert ranks[0][name]["frozen"] == sorted(n for n, p in ref.target.named_parameters() if not p.requires_grad)
            ref_groups = [[g["lr_scale"], g["names"]] for g in ref.plan.param_groups(ref.target, base_lr=1.0)]
            assert [s for s, _ in ref_groups] == [0.25, 0.5, 10.0]  # stem, layer1-2 frozen
            assert all(r[name]["groups"] == ref_groups for r in ranks)

    # each rank reads its share of the sources and nothing else: FSDP2 boxes partition every target,
    # every step maps each box to its own box of the source, and the tied `lm_head` (a copy of `wte`,
    # sharded alike) reuses the box read for `embed_tokens`: every used byte is read once, by one rank
    ref, _ = _reference("gpt2", tmp_path / "gpt2.safetensors")
    reads = [r["gpt2_fsdp"]["bytes_read"] for r in ranks]
    assert sum(reads) == _source_bytes(ref.plan)
    assert max(reads) <= _source_bytes(ref.plan) / world * 1.25, reads  # uneven rows: 50 over 4 is 13/13/13/11
    assert all(r["gpt2_fsdp"]["gathered"] == [] for r in ranks)
    assert all(r["gpt2_tp"]["gathered"] == [] for r in ranks)  # Shard(1) across the transpose reads a box too

    # `pad` needs the whole tensor: that step gathers, says why and what it held
    gathered = ranks[0]["vocab_fsdp"]["gathered"]
    assert sorted(g["targets"][0] for g in gathered) == ["lm_head.weight", "model.embed_tokens.weight"]
    assert all("pad" in g["reason"] and g["nbytes"] == (32 * 8 + 40 * 8) * 4 for g in gathered)

    # a DCP folder a sharded job can start from: dcp.load puts the single-process values back
    import torch.distributed.checkpoint as dcp
    _, want = _reference("gpt2", tmp_path / "gpt2.safetensors")
    loaded = {n: torch.empty_like(t) for n, t in want.items()}
    dcp.load(loaded, checkpoint_id=str(tmp_path / "gpt2_ckpt"), no_dist=True)
    _assert_identical(loaded, want, "the DCP folder")
    assert sum(r["gpt2_dcp"]["staged_bytes"] for r in ranks) == sum(t.nbytes for t in want.values())
    _assert_identical(load_file(str(tmp_path / "gpt2_ckpt_into_tp.safetensors")), want,
                      "the DCP folder loaded by the ranks into tensor-parallel shards")

    # `wmap apply --distributed` on every rank: the same folder, and rank 0's report of every rank
    assert [r["cli"]["rc"] for r in ranks] == [0] * world
    loaded = {n: torch.empty_like(t) for n, t in want.items()}
    dcp.load(loaded, checkpoint_id=str(tmp_path / "cli_ckpt"), no_dist=True)
    _assert_identical(loaded, want, "the DCP folder from the command line")
    cli = json.loads((tmp_path / "cli_report.json").read_text())
    assert [r["bytes_read"] for r in cli["ranks"]] == [r["gpt2_dcp"]["bytes_read"] for r in ranks]

    # one rank fails while staging, or while reading: every rank refuses, none has written
    codes = {"fault_stage": [], "fault_read": [], "fault_dcp": [], "digest": []}
    for r in ranks:
        for k in codes:
            codes[k].append(r[k]["code"])
        assert r["fault_stage"]["unchanged"] and r["fault_read"]["unchanged"] and r["digest"]["unchanged"]
    assert codes["fault_stage"] == ["WM606"] * (world - 1) + ["WM500"]
    assert codes["fault_read"] == ["WM606"] * (world - 1) + ["WM500"]
    assert codes["fault_dcp"] == ["WM606"] * (world - 1) + ["WM500"]
    assert [r["fault_save"]["code"] for r in ranks] == ["WM512"] * world  # a failed write is DCP's, on every rank
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("never_ckpt")]  # nor a temporary folder
    # ranks that compiled different plans (another seed on the last rank) refuse before reading
    assert codes["digest"] == ["WM605"] * world
