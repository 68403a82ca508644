"""PyTorch execution end to end: real models, real files, outputs equal to hand-built references."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")

import wmap  # noqa: E402
from tests.support.torch_models import BACKBONE, GPT2, Backbone, NewArch, SplitDecoder, TiedLM  # noqa: E402
from wmap.core.errors import WmapError  # noqa: E402


@pytest.fixture()
def backbone_file(tmp_path: Path) -> tuple[Backbone, str]:
    torch.manual_seed(0)
    old = Backbone()
    with torch.no_grad():  # non-trivial BN statistics, so a wrong mapping shows
        old.bn1.running_mean.uniform_(-1, 1)
        old.bn1.running_var.uniform_(0.5, 2)
    path = str(tmp_path / "backbone.safetensors")
    st.save_file(old.state_dict(), path)
    return old.eval(), path


def test_backbone_into_new_architecture_with_new_head(backbone_file: tuple[Backbone, str]) -> None:
    old, path = backbone_file
    new = NewArch()
    report = wmap.apply(wmap.parse_spec(BACKBONE), source=path, target=new)
    x = torch.randn(2, 3, 8, 8)
    new.eval()
    torch.testing.assert_close(new.features(x), old.features(x), rtol=0, atol=0)
    assert float(new.head.bias.detach().abs().sum()) == 0.0
    assert 0.005 < float(new.head.weight.std()) < 0.05  # really initialised, not left as-is
    assert report.plan.summary()["initialised"] == 2


def test_init_is_reproducible_under_the_seed(backbone_file: tuple[Backbone, str]) -> None:
    _, path = backbone_file
    a, b, c = NewArch(), NewArch(), NewArch()
    wmap.apply(wmap.parse_spec(BACKBONE), source=path, target=a)
    wmap.apply(wmap.parse_spec(BACKBONE), source=path, target=b)
    wmap.apply(wmap.parse_spec(BACKBONE.replace("wmap 1", "wmap 1\noption seed = 7")), source=path, target=c)
    assert torch.equal(a.head.weight, b.head.weight)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_gpt2_fused_c_attn_into_split_qkv() -> None:
    torch.manual_seed(1)
    src = GPT2()
    spec = wmap.parse_spec("""wmap 1
