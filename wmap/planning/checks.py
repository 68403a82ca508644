"""Plan-wide checks: coverage (exactly once), shape-mismatch causes, dtype policy and same-shape traps."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from wmap.core.errors import Diagnostic, DiagnosticBag, Severity, WmapError
from wmap.core.frameworks import layout_of
from wmap.core.inventory import Shape, TensorMeta, is_widening
from wmap.core.names import detect_prefix, fold_text, nearest
from wmap.lang.spec import Rule, Spec
from wmap.planning.plan import SourceRef, Step

# ---------------------------------------------------------------------------------------------
# coverage


def coverage_errors(spec: Spec, bag: DiagnosticBag, strict: bool, unused: Mapping[str, list[SourceRef]],
                    unfilled: list[TensorMeta], target_names: list[str], warnings: list[Diagnostic]) -> None:
    severity: Severity = "error" if strict else "warning"
    multi = len(unused) > 1
    for src, refs in unused.items():
        names = [r.name for r in refs]
        where = f" of source `{src}`" if multi else ""
        hint = _unused_hint(names, target_names, [m.name for m in unfilled])
        d = Diagnostic("WM402", severity, f"{len(names)} source tensor(s){where} are neither mapped nor dropped: "
                       f"{fold_text(names)}", None, hint)
        (bag.items if strict else warnings).append(d)
    if unfilled:
        names = [m.name for m in unfilled]
        d = Diagnostic("WM401", severity, f"{len(names)} target tensor(s) are not filled, initialised or kept: "
                       f"{fold_text(names)}", None, _unfilled_hint(names, [r.name for v in unused.values() for r in v]))
        (bag.items if strict else warnings).append(d)


def _unused_hint(names: list[str], targets: list[str], unfilled: list[str]) -> str:
    pre = detect_prefix(names, targets)
    if pre and pre[0] == "strip":
        return f"they carry a `{pre[1]}` wrapper prefix: add `option strip_prefix = \"{pre[1]}\"`"
    if pre and pre[0] == "add":
        return f"they match target names under `{pre[1]}`: map them with `** -> {pre[1]}**`"
    near = nearest(names[0], unfilled) if unfilled else []
    if near:
        return f"`{names[0]}` looks like unfilled target `{near[0]}`: add a rule, or `drop` what is unused on purpose"
    return "map them with a rule, or `drop` what is unused on purpose"


def _unfilled_hint(names: list[str], unused: list[str]) -> str:
    near = nearest(names[0], unused) if unused else []
    if near:
        return f"`{names[0]}` looks like unused source `{near[0]}`: add a rule for it"
    return "fill them with a rule, `init` new weights (e.g. `init head.** = normal(std=0.02)`), or `keep` them"


# ---------------------------------------------------------------------------------------------
# dtype policy


def dtype_check(got: str, want: str, policy: str) -> str | None:
    if got == want or policy == "target":
        return None
    if policy == "strict":
        return f"would land as {got} in a {want} tensor (dtype policy `strict`)"
    if is_widening(got, want):
        return None
    if got == "float64":  # NumPy's default dtype: what a newcomer's arrays are without asking
        return (f"would narrow float64 -> {want}, which loses precision (float64 is NumPy's default: "
                "`np.random.rand`, `np.array([0.1])`); `set_weights` and `copy_` cast silently, wmap asks")
    return f"would narrow {got} -> {want}, which loses precision"


# ---------------------------------------------------------------------------------------------
# shape mismatches, with a likely cause


def likely_cause(src: Shape, got: Shape, want: Shape, src_kind: str | None = None,
                 frameworks: tuple[str | None, str | None] = (None, None), name: str = "",
                 tgt_kind: str | None = None) -> str | None:
    """One sentence naming what a mismatch most likely is, and a fix that runs as written, or None."""
    if len(got) == len(want):
        if len(got) == 2 and got == want[::-1]:
            return "the shape is transposed: the target stores (in, out) where the source has (out, in); add `| transpose`"
        if sorted(got) == sorted(want):
            return _reordered(got, want, frameworks)
        diff = [i for i in range(len(got)) if got[i] != want[i]]
        if len(diff) == 1:
            d = diff[0]
            g, w = got[d], want[d]
            if len(got) == 3 and d == 1 and got[0] == 1:
                gs, ws = _grid(g), _grid(w)
                if gs and ws:
                    return (f"a position grid {gs[0]}x{gs[0]} -> {ws[0]}x{ws[0]} (prefix tokens {gs[1]}): "
                            f"add `| resize(prefix_tokens={gs[1]})`")
            if len(got) == 4 and d == 1:
                return f"input channels {g} -> {w}: add `| adapt_channels`"
            vocab = _vocabulary(name, src_kind, tgt_kind)
            if len(got) == 2 and d == 0 and (vocab or (vocab is None and abs(w - g) < g)):
                verb = f"grows by {w - g} rows: add `| pad(0)` (new rows initialised)" if w > g else \
                    f"shrinks by {g - w} rows: add `| slice(0, 0, {w})`"
                return f"a vocabulary delta: dim 0 {verb}"
            if len(got) <= 2 and vocab is False:  # a layer's width: another model size, not rows to add
                what = "output features" if d == 0 else "input features"
                return (f"the layers differ in width ({what} {g} -> {w}): the checkpoint looks like another model "
                        "size; map a checkpoint of the target's size, or change the target layer")
        ratios = {want[i] / got[i] for i in diff if got[i]}
        if len(ratios) == 1 and diff:
            r = ratios.pop()
            if r != 1:
                return (f"a constant width factor ({_ratio(r)}): the checkpoint looks like another model "
                        "variant (width, heads or hidden size)")
    elif math.prod(got) == math.prod(want):
        if _layout(frameworks[0]) not in (None, _layout(frameworks[1])) and _layout(frameworks[1]) is not None:
            # across frameworks a reshape alone keeps torch's (out, in) order inside Keras' einsum
            # kernel: the same size and a silently wrong layout (see WM310)
            return ("the same number of elements in another rank, across frameworks: a projection's kernel needs "
                    "its layout changed, not only its rank; use a preset (`mha_proj_to_keras(num_heads=...)`, "
                    "`mha_out_to_keras(num_heads=...)`) or `| transpose | reshape(...)`; `layout(auto)` with the "
                    "models in hand")
        return f"the same number of elements in another rank: add `| reshape({', '.join(map(str, want))})`"
    return None


_VOCAB_WORDS = ("embed", "wte", "word", "vocab", "token", "tok_", "lm_head")
_HIDDEN_WORDS = ("fc", "linear", "mlp", "proj", "attn", "attention", "dense", "hidden", "ffn", "layer", "conv")


def _vocabulary(name: str, src_kind: str | None, tgt_kind: str | None) -> bool | None:
    """Whether dim 0 of this matrix counts vocabulary rows (where adding rows is a real operation) or a
    hidden layer's width (another model size); None when neither the layers nor the name say."""
    low = name.lower()
    if "Embedding" in (src_kind, tgt_kind) or any(w in low for w in _VOCAB_WORDS):
        return True
    if src_kind is not None or tgt_kind is not None or any(w in low for w in _HIDDEN_WORDS):
        return False
    return None


