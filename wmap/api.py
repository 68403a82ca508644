"""The Python API: load a spec, plan, apply, verify. Framework imports stay lazy."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from wmap.core.bulk import collector_paused
from wmap.core.errors import WmapError
from wmap.core.inventory import Inventory
from wmap.core.values import ConfigLike, Endpoint, OutPath
from wmap.lang.spec import Spec
from wmap.planning import plan as _plan
from wmap.run.execute import ApplyReport, apply_plan

if TYPE_CHECKING:
    from wmap.run.verify import VerifyReport

SpecLike = Spec | str | os.PathLike[str]


class Plan(_plan.Plan):
    """A reviewed plan you can run: the plan's data (`wmap.planning.plan.Plan`) plus execution.

    The data class knows nothing of execution, so the planning layer never imports it; every plan
    the API hands out (`wmap.plan`, `wmap.load_plan`) is one of these."""

    @classmethod
    def of(cls, p: _plan.Plan) -> Plan:
        if isinstance(p, cls):
            return p
        return cls(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)})

    def apply(self, source: Endpoint = None, target: Endpoint = None, out: OutPath = None, **kw: Any) -> ApplyReport:
        """Execute this plan (see `wmap.apply`); `source`/`target` default to what it was planned with."""
        with collector_paused():  # see `apply`
            return apply_plan(self, source=source, target=target, out=out, **_with_progress(kw))

    def param_groups(self, model: Any, base_lr: float, **extra: Any) -> list[dict[str, Any]]:
        """Optimizer parameter groups for `model`: lr multipliers applied, frozen parameters left out.

        PyTorch only: Keras optimizers take one learning rate for every variable, so a Keras model
        is refused with WM521 (`lr_scales` still lists the multipliers by variable name)."""
        if not hasattr(model, "named_parameters"):
            from wmap.core.errors import error
            kind = "a Keras model" if hasattr(model, "trainable_variables") else f"a {type(model).__name__}"
            raise error("WM521", f"`param_groups` builds PyTorch optimizer parameter groups, and `model` is {kind}: "
                        "Keras optimizers take one learning rate for all variables, so `lr` multipliers are "
                        "PyTorch-only", hint="`freeze` already set `trainable=False` in the Keras model; "
                        "`plan.lr_scales` maps each variable name to its multiplier if a custom training step "
                        "scales gradients")
        from wmap.sinks.torch_sink import param_groups
        return param_groups(self, model, base_lr, **extra)


def _spec(spec: SpecLike) -> Spec:
    from wmap.lang import load_spec
    return spec if isinstance(spec, Spec) else load_spec(spec)


def invert(spec: SpecLike) -> Spec:
    """The reverse of a spec: the spec that moves the weights back (`wmap invert`). Raises WmapError
    (WM130/WM131) naming each rule that cannot run backwards. Relative paths still resolve against
    the original spec's folder, and diagnostics point at its lines."""
    from wmap.lang.invert import invert_spec
    s = _checked_spec(spec)
    return dataclasses.replace(invert_spec(s), path=s.path, text=s.text)


def inventory_of(obj: Endpoint, framework: str | None = None) -> Inventory:
    """Names, shapes and dtypes of a checkpoint, model, factory or state dict; reads no weight data."""
    from wmap.run.resolve import read_inventory
    return read_inventory(obj, framework)


def plan(spec: SpecLike, source: Endpoint = None, target: Endpoint = None, config: ConfigLike = None,
         reverse: bool = False) -> Plan:
    """Compile a spec against its source(s) and target, from metadata only.

    `source`: a path, a state dict, a model, a `module:callable`, or a dict of named sources;
    `target`: a path (template checkpoint), a model, or a `module:callable`. Both default to
    what the spec names. `config`: the model config the spec's `let`s read (a JSON path or a
    dict), overriding the spec's `config` statement. `reverse`: plan the spec's reverse (`invert`):
    `source` is then what the spec fills and `target` what it reads. Raises WmapError listing every
    problem.
    """
    from wmap.run.resolve import source_inventories

    with collector_paused():  # see `apply`
        s = invert(spec) if reverse else _checked_spec(spec)
        return _compile(s, source_inventories(s, source), source, target, config)[0]


def _checked_spec(spec: SpecLike) -> Spec:
    from wmap.lang.validate import check_names
    s = _spec(spec)
    check_names(s)
    return s


def _compile(s: Spec, sources: dict[str, Inventory], source: Endpoint, target: Endpoint, config: ConfigLike = None
             ) -> tuple[Plan, Inventory]:
    """The plan bound to the endpoints it was made for, and the target inventory it was made from."""
    from wmap.run.resolve import compile_bound

    p, target_inv = compile_bound(s, sources, source, target, config)
    return Plan.of(p), target_inv


