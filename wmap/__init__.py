"""wmap: a declarative weight-mapping language and compiler for deep-learning models.

    import wmap
    plan = wmap.plan("port.wmap")          # metadata only: names, shapes, dtypes
    print(plan.render())                   # review it
    report = plan.apply()                  # streaming, atomic
    model = report.target

`import wmap` imports neither torch nor tensorflow; backends load them when needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wmap.core.errors import Diagnostic, Span, WmapError
from wmap.core.inventory import Inventory, TensorMeta
from wmap.core.version import VERSION as __version__
from wmap.lang import load_spec, parse_spec
from wmap.lang.spec import Spec

if TYPE_CHECKING:
    from wmap.api import Plan, apply, inventory_of, invert, load_plan, plan, verify
    from wmap.run.execute import ApplyReport

_LAZY = {
    "plan": "wmap.api", "apply": "wmap.api", "verify": "wmap.api", "inventory_of": "wmap.api",
    "load_plan": "wmap.api", "Plan": "wmap.api", "invert": "wmap.api", "ApplyReport": "wmap.run.execute",
}

__all__ = [
    "ApplyReport", "Diagnostic", "Inventory", "Plan", "Span", "Spec", "TensorMeta", "WmapError",
    "__version__", "apply", "inventory_of", "invert", "load_plan", "load_spec", "parse_spec", "plan", "verify",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wmap' has no attribute {name!r}")