def _reordered(got: Shape, want: Shape, frameworks: tuple[str | None, str | None]) -> str:
    """A hint for the same sizes in another order: the conv layout when the frameworks say so, else
    every permutation that fits (several fit when sizes repeat, and only the layout can choose)."""
    n = len(got)
    src, tgt = _layout(frameworks[0]), _layout(frameworks[1])
    if src is not None and tgt is not None and src != tgt and n in (3, 4, 5):
        to_last = (*range(2, n), 1, 0)  # (out, in, *k) -> (*k, in, out)
        to_first = (n - 1, n - 2, *range(n - 2))
        perm, preset = (to_last, "conv_to_keras") if src == "torch" else (to_first, "conv_from_keras")
        if tuple(got[i] for i in perm) == tuple(want):
            return (f"a convolution kernel in the other framework's layout: add `| {preset}` "
                    f"(the same as `| permute([{', '.join(map(str, perm))}])`)")
    fits = [p for p in itertools.permutations(range(n)) if tuple(got[i] for i in p) == tuple(want)]
    shown = ", ".join(f"`| permute([{', '.join(map(str, p))}])`" for p in fits[:3])
    if len(fits) == 1:
        return f"the same sizes in another order (a layout difference?): {shown}, or a layout preset"
    return (f"the same sizes in another order (a layout difference?): {len(fits)} orders give this shape "
            f"({shown}{', ...' if len(fits) > 3 else ''}) and only the layout can choose: name it with a preset "
            "(`wmap explain` lists them) or `| layout(auto)` with the models in hand")


