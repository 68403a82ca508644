"""Planning at MoE scale: DeepSeek-V3 and Qwen3-MoE-235B-A22B inventories, from their configs.

    python -m bench.bench_moe              # both models and the 1M-tensor inventory, a table
    python -m bench.bench_moe --no-1m      # the two models only

The inventories carry the exact names, shapes and dtypes of the published checkpoints, generated
here from the models' `config.json` values (below). They are built as wmap `Inventory` objects
directly, which is what the compiler plans against (a safetensors reader hands it the same thing
from a header): no weights and no header of that size are ever written.

- DeepSeek-V3 (`deepseek-ai/DeepSeek-V3`): 61 layers, the first 3 dense, then 256 routed experts and
  1 shared expert; MLA attention (q_lora_rank 1536, kv_lora_rank 512); every projection in fp8
  e4m3 with a float32 `weight_scale_inv` beside it, one scale per 128x128 block; and the one MTP
  module the checkpoint ships as layer 61. 91,991 tensors.
- Qwen3-MoE-235B-A22B (`Qwen/Qwen3-235B-A22B`): 94 layers, all MoE, 128 experts, GQA with 64
  query / 4 key-value heads, q_norm/k_norm; bfloat16. 36,945 tensors.

The spec fuses each layer's experts, one stacked tensor per projection (`experts.{e:int}.gate_proj
.weight -> experts.gate_proj.weight | stack(0)`), with the fp8 block scales stacked beside their
weights, and carries everything else across by name: the layout fused-MoE kernels load.

Timed: the full compile (match, group, account, infer shapes), the text and markdown renders, and
the plan's JSON save (`Plan.dumps`) and load (`json.loads` + the loader `wmap apply PLAN` uses).
Peak memory is the process's peak anonymous RSS (`RssAnon`, sampled every 2 ms) while compiling,
above what it held before (the inventories and the interpreter), each in a fresh process.

The 1M-tensor case is synthetic: 20,000 layers x 50 parameters, 50 rules with a transform each.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from typing import Any

from bench.harness import measure, run_once
from wmap.core.inventory import Inventory, TensorMeta
from wmap.lang import parse_spec
from wmap.planning.compiler import compile_plan
from wmap.planning.plan import Plan

# deepseek-ai/DeepSeek-V3 config.json (the values the tensor list depends on)
DEEPSEEK_V3: dict[str, Any] = {
    "hidden_size": 7168, "num_hidden_layers": 61, "first_k_dense_replace": 3, "moe_layer_freq": 1,
    "n_routed_experts": 256, "n_shared_experts": 1, "moe_intermediate_size": 2048, "intermediate_size": 18432,
    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128,
    "num_attention_heads": 128, "vocab_size": 129280, "num_nextn_predict_layers": 1, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                            "weight_block_size": [128, 128]},
}

# Qwen/Qwen3-235B-A22B config.json
QWEN3_MOE: dict[str, Any] = {
    "hidden_size": 4096, "num_hidden_layers": 94, "num_experts": 128, "moe_intermediate_size": 1536,
    "intermediate_size": 12288, "decoder_sparse_step": 1, "mlp_only_layers": [], "num_attention_heads": 64,
    "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936, "attention_bias": False,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}

FP8 = "float8_e4m3fn"


def deepseek_v3_tensors(cfg: dict[str, Any]) -> list[TensorMeta]:
    """The checkpoint's tensors, in the order of its index (layer by layer)."""
    h, bf = cfg["hidden_size"], cfg["torch_dtype"]
    bh, bw = cfg["quantization_config"]["weight_block_size"]
    heads, rope, nope, vdim = (cfg["num_attention_heads"], cfg["qk_rope_head_dim"], cfg["qk_nope_head_dim"],
                               cfg["v_head_dim"])
    out: list[TensorMeta] = []

    def norm(name: str, n: int) -> None:
        out.append(TensorMeta(name, (n,), bf))

    def fp8(name: str, rows: int, cols: int) -> None:  # a quantised projection and its block scales
        out.append(TensorMeta(f"{name}.weight", (rows, cols), FP8))
        out.append(TensorMeta(f"{name}.weight_scale_inv", (math.ceil(rows / bh), math.ceil(cols / bw)), "float32"))

    def mlp(prefix: str, inter: int) -> None:
        fp8(f"{prefix}.gate_proj", inter, h)
        fp8(f"{prefix}.up_proj", inter, h)
        fp8(f"{prefix}.down_proj", h, inter)

    def layer(i: int) -> None:
        p = f"model.layers.{i}"
        norm(f"{p}.input_layernorm.weight", h)
        norm(f"{p}.post_attention_layernorm.weight", h)
        a = f"{p}.self_attn"
        fp8(f"{a}.q_a_proj", cfg["q_lora_rank"], h)
        norm(f"{a}.q_a_layernorm.weight", cfg["q_lora_rank"])
        fp8(f"{a}.q_b_proj", heads * (nope + rope), cfg["q_lora_rank"])
        fp8(f"{a}.kv_a_proj_with_mqa", cfg["kv_lora_rank"] + rope, h)
        norm(f"{a}.kv_a_layernorm.weight", cfg["kv_lora_rank"])
        fp8(f"{a}.kv_b_proj", heads * (nope + vdim), cfg["kv_lora_rank"])
        fp8(f"{a}.o_proj", h, heads * vdim)
        if i < cfg["first_k_dense_replace"]:
            mlp(f"{p}.mlp", cfg["intermediate_size"])
            return
        out.append(TensorMeta(f"{p}.mlp.gate.weight", (cfg["n_routed_experts"], h), bf))
        out.append(TensorMeta(f"{p}.mlp.gate.e_score_correction_bias", (cfg["n_routed_experts"],), "float32"))
        for e in range(cfg["n_routed_experts"]):
            mlp(f"{p}.mlp.experts.{e}", cfg["moe_intermediate_size"])
        mlp(f"{p}.mlp.shared_experts", cfg["moe_intermediate_size"] * cfg["n_shared_experts"])

    out.append(TensorMeta("model.embed_tokens.weight", (cfg["vocab_size"], h), bf))
    for i in range(cfg["num_hidden_layers"]):
        layer(i)
    for i in range(cfg["num_hidden_layers"], cfg["num_hidden_layers"] + cfg["num_nextn_predict_layers"]):
        layer(i)  # the MTP module: a full MoE layer plus its own projections and head
        p = f"model.layers.{i}"
        out.append(TensorMeta(f"{p}.embed_tokens.weight", (cfg["vocab_size"], h), bf))
        norm(f"{p}.enorm.weight", h)
        norm(f"{p}.hnorm.weight", h)
        out.append(TensorMeta(f"{p}.eh_proj.weight", (h, 2 * h), bf))
        norm(f"{p}.shared_head.norm.weight", h)
        out.append(TensorMeta(f"{p}.shared_head.head.weight", (cfg["vocab_size"], h), bf))
    norm("model.norm.weight", h)
    out.append(TensorMeta("lm_head.weight", (cfg["vocab_size"], h), bf))
    return out


