"""`wmap verify`: prove that a model or file holds exactly what a plan puts there.

Every mapped and initialised target is recomputed from the sources (initialisers are
seeded, so they recompute too) and compared byte for byte with what the target holds.
Frozen flags are checked on in-memory torch models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from wmap.core.checksum import checksum
from wmap.core.frameworks import installed
from wmap.core.values import Endpoint
from wmap.formats.base import ArrayKind
from wmap.planning.plan import Plan
from wmap.run.execute import compute_step
from wmap.transforms import get_ops


@dataclass
class VerifyReport:
    checked: int = 0
    skipped: list[str] = field(default_factory=list)
    mismatches: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "skipped": self.skipped,
                "mismatches": [{"target": t, "reason": r} for t, r in self.mismatches]}

    def render(self) -> str:
        lines = [f"  mismatch: {t}: {r}" for t, r in self.mismatches]
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"verify {verdict}: {self.checked} target(s) checked, {len(self.mismatches)} mismatch(es), "
                     f"{len(self.skipped)} kept (not checked)")
        return "\n".join(lines) + "\n"


def verify_plan(plan: Plan, source: Endpoint = None, target: Endpoint = None) -> VerifyReport:
    from wmap.formats import open_source
    from wmap.run.resolve import model_sink, open_sources, target_object

    source = plan.bound[0] if source is None else source
    target = plan.bound[1] if target is None else target
    readers = open_sources(plan, source)
    obj, fw = target_object(plan.spec, target)
    if isinstance(obj, (str, os.PathLike)):
        file = open_source(obj, fw)
        kind: ArrayKind = "torch" if installed("torch") else "numpy"

        def current(meta: Any) -> Any:
            return file.read(meta.name, kind)
        frozen_check = None
    else:
        sink = model_sink(plan, obj)
        kind = sink.array_kind
        current = sink.read_current
        frozen_check = obj if sink.framework == "torch" else None
    ops = get_ops(kind)
    report = VerifyReport()
    try:
        for step in plan.steps:
            if step.kind == "keep":
                report.skipped.extend(t.name for t in step.targets)
                continue
            # the target's own values stand for what a `splice` kept (unchecked, as `keep`)
            values = compute_step(step, readers, ops, plan, current)
            for meta, v in zip(step.targets, values):
                if ops.dtype_name(v) != meta.dtype:
                    v = ops.cast(v, meta.dtype)
                report.checked += 1
                have = current(meta)
                if tuple(ops.shape(have)) != tuple(meta.shape):
                    report.mismatches.append((meta.name, f"shape {tuple(ops.shape(have))}, plan says {meta.shape}"))
                elif checksum(have) != checksum(v):
                    report.mismatches.append((meta.name, f"holds {checksum(have)}, the plan gives {checksum(v)}"))
    finally:
        for r in readers.values():
            r.close()
    if frozen_check is not None:
        params = dict(frozen_check.named_parameters(remove_duplicate=False))
        for name in plan.frozen:
            p = params.get(name)
            if p is not None and p.requires_grad:
                report.mismatches.append((name, "should be frozen but requires_grad is True"))
    return report
