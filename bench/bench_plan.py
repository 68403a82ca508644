"""Planning speed: matching 100,000 tensor names against 50 rules, from metadata only.

    python -m bench.bench_plan
"""

from __future__ import annotations

import time

from wmap.core.inventory import Inventory, TensorMeta
from wmap.lang import parse_spec
from wmap.planning.compiler import compile_plan

N_LAYERS = 2000  # x 50 tensors per layer = 100,000 names


def inventories() -> tuple[Inventory, Inventory]:
    parts = [f"p{k}" for k in range(50)]
    src = [TensorMeta(f"model.layers.{i}.{p}.weight", (4, 4), "float32") for i in range(N_LAYERS) for p in parts]
    dst = [TensorMeta(f"blocks.{i}.{p}.kernel", (4, 4), "float32") for i in range(N_LAYERS) for p in parts]
    return Inventory.from_metas(src, "synthetic"), Inventory.from_metas(dst, "synthetic")


def spec_text() -> str:
    rules = "\n".join(f"model.layers.{{i:int}}.p{k}.weight -> blocks.{{i}}.p{k}.kernel | transpose" for k in range(50))
    return "wmap 1\n" + rules + "\n"


def match_only(src: Inventory) -> float:
    """The matching stage alone: every name against the 50 rules, first match wins."""
    from wmap.lang import patterns as P
    spec = parse_spec(spec_text())
    matcher = P.MultiMatcher(tuple(P.parse(r.sources[0]) for r in spec.rules))
    names = [t.name for t in src.tensors]
    start = time.perf_counter()
    hits = sum(1 for n in names if matcher.first_match(n) is not None)
    seconds = time.perf_counter() - start
    assert hits == len(names)
    return seconds


def main() -> None:
    src, dst = inventories()
    spec = parse_spec(spec_text())
    m = min(match_only(src) for _ in range(3))
    print(f"match 100,000 names against 50 rules: {m:.3f} s ({len(src) / m:,.0f} names/s)")
    start = time.perf_counter()
    plan = compile_plan(spec, {"src": src}, dst)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    text = plan.render()
    render_s = time.perf_counter() - start
    print(f"names: {len(src):,} source, {len(dst):,} target; rules: {len(spec.rules)}")
    print(f"compile (match + account + infer shapes): {seconds:.3f} s  ({len(src) / seconds:,.0f} names/s)")
    print(f"render text plan: {render_s:.3f} s ({len(text.splitlines())} lines, repeats folded)")


if __name__ == "__main__":
    main()