def _grid(n: int) -> tuple[int, int] | None:
    for prefix in (0, 1, 2, 4, 8):
        s = math.isqrt(n - prefix) if n > prefix else 0
        if s > 1 and s * s == n - prefix:
            return s, prefix
    return None


def _ratio(r: float) -> str:
    return f"x{r:g}" if r >= 1 else f"/{1 / r:g}"


def shape_mismatch_diag(rule: Rule, rule_text: str, mismatches: Sequence[tuple[tuple[str, ...], Any]],
                        total: int, frameworks: tuple[str | None, str | None] = (None, None)) -> Diagnostic:
    """One diagnostic per rule: how many differ, one worked example, and the common cause."""
    names, info = mismatches[0]
    inputs = info["inputs"]
    lines = [f"source {', '.join(f'{i.name} {_shape(i.shape)}' for i in inputs)}"]
    for t, h in zip(info["chain"], info["history"]):
        lines.append(f"| {t.describe()} -> {', '.join(_shape(s) for s, _ in h)}")
    lines.append(f"target {', '.join(f'{t.name} {_shape(t.shape)}' for t in info['targets'])}")
    got = info["history"][-1][0][0] if info["history"] else inputs[0].shape
    causes = set()
    for _, inf in mismatches:
        g = inf["history"][-1][0][0] if inf["history"] else inf["inputs"][0].shape
        causes.add(likely_cause(inf["inputs"][0].shape, g, inf["targets"][0].shape, inf["inputs"][0].kind,
                                frameworks, inf["inputs"][0].name, inf["targets"][0].kind))
    cause = causes.pop() if len(causes) == 1 else None
    if cause is None:
        cause = likely_cause(inputs[0].shape, got, info["targets"][0].shape, inputs[0].kind, frameworks,
                             inputs[0].name, info["targets"][0].kind)
    count = f"{len(mismatches)} of {total} target(s)" if total > 1 else "the target"
    folded = fold_text([n for ns, _ in mismatches for n in ns], limit=3)
    msg = f"rule `{rule_text}`: shape mismatch for {count} ({folded}); nothing was loaded"
    return Diagnostic("WM301", "error", msg, rule.span, cause, tuple(lines))


def _shape(s: Shape) -> str:
    return "(" + ", ".join(map(str, s)) + ")"


# ---------------------------------------------------------------------------------------------
# same-shape traps: a shape check cannot catch these layouts, so the plan warns


_GATE_KINDS = {"LSTM", "GRU", "LSTMCell", "GRUCell"}
_GATE_AWARE = ("reorder_gates", "lstm_", "gru_", "layout")
_LAYOUT = {"transpose", "permute", "rearrange", "layout", "reshape"}
_REORDER = {"transpose", "permute", "rearrange", "layout"}  # what changes the order, not only the rank
_NO_TRANSPOSE = {"Embedding"}  # rows stay rows across frameworks
_PLAIN_DENSE = {"linear_to_dense", "dense_to_linear"}


def _core(shape: Shape) -> tuple[int, ...]:
    """The dims that are not 1: adding or removing unit dims reorders nothing."""
    return tuple(d for d in shape if d != 1)


