"""Property tests for the compiler and plans (issue 7).

1. Random inventories and random specs (rules built from the inventory's own names with
   wildcards, captures and alternations; drops, inits, keeps, `optional`, random shapes that
   sometimes mismatch): `compile_plan` either returns a Plan with exactly-once accounting,
   checked directly on the Plan, or raises WmapError; never any other exception. Plans are
   deterministic.
2. Random chains of 1:1 transforms, through the whole pipeline: written as spec text (each
   resolved transform's `describe()`), compiled, and executed. The plan's inferred shapes equal
   the actual shapes on numpy and torch, and the file the apply writes holds the numpy result.
   This extends tests/transforms/test_transforms_properties.py (which checks each transform's `infer`
   against its `apply`) and reuses its `chains` strategy.
3. Plans made only of invertible steps (permutes, reshapes, rearranges, gate reorders, layout
   presets, split/chunk/unstack and concat/stack): applying the plan, then the inverse plan
   built programmatically from `Transform.inverse()`, gives back the source bit for bit
   (random bit patterns, NaN payloads included).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from tests.support.transform_strategies import chains as transform_chains
from wmap.core.errors import WmapError
from wmap.core.inventory import Inventory, TensorMeta
from wmap.formats._common import np_dtype
from wmap.lang import parse_spec
from wmap.planning.compiler import compile_plan
from wmap.planning.plan import Plan, SourceRef, Step
from wmap.run.execute import apply_plan
from wmap.transforms import ArrayMeta, InferContext, Transform, TransformError, build, get_ops


def budget(n: int) -> settings:
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HAS_TORCH = True
try:
    import torch  # noqa: F401
except ImportError:  # pragma: no cover
    HAS_TORCH = False


# == 1. random specs compile with exactly-once accounting, or fail with WmapError =====================

PREFIXES = ["enc", "dec", "head", "layers.0", "layers.1", "layers.12", "module.enc", "blocks.0.attn"]
LEAVES = ["weight", "bias", "q.weight", "k.weight", "norm.weight", "running_mean", "num_batches_tracked"]
RENAMES = {"enc": "encoder", "dec": "decoder", "layers": "blocks", "head": "classifier", "module.": ""}
DTYPES = ["float32", "float32", "float32", "float16", "bfloat16", "int64"]

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


def _rename(name: str) -> str:
    for a, b in RENAMES.items():
        name = name.replace(a, b)
    return name


@st.composite
def inventories(draw: Any) -> tuple[Inventory, Inventory]:
    names = draw(st.lists(st.sampled_from([f"{p}.{leaf}" for p in PREFIXES for leaf in LEAVES]),
                          min_size=1, max_size=9, unique=True))
    src = [TensorMeta(n, draw(shapes), draw(st.sampled_from(DTYPES))) for n in names]
    tgt: dict[str, TensorMeta] = {}
    for m in src:
        if draw(st.integers(0, 9)) == 0:
            continue  # a source with no counterpart
        name = _rename(m.name) if draw(st.booleans()) else m.name
        shape = m.shape if draw(st.integers(0, 5)) else draw(shapes)  # sometimes a mismatch
        dtype = m.dtype if draw(st.integers(0, 5)) else draw(st.sampled_from(DTYPES))
        tgt.setdefault(name, TensorMeta(name, shape, dtype))
    for extra in draw(st.lists(st.sampled_from(["classifier.bias", "pos_embed", "blocks.3.weight"]), max_size=2)):
        tgt.setdefault(extra, TensorMeta(extra, draw(shapes), "float32"))
    assume(tgt)
    metas = list(tgt.values())
    tied: list[tuple[str, str]] = []
    if len(metas) >= 2 and draw(st.booleans()):
        a, b = draw(st.permutations(metas))[:2]
        metas = [m if m.name != a.name else TensorMeta(a.name, b.shape, b.dtype) for m in metas]
        tied.append((a.name, b.name))
    return (Inventory.from_metas(src, "src", "torch"),
            Inventory.from_metas(metas, "tgt", draw(st.sampled_from(["torch", "keras", None])), tied))


@st.composite
def source_pattern(draw: Any, name: str) -> tuple[str, list[str]]:
    """A pattern generalising `name`, and the capture names it binds."""
    segs = name.split(".")
    out: list[str] = []
    caps: list[str] = []
    for k, seg in enumerate(segs):
        choice = draw(st.integers(0, 9))
        if choice <= 4:
            out.append(seg)
        elif choice == 5:
            out.append("*")
        elif choice == 6:
            cap = f"c{k}"
            caps.append(cap)
            out.append(f"{{{cap}:int}}" if seg.isdigit() and draw(st.booleans()) else f"{{{cap}}}")
        elif choice == 7:
            out.append("{" + ",".join(sorted({seg, draw(st.sampled_from(LEAVES + PREFIXES)).split(".")[0]})) + "}")
        elif choice == 8 and k == len(segs) - 1:
            out.append("**")
        else:
            out.append(seg)
    return ".".join(out), caps


@st.composite
def specs(draw: Any, src: Inventory, tgt: Inventory) -> str:
    lines = ["wmap 1"]
    if draw(st.booleans()):
        lines.append(f"option strict = {draw(st.sampled_from(['true', 'false']))}")
    if draw(st.integers(0, 3)) == 0:
        lines.append(f'option dtype = "{draw(st.sampled_from(["strict", "widen", "target"]))}"')
    if draw(st.integers(0, 3)) == 0:
        lines.append('option strip_prefix = "module."')
    tnames = list(tgt.names)
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(src.names))
        pat, caps = draw(source_pattern(name))
        target = draw(st.sampled_from(tnames + [_rename(name)]))
        tsegs = target.split(".")
        if caps and draw(st.booleans()):
            k = draw(st.integers(0, len(tsegs) - 1))
            tsegs[k] = "{" + draw(st.sampled_from(caps)) + "}"
        chain = draw(st.sampled_from(["", "", "", " | transpose", " | cast(\"float32\")", " | reshape([-1])",
                                      " | split(0)", " | flip(0)"]))
        optional = "optional " if draw(st.integers(0, 4)) == 0 else ""
        lines.append(f"{optional}{pat} -> {'.'.join(tsegs)}{chain}")
    for _ in range(draw(st.integers(0, 2))):
        pat, _ = draw(source_pattern(draw(st.sampled_from(src.names))))
        lines.append(f"drop {'?' if draw(st.booleans()) else ''}{pat}")
    for _ in range(draw(st.integers(0, 2))):
        pat, _ = draw(source_pattern(draw(st.sampled_from(tnames))))
        init = draw(st.sampled_from(["zeros", "ones", "normal(std=0.02)"]))
        lines.append(f"init {'?' if draw(st.booleans()) else ''}{pat} = {init}")
    if draw(st.integers(0, 3)) == 0:
        pat, _ = draw(source_pattern(draw(st.sampled_from(tnames))))
        lines.append(f"keep ?{pat}")
    return "\n".join(lines) + "\n"


@st.composite
def compile_inputs(draw: Any) -> tuple[Inventory, Inventory, str]:
    src, tgt = draw(inventories())
    return src, tgt, draw(specs(src, tgt))


@st.composite
def coherent_inputs(draw: Any) -> tuple[Inventory, Inventory, str]:
    """A spec that fits its inventories (prefix rules with `{c:**}` captures, exact rules, leaf
    alternations, drops, inits, a tied alias), then sometimes one perturbation: a shape or dtype
    changed, a drop or rule removed, a rule duplicated."""
    pairs = draw(st.lists(st.tuples(st.sampled_from(PREFIXES), st.sampled_from(LEAVES)), min_size=1, max_size=10,
                          unique=True))
    renamed = {p: draw(st.booleans()) for p in PREFIXES}
    src: list[TensorMeta] = []
    tgt: dict[str, TensorMeta] = {}
    drops: list[str] = []
    mapped: dict[str, list[tuple[str, str]]] = {}
    for p, leaf in pairs:
        m = TensorMeta(f"{p}.{leaf}", draw(shapes), draw(st.sampled_from(DTYPES)))
        src.append(m)
        tp = _rename(p) if renamed[p] else p
        tname = f"{tp}.{leaf}"
        if tname in tgt or draw(st.integers(0, 7)) == 0:
            drops.append(m.name)
            continue
        tgt[tname] = TensorMeta(tname, m.shape, m.dtype)
        mapped.setdefault(p, []).append((leaf, tname))
    lines = ["wmap 1"]
    for p, items in mapped.items():
        tp = _rename(p) if renamed[p] else p
        style = draw(st.sampled_from(["prefix", "exact", "alternation"]))
        if style == "prefix":
            lines.append(f"{p}.{{c:**}} -> {tp}.{{c}}")
        elif style == "alternation" and len(items) > 1:
            leaves = ",".join(leaf for leaf, _ in items)
            lines.append(f"{p}.{{{leaves}}} -> {tp}.{{{leaves}}}")
        else:
            lines += [f"{p}.{leaf} -> {tname}" for leaf, tname in items]
    if drops:
        lines.append("drop " + ", ".join(drops))
    for extra in draw(st.lists(st.sampled_from(["pos_embed", "classifier.extra.bias"]), max_size=2, unique=True)):
        tgt[extra] = TensorMeta(extra, draw(shapes), "float32")
        lines.append(f"init {extra} = {draw(st.sampled_from(['zeros', 'normal(std=0.02)']))}")
    tied: list[tuple[str, str]] = []
    if tgt and draw(st.booleans()):
        canon = draw(st.sampled_from(sorted(tgt)))
        tgt["tied.alias"] = TensorMeta("tied.alias", tgt[canon].shape, tgt[canon].dtype)
        tied.append(("tied.alias", canon))
    assume(tgt)
    perturb = draw(st.sampled_from(["none", "none", "shape", "dtype", "lose_line", "repeat_line"]))
    if perturb in ("shape", "dtype"):
        name = draw(st.sampled_from(sorted(tgt)))
        m = tgt[name]
        tgt[name] = TensorMeta(name, draw(shapes) if perturb == "shape" else m.shape,
                               draw(st.sampled_from(DTYPES)) if perturb == "dtype" else m.dtype)
    elif len(lines) > 1 and perturb != "none":
        k = draw(st.integers(1, len(lines) - 1))
        lines = lines[:k] + lines[k + 1:] if perturb == "lose_line" else lines[:k + 1] + lines[k:]
    return (Inventory.from_metas(src, "src", "torch"),
            Inventory.from_metas(list(tgt.values()), "tgt", "torch", tied), "\n".join(lines) + "\n")


def _check_accounting(plan: Plan, src: Inventory, tgt: Inventory, strict: bool) -> None:
    aliases = {a for a, _ in tgt.tied}
    written = Counter(t.name for s in plan.steps for t in s.targets)
    assert all(n == 1 for n in written.values()), f"targets written twice: {written}"
    assert set(written) <= set(tgt.names) - aliases, set(written) - (set(tgt.names) - aliases)
    for s in plan.steps:
        for t in s.targets:
            assert (t.shape, t.dtype) == (tgt[t.name].shape, tgt[t.name].dtype)
        if s.kind == "map":
            last = s.chain[-1] if s.chain else tuple((r.meta.shape, r.meta.dtype) for r in s.sources)
            assert len(last) == len(s.targets) or not s.transforms
        else:
            assert not s.sources or s.kind == "init"
    used = Counter((r.source, r.read_name) for s in plan.steps if s.kind == "map" for r in s.sources)
    dropped = Counter((d.source.source, d.source.read_name) for d in plan.dropped)
    assert all(n == 1 for n in used.values()), f"sources used twice: {used}"
    assert all(n == 1 for n in dropped.values()), f"sources dropped twice: {dropped}"
    assert not set(used) & set(dropped), "a source both used and dropped"
    everything = {("src", n) for n in src.names}
    assert set(used) | set(dropped) <= everything
    if strict:
        assert set(used) | set(dropped) == everything, everything - set(used) - set(dropped)
        assert set(written) == set(tgt.names) - aliases, set(tgt.names) - aliases - set(written)


@st.composite
def patterns_and_names(draw: Any) -> tuple[list[str], list[str]]:
    names = draw(st.lists(st.sampled_from([f"{p}.{leaf}" for p in PREFIXES for leaf in LEAVES]), min_size=1,
                          max_size=12, unique=True))
    pats = []
    for _ in range(draw(st.integers(1, 6))):
        name = draw(st.sampled_from(names))
        pat, _ = draw(source_pattern(name))
        if draw(st.integers(0, 3)) == 0:  # an alternation whose options span several segments
            head, _, tail = name.partition(".")
            other = draw(st.sampled_from(LEAVES))
            pat = f"{head}.{{{','.join(sorted({tail, other}))}}}" if tail != other else pat
        pats.append(pat)
    return pats, names


@budget(400)
@example((["layers.12.{k.weight,num_batches_tracked}"], ["layers.12.k.weight"]))  # a dotted option was missed
@given(patterns_and_names())
def test_indexed_matching_agrees_with_plain_regex(case: tuple[list[str], list[str]]) -> None:
    """The compiler's anchored candidate index picks exactly the first pattern whose regex matches."""
    from wmap.lang import patterns as P

    texts, names = case
    pats = tuple(P.parse(t) for t in texts)
    matcher = P.MultiMatcher(pats)
    for name in names:
        want = next((i for i, p in enumerate(pats) if p.compiled.fullmatch(name)), None)
        assert matcher.first(name) == want, f"{name}: index says {matcher.first(name)}, regexes say {want}"


