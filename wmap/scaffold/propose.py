"""`wmap init`: a starting spec from two inventories, with how sure each line is.

Matching runs in passes, each on what the earlier ones left, from surest to least sure:

1. **exact**: the same name (after a wrapper prefix such as `module.` is stripped: **prefix**);
2. **rename**: the same layer path with the other framework's parameter name
   (weight/bias/running_mean/running_var <-> kernel|gamma/bias|beta/moving_mean/moving_variance);
3. **guess: shape+order**: tensors of one (layout-converted) shape and parameter role pair up in
   order, but only when both sides have the same number of them, and (beyond a unique shape) only
   when both inventories keep module order: a safetensors file stores names sorted, which says
   nothing about which layer comes first.

Every pair must also *convert*: equal shapes within a framework, or the PyTorch <-> Keras
preset (`linear_to_dense`, `conv_to_keras`, ...) producing the target's shape. What is left is
written as `| unresolved` / `= unresolved`, which `wmap check` rejects (WM117) until a person
decides. Nothing here reads weight data.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from wmap.core.errors import Diagnostic
from wmap.core.inventory import Inventory, TensorMeta, is_widening
from wmap.core.names import detect_prefix, nearest
from wmap.lang.spec import Call, Spec

EXACT, PREFIX, RENAME, GUESS = "exact", "prefix", "rename", "guess: shape+order"
NBT = "num_batches_tracked"

# torch parameter name -> Keras names it may have, in order of preference (and the reverse).
TORCH_TO_KERAS_LEAF: dict[str, tuple[str, ...]] = {
    "weight": ("kernel", "gamma", "embeddings", "alpha"), "bias": ("bias", "beta"),
    "running_mean": ("moving_mean",), "running_var": ("moving_variance",),
}
KERAS_TO_TORCH_LEAF: dict[str, tuple[str, ...]] = {
    "kernel": ("weight",), "gamma": ("weight",), "embeddings": ("weight",), "alpha": ("weight",),
    "bias": ("bias",), "beta": ("bias",), "moving_mean": ("running_mean",),
    "moving_variance": ("running_var",),
}
# A framework-neutral parameter role, so that shape+order only pairs like with like.
ROLES = {"weight": "w", "kernel": "w", "gamma": "w", "embeddings": "w", "alpha": "w",
         "bias": "b", "beta": "b",
         "running_mean": "mean", "moving_mean": "mean", "running_var": "var", "moving_variance": "var"}


@dataclass(frozen=True)
class Proposal:
    """One source tensor -> one target tensor, with the chain that converts it and how sure it is."""

    source: str   # as rules see it (after strip_prefix)
    target: str   # as rules see it (after target_strip_prefix)
    via: tuple[Call, ...]
    how: str


@dataclass(frozen=True)
class Leftover:
    """A tensor no pass could match, with the best guess and a note for the person who decides."""

    name: str
    meta: TensorMeta
    candidate: str | None
    note: str


@dataclass(frozen=True)
class Matching:
    proposals: tuple[Proposal, ...]
    drops: tuple[str, ...]             # visible source names to drop (num_batches_tracked, tied aliases)
    zero_inits: tuple[str, ...]        # visible target names to init with zeros (num_batches_tracked)
    sources: tuple[Leftover, ...]      # unresolved sources
    targets: tuple[Leftover, ...]      # unresolved targets
    strip_prefix: str | None
    target_strip_prefix: str | None
    source_names: tuple[str, ...]      # every visible source name (what patterns must not over-match)
    target_names: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.sources and not self.targets


KERAS_LEAVES = frozenset({"kernel", "gamma", "beta", "moving_mean", "moving_variance", "embeddings",
                          "recurrent_kernel", "depthwise_kernel"})
TORCH_LEAVES = frozenset({"weight", "running_mean", "running_var", NBT, "in_proj_weight", "in_proj_bias"})


def framework_of(inv: Inventory, flag: str | None = None) -> str | None:
    """The flag, else what the inventory says, else a guess from parameter names (a safetensors
    file does not say): Keras names kernels and gammas, PyTorch weights and running statistics."""
    if flag or inv.framework:
        return flag or inv.framework
    leaves = {t.name.rsplit(".", 1)[-1] for t in inv.tensors}
    keras, torch = bool(leaves & KERAS_LEAVES), bool(leaves & TORCH_LEAVES)
    return "keras" if keras and not torch else "torch" if torch and not keras else None


def _fw(framework: str | None) -> str | None:
    return "keras" if framework == "tf" else framework


def _strip(name: str, prefix: str | None) -> str:
    while prefix and name.startswith(prefix) and len(name) > len(prefix):
        name = name[len(prefix):]
    return name


def _natural(name: str) -> tuple[object, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def keeps_module_order(inv: Inventory) -> bool:
    """False for a file that stores tensors sorted by name within each dtype (safetensors): its order
    says nothing about the model's, so shape+order may only pair tensors whose shape is unique."""
    by_dtype: dict[str, list[str]] = {}
    for t in inv.tensors:
        by_dtype.setdefault(t.dtype, []).append(t.name)
    return len(inv) < 2 or not all(names == sorted(names) for names in by_dtype.values())