def qwen3_moe_tensors(cfg: dict[str, Any]) -> list[TensorMeta]:
    h, dt, hd = cfg["hidden_size"], cfg["torch_dtype"], cfg["head_dim"]
    q, kv, inter = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd, cfg["moe_intermediate_size"]
    out = [TensorMeta("model.embed_tokens.weight", (cfg["vocab_size"], h), dt)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        out += [TensorMeta(f"{p}.input_layernorm.weight", (h,), dt),
                TensorMeta(f"{p}.post_attention_layernorm.weight", (h,), dt),
                TensorMeta(f"{p}.self_attn.q_proj.weight", (q, h), dt),
                TensorMeta(f"{p}.self_attn.k_proj.weight", (kv, h), dt),
                TensorMeta(f"{p}.self_attn.v_proj.weight", (kv, h), dt),
                TensorMeta(f"{p}.self_attn.o_proj.weight", (h, q), dt),
                TensorMeta(f"{p}.self_attn.q_norm.weight", (hd,), dt),
                TensorMeta(f"{p}.self_attn.k_norm.weight", (hd,), dt),
                TensorMeta(f"{p}.mlp.gate.weight", (cfg["num_experts"], h), dt)]
        assert not cfg["mlp_only_layers"] and cfg["decoder_sparse_step"] == 1  # every layer is MoE
        for e in range(cfg["num_experts"]):
            out += [TensorMeta(f"{p}.mlp.experts.{e}.gate_proj.weight", (inter, h), dt),
                    TensorMeta(f"{p}.mlp.experts.{e}.up_proj.weight", (inter, h), dt),
                    TensorMeta(f"{p}.mlp.experts.{e}.down_proj.weight", (h, inter), dt)]
    out += [TensorMeta("model.norm.weight", (h,), dt), TensorMeta("lm_head.weight", (cfg["vocab_size"], h), dt)]
    return out


def fused(tensors: list[TensorMeta]) -> list[TensorMeta]:
    """The target: each layer's routed experts as one stacked tensor per projection (and per scale)."""
    out: list[TensorMeta] = []
    stacks: dict[str, list[TensorMeta]] = {}
    for t in tensors:
        head, sep, tail = t.name.partition(".mlp.experts.")
        if not sep:
            out.append(t)
            continue
        _, _, rest = tail.partition(".")  # drop the expert index
        name = f"{head}.mlp.experts.{rest}"
        if name not in stacks:
            stacks[name] = []
            out.append(TensorMeta(name, (), t.dtype))  # placeholder, in first-seen order
        stacks[name].append(t)
    return [TensorMeta(m.name, (len(stacks[m.name]), *stacks[m.name][0].shape), m.dtype) if m.name in stacks else m
            for m in out]


DEEPSEEK_SPEC = """wmap 1
# DeepSeek-V3 (fp8, block scales) -> fused experts: one (256, out, in) tensor per layer and projection
model.{embed_tokens,norm}.weight -> model.{embed_tokens,norm}.weight
lm_head.weight -> lm_head.weight
model.layers.{i:int}.{n}_layernorm.weight -> model.layers.{i}.{n}_layernorm.weight
model.layers.{i:int}.self_attn.{p}.weight -> model.layers.{i}.self_attn.{p}.weight
model.layers.{i:int}.self_attn.{p}.weight_scale_inv -> model.layers.{i}.self_attn.{p}.weight_scale_inv
model.layers.{i:int}.mlp.{p}_proj.{w} -> model.layers.{i}.mlp.{p}_proj.{w}
model.layers.{i:int}.mlp.gate.{w} -> model.layers.{i}.mlp.gate.{w}
model.layers.{i:int}.mlp.shared_experts.{p}_proj.{w} -> model.layers.{i}.mlp.shared_experts.{p}_proj.{w}
model.layers.{i:int}.mlp.experts.{e:int}.{p}_proj.weight -> model.layers.{i}.mlp.experts.{p}_proj.weight | stack(0)
model.layers.{i:int}.mlp.experts.{e:int}.{p}_proj.weight_scale_inv -> model.layers.{i}.mlp.experts.{p}_proj.weight_scale_inv | stack(0)
# the MTP module (layer 61)
model.layers.{i:int}.{x}.weight -> model.layers.{i}.{x}.weight
model.layers.{i:int}.shared_head.{x}.weight -> model.layers.{i}.shared_head.{x}.weight
"""

QWEN3_SPEC = """wmap 1
# Qwen3-MoE-235B-A22B (bf16) -> fused experts: one (128, out, in) tensor per layer and projection
model.{embed_tokens,norm}.weight -> model.{embed_tokens,norm}.weight
lm_head.weight -> lm_head.weight
model.layers.{i:int}.{n}_layernorm.weight -> model.layers.{i}.{n}_layernorm.weight
model.layers.{i:int}.self_attn.{p}_proj.weight -> model.layers.{i}.self_attn.{p}_proj.weight
model.layers.{i:int}.self_attn.{q,k}_norm.weight -> model.layers.{i}.self_attn.{q,k}_norm.weight
model.layers.{i:int}.mlp.gate.weight -> model.layers.{i}.mlp.gate.weight
model.layers.{i:int}.mlp.experts.{e:int}.{p}_proj.weight -> model.layers.{i}.mlp.experts.{p}_proj.weight | stack(0)
"""

N_1M = 20_000  # layers x 50 parameters


def synthetic_1m() -> tuple[str, Inventory, Inventory]:
    parts = [f"p{k}" for k in range(50)]
    src = [TensorMeta(f"model.layers.{i}.{p}.weight", (4, 4), "float32") for i in range(N_1M) for p in parts]
    dst = [TensorMeta(f"blocks.{i}.{p}.kernel", (4, 4), "float32") for i in range(N_1M) for p in parts]
    rules = "\n".join(f"model.layers.{{i:int}}.p{k}.weight -> blocks.{{i}}.p{k}.kernel | transpose" for k in range(50))
    return "wmap 1\n" + rules + "\n", Inventory.from_metas(src, "synthetic"), Inventory.from_metas(dst, "synthetic")


def model_case(name: str) -> tuple[str, Inventory, Inventory]:
    if name == "deepseek-v3":
        tensors, spec = deepseek_v3_tensors(DEEPSEEK_V3), DEEPSEEK_SPEC
    elif name == "qwen3-moe":
        tensors, spec = qwen3_moe_tensors(QWEN3_MOE), QWEN3_SPEC
    elif name == "synthetic-1m":
        return synthetic_1m()
    else:
        raise SystemExit(f"unknown case {name}")
    return spec, Inventory.from_metas(tensors, "safetensors"), Inventory.from_metas(fused(tensors), "fused experts")


def _time(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, CPU s of this process, value): on a shared machine the CPU time is the steadier one."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def run_case(name: str, full: bool) -> dict[str, Any]:
    """One case in this process: build the inventories, then run each stage once."""
    from wmap.api import Plan as ApiPlan
    from wmap.planning.serialise import plan_from_json
    try:
        from wmap.core.bulk import collector_paused
    except ImportError:  # an older wmap, benched for comparison
        from contextlib import nullcontext as collector_paused

    spec_text, src, dst = model_case(name)
    spec = parse_spec(spec_text)
    # memory first, on inventories of its own (the sampling thread would add to the CPU time, and an
    # inventory keeps its fingerprint once computed)
    mem = measure(lambda: compile_plan(spec, {"src": src}, dst))
    _, src, dst = model_case(name)
    *timed, plan = _time(lambda: compile_plan(spec, {"src": src}, dst))
    result: dict[str, Any] = {"case": name, "sources": len(src), "targets": len(dst), "steps": len(plan.steps),
                              "compile": timed, "peak_mb": mem["peak_anon_mb"] - mem["base_anon_mb"],
                              "base_mb": mem["base_anon_mb"]}
    if not full:
        return result
    *result["text"], text = _time(plan.render)
    result["text_lines"] = len(text.splitlines())
    *result["markdown"], _ = _time(lambda: plan.render("markdown"))
    *result["save"], blob = _time(plan.dumps)

    def load() -> Plan:  # what `wmap.load_plan` does once the file is read
        with collector_paused():
            data = json.loads(blob)
        return ApiPlan.of(plan_from_json(data))
    *result["load"], loaded = _time(load)
    result["json_mb"] = len(blob) / 2**20
    assert loaded.dumps() == blob, "the plan does not survive a JSON round trip"
    return result


CASES = ("deepseek-v3", "qwen3-moe", "synthetic-1m")
GOALS = {"deepseek-v3": "compile <= 1.0 s, text <= 0.3 s, save+load <= 0.5 s, peak <= 300 MB",
         "synthetic-1m": "compile <= 10 s"}
STAGES = ("compile", "text", "markdown", "save", "load")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-1m", action="store_true", help="skip the 1M-tensor inventory")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, full=args.case != "synthetic-1m")))
        return
    print("seconds as wall (CPU of the process); +peak: peak RssAnon while compiling, above the inventories")
    print(f"{'case':13} {'tensors':>9} {'steps':>6} " + " ".join(f"{s:>15}" for s in STAGES) +
          f" {'JSON MB':>7} {'+peak MB':>8}  goal")
    for case in CASES[:2] if args.no_1m else CASES:
        r = run_once("bench.bench_moe", "--case", case)
        cells = " ".join(f"{r[s][0]:>6.3f} ({r[s][1]:.3f})" if s in r else f"{'-':>15}" for s in STAGES)
        mb = f"{r['json_mb']:>7.1f}" if "json_mb" in r else f"{'-':>7}"
        print(f"{case:13} {r['sources']:>9,} {r['steps']:>6,} {cells} {mb} {r['peak_mb']:>8.0f}  {GOALS.get(case, '')}")


if __name__ == "__main__":
    main()