@budget(300)
@given(st.one_of(coherent_inputs(), compile_inputs()))
def test_random_specs_compile_exactly_once_or_fail_cleanly(inputs: tuple[Inventory, Inventory, str]) -> None:
    src, tgt, text = inputs
    try:
        spec = parse_spec(text, path="p.wmap")
        plan = compile_plan(spec, {"src": src}, tgt)
    except WmapError as e:
        assert e.diagnostics and all(d.code.startswith("WM") for d in e.diagnostics)
        assert e.render()  # every diagnostic renders
        event(f"refused: {e.diagnostics[0].code}")
        return
    event(f"compiled: {len(plan.steps)} step(s), {len(plan.dropped)} dropped")
    _check_accounting(plan, src, tgt, spec.option("strict", True) is not False)
    again = compile_plan(parse_spec(text, path="p.wmap"), {"src": src}, tgt)
    assert again.to_json() == plan.to_json(), "the same spec and inventories gave a different plan"


def test_the_accounting_check_can_fail() -> None:
    """A plan that writes a target twice or uses a source twice is caught by `_check_accounting`."""
    src = Inventory.from_metas([TensorMeta("a", (2,), "float32")])
    tgt = Inventory.from_metas([TensorMeta("b", (2,), "float32"), TensorMeta("c", (2,), "float32")])
    plan = compile_plan(parse_spec("wmap 1\noption strict = false\na -> b\n"), {"src": src}, tgt)
    _check_accounting(plan, src, tgt, strict=False)
    with pytest.raises(AssertionError):
        _check_accounting(plan, src, tgt, strict=True)  # `c` is not filled
    doubled = dataclasses.replace(plan, steps=plan.steps * 2)
    with pytest.raises(AssertionError):
        _check_accounting(doubled, src, tgt, strict=False)