def _ordered(inv: Inventory) -> list[TensorMeta]:
    """Module order where the inventory has it; natural name order (`blocks.2` before `blocks.10`) if not."""
    if keeps_module_order(inv):
        return list(inv.tensors)
    return sorted(inv.tensors, key=lambda t: _natural(t.name))


def _prefixes(src: list[TensorMeta], tgt: list[TensorMeta]) -> tuple[str | None, str | None]:
    """A wrapper prefix to strip from the source (or the target) names, when that makes names line up."""
    s_names, t_names = [m.name for m in src], [m.name for m in tgt]
    s_set, t_set = set(s_names), set(t_names)
    only_s = [n for n in s_names if n not in t_set]
    only_t = [n for n in t_names if n not in s_set]
    found = detect_prefix(only_s, only_t)
    if found and found[0] == "strip" and len({_strip(n, found[1]) for n in s_names}) == len(s_names):
        return found[1], None
    back = detect_prefix(only_t, only_s)
    if back and back[0] == "strip" and len({_strip(n, back[1]) for n in t_names}) == len(t_names):
        return None, back[1]
    return None, None


class _Matcher:
    """The passes, over mutable 'still unmatched' lists; `result()` freezes what they found."""

    def __init__(self, source: Inventory, target: Inventory, source_fw: str | None, target_fw: str | None):
        self.fs, self.ft = _fw(framework_of(source, source_fw)), _fw(framework_of(target, target_fw))
        self.cross = bool(self.fs and self.ft and self.fs != self.ft
                          and {self.fs, self.ft} <= {"torch", "keras"})
        self.by_order = keeps_module_order(source) and keeps_module_order(target)
        aliases = {a for a, _ in target.tied}
        src, tgt = _ordered(source), [m for m in _ordered(target) if m.name not in aliases]
        self.sp, self.tp = _prefixes(src, tgt)
        self.src = [_visible(m, self.sp) for m in src]
        self.tgt = [_visible(m, self.tp) for m in tgt]
        self.renamed = {m.name for m, orig in zip(self.src, src, strict=True) if m.name != orig.name} | \
            {m.name for m, orig in zip(self.tgt, tgt, strict=True) if m.name != orig.name}
        self.source_aliases = {_strip(a, self.sp) for a, _ in source.tied}
        self.free_s: dict[str, TensorMeta] = {m.name: m for m in self.src}
        self.free_t: dict[str, TensorMeta] = {m.name: m for m in self.tgt}
        self.proposals: list[Proposal] = []
        self.notes: dict[str, str] = {}

    # -- conversion ----------------------------------------------------------------------------

    def convert(self, s: TensorMeta, t: TensorMeta) -> tuple[Call, ...] | None:
        """The chain turning `s` into `t` (layout preset, cast), or None when none fits."""
        if s.shape == t.shape and not self.cross:
            chain: tuple[Call, ...] = ()
        elif self.cross:
            preset = self._preset(s, t)
            if preset is None:
                return None
            chain = () if preset == "identity" else (Call(preset),)
        else:
            return None
        if s.dtype != t.dtype and not is_widening(s.dtype, t.dtype):
            chain += (Call("cast", (t.dtype,)),)
        return chain

    def _preset(self, s: TensorMeta, t: TensorMeta) -> str | None:
        from wmap.transforms import REGISTRY, ArrayMeta, InferContext, TransformError
        from wmap.transforms.auto import choose

        ctx = InferContext((s,), (t,), self.fs, self.ft)
        try:
            name = choose(ctx)[0]
        except TransformError:
            name = _rank_preset(len(s.shape), self.fs == "torch")
        try:
            _, outs = REGISTRY[name]().infer((ArrayMeta(s.shape, s.dtype),), ctx)
        except (TransformError, KeyError, TypeError, ValueError):
            return None
        return name if len(outs) == 1 and outs[0].shape == t.shape else None

    def predicted_shape(self, s: TensorMeta) -> tuple[int, ...]:
        """Where `s` lands under the usual layout: what shape+order groups by."""
        sh = s.shape
        if not self.cross or len(sh) < 2:
            return sh
        if len(sh) == 2:
            return sh[::-1]
        if self.fs == "torch":
            return (*sh[2:], sh[1], sh[0])
        return (sh[-1], sh[-2], *sh[:-2])

    # -- passes --------------------------------------------------------------------------------

    def take(self, s: TensorMeta, t: TensorMeta, via: tuple[Call, ...], how: str) -> None:
        del self.free_s[s.name], self.free_t[t.name]
        self.proposals.append(Proposal(s.name, t.name, via, how))

    def exact(self) -> None:
        for s in list(self.free_s.values()):
            t = self.free_t.get(s.name)
            if t is None:
                continue
            via = self.convert(s, t)
            if via is None:
                self.notes[s.name] = self.notes[t.name] = \
                    f"same name, but {_shape(s.shape)} {s.dtype} -> {_shape(t.shape)} {t.dtype}"
                continue
            self.take(s, t, via, PREFIX if s.name in self.renamed else EXACT)

    def rename(self) -> None:
        if not self.cross:
            return
        table = TORCH_TO_KERAS_LEAF if self.fs == "torch" else KERAS_TO_TORCH_LEAF
        for s in list(self.free_s.values()):
            path, _, leaf = s.name.rpartition(".")
            for cand in table.get(leaf, ()):
                t = self.free_t.get(f"{path}.{cand}" if path else cand)
                via = None if t is None else self.convert(s, t)
                if t is not None and via is not None:
                    self.take(s, t, via, RENAME)
                    break

    def shape_order(self) -> None:
        by_s: dict[tuple[object, ...], list[TensorMeta]] = {}
        by_t: dict[tuple[object, ...], list[TensorMeta]] = {}
        for s in self.free_s.values():
            by_s.setdefault((self.predicted_shape(s), _role(s.name)), []).append(s)
        for t in self.free_t.values():
            by_t.setdefault((t.shape, _role(t.name)), []).append(t)
        for key, ss in by_s.items():
            ts = by_t.get(key, [])
            if len(ss) == len(ts) > 1 and not self.by_order:
                for x in ss + ts:
                    self.notes.setdefault(x.name, f"{len(ss)} tensors of this shape and role on each side, "
                                          "and a checkpoint sorted by name keeps no module order to pair "
                                          "them by")
                continue
            if len(ss) != len(ts):
                for s in ss:
                    if ts:
                        self.notes.setdefault(s.name, _count_note(len(ss), len(ts), "source"))
                for t in ts:
                    self.notes.setdefault(t.name, _count_note(len(ts), len(ss), "target"))
                continue
            vias = [self.convert(s, t) for s, t in zip(ss, ts, strict=True)]
            if all(v is not None for v in vias):
                for s, t, v in zip(ss, ts, vias, strict=True):
                    self.take(s, t, v or (), GUESS)

    def leftovers(self) -> tuple[list[str], list[str], list[Leftover], list[Leftover]]:
        drops = [n for n in self.free_s if n.rsplit(".", 1)[-1] == NBT or n in self.source_aliases]
        zeros = [n for n, m in self.free_t.items()
                 if n.rsplit(".", 1)[-1] == NBT and m.dtype.startswith("int")]
        srcs = [self._leftover(m, self.free_t, "target") for n, m in self.free_s.items() if n not in drops]
        tgts = [self._leftover(m, self.free_s, "source") for n, m in self.free_t.items() if n not in zeros]
        return drops, zeros, srcs, tgts

    def _leftover(self, m: TensorMeta, others: dict[str, TensorMeta], other: str) -> Leftover:
        if other == "target":
            fits = [t.name for t in others.values() if self.convert(m, t) is not None]
        else:
            fits = [s.name for s in others.values() if self.convert(s, m) is not None]
        if fits:
            cand: str | None = (nearest(m.name, fits, 1) or fits)[0]
            note = self.notes.get(m.name) or f"{len(fits)} {other}(s) fit: " + ", ".join(fits[:3]) + \
                (", ..." if len(fits) > 3 else "")
        else:
            cand = self._closest(m, list(others.values()), other)
            note = self.notes.get(m.name) or f"no {other} has this shape"
            if cand is not None and not self.notes.get(m.name):
                note += f"; closest: {cand} {_shape(others[cand].shape)}"
        return Leftover(m.name, m, cand, f"{_shape(m.shape)} {m.dtype}: {note}")

    def _closest(self, m: TensorMeta, others: list[TensorMeta], other: str) -> str | None:
        """The likeliest counterpart when no shape fits: same role and rank, most equal dims, nearest name."""
        def score(o: TensorMeta) -> tuple[int, int, int, float]:
            mine = self.predicted_shape(m) if other == "target" else m.shape
            theirs = o.shape if other == "target" else self.predicted_shape(o)
            same = -1 if len(mine) != len(theirs) else \
                sum(1 for a, b in zip(mine, theirs, strict=True) if a == b)
            return (int(_role(o.name) == _role(m.name)), int(len(mine) == len(theirs)), same,
                    difflib.SequenceMatcher(None, m.name, o.name).ratio())
        ranked = sorted(others, key=score, reverse=True)
        return ranked[0].name if ranked and score(ranked[0])[:2] == (1, 1) else None

    def result(self) -> Matching:
        drops, zeros, srcs, tgts = self.leftovers()
        order = {m.name: i for i, m in enumerate(self.tgt)}
        props = sorted(self.proposals, key=lambda p: order[p.target])
        return Matching(tuple(props), tuple(drops), tuple(zeros), tuple(srcs), tuple(tgts), self.sp, self.tp,
                        tuple(m.name for m in self.src), tuple(m.name for m in self.tgt))


