"""Source and target shapes for the example specs, like the real checkpoints they port: what the
golden plans and the example tests plan against."""

from __future__ import annotations

import re
from collections.abc import Callable

Shapes = dict[str, tuple[int, ...]]


def _resnet(classes: int, c: int = 4) -> Shapes:
    """torchvision ResNet names (two blocks per stage), every channel count `c`."""
    t: Shapes = {"conv1.weight": (c, 3, 3, 3)}
    bn = ("weight", "bias", "running_mean", "running_var")
    t.update({f"bn1.{p}": (c,) for p in bn} | {"bn1.num_batches_tracked": ()})
    for s in range(1, 5):
        for b in range(2):
            for k in (1, 2, 3):
                t[f"layer{s}.{b}.conv{k}.weight"] = (c, c, 1, 1)
                t.update({f"layer{s}.{b}.bn{k}.{p}": (c,) for p in bn})
                t[f"layer{s}.{b}.bn{k}.num_batches_tracked"] = ()
        t[f"layer{s}.0.downsample.0.weight"] = (c, c, 1, 1)
        t.update({f"layer{s}.0.downsample.1.{p}": (c,) for p in bn})
        t[f"layer{s}.0.downsample.1.num_batches_tracked"] = ()
    t.update({"fc.weight": (classes, c), "fc.bias": (classes,)})
    return t


def _backbone_new_head() -> tuple[dict[str, Shapes], Shapes]:
    src = _resnet(1000)
    tgt: Shapes = {}
    renames = [(r"conv1\.weight", "backbone.stem.conv.weight"),
               (r"bn1\.(weight|bias|running_mean|running_var)", r"backbone.stem.norm.\1"),
               (r"layer(\d)\.(\d)\.conv(\d)\.weight", "backbone.stages.{s}.blocks.\\2.conv\\3.weight"),
               (r"layer(\d)\.(\d)\.bn(\d)\.(weight|bias|running_mean|running_var)",
                "backbone.stages.{s}.blocks.\\2.norm\\3.\\4"),
               (r"layer(\d)\.0\.downsample\.0\.weight", "backbone.stages.{s}.blocks.0.shortcut.conv.weight"),
               (r"layer(\d)\.0\.downsample\.1\.(weight|bias|running_mean|running_var)",
                "backbone.stages.{s}.blocks.0.shortcut.norm.\\2")]
    for name, shape in src.items():
        for pat, repl in renames:
            m = re.fullmatch(pat, name)
            if m:
                stage = str(int(m.group(1)) - 1) if name.startswith("layer") else ""
                tgt[m.expand(repl).replace("{s}", stage)] = shape
    tgt.update({"head.proj.weight": (8, 4, 1, 1), "head.proj.bias": (8,), "head.norm.weight": (8,),
                "head.norm.bias": (8,), "head.fc.weight": (20, 8), "head.fc.bias": (20,)})
    return {"src": src}, tgt


def _torch_to_keras() -> tuple[dict[str, Shapes], Shapes]:
    src: Shapes = {}
    tgt: Shapes = {}
    chans = [3, 4, 6, 8]
    for n in range(3):
        i, o = chans[n], chans[n + 1]
        src[f"features.{n}.conv.weight"], tgt[f"block{n}_conv.kernel"] = (o, i, 3, 3), (3, 3, i, o)
        src[f"features.{n}.conv.bias"], tgt[f"block{n}_conv.bias"] = (o,), (o,)
        for a, b in zip(("weight", "bias", "running_mean", "running_var"),
                        ("gamma", "beta", "moving_mean", "moving_variance"), strict=True):
            src[f"features.{n}.bn.{a}"], tgt[f"block{n}_bn.{b}"] = (o,), (o,)
        src[f"features.{n}.bn.num_batches_tracked"] = ()
    src["classifier.fc1.weight"], tgt["dense_1.kernel"] = (16, 8), (8, 16)
    src["classifier.fc1.bias"], tgt["dense_1.bias"] = (16,), (16,)
    src["classifier.fc2.weight"], tgt["dense_2.kernel"] = (10, 16), (16, 10)
    src["classifier.fc2.bias"], tgt["dense_2.bias"] = (10,), (10,)
    return {"src": src}, tgt