# == 2. random 1:1 chains through spec text, compiler and execution ==================================


def _run_chain(transforms: Sequence[Transform], x: np.ndarray, backend: str) -> list[Any]:
    ops = get_ops(backend)
    vals = [ops.asarray(x, None)]
    for t in transforms:
        (y,) = t.apply([vals[-1]], ops)
        vals.append(y)
    return vals


@budget(60)
@given(transform_chains())
def test_chains_through_the_pipeline(chain: tuple[tuple[int, ...], list[Transform], list[ArrayMeta]]) -> None:
    shape, steps, metas = chain
    assume(steps)
    text = 'wmap 1\noption nonfinite = "allow"\nx -> y | ' + " | ".join(t.describe() for t in steps) + "\n"
    spec = parse_spec(text)  # every resolved transform's description is valid spec text
    src = Inventory.from_metas([TensorMeta("x", shape, "float32")])
    tgt = Inventory.from_metas([TensorMeta("y", metas[-1].shape, metas[-1].dtype)])
    plan = compile_plan(spec, {"src": src}, tgt)
    (step,) = plan.steps
    assert [t.describe() for t in step.transforms] == [t.describe() for t in steps]
    assert [h[0] for h in step.chain] == [(m.shape, m.dtype) for m in metas[1:]]

    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    results = {}
    for backend in ["numpy", "torch"] if HAS_TORCH else ["numpy"]:
        ops = get_ops(backend)
        vals = _run_chain(step.transforms, x, backend)
        assert [ops.shape(v) for v in vals] == [m.shape for m in metas], backend
        assert [ops.dtype_name(v) for v in vals] == [m.dtype for m in metas], backend
        results[backend] = np.asarray(vals[-1]) if backend == "numpy" else get_ops("torch").to_numpy(vals[-1])  # type: ignore[attr-defined]

    from wmap.formats.safetensors_file import SafetensorsFile
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "y.safetensors"
        zeros = {"y": np.zeros(metas[-1].shape, np_dtype(metas[-1].dtype))}
        apply_plan(plan, source={"x": x}, target=zeros, out=str(out))
        with SafetensorsFile(out) as f:
            got = np.array(f.read("y"))
    assert got.shape == metas[-1].shape
    np.testing.assert_allclose(got.astype(np.float64), results["numpy"].astype(np.float64), rtol=1e-6, atol=1e-6)