def trap_warnings(step: Step, rule: Rule, src_fw: str | None, tgt_fw: str | None,
                  existing: Sequence[Diagnostic]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen = {(d.code, d.span) for d in existing}
    names = {t.NAME for t in step.transforms}

    def warn(code: str, msg: str, hint: str) -> None:
        if (code, rule.span) not in seen:
            out.append(Diagnostic(code, "warning", msg, rule.span, hint))
            seen.add((code, rule.span))

    src_layout, tgt_layout = _layout(src_fw), _layout(tgt_fw)
    cross = src_layout is not None and tgt_layout is not None and src_layout != tgt_layout
    tgt = step.targets[0]
    chose_layout = any(c.name == "layout" for c in rule.via)  # layout(auto) decided, even if on identity
    layout_named = chose_layout or any(n in _LAYOUT or "_to_" in n or "_from_" in n for n in names)
    if cross and len(tgt.shape) >= 2 and not layout_named and _permutation_invariant(tgt.shape):
        warn("WM310", f"`{tgt.name}` {tuple(tgt.shape)} moves from {src_fw} to {tgt_fw} with no layout "
             "transform, and a transposed layout would have the same shape",
             "check the layout: Linear (out, in) becomes Dense (in, out); use `| layout(auto)` or a preset")
    src = step.sources[0].meta if step.sources else None
    reordered = chose_layout or any(n in _REORDER or "_to_" in n or "_from_" in n for n in names)
    if cross and src is not None and "reshape" in names and not reordered and len(src.shape) == 2 \
            and src.kind not in _NO_TRANSPOSE and _core(src.shape) != _core(tgt.shape):
        # a torch Linear (out, in) reshaped straight into Keras' EinsumDense kernel (in, heads, dim)
        # has the right size and the wrong order: the reshape splits `out` where `in` belongs
        warn("WM310", f"`{tgt.name}` {tuple(tgt.shape)} is reshaped from {src_fw} `{src.name}` "
             f"{tuple(src.shape)} with no transpose; a projection's kernel changes layout across frameworks, "
             "and the wrong one has the same size",
             "transpose before reshaping (`| transpose | reshape(...)`), or use the preset "
             "(`mha_proj_to_keras(num_heads=...)`, `mha_out_to_keras(num_heads=...)`)")
    if names & _PLAIN_DENSE and any(m.attr("after_flatten") for m in (*(r.meta for r in step.sources), tgt)):
        warn("WM314", f"`{tgt.name}` reads a Flatten's output: PyTorch flattens (C, H, W), Keras (H, W, C), "
             "so a plain Linear <-> Dense layout gives the same shape and reorders the inputs",
             "use `| flatten_dense_to_keras(c, h, w)` (or `flatten_dense_from_keras`) with the feature map's "
             "size before the Flatten")
    # presets know their block order, and a fan-out over an index the target names enumerate
    # (`experts.{e}`) is ordered by that index, not by how the rule happens to list names
    if names & {"split", "chunk", "unstack"} and len(step.targets) > 1 and not step.order:
        sizes = {t.shape for t in step.targets}
        if len(sizes) == 1:
            warn("WM311", f"`{step.sources[0].name}` splits into {len(step.targets)} blocks of equal size; "
                 "a wrong order or interleaving has the same shapes",
                 f"check that the block order matches {', '.join(_block(t.name) for t in step.targets)}")
    kinds = {s.meta.kind for s in step.sources} | {t.kind for t in step.targets}
    if cross and kinds & _GATE_KINDS and not any(n.startswith(_GATE_AWARE) for n in names):
        warn("WM312", f"`{tgt.name}` belongs to a recurrent layer; gate blocks may be ordered differently "
             "across frameworks", "GRU needs its r/z gates swapped for Keras: use `gru_kernel_to_keras` etc., "
             "or `layout(auto)`")
    src_eps = [_eps(s.meta) for s in step.sources]
    tgt_eps = _eps(tgt)
    if tgt_eps is not None and src_eps and src_eps[0] is not None and not math.isclose(
            float(src_eps[0]), float(tgt_eps), rel_tol=1e-6):  # type: ignore[arg-type]
        warn("WM313", f"`{tgt.name}`: the target layer's epsilon ({tgt_eps}) differs from the source's "
             f"({src_eps[0]})", "outputs differ by about the epsilon difference; set the target layer's epsilon "
             "to match (PyTorch 1e-5, Keras 1e-3 by default)")
    return out


def _eps(meta: TensorMeta) -> object:
    """A normalisation layer's epsilon: PyTorch calls it `eps`, Keras `epsilon`."""
    eps = meta.attr("eps")
    return meta.attr("epsilon") if eps is None else eps


def _layout(fw: str | None) -> str | None:
    try:
        return layout_of(fw)
    except WmapError:  # an unknown name was reported where it was written
        return None


def _permutation_invariant(shape: Shape) -> bool:
    """Whether another layout of these sizes has the same shape: two equal dims other than 1 (a
    ViT class token (1, 1, 64) swaps only unit dims, which moves no value)."""
    core = _core(shape)
    return len(set(core)) < len(core)


def _block(name: str) -> str:
    """The name of the block a split target is (`attn.q.weight` -> `q`; an undotted name is its own)."""
    parts = name.rsplit(".", 2)
    return parts[-2] if len(parts) > 1 else name