def _visible(m: TensorMeta, prefix: str | None) -> TensorMeta:
    name = _strip(m.name, prefix)
    return m if name == m.name else TensorMeta(name, m.shape, m.dtype, m.native or m.name, m.kind, m.attrs)


def _role(name: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    return ROLES.get(leaf, leaf)


def _rank_preset(rank: int, to_keras: bool) -> str:
    if rank == 2:
        return "linear_to_dense" if to_keras else "dense_to_linear"
    if rank in (3, 4, 5):
        return "conv_to_keras" if to_keras else "conv_from_keras"
    return "identity"


def _shape(s: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, s)) + ")"


def _count_note(mine: int, theirs: int, side: str) -> str:
    other = "target" if side == "source" else "source"
    return f"{mine} {side}(s) but {theirs} {other}(s) of this shape and role: the order cannot decide"


def match(source: Inventory, target: Inventory, source_framework: str | None = None,
          target_framework: str | None = None) -> Matching:
    """Pair source and target tensors, surest pass first; see the module docstring."""
    m = _Matcher(source, target, source_framework, target_framework)
    m.exact()
    m.rename()
    m.shape_order()
    return m.result()


@dataclass(frozen=True)
class InitResult:
    """The generated spec, its text, the matching it came from, and any problem the self-check found."""

    spec: Spec
    text: str
    matching: Matching
    problems: tuple[Diagnostic, ...] = ()

    @property
    def complete(self) -> bool:
        return self.matching.complete and not self.problems