h.{i:int}.attn.c_attn.weight -> blocks.{i}.{q,k,v}.weight | split(1) | transpose
h.{i:int}.attn.c_attn.bias   -> blocks.{i}.{q,k,v}.bias   | split(0)
h.{i:int}.attn.c_proj.weight -> blocks.{i}.out.weight     | transpose
h.{i:int}.attn.c_proj.bias   -> blocks.{i}.out.bias
""")
    dst = SplitDecoder()
    report = wmap.apply(spec, source=src.state_dict(), target=dst)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(dst(x), src(x), rtol=1e-5, atol=1e-6)
    assert any(w.code == "WM311" for w in report.plan.warnings)  # equal blocks: order can't be shape-checked


def test_vocab_growth_pads_and_initialises_new_rows() -> None:
    old = {"emb.weight": torch.randn(100, 16)}
    new = torch.nn.Module()
    new.emb = torch.nn.Embedding(110, 16)
    spec = wmap.parse_spec('wmap 1\nemb.weight -> emb.weight | pad(0, init="normal", std=0.02)\n')
    wmap.apply(spec, source=old, target=new)
    assert torch.equal(new.emb.weight[:100], old["emb.weight"])
    rows = new.emb.weight[100:]
    assert rows.abs().sum() > 0 and float(rows.std()) < 0.05


@pytest.mark.parametrize("channels", [1, 4])
def test_input_channel_adaptation(backbone_file: tuple[Backbone, str], channels: int) -> None:
    old, path = backbone_file
    new = Backbone(in_ch=channels)
    spec = wmap.parse_spec("wmap 1\nconv1.weight -> conv1.weight | adapt_channels\n{p:**} -> {p}\n")
    wmap.apply(spec, source=path, target=new)
    w_old = old.conv1.weight
    if channels == 1:  # timm's rule: sum over RGB, so a grey image x gives what RGB (x, x, x) gave
        torch.testing.assert_close(new.conv1.weight, w_old.sum(1, keepdim=True))
        x = torch.randn(2, 1, 8, 8)
        new.eval()
        torch.testing.assert_close(new(x), old(x.repeat(1, 3, 1, 1)), rtol=1e-5, atol=1e-5)
    else:  # repeat the RGB filters and rescale by 3/N
        expect = w_old.repeat(1, 2, 1, 1)[:, :4] * (3 / 4)
        torch.testing.assert_close(new.conv1.weight, expect)


def test_pt_source_is_loaded_with_weights_only(tmp_path: Path, backbone_file: tuple[Backbone, str]) -> None:
    old, _ = backbone_file
    path = tmp_path / "m.pt"
    torch.save(old.state_dict(), path)
    new = Backbone()
    wmap.apply(wmap.parse_spec("wmap 1\n{p:**} -> {p}\n"), source=str(path), target=new)
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), old.state_dict().values()))


def test_npz_source(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, **{"fc.weight": np.ones((10, 8), np.float32), "fc.bias": np.zeros(10, np.float32)})
    lin = torch.nn.Linear(8, 10)
    wmap.apply(wmap.parse_spec("wmap 1\nfc.{p} -> {p}\n"), source=str(path), target=lin)
    assert float(lin.weight.sum()) == 80.0


def test_model_soup_task_vector_and_update_with_real_tensors() -> None:
    torch.manual_seed(2)
    base = {"w": torch.randn(4, 4)}
    tuned = {"w": torch.randn(4, 4)}
    grad = {"w": torch.randn(4, 4)}
    target = torch.nn.Module()
    target.register_parameter("w", torch.nn.Parameter(torch.zeros(4, 4)))
    two = 'wmap 1\nsource base "a"\nsource tuned "b"\n'
    wmap.apply(wmap.parse_spec(two + "base:w, tuned:w -> w | lerp(0.25)\n"), source={"base": base, "tuned": tuned},
               target=target)
    torch.testing.assert_close(target.w.detach(), base["w"] + 0.25 * (tuned["w"] - base["w"]))
    wmap.apply(wmap.parse_spec(two + "tuned:w, base:w -> w | sub | scale(2.0)\n"),
               source={"base": base, "tuned": tuned}, target=target)
    torch.testing.assert_close(target.w.detach(), 2.0 * (tuned["w"] - base["w"]))
    upd = 'wmap 1\nsource w "a"\nsource g "b"\nw:w, g:w -> w | update(0.1)\n'
    wmap.apply(wmap.parse_spec(upd), source={"w": base, "g": grad}, target=target)
    torch.testing.assert_close(target.w.detach(), base["w"] - 0.1 * grad["w"])
    wmap.apply(wmap.parse_spec("wmap 1\nw -> w | prune(0.5)\n"), source=base, target=target)
    expect = torch.where(base["w"].abs() < 0.5, torch.zeros(()), base["w"])
    assert torch.equal(target.w.detach(), expect)


def test_factory_target_is_built_on_meta_and_materialised(backbone_file: tuple[Backbone, str]) -> None:
    old, path = backbone_file
    report = wmap.apply(wmap.parse_spec(BACKBONE), source=path, target="tests.support.torch_models:new_arch")
    model = report.target
    assert isinstance(model, NewArch)
    assert not any(p.is_meta for p in model.parameters())
    torch.testing.assert_close(model.eval().features(torch.ones(1, 3, 4, 4)), old.features(torch.ones(1, 3, 4, 4)))


def test_meta_target_gets_real_tensors_and_ties_stay_tied() -> None:
    with torch.device("meta"):
        lm = TiedLM()
    emb = torch.randn(20, 8)
    plan = wmap.plan(wmap.parse_spec("wmap 1\nemb -> emb.weight\n"), source={"emb": emb}, target=lm)
    assert plan.tied == (("lm_head.weight", "emb.weight"),)
    report = plan.apply(source={"emb": emb}, target=lm)
    assert lm.lm_head.weight is lm.emb.weight and torch.equal(lm.emb.weight.detach(), emb)
    assert any("tied" in n for n in report.notes)


def test_freeze_lr_param_groups_and_batchnorm_report(backbone_file: tuple[Backbone, str]) -> None:
    _, path = backbone_file
    spec = wmap.parse_spec(BACKBONE + "freeze stem.**\nlr head.* * 10\nlr blocks.0.* * 0.1\n")
    new = NewArch()
    report = wmap.apply(spec, source=path, target=new)
    assert not new.stem["conv"].weight.requires_grad and new.head.weight.requires_grad
    assert any("BatchNorm" in n and "stem.norm" in n for n in report.notes)
    groups = report.plan.param_groups(new, base_lr=1e-3)
    by_scale = {g["lr_scale"]: set(g["names"]) for g in groups}
    assert by_scale[10.0] == {"head.weight", "head.bias"} and by_scale[0.1] == {"blocks.0.weight", "blocks.0.bias"}
    assert all(not n.startswith("stem") for g in groups for n in g["names"])  # frozen params left out
    opt = torch.optim.SGD(groups, lr=1e-3)
    assert {round(g["lr"], 6) for g in opt.param_groups} == {0.01, 0.001, 0.0001}


def test_bn_eval_option_pins_frozen_batchnorm(backbone_file: tuple[Backbone, str]) -> None:
    _, path = backbone_file
    spec = wmap.parse_spec(BACKBONE.replace("wmap 1", "wmap 1\noption bn_eval = true") + "freeze stem.**\n")
    new = NewArch()
    wmap.apply(spec, source=path, target=new)
    new.train()
    assert not new.stem["norm"].training and new.blocks[0].training


def test_keep_leaves_target_untouched(backbone_file: tuple[Backbone, str]) -> None:
    _, path = backbone_file
    new = NewArch()
    before = new.head.weight.detach().clone()
    wmap.apply(wmap.parse_spec(BACKBONE.replace("init head.weight = normal(std=0.02)", "keep head.weight")),
               source=path, target=new)
    assert torch.equal(new.head.weight, before)


def test_file_output_is_byte_identical_across_runs_and_carries_provenance(
        tmp_path: Path, backbone_file: tuple[Backbone, str]) -> None:
    _, path = backbone_file
    spec = wmap.parse_spec(BACKBONE)
    outs = []
    for k in range(2):
        out = tmp_path / f"out{k}.safetensors"
        wmap.apply(spec, source=path, target="tests.support.torch_models:new_arch", out=str(out))
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    from safetensors import safe_open
    with safe_open(str(tmp_path / "out0.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["wmap_spec_digest"].startswith("sha256:") and "wmap_version" in meta and "src=sha256:" in meta[
        "wmap_sources"]


def test_sharded_output(tmp_path: Path, backbone_file: tuple[Backbone, str]) -> None:
    _, path = backbone_file
    spec = wmap.parse_spec(BACKBONE.replace("wmap 1", 'wmap 1\noption shard_size = "1KB"'))
    out = tmp_path / "sharded"
    wmap.apply(spec, source=path, target="tests.support.torch_models:new_arch", out=str(out))
    files = sorted(os.listdir(out))
    assert "model.safetensors.index.json" in files and len(files) > 2
    again = NewArch()
    wmap.apply(wmap.parse_spec("wmap 1\n{p:**} -> {p}\n"), source=str(out), target=again)
    assert float(again.head.bias.abs().sum()) == 0.0


def test_saved_plan_refuses_when_an_inventory_changed(tmp_path: Path, backbone_file: tuple[Backbone, str]) -> None:
    _, path = backbone_file
    plan = wmap.plan(wmap.parse_spec(BACKBONE), source=path, target=NewArch())
    saved = tmp_path / "plan.json"
    saved.write_text(plan.dumps())
    loaded = wmap.load_plan(saved)
    with pytest.raises(WmapError) as e:
        loaded.apply(source=path, target=NewArch(classes=7))
    assert e.value.diagnostics[0].code == "WM604"
    st.save_file({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(WmapError) as e:
        loaded.apply(source=path, target=NewArch())
    assert e.value.diagnostics[0].code == "WM604"


def test_verify_catches_a_tampered_model(backbone_file: tuple[Backbone, str]) -> None:
    _, path = backbone_file
    new = NewArch()
    plan = wmap.plan(wmap.parse_spec(BACKBONE + "freeze stem.**\n"), source=path, target=new)
    plan.apply(source=path, target=new)
    assert wmap.verify(plan, source=path, target=new).ok
    with torch.no_grad():
        new.blocks[1].bias[0] += 1e-3
    new.stem["conv"].weight.requires_grad_(True)
    report = wmap.verify(plan, source=path, target=new)
    assert {t for t, _ in report.mismatches} == {"blocks.1.bias", "stem.conv.weight"}


def test_nonfinite_policy() -> None:
    bad = {"w": torch.tensor([1.0, float("nan")])}
    target = torch.nn.Module()
    target.register_parameter("w", torch.nn.Parameter(torch.zeros(2)))
    with pytest.raises(WmapError) as e:
        wmap.apply(wmap.parse_spec('wmap 1\noption nonfinite = "error"\nw -> w\n'), source=bad, target=target)
    assert e.value.diagnostics[0].code == "WM603" and float(target.w.abs().sum()) == 0.0
    report = wmap.apply(wmap.parse_spec('wmap 1\noption nonfinite = "warn"\nw -> w\n'), source=bad, target=target)
    assert report.warnings[0].code == "WM603"
    wmap.apply(wmap.parse_spec('wmap 1\noption nonfinite = "allow"\nw -> w\n'), source=bad, target=target)
    assert math.isnan(float(target.w[1]))
    target.w.data.zero_()
    report = wmap.apply(wmap.parse_spec("wmap 1\nw -> w\n"), source=bad, target=target)  # the default: no scan
    assert math.isnan(float(target.w[1])) and report.warnings == [] and report.plan.option("nonfinite") == "allow"


def test_a_cast_that_overflows_to_inf_is_caught_like_a_source_inf() -> None:
    """What lands is checked, after the cast: 1e5 is finite in float32 and Inf in float16."""
    src = {"w": torch.tensor([1.0, 1e5])}
    target = torch.nn.Module()
    target.register_parameter("w", torch.nn.Parameter(torch.zeros(2, dtype=torch.float16)))
    with pytest.raises(WmapError) as e:
        wmap.apply(wmap.parse_spec('wmap 1\noption dtype = "target"\noption nonfinite = "error"\nw -> w\n'),
                   source=src, target=target)
    assert e.value.diagnostics[0].code == "WM603" and float(target.w.abs().sum()) == 0.0
    src["w"] = torch.tensor([1.0, 6e4])  # the same cast, in range
    wmap.apply(wmap.parse_spec('wmap 1\noption dtype = "target"\nw -> w\n'), source=src, target=target)
    assert target.w.tolist() == [1.0, 60000.0]


def test_fresh_copy_is_contiguous_owned_and_outlives_its_mapping() -> None:
    import gc

    from wmap.sinks.base import PARALLEL_MIN_ELEMENTS, fresh_copy
    for src in (torch.randn(1024, 1024).t(), torch.randn(700, 700).to(torch.bfloat16), torch.randn(3, 5)):
        copy = fresh_copy(src)
        gc.collect()  # nothing but the tensor holds the anonymous mapping
        assert copy.is_contiguous() and copy.dtype == src.dtype and torch.equal(copy, src)
        assert copy.untyped_storage().data_ptr() != src.untyped_storage().data_ptr()
        copy.add_(1)  # writable, and writing it leaves the source alone
        assert not torch.equal(copy, src)
    assert torch.randn(1024, 1024).numel() >= PARALLEL_MIN_ELEMENTS > 15


def test_bf16_stays_native() -> None:
    src = {"w": torch.randn(4, 4, dtype=torch.bfloat16)}
    lin = torch.nn.Linear(4, 4, bias=False).to(torch.bfloat16)
    wmap.apply(wmap.parse_spec("wmap 1\nw -> weight | transpose\n"), source=src, target=lin)
    assert torch.equal(lin.weight, src["w"].T)


def test_source_and_target_may_be_the_same_model() -> None:
    m = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(3)])
    before = [m[i].weight.detach().clone() for i in range(3)]
    spec = wmap.parse_spec("wmap 1\n2.{p} -> 0.{p}\n{i:int}.{p} -> {i+1}.{p}\n")
    wmap.apply(spec, source=m.state_dict(), target=m)  # rotate layers in place: reads happen before writes
    assert torch.equal(m[1].weight, before[0]) and torch.equal(m[2].weight, before[1])
    assert torch.equal(m[0].weight, before[2])


def test_large_transposing_copies_run_on_workers_and_keep_parameters_trainable() -> None:
    """Transposes of >= 2**18 elements are copied on worker threads at commit (the threshold is
    the sink's): values must be exact, and the parameters stay trainable leaves."""
    import torch

    from wmap.sinks.base import PARALLEL_MIN_ELEMENTS

    src = {f"{i}.weight": torch.randn(512, 512) for i in range(3)} | {f"{i}.bias": torch.randn(512) for i in range(3)}
    assert src["0.weight"].numel() >= PARALLEL_MIN_ELEMENTS
    model = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(3)])
    spec = wmap.parse_spec("wmap 1\n{i:int}.weight -> {i}.weight | transpose\n{i:int}.bias -> {i}.bias\n")
    wmap.apply(spec, source=src, target=model)
    for i in range(3):
        assert torch.equal(model[i].weight, src[f"{i}.weight"].t())
        assert model[i].weight.requires_grad and model[i].weight.is_leaf
    model(torch.randn(2, 512)).sum().backward()
    assert model[0].weight.grad is not None


