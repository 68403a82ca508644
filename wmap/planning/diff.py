"""Comparing two plans by what each target tensor receives.

Two specs can differ in text (a folded pattern, `layout(auto)` for an explicit preset,
rules in another order) and still do the same thing; the only difference that matters to
a model is what lands in each target. So the diff is over *receipts*: for every target,
the source tensors read (by their name in the checkpoint), the resolved transforms, the
initialiser and seed, and the freeze/lr flags. Repeats fold as plans do (`layers.{0..31}`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wmap.core.names import fold, template_of
from wmap.planning.plan import Plan

# Compared one by one when the kind of step is the same; a changed kind is one "receives" change.
FIELDS = ("shape", "source", "transforms", "init", "seed", "frozen", "lr")


@dataclass(frozen=True)
class Receipt:
    """What one target receives under a plan."""

    kind: str
    shape: str
    source: str
    transforms: str
    init: str
    seed: str
    frozen: bool
    lr: str

    def value(self, name: str) -> str:
        v = getattr(self, name)
        return ("yes" if v else "no") if isinstance(v, bool) else str(v)

    def describe(self) -> str:
        """One line: `<- fc.weight | linear_to_dense`, `init normal(std=0.02)`, `keep`, plus flags."""
        if self.kind == "map":
            text = f"<- {self.source}" + (f" | {self.transforms}" if self.transforms else "")
        elif self.kind == "init":
            text = f"init {self.init}"
        else:
            text = self.kind
        return text + (" *frozen" if self.frozen else "") + (f" lr=x{self.lr}" if self.lr else "")

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "shape": self.shape, "source": self.source or None,
                "transforms": self.transforms or None, "init": self.init or None, "seed": self.seed or None,
                "frozen": self.frozen, "lr": self.lr or None}


@dataclass(frozen=True)
class Change:
    target: str
    field: str
    old: str
    new: str


@dataclass(frozen=True)
class PlanDiff:
    added: tuple[tuple[str, Receipt], ...]
    removed: tuple[tuple[str, Receipt], ...]
    changed: tuple[Change, ...]
    dropped_added: tuple[str, ...]    # source tensors B drops and A does not
    dropped_removed: tuple[str, ...]  # source tensors A drops and B does not

    @property
    def equal(self) -> bool:
        return not (self.added or self.removed or self.changed or self.dropped_added or self.dropped_removed)

    @property
    def changed_targets(self) -> int:
        return len({c.target for c in self.changed})

    def to_json(self) -> dict[str, object]:
        return {
            "equal": self.equal,
            "summary": {"added": len(self.added), "removed": len(self.removed),
                        "changed": self.changed_targets, "dropped_added": len(self.dropped_added),
                        "dropped_removed": len(self.dropped_removed)},
            "added": [{"target": t, **r.to_json()} for t, r in self.added],
            "removed": [{"target": t, **r.to_json()} for t, r in self.removed],
            "changed": [{"target": c.target, "field": c.field, "old": c.old, "new": c.new}
                        for c in self.changed],
            "dropped": {"added": list(self.dropped_added), "removed": list(self.dropped_removed)},
        }


def _shape(s: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, s)) + ")"


def receipts(plan: Plan) -> dict[str, Receipt]:
    """target name -> Receipt, in plan order."""
    single = {n for n, _ in plan.source_fingerprints} <= {"src"}
    seed = str(dict(plan.options).get("seed", 0))
    out: dict[str, Receipt] = {}
    for step in plan.steps:
        src = ", ".join(r.read_name if single else f"{r.source}:{r.read_name}" for r in step.sources)
        chain = " | ".join(t.describe() for t in step.transforms)
        init = step.init.describe() if step.init is not None else ""
        for i, t in enumerate(step.targets):
            flags = step.flags[i] if i < len(step.flags) else None
            lr = "" if flags is None or flags.lr is None else f"{flags.lr:g}"
            out[t.name] = Receipt(step.kind, f"{_shape(t.shape)} {t.dtype}", src, chain, init,
                                  seed if step.kind == "init" else "", bool(flags and flags.frozen), lr)
    return out


def diff_plans(a: Plan, b: Plan) -> PlanDiff:
    ra, rb = receipts(a), receipts(b)
    added = tuple((t, r) for t, r in rb.items() if t not in ra)
    removed = tuple((t, r) for t, r in ra.items() if t not in rb)
    changed: list[Change] = []
    for t, new in rb.items():
        old = ra.get(t)
        if old is None or old == new:
            continue
        if old.kind != new.kind:  # mapped <-> initialised <-> kept: one line says it all (but the shape)
            if old.shape != new.shape:
                changed.append(Change(t, "shape", old.shape, new.shape))
            changed.append(Change(t, "receives", old.describe(), new.describe()))
            continue
        changed += [Change(t, f, old.value(f), new.value(f)) for f in FIELDS if old.value(f) != new.value(f)]
    da = [d.source.read_name for d in a.dropped]
    db = [d.source.read_name for d in b.dropped]
    in_a, in_b = set(da), set(db)
    return PlanDiff(added, removed, tuple(changed), tuple(n for n in db if n not in in_a),
                    tuple(n for n in da if n not in in_b))


# -- folded text ---------------------------------------------------------------------------------


def _folded(values: Iterable[str]) -> str:
    return ", ".join(f for f, _ in fold(values)) or "(none)"


def fold_receipts(items: Sequence[tuple[str, Receipt]]) -> list[tuple[str, str, int]]:
    """(folded targets, folded description, count) for targets that receive alike."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for t, r in items:
        d = r.describe()
        groups.setdefault(template_of(d)[0], []).append((t, d))
    return [(_names(t for t, _ in g), _folded(d for _, d in g), len(g)) for g in groups.values()]