def init_spec(source: Inventory, target: Inventory, source_location: str, target_location: str,
              source_framework: str | None = None, target_framework: str | None = None,
              syntax: str = "wmap") -> InitResult:
    """Match, write the spec, and (when nothing is unresolved) compile it against the same inventories.

    The self-check is what makes a folded pattern rule trustworthy beyond its own proof: if the
    compiler disagrees, the spec is written again one rule per tensor.
    """
    from wmap.lang import format_spec
    from wmap.scaffold.rules import Endpoint, build_spec

    m = match(source, target, source_framework, target_framework)
    ends = (Endpoint(source_location, _declared(source_framework, source)),
            Endpoint(target_location, _declared(target_framework, target)))
    spec = build_spec(m, *ends)
    problems = _self_check(spec, source, target) if m.complete else ()
    if problems:
        spec = build_spec(m, *ends, fold=False)
        problems = _self_check(spec, source, target)
    return InitResult(spec, format_spec(spec, "yaml" if syntax == "yaml" else "wmap"), m, problems)


def _declared(flag: str | None, inv: Inventory) -> str | None:
    from wmap.core.frameworks import FRAMEWORKS

    fw = framework_of(inv, flag)
    return fw if fw in FRAMEWORKS else None


def _self_check(spec: Spec, source: Inventory, target: Inventory) -> tuple[Diagnostic, ...]:
    from wmap.core.errors import WmapError
    from wmap.planning.compiler import compile_plan

    try:
        compile_plan(spec, {"src": source}, target)
    except WmapError as e:
        return e.errors
    return ()
