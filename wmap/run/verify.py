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
from wmap.core.inventory import TensorMeta
from wmap.core.values import Endpoint
from wmap.formats.base import Array, ArrayKind
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


KERAS_SUFFIXES = (".weights.h5", ".keras")


def _keras_reader_model(plan: Plan, path: str | os.PathLike[str]) -> Any:
    """A Keras model holding `path`'s weights, when the file alone cannot name what the plan names.

    A `.weights.h5` stores variables by layer position; the names a model gives them (custom and
    keras-hub layers: `token_embedding.embeddings`) are only in the model's classes, which the
    file does not record (it reads `token_embedding.vars.0`). Keras' own `load_weights` matches the
    file to a model by structure, so verify builds the plan's target the way apply did (the
    wmap-built model, or the spec's factory) and reads what the file put in it, by the plan's
    names. None when the file names every target (read it as it is) or there is no such model."""
    from wmap.formats import open_source
    from wmap.run.factory import Built, build_factory, is_factory

    text = os.fspath(path)
    if not text.endswith(KERAS_SUFFIXES) or plan.target_framework not in ("keras", "tf", None):
        return None
    reader = open_source(text, "keras")
    try:
        names = {m.name for m in reader.inventory().tensors}
    finally:
        reader.close()
    if all(t.name in names for s in plan.steps for t in s.targets):
        return None
    bound = plan.bound[1]
    if isinstance(bound, Built) and bound.framework in ("keras", "tf", None) and hasattr(bound.model, "load_weights"):
        model = bound.model  # wmap built it for this call: it is ours to fill
    elif plan.spec is not None and plan.spec.target is not None and is_factory(plan.spec.target.location):
        model = build_factory(plan.spec.target.location, framework=plan.spec.target.framework)
    else:
        return None
    if not hasattr(model, "load_weights"):
        return None
    from wmap.core.errors import error
    try:
        model.load_weights(text)
    except Exception as e:  # a file saved from another architecture: say so, no traceback
        raise error("WM509", f"cannot read `{text}` through the plan's target model: {type(e).__name__}: {e}",
                    hint="verify the file against the spec it was applied with") from None
    return model


def verify_plan(plan: Plan, source: Endpoint = None, target: Endpoint = None) -> VerifyReport:
    from wmap.formats import open_source
    from wmap.run.resolve import model_sink, open_sources, target_object

    source = plan.bound[0] if source is None else source
    target = plan.bound[1] if target is None else target
    readers = open_sources(plan, source)
    obj, fw = target_object(plan.spec, target)
    model = _keras_reader_model(plan, obj) if isinstance(obj, (str, os.PathLike)) else None
    if model is not None:  # a Keras file read back through the model it was saved from
        obj = model
    if isinstance(obj, (str, os.PathLike)):
        file = open_source(obj, fw)
        kind: ArrayKind = "torch" if installed("torch") else "numpy"

        def current(meta: TensorMeta) -> Array:
            return file.read(meta.name, kind)
        frozen_check = None
    else:
        sink = model_sink(plan, obj)
        kind = sink.array_kind
        current = sink.read_current
        frozen_check = sink.result if sink.framework == "torch" else None  # the model itself
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