# == 3. invertible plans: forward, then the inverse plan, gives back the source bit for bit ==========

CTX = InferContext(sources=(), targets=(), is_last=False)
PRESETS = ["linear_to_dense", "dense_to_linear", "conv_to_keras", "conv_from_keras", "conv_transpose_to_keras",
           "conv_transpose_from_keras", "lstm_kernel_to_keras", "lstm_kernel_from_keras", "gru_kernel_to_keras",
           "gru_kernel_from_keras", "mha_out_to_keras", "mha_proj_to_keras", "prelu_to_keras"]


def _lit(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    return str(v)


def _call(name: str, args: Sequence[Any]) -> str:
    return name if not args else f"{name}({', '.join(_lit(a) for a in args)})"


@st.composite
def invertible_call(draw: Any, shape: tuple[int, ...]) -> tuple[str, list[Any]]:
    r = len(shape)
    options = ["permute", "flip", "unsqueeze", "reshape", "preset", "preset", "preset"] if r else ["unsqueeze"]
    if r == 2:
        options.append("transpose")
    if r > 2:
        options += ["transpose_dims", "rearrange"]
    if 1 in shape:
        options.append("squeeze")
    if r and any(d % 2 == 0 for d in shape):
        options.append("gates")
    kind = draw(st.sampled_from(options))
    d = draw(st.integers(0, max(r - 1, 0)))
    if kind == "permute":
        return "permute", [list(draw(st.permutations(range(r))))]
    if kind == "transpose":
        return "transpose", []
    if kind == "transpose_dims":
        return "transpose", [d, draw(st.integers(0, r - 1))]
    if kind == "rearrange":
        names = [f"a{i}" for i in range(r)]
        perm = draw(st.permutations(names))
        right = " ".join(perm)
        if draw(st.booleans()):  # merge the first two output axes; the inverse splits them again
            right = f"({perm[0]} {perm[1]}) " + " ".join(perm[2:])
        return "rearrange", [f"{' '.join(names)} -> {right}"]
    if kind == "flip":
        return "flip", [d]
    if kind == "unsqueeze":
        return "unsqueeze", [draw(st.integers(0, r))]
    if kind == "squeeze":
        return "squeeze", [shape.index(1)]
    if kind == "reshape":
        if d + 1 < r and draw(st.booleans()):  # merge two neighbours
            return "reshape", [list(shape[:d]) + [-1] + list(shape[d + 2:])]
        return "reshape", [[-1]]
    if kind == "gates":
        dim = next(i for i, s in enumerate(shape) if s % 2 == 0)
        order = draw(st.sampled_from([("ab", "ba"), ("ifgo", "ifog"), ("rzn", "zrn")]))
        return "reorder_gates", [order[0], order[1], dim]
    return draw(st.sampled_from(PRESETS)), []


def _infer(name: str, args: Sequence[Any], meta: ArrayMeta) -> ArrayMeta | None:
    try:
        _, (out,) = build(name, list(args), []).infer([meta], CTX)
    except (TransformError, ValueError):
        return None  # not applicable to this shape (a preset's rank or divisibility): skip it
    return out


@st.composite
def invertible_specs(draw: Any) -> tuple[str, list[TensorMeta], list[TensorMeta]]:
    """A forward spec of 1-3 rules, each a fan-in, a chain of invertible 1:1 calls, or a fan-out."""
    lines = ['wmap 1', 'option nonfinite = "allow"']
    srcs: list[TensorMeta] = []
    tgts: list[TensorMeta] = []
    for i in range(draw(st.integers(1, 3))):
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
        dtype = draw(st.sampled_from(["float32", "float16", "bfloat16", "int32"]))
        calls: list[str] = []
        fan_in = draw(st.integers(0, 3)) == 0
        if fan_in:
            parts = draw(st.integers(2, 3))
            how = draw(st.sampled_from(["concat", "stack"]))
            d = draw(st.integers(0, len(shape) - 1 if how == "concat" else len(shape)))
            srcs += [TensorMeta(f"s{i}.p{k}", shape, dtype) for k in range(parts)]
            calls.append(_call(how, [d]))
            shape = shape[:d] + (shape[d] * parts,) + shape[d + 1:] if how == "concat" else \
                shape[:d] + (parts,) + shape[d:]
            source = f"s{i}.{{{','.join(f'p{k}' for k in range(parts))}}}"
        else:
            srcs.append(TensorMeta(f"s{i}", shape, dtype))
            source = f"s{i}"
        meta = ArrayMeta(shape, dtype)
        for _ in range(draw(st.integers(0, 4))):
            name, args = draw(invertible_call(meta.shape))
            out = _infer(name, args, meta)
            if out is not None and len(out.shape) <= 5:
                calls.append(_call(name, args))
                meta = out
        fan_out = not fan_in and draw(st.integers(0, 2)) == 0 and any(s > 1 for s in meta.shape)
        if fan_out:
            d = next(k for k, s in enumerate(meta.shape) if s > 1)
            how = draw(st.sampled_from(["split", "chunk", "unstack"]))
            n = meta.shape[d]
            if how == "split":
                cut = draw(st.integers(1, n - 1))
                sizes = [cut, n - cut]
            elif how == "chunk":
                k = next((k for k in (2, 3) if n % k == 0), n)
                sizes = [n // k] * k
            else:
                sizes = [1] * n
            calls.append(_call(how, [d]) if how != "chunk" else _call(how, [len(sizes), d]))
            for k, size in enumerate(sizes):
                part = meta.shape[:d] + ((size,) if how != "unstack" else ()) + meta.shape[d + 1:]
                tgts.append(TensorMeta(f"t{i}.q{k}", part, meta.dtype))
            target = f"t{i}.{{{','.join(f'q{k}' for k in range(len(sizes)))}}}"
        else:
            tgts.append(TensorMeta(f"t{i}", meta.shape, meta.dtype))
            target = f"t{i}"
        lines.append(f"{source} -> {target}" + "".join(f" | {c}" for c in calls))
    return "\n".join(lines) + "\n", srcs, tgts


def _resolve(chain: Sequence[Transform], ins: tuple[ArrayMeta, ...], targets: tuple[TensorMeta, ...],
             sources: tuple[TensorMeta, ...]) -> tuple[tuple[Transform, ...], tuple[tuple[tuple[Any, str], ...], ...]]:
    """Resolve a chain as the compiler does (a 1:1 transform after a fan-out applies to each part)."""
    metas, resolved, history = ins, [], []
    for k, t in enumerate(chain):
        ctx = InferContext(sources=sources, targets=targets, is_last=k == len(chain) - 1)
        if t.ARITY == "1:1" and len(metas) > 1:
            outs = [t.infer([m], ctx) for m in metas]
            r, metas = outs[0][0], tuple(o[1][0] for o in outs)
        else:
            r, metas = t.infer(metas, ctx)
        resolved.append(r)
        history.append(tuple((m.shape, m.dtype) for m in metas))
    assert tuple((m.shape, m.dtype) for m in metas) == tuple((t.shape, t.dtype) for t in targets)
    return tuple(resolved), tuple(history)


def inverse_plan(plan: Plan, src: Inventory, tgt: Inventory) -> Plan:
    """The plan that undoes `plan`: every step reversed, its transforms inverted in reverse order."""
    steps = []
    for s in plan.steps:
        assert s.kind == "map"
        chain = []
        for t in reversed(s.transforms):
            inv = t.inverse()
            assert inv is not None, f"{t.describe()} has no inverse"
            chain.append(inv)
        new_sources = tuple(SourceRef("src", t, t.name) for t in s.targets)
        new_targets = tuple(r.meta for r in s.sources)
        resolved, history = _resolve(chain, tuple(ArrayMeta(t.shape, t.dtype) for t in s.targets), new_targets,
                                     s.targets)
        steps.append(Step("map", new_targets, new_sources, resolved, history, s.rule, f"inverse of {s.rule_text}"))
    return Plan(tuple(steps), (), "sha256:inverse", (("src", tgt.fingerprint()),), src.fingerprint(),
                (("src", None),), None, (("src", "forward output"),), "original source", plan.options)


def _random_bits(meta: TensorMeta, rng: np.random.Generator) -> np.ndarray:
    dt = np_dtype(meta.dtype)
    n = int(np.prod(meta.shape, dtype=np.int64)) * dt.itemsize
    return rng.integers(0, 256, n, dtype=np.uint8).view(dt).reshape(meta.shape)


@budget(80)
@given(invertible_specs())
def test_invertible_plans_round_trip_bit_for_bit(case: tuple[str, list[TensorMeta], list[TensorMeta]]) -> None:
    from wmap.formats.safetensors_file import SafetensorsFile

    text, smetas, tmetas = case
    src, tgt = Inventory.from_metas(smetas), Inventory.from_metas(tmetas)
    plan = compile_plan(parse_spec(text), {"src": src}, tgt)
    assert all(t.inverse() is not None for s in plan.steps for t in s.transforms)
    event(f"{sum(len(s.transforms) for s in plan.steps)} transform(s)")
    back = inverse_plan(plan, src, tgt)
    rng = np.random.default_rng(0)
    data = {m.name: _random_bits(m, rng) for m in smetas}
    with tempfile.TemporaryDirectory() as d:
        fwd, rev = Path(d) / "fwd.safetensors", Path(d) / "rev.safetensors"
        apply_plan(plan, source=data, target={m.name: np.zeros(m.shape, np_dtype(m.dtype)) for m in tmetas}, out=str(fwd))
        apply_plan(back, source=str(fwd), target={m.name: np.zeros(m.shape, np_dtype(m.dtype)) for m in smetas},
                   out=str(rev))
        with SafetensorsFile(rev) as f:
            for m in smetas:
                got = np.array(f.read(m.name))
                assert got.shape == m.shape and got.dtype == data[m.name].dtype, m.name
                assert got.tobytes() == data[m.name].tobytes(), f"{m.name} differs after the round trip\n{text}"


def test_the_round_trip_check_can_fail() -> None:
    """An inverse that is not one (flip where transpose was) is caught by the byte comparison."""
    text = 'wmap 1\noption nonfinite = "allow"\ns0 -> t0 | transpose\n'
    smetas, tmetas = [TensorMeta("s0", (2, 2), "float32")], [TensorMeta("t0", (2, 2), "float32")]
    src, tgt = Inventory.from_metas(smetas), Inventory.from_metas(tmetas)
    plan = compile_plan(parse_spec(text), {"src": src}, tgt)
    back = inverse_plan(plan, src, tgt)
    wrong = dataclasses.replace(back, steps=tuple(dataclasses.replace(s, transforms=(build("flip", [0], []),))
                                                  for s in back.steps))
    data = {"s0": np.arange(4, dtype=np.float32).reshape(2, 2)}
    with tempfile.TemporaryDirectory() as d:
        apply_plan(plan, source=data, target={"t0": np.zeros((2, 2), np.float32)}, out=f"{d}/f.safetensors")
        for p, same in ((back, True), (wrong, False)):
            apply_plan(p, source=f"{d}/f.safetensors", target={"s0": np.zeros((2, 2), np.float32)}, out=f"{d}/r.safetensors")
            from wmap.formats.safetensors_file import SafetensorsFile
            with SafetensorsFile(f"{d}/r.safetensors") as f:
                assert (np.array(f.read("s0")).tobytes() == data["s0"].tobytes()) is same