# The bound keeps json.loads of an untrusted file to a few GB of objects. A one-to-one step is ~1.2 KB of
# JSON (so ~200k of them fit); numbered runs make a DeepSeek-V3 plan (91,991 tensors) 1.7 MB.
MAX_PLAN_BYTES = 256 * 1024 * 1024


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """A plan saved with `wmap plan -o plan.json`."""
    import json

    from wmap.core.errors import error
    from wmap.core.files import FileTooLarge, NotRegularFile, read_regular
    from wmap.planning.serialise import plan_from_json
    shown = os.fspath(path)
    try:
        with collector_paused():  # a DeepSeek-sized plan is millions of JSON values, none in a cycle
            data = json.loads(read_regular(path, MAX_PLAN_BYTES).decode("utf-8"))
    except NotRegularFile:
        raise error("WM520", f"cannot read plan `{shown}`: it is not a regular file (a FIFO or a device)",
                    hint="pass the plan.json that `wmap plan -o` wrote") from None
    except FileTooLarge as e:
        raise error("WM520", f"cannot read plan `{shown}`: it is {e.size:,} bytes, more than a plan of "
                    f"{MAX_PLAN_BYTES:,}", hint="is this the plan.json that `wmap plan -o` wrote?") from None
    except OSError as e:
        raise error("WM520", f"cannot read plan `{shown}`: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # RecursionError: JSON nested past the stack
        raise error("WM520", f"cannot read plan `{shown}`: {e}") from None
    return Plan.of(dataclasses.replace(plan_from_json(data, os.fspath(path)), origin=os.fspath(path)))


def apply(spec: SpecLike | Plan, source: Endpoint = None, target: Endpoint = None, out: OutPath = None,
          config: ConfigLike = None, reverse: bool = False, **kw: Any) -> ApplyReport:
    """Plan (unless given a Plan) and execute. Returns the report; `report.target` is the filled model
    (for a `module:callable` target, the model wmap built) or the output path. `config`: as for
    `wmap.plan`; a saved plan re-reads its config and refuses if a value it was made with changed.
    `reverse`: run the spec backwards (see `wmap.plan`).

    The collector is paused throughout (see wmap/core/bulk.py): wmap's own lazy imports, plan and
    transfer leave no garbage cycles, and in a fresh process they would otherwise run the full
    collection that `import torch` left due (~80 ms). A model factory runs with the collector as the
    caller had it."""
    with collector_paused():
        return _apply(spec, source, target, out, config, reverse, _with_progress(kw))


def _apply(spec: SpecLike | Plan, source: Endpoint, target: Endpoint, out: OutPath, config: ConfigLike,
           reverse: bool, kw: dict[str, Any]) -> ApplyReport:
    if isinstance(spec, _plan.Plan):
        if reverse:
            from wmap.core.errors import error
            raise error("WM521", "a saved plan runs the way it was planned", hint="plan the reverse itself: "
                        "`wmap plan SPEC --reverse -o back.json`")
        if spec.spec is None:  # a saved plan: its config must still say what it said
            from wmap.run.config import check_saved_plan
            check_saved_plan(spec, source if source is not None else spec.bound[0],
                             target if target is not None else spec.bound[1], config)
        return apply_plan(spec, source=source, target=target, out=out, **kw)
    from wmap.run.resolve import open_spec_sources

    s = invert(spec) if reverse else _checked_spec(spec)
    # Opened once: the plan is compiled from these readers' inventories and executed from the
    # same readers, so a checkpoint is not parsed (or a source factory built) twice.
    readers = open_spec_sources(s, source)
    try:
        p, target_inv = _compile(s, {n: r.inventory() for n, r in readers.items()}, source, target, config)
        return apply_plan(p, source=source, target=p.bound[1], out=out, opened=(readers, target_inv), **kw)
    finally:
        for r in readers.values():
            r.close()


def _with_progress(kw: dict[str, Any]) -> dict[str, Any]:
    """`show_progress=None` (the default): a bar on a terminal for transfers that take a second or more."""
    import functools

    from wmap.commands.progress import progress_bar
    show = kw.pop("show_progress", None)
    kw.setdefault("progress", functools.partial(progress_bar, show=show))
    return kw


def verify(spec: SpecLike | Plan, source: Endpoint = None, target: Endpoint = None, config: ConfigLike = None
           ) -> VerifyReport:
    """Check that `target` holds exactly what the plan puts there (recomputed from the sources)."""
    from wmap.run.verify import verify_plan
    p = spec if isinstance(spec, _plan.Plan) else plan(spec, source, target, config)
    return verify_plan(p, source=source, target=target)


__all__ = ["apply", "inventory_of", "invert", "load_plan", "plan", "verify", "WmapError"]
