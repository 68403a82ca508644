"""The example library end to end: each spec in specs/examples applied between models built locally."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import wmap  # noqa: E402
from tests.support import example_models as M  # noqa: E402
from tests.support import paths  # noqa: E402

EXAMPLES = paths.EXAMPLES


def test_bert_encoder_into_a_renamed_reimplementation() -> None:
    torch.manual_seed(0)
    src = M.HFBert().eval()
    report = wmap.apply(EXAMPLES / "bert_rename.wmap", source=src.state_dict())
    dst = report.target.eval()
    ids = torch.randint(0, M.VOCAB, (2, 7))
    torch.testing.assert_close(dst(ids), src(ids), rtol=0, atol=0)
    assert report.plan.summary()["copied"] == len(src.state_dict())


def test_vit_backbone_with_a_new_head_and_resized_position_grid() -> None:
    torch.manual_seed(1)
    src = M.TinyViT(grid=8).eval()
    report = wmap.apply(EXAMPLES / "vit_new_head.wmap", source=src.state_dict())
    dst = report.target.eval()
    cls, grid = src.pos_embed[:, :1], src.pos_embed[:, 1:].reshape(1, 8, 8, M.E).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, size=(12, 12), mode="bicubic", align_corners=False)
    want = torch.cat([cls, want.permute(0, 2, 3, 1).reshape(1, 144, M.E)], 1)
    torch.testing.assert_close(dst.pos_embed.detach(), want.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dst.blocks[0].linear1.weight, src.blocks[0].linear1.weight, rtol=0, atol=0)
    assert float(dst.head.bias.detach().abs().sum()) == 0.0 and 0.005 < float(dst.head.weight.std()) < 0.05
    assert dst.features(torch.randn(2, 3, 48, 48)).shape == (2, M.E)  # runs at the new resolution
    assert report.plan.lr_scales == {"head.weight": 10.0, "head.bias": 10.0}


def test_lora_adapter_merged_into_its_base() -> None:
    torch.manual_seed(2)
    base = M.lora_base()
    rank = 4
    adapter = {f"{i}.lora_A.weight": torch.randn(rank, lin.in_features) for i, lin in ((0, base[0]), (2, base[2]))}
    adapter |= {f"{i}.lora_B.weight": torch.randn(lin.out_features, rank) for i, lin in ((0, base[0]), (2, base[2]))}
    report = wmap.apply(EXAMPLES / "lora_merge.wmap", source={"base": base.state_dict(), "lora": adapter})
    merged = report.target
    for i in (0, 2):
        want = base[i].weight + 2.0 * adapter[f"{i}.lora_B.weight"] @ adapter[f"{i}.lora_A.weight"]
        torch.testing.assert_close(merged[i].weight.detach(), want.detach(), rtol=1e-6, atol=1e-6)
        assert torch.equal(merged[i].bias, base[i].bias)


def test_two_model_lerp_soup_matches_a_hand_made_soup(tmp_path: Path) -> None:
    """two_source_merge.wmap: every weight halfway between a pretrained and a fine-tuned ViT,
    except the head, which comes from the fine-tuned model alone; written to a file."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(2)
    base, tuned = M.TinyViT().eval(), M.TinyViT().eval()
    paths = {}
    for name, model in (("base", base), ("tuned", tuned)):
        paths[name] = str(tmp_path / f"{name}.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, paths[name])
    out = tmp_path / "soup.safetensors"
    report = wmap.apply(EXAMPLES / "two_source_merge.wmap", source=paths, target=paths["base"], out=out)
    sb, st = base.state_dict(), tuned.state_dict()
    want = {k: (st[k] if k.startswith("head.") else torch.lerp(sb[k], st[k], 0.5)) for k in sb}
    got = load_file(str(out))
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-7)
    soup, reference = M.TinyViT().eval(), M.TinyViT().eval()
    soup.load_state_dict(got)
    reference.load_state_dict(want)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(soup(x), reference(x), rtol=0, atol=1e-6)
    assert not torch.allclose(soup(x), base(x))  # the soup is neither parent
    assert report.plan.summary()["transformed"] == len(sb) - 2


def test_moe_experts_stack_by_index_and_come_back_through_the_cli(tmp_path: Path) -> None:
    """moe_experts.wmap through the CLI, file to file: every stacked projection equals a hand-written
    `torch.stack` over experts 0..11 in index order, and `apply --reverse` gives the original
    checkpoint back bit for bit, every tensor under its own name."""
    from safetensors.torch import load_file, save_file

    from tests.support.example_inventories import CHECKPOINTS
    from wmap.cli import main

    sources, target = CHECKPOINTS["moe_experts"]()
    g = torch.Generator().manual_seed(3)
    src = {n: torch.randn(s, generator=g) for n, s in sources["src"].items()}
    save_file(src, str(tmp_path / "mixtral.safetensors"))
    save_file({n: torch.zeros(s) for n, s in target.items()}, str(tmp_path / "stacked_template.safetensors"))
    out, back = tmp_path / "stacked.safetensors", tmp_path / "back.safetensors"
    spec = str(EXAMPLES / "moe_experts.wmap")
    assert main(["apply", spec, "--source", str(tmp_path / "mixtral.safetensors"),
                 "--target", str(tmp_path / "stacked_template.safetensors"), "--out", str(out)]) == 0
    got = load_file(str(out))
    for i in range(2):
        for w, proj in (("w1", "gate"), ("w3", "up"), ("w2", "down")):
            want = torch.stack([src[f"model.layers.{i}.block_sparse_moe.experts.{e}.{w}.weight"] for e in range(12)])
            assert torch.equal(got[f"layers.{i}.moe.{proj}_proj"], want), (i, proj)
    assert main(["apply", spec, "--reverse", "--source", str(out), "--target", str(tmp_path / "mixtral.safetensors"),
                 "--out", str(back)]) == 0
    again = load_file(str(back))
    assert set(again) == set(src)  # `model.` comes back: the reverse reads strip_prefix as the target's
    for n, t in again.items():
        assert torch.equal(t, src[n]), n