def test_apply_from_a_spec_parses_each_checkpoint_once(backbone_file: tuple[Backbone, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`wmap.apply(spec, ...)` plans and executes from the same open readers; a saved plan
    re-opens (and re-checks) its sources, since they may have changed since it was made."""
    from wmap.formats import safetensors_file

    old, path = backbone_file
    calls = {"n": 0}
    real = safetensors_file.read_header

    def counting(p: object) -> object:
        calls["n"] += 1
        return real(p)  # type: ignore[arg-type]

    monkeypatch.setattr(safetensors_file, "read_header", counting)
    spec = wmap.parse_spec(BACKBONE)
    wmap.apply(spec, source=path, target=NewArch())
    assert calls["n"] == 1
    plan = wmap.plan(spec, source=path, target=NewArch())
    wmap.apply(plan, source=path, target=NewArch())
    assert calls["n"] == 3


def test_a_splice_into_a_factory_target_builds_it_for_real() -> None:
    """A splice keeps the rest of the target, so a factory's model built on the meta device is rebuilt with
    values (as for `keep`), not read on meta (WM602)."""
    rows = torch.ones(4, 8)
    report = wmap.apply(wmap.parse_spec("wmap 1\nemb -> emb.weight | splice(0, stop=4)\n"), source={"emb": rows},
                        target="tests.support.torch_models:tied_lm", show_progress=False)
    w = report.target.emb.weight.detach()
    assert not w.is_meta and torch.equal(w[:4], rows) and bool(w[4:].abs().sum() > 0)