def _fused_qkv_split(e: int = 8, layers: int = 2, vocab: int = 50, ctx: int = 16) -> tuple[dict[str, Shapes], Shapes]:
    src: Shapes = {"wte.weight": (vocab, e), "wpe.weight": (ctx, e), "ln_f.weight": (e,), "ln_f.bias": (e,)}
    tgt: Shapes = {"embed_tokens.weight": (vocab, e), "embed_positions.weight": (ctx, e), "norm.weight": (e,),
                   "norm.bias": (e,), "lm_head.weight": (vocab, e)}
    for i in range(layers):
        src.update({f"h.{i}.attn.c_attn.weight": (e, 3 * e), f"h.{i}.attn.c_attn.bias": (3 * e,),
                    f"h.{i}.attn.c_proj.weight": (e, e), f"h.{i}.attn.c_proj.bias": (e,),
                    f"h.{i}.mlp.c_fc.weight": (e, 4 * e), f"h.{i}.mlp.c_fc.bias": (4 * e,),
                    f"h.{i}.mlp.c_proj.weight": (4 * e, e), f"h.{i}.mlp.c_proj.bias": (e,),
                    f"h.{i}.attn.bias": (1, 1, ctx, ctx)})
        tgt.update({f"layers.{i}.attn.{q}.weight": (e, e) for q in "qkvo"})
        tgt.update({f"layers.{i}.attn.{q}.bias": (e,) for q in "qkvo"})
        tgt.update({f"layers.{i}.mlp.up.weight": (4 * e, e), f"layers.{i}.mlp.up.bias": (4 * e,),
                    f"layers.{i}.mlp.down.weight": (e, 4 * e), f"layers.{i}.mlp.down.bias": (e,)})
        for n in (1, 2):
            src.update({f"h.{i}.ln_{n}.{p}": (e,) for p in ("weight", "bias")})
            tgt.update({f"layers.{i}.norm{n}.{p}": (e,) for p in ("weight", "bias")})
    return {"src": src}, tgt


def _vocab_growth(vocab: int = 32, e: int = 8) -> tuple[dict[str, Shapes], Shapes]:
    src: Shapes = {"model.embed_tokens.weight": (vocab, e), "lm_head.weight": (vocab, e), "model.norm.weight": (e,)}
    for i in range(2):
        src.update({f"model.layers.{i}.self_attn.{p}.weight": (e, e) for p in ("q_proj", "k_proj", "v_proj")})
        src[f"model.layers.{i}.input_layernorm.weight"] = (e,)
    tgt = dict(src, **{"model.embed_tokens.weight": (vocab + 8, e), "lm_head.weight": (vocab + 8, e)})
    return {"src": src}, tgt


def _two_source_merge(e: int = 8) -> tuple[dict[str, Shapes], Shapes]:
    vit: Shapes = {"patch_embed.proj.weight": (e, 3, 4, 4), "patch_embed.proj.bias": (e,), "cls_token": (1, 1, e),
                   "pos_embed": (1, 5, e), "blocks.0.attn.qkv.weight": (3 * e, e), "norm.weight": (e,),
                   "head.weight": (10, e), "head.bias": (10,)}
    return {"base": vit, "tuned": vit}, vit


def _freeze_lr() -> tuple[dict[str, Shapes], Shapes]:
    return {"src": _resnet(1000)}, _resnet(10)


CHECKPOINTS: dict[str, Callable[[], tuple[dict[str, Shapes], Shapes]]] = {
    "backbone_new_head": _backbone_new_head, "torch_to_keras": _torch_to_keras,
    "fused_qkv_split": _fused_qkv_split, "vocab_growth": _vocab_growth,
    "two_source_merge": _two_source_merge, "freeze_lr": _freeze_lr,
}


def _moe_experts(e: int = 8, ffn: int = 16, experts: int = 12, layers: int = 2, vocab: int = 32
                 ) -> tuple[dict[str, Shapes], Shapes]:
    """Hugging Face Mixtral names (one tensor per expert) and a stacked-experts target; twelve experts, so
    string order (0, 1, 10, 11, 2, ...) and index order differ."""
    src: Shapes = {"model.embed_tokens.weight": (vocab, e), "model.norm.weight": (e,), "lm_head.weight": (vocab, e)}
    tgt: Shapes = {"embed.weight": (vocab, e), "norm.weight": (e,), "lm_head.weight": (vocab, e)}
    for i in range(layers):
        p = f"model.layers.{i}"
        src.update({f"{p}.self_attn.{q}_proj.weight": (e, e) for q in "qkvo"})
        src.update({f"{p}.{n}_layernorm.weight": (e,) for n in ("input", "post_attention")})
        src[f"{p}.block_sparse_moe.gate.weight"] = (experts, e)
        for x in range(experts):
            src.update({f"{p}.block_sparse_moe.experts.{x}.{w}.weight": (ffn, e) for w in ("w1", "w3")})
            src[f"{p}.block_sparse_moe.experts.{x}.w2.weight"] = (e, ffn)
        tgt.update({f"layers.{i}.attn.{q}.weight": (e, e) for q in "qkvo"})
        tgt.update({f"layers.{i}.norm{n}.weight": (e,) for n in (1, 2)})
        tgt[f"layers.{i}.moe.router.weight"] = (experts, e)
        tgt.update({f"layers.{i}.moe.{w}_proj": (experts, ffn, e) for w in ("gate", "up")})
        tgt[f"layers.{i}.moe.down_proj"] = (experts, e, ffn)
    return {"src": src}, tgt


CHECKPOINTS["moe_experts"] = _moe_experts
