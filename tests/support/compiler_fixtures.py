"""Inventories for compiler tests: metadata only, no framework needed."""

from __future__ import annotations

from wmap.core.errors import WmapError
from wmap.core.inventory import Inventory, TensorMeta
from wmap.lang import parse_spec
from wmap.planning.compiler import compile_plan
from wmap.planning.plan import Plan


def M(name: str, shape: tuple[int, ...], dtype: str = "float32", kind: str | None = None, **attrs: object
      ) -> TensorMeta:
    return TensorMeta(name, shape, dtype, kind=kind, attrs=tuple(attrs.items()))


def inv(*metas: TensorMeta, framework: str | None = "torch", label: str = "fixture") -> Inventory:
    return Inventory.from_metas(metas, label=label, framework=framework)


def resnetish(prefix: str = "", blocks: int = 2) -> Inventory:
    ts = [M(f"{prefix}conv1.weight", (8, 3, 3, 3), kind="Conv2d")]
    for p in ("weight", "bias", "running_mean", "running_var"):
        ts.append(M(f"{prefix}bn1.{p}", (8,), kind="BatchNorm2d"))
    ts.append(M(f"{prefix}bn1.num_batches_tracked", (), "int64", kind="BatchNorm2d"))
    for b in range(blocks):
        ts.append(M(f"{prefix}layer1.{b}.conv.weight", (8, 8, 3, 3), kind="Conv2d"))
    ts += [M(f"{prefix}fc.weight", (10, 8), kind="Linear"), M(f"{prefix}fc.bias", (10,), kind="Linear")]
    return inv(*ts)


def compile_text(text: str, sources: dict[str, Inventory] | Inventory, target: Inventory) -> Plan:
    spec = parse_spec(text, path="t.wmap")
    srcs = sources if isinstance(sources, dict) else {spec.sources[0].name if spec.sources else "src": sources}
    return compile_plan(spec, srcs, target)


def errors_of(text: str, sources: dict[str, Inventory] | Inventory, target: Inventory) -> list[tuple[str, str, str]]:
    """(code, message, hint) for every diagnostic the compile raises; fails if it compiles."""
    try:
        compile_text(text, sources, target)
    except WmapError as e:
        return [(d.code, d.message, d.hint or "") for d in e.diagnostics]
    raise AssertionError("expected the spec to fail to compile")