def _names(names: Iterable[str], limit: int = 6) -> str:
    folded = [f for f, _ in fold(names)]
    more = f", and {len(folded) - limit} more" if len(folded) > limit else ""
    return ", ".join(folded[:limit]) + more


def fold_changes(changes: Sequence[Change]) -> list[tuple[str, str, str, str, int]]:
    """(folded targets, field, folded old, folded new, count): one line per cause, whatever the targets."""
    groups: dict[tuple[str, str, str], list[Change]] = {}
    for c in changes:
        groups.setdefault((c.field, template_of(c.old)[0], template_of(c.new)[0]), []).append(c)
    return [(_names(c.target for c in g), g[0].field, _folded(c.old for c in g) if g[0].old else "(none)",
             _folded(c.new for c in g) if g[0].new else "(none)", len(g)) for g in groups.values()]


def _rows(sign: str, items: Sequence[tuple[str, Receipt]]) -> list[str]:
    return [f"  {sign} {t}  {desc}" + (f"  x{n}" if n > 1 else "") for t, desc, n in fold_receipts(items)]


def render_text(d: PlanDiff, label_a: str, label_b: str) -> str:
    lines = [f"wmap diff  {label_a} -> {label_b}", ""]
    if d.equal:
        return "\n".join(lines + ["no differences: every target receives the same in both"]) + "\n"
    sections: list[tuple[str, list[str]]] = []
    if d.added:
        sections.append((f"targets only in {label_b} ({len(d.added)}):", _rows("+", d.added)))
    if d.removed:
        sections.append((f"targets only in {label_a} ({len(d.removed)}):", _rows("-", d.removed)))
    if d.changed:
        sections.append((f"targets that receive something else ({d.changed_targets}):",
                         [f"  ~ {t}  {f}: {old} -> {new}" + (f"  x{n}" if n > 1 else "")
                          for t, f, old, new, n in fold_changes(d.changed)]))
    if d.dropped_added or d.dropped_removed:
        rows = [f"  + {f}" for f, _ in fold(d.dropped_added)]
        rows += [f"  - {f}" for f, _ in fold(d.dropped_removed)]
        sections.append((f"dropped source tensors ({label_a} -> {label_b}):", rows))
    for head, rows in sections:
        lines += [head, *rows, ""]
    lines.append(summary_line(d))
    return "\n".join(lines) + "\n"


def summary_line(d: PlanDiff) -> str:
    parts = [f"{len(d.added)} added", f"{len(d.removed)} removed", f"{d.changed_targets} changed"]
    drops = len(d.dropped_added) + len(d.dropped_removed)
    return "Diff: " + ", ".join(parts) + (f" · {drops} drop difference(s)" if drops else "")
