"""Resolving what a spec or a call names as sources and target into inventories, readers and sinks.

Locations in a spec are relative to the spec file's folder (a mapping file travels with
its repository); arguments given to the API or CLI are used as given. A saved plan is
checked against every endpoint's fingerprint before anything is read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from wmap.core.errors import error
from wmap.core.frameworks import installed
from wmap.core.inventory import Inventory, TensorMeta
from wmap.core.values import ConfigLike, Endpoint, OutPath
from wmap.formats.base import ArrayKind, TensorSource
from wmap.lang.spec import DEFAULT_SOURCE, Spec
from wmap.planning.plan import Plan
from wmap.run.factory import Built, build_factory, is_factory
from wmap.sinks.base import TargetSink

if TYPE_CHECKING:
    import torch


def open_reader(obj: Endpoint, framework: str | None = None) -> TensorSource:
    """A reader for anything a spec or a call may name: a `module:callable` is built first (torch
    models on the meta device), everything else goes to the format readers as it is."""
    from wmap.formats import open_source
    if is_factory(obj):
        return open_source(build_factory(obj, framework=framework), framework)
    return open_source(obj, framework)


def read_inventory(obj: Endpoint, framework: str | None = None) -> Inventory:
    """The inventory of anything `open_reader` opens (a reader opened here is closed again)."""
    src = open_reader(obj, framework)
    try:
        return src.inventory()
    finally:
        if src is not obj:
            src.close()


def _locate(location: str, spec: Spec | None, what: str = "") -> str:
    if not location:  # a template spec (a recipe): the endpoint is given when planning
        raise error("WM521", f"{what or 'an endpoint'} names no checkpoint or model: the spec leaves it to "
                    "the call", hint="pass it: --source NAME=PATH / --target PATH (Python: source=..., target=...)")
    if is_factory(location) or os.path.isabs(location) or spec is None or not spec.path:
        return location
    return str(Path(spec.path).parent / location)


def _is_array(v: object) -> bool:
    mod = type(v).__module__
    return mod.startswith("numpy") or (mod.startswith("torch") and "Tensor" in type(v).__name__) or \
        type(v).__name__ == "Parameter"


def _is_state_dict(obj: Endpoint) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(_is_array(v) for v in obj.values())


def source_objects(spec: Spec | None, source: Endpoint) -> dict[str, tuple[Endpoint, str | None]]:
    """name -> (object or location, framework) for every source."""
    declared = {s.name: s for s in spec.sources} if spec else {}
    primary = next(iter(declared), DEFAULT_SOURCE)
    if source is None:
        if not declared and spec is not None and _reads_nothing(spec):
            return {}  # an init/keep-only spec: fills a fresh model from seeds and literals alone
        if not declared:
            raise error("WM521", "no source: the spec names none and none was given",
                        hint="add `source torch \"model.safetensors\"` to the spec, or pass --source")
        return {n: (_locate(s.location, spec, f"source `{n}`"), s.framework) for n, s in declared.items()}
    if isinstance(source, Mapping) and not _is_state_dict(source):
        out: dict[str, tuple[Endpoint, str | None]] = {}
        for n, obj in source.items():
            fw = declared[n].framework if n in declared else None
            out[str(n)] = (obj, fw)
        for n, s in declared.items():  # named sources not overridden come from the spec
            if n not in out:
                out[n] = (_locate(s.location, spec, f"source `{n}`"), s.framework)
        return out
    fw = declared[primary].framework if primary in declared else None
    others = {n: (_locate(s.location, spec, f"source `{n}`"), s.framework) for n, s in declared.items()
              if n != primary}
    return {primary: (source, fw), **others}


def _reads_nothing(spec: Spec) -> bool:
    """No rule, no drop and no `copy(...)` initialiser: the spec needs no source at all."""
    return not spec.rules and not spec.drop and all(i.call.name != "copy" for i in spec.init)


def target_object(spec: Spec | None, target: Endpoint) -> tuple[Endpoint, str | None]:
    fw = spec.target.framework if spec and spec.target else None
    if target is not None:
        return target, fw
    if spec is None or spec.target is None:
        raise error("WM521", "no target: the spec names none and none was given",
                    hint="add `target torch \"pkg.models:build\"` to the spec, or pass --target")
    return _locate(spec.target.location, spec, "the target"), fw


def source_inventories(spec: Spec | None, source: Endpoint) -> dict[str, Inventory]:
    return {n: read_inventory(obj, fw) for n, (obj, fw) in source_objects(spec, source).items()}


def open_spec_sources(spec: Spec, source: Endpoint) -> dict[str, TensorSource]:
    """A reader for every source of the spec; the caller closes them (all closed on a failure)."""
    readers: dict[str, TensorSource] = {}
    try:
        for n, (obj, fw) in source_objects(spec, source).items():
            readers[n] = open_reader(obj, fw)
    except BaseException:
        for r in readers.values():
            r.close()
        raise
    return readers


def target_inventory(spec: Spec | None, target: Endpoint) -> Inventory:
    obj, fw = target_object(spec, target)
    if isinstance(obj, Built):
        from wmap.formats import inventory_of
        return inventory_of(obj.model, fw)
    return read_inventory(obj, fw)


def build_target(spec: Spec | None, target: Endpoint, config: Mapping[str, object] | None = None) -> Endpoint:
    """The target to plan and apply with: a `module:callable` is built here, once (torch models on
    the meta device), and the built model is used for both; anything else as it is."""
    obj, fw = target_object(spec, target)
    if isinstance(obj, Built) or not is_factory(obj):
        return obj if target is not None else None  # None: the spec's own non-factory target
    seed = int(spec.option("seed", 0) or 0) if spec is not None else 0  # type: ignore[arg-type]
    return Built(build_factory(obj, device="meta", framework=fw, config=config, seed=seed), obj, fw, config)


def compile_bound(spec: Spec, sources: dict[str, Inventory], source: Endpoint, target: Endpoint,
                  config: ConfigLike = None
                  ) -> tuple[Plan, Inventory]:
    """Compile `spec` against the source inventories and the target, and bind the plan to the endpoints
    it was made for (a `module:callable` target is built once, here, and the built model is bound).
    Returns the plan and the target inventory it was compiled from."""
    import dataclasses

    from wmap.planning.compiler import compile_plan

    cfg = None
    if spec.lets or config is not None or spec.config is not None:  # a model config to read
        from wmap.run.config import config_for
        cfg = config_for(spec, source, target, config)
    built = build_target(spec, target, cfg.data if cfg is not None else None)
    if built is not None:
        target = built  # a factory runs once: planned against, then written into
    target_inv = target_inventory(spec, target)
    p = compile_plan(spec, sources, target_inv, cfg if spec.lets else None)
    return dataclasses.replace(p, bound=(source, target)), target_inv


def _check_fingerprint(what: str, inv: Inventory, expected: str) -> None:
    if inv.fingerprint() != expected:
        raise error("WM604", f"{what} changed since the plan was made (fingerprint {inv.fingerprint()} != "
                    f"{expected})", hint="make the plan again against what you are applying it to")


def open_sources(plan: Plan, source: Endpoint) -> dict[str, TensorSource]:
    readers: dict[str, TensorSource] = {}
    objs = source_objects(plan.spec, source) if (plan.spec is not None or source is not None) else {}
    expected = dict(plan.source_fingerprints)
    if source is not None and not isinstance(source, Mapping) and plan.spec is None and len(expected) == 1:
        objs = {next(iter(expected)): (source, dict(plan.source_frameworks).get(next(iter(expected))))}
    missing = [n for n in expected if n not in objs]
    if missing:
        raise error("WM521", f"the plan reads source(s) {', '.join(f'`{m}`' for m in missing)}, which were not given",
                    hint="pass them with --source NAME=PATH")
    try:
        for name in expected:
            obj, fw = objs[name]
            reader = open_reader(obj, fw)
            readers[name] = reader
            _check_fingerprint(f"source `{name}`", reader.inventory(), expected[name])
        invs = {n: r.inventory() for n, r in readers.items()}
        for i, step in enumerate(plan.steps):
            for ref in step.sources:
                inv = invs.get(ref.source)
                _check_step(plan, i, f"source tensor `{ref.source}:{ref.read_name}`", ref.meta,
                            inv.index.get(ref.read_name) if inv is not None else None)
        if plan.spec is None:  # a saved plan: every source tensor read or dropped, as compiling checked
            _check_source_coverage(plan, invs)
    except BaseException:
        for r in readers.values():
            r.close()
        raise
    return readers


def _check_step(plan: Plan, i: int, what: str, want: TensorMeta, have: TensorMeta | None) -> None:
    """A saved plan's steps must describe the inventories its fingerprints pin (an edited or damaged
    plan.json could otherwise write names and shapes the target does not have)."""
    if have is not None and have.shape == want.shape and have.dtype == want.dtype:
        return
    got = "does not exist" if have is None else f"is {have.dtype}{list(have.shape)}"
    step = plan.steps[i]
    raise error("WM520", f"the plan does not match what it is applied to: step {i + 1} (`{step.rule_text}`) "
                f"expects {what} as {want.dtype}{list(want.shape)}, but it {got}",
                hint="the plan file was edited or damaged; make it again with `wmap plan SPEC -o plan.json`")


def _edited(why: str) -> Exception:
    return error("WM520", f"the plan does not match what it is applied to: {why}",
                 hint="the plan file was edited or damaged; make it again with `wmap plan SPEC -o plan.json`")


def _check_source_coverage(plan: Plan, invs: Mapping[str, Inventory]) -> None:
    """In strict mode a plan reads or drops every source tensor (WM402 when compiling)."""
    if not plan.option("strict"):
        return
    seen = {(r.source, r.read_name) for s in plan.steps for r in s.sources}
    seen.update((d.source.source, d.source.read_name) for d in plan.dropped)
    for name, inv in invs.items():
        left = [m.name for m in inv.tensors if (name, m.name) not in seen]
        if left:
            raise _edited(f"source tensor `{name}:{left[0]}` is neither read nor dropped"
                          + (f" (and {len(left) - 1} more)" if len(left) > 1 else ""))


def _check_target_coverage(plan: Plan, inv: Inventory) -> None:
    """The target's tied pairs are the plan's, and in strict mode every other target tensor is written."""
    if tuple(sorted(plan.tied)) != tuple(sorted(inv.tied)):
        raise _edited("its tied pairs are not the target's")
    if not plan.option("strict"):
        return
    written = {t.name for s in plan.steps for t in s.targets}
    aliases = {a for a, _ in inv.tied}
    left = [m.name for m in inv.tensors if m.name not in written and m.name not in aliases]
    if left:
        raise _edited(f"target tensor `{left[0]}` is not written" + (f" (and {len(left) - 1} more)"
                                                                     if len(left) > 1 else ""))


def open_sink(plan: Plan, target: Endpoint, out: OutPath, planned: Inventory | None = None) -> TargetSink:
    """The sink for this apply, checked against the plan's target fingerprint and steps.

    `planned`: the inventory the plan was compiled from a moment ago, for an in-memory model
    target; it is not taken again (nothing can have changed the model in between)."""
    sink = _open_sink(plan, target, out, planned)
    if planned is not None and sink.inventory() is planned:
        return sink
    try:
        inv = sink.inventory()
        for i, step in enumerate(plan.steps):
            for t in step.targets:
                _check_step(plan, i, f"target tensor `{t.name}`", t, inv.index.get(t.name))
        if plan.spec is None:
            _check_target_coverage(plan, inv)
    except BaseException:
        sink.abort()
        raise
    return sink


def _open_sink(plan: Plan, target: Endpoint, out: OutPath, planned: Inventory | None) -> TargetSink:
    if plan.spec is None and target is None:
        raise error("WM521", "applying a saved plan needs the target", hint="pass --target")
    obj, fw = target_object(plan.spec, target)
    if out is not None:
        return _file_sink(plan, obj, fw, os.fspath(out))
    if is_factory(obj):
        obj = Built(build_factory(obj, device="meta", framework=fw, seed=int(plan.option("seed"))), obj, fw)
    if isinstance(obj, Built):
        return _factory_sink(plan, obj, planned)
    if isinstance(obj, (str, os.PathLike)):
        raise error("WM521", f"the target `{os.fspath(obj)}` is a file; say where to write the result",
                    hint="pass --out OUT.safetensors (the target file is used as the template of names and shapes)")
    return model_sink(plan, obj, planned)


def model_sink(plan: Plan, model: Endpoint, planned: Inventory | None = None) -> TargetSink:
    from wmap.formats import inventory_of
    inv = planned if planned is not None else inventory_of(model)
    _check_fingerprint("the target", inv, plan.target_fingerprint)
    if "keras" in sys.modules:  # first: with Keras' torch backend a Keras model is an nn.Module too
        from wmap.sinks.keras_sink import KerasModelSink, is_keras_model
        if is_keras_model(model):
            return KerasModelSink(model, inv)
    if "torch" in sys.modules and isinstance(model, sys.modules["torch"].nn.Module):
        from wmap.sinks.torch_sink import TorchModuleSink
        return TorchModuleSink(model, inv)
    raise error("WM521", f"cannot write into a {type(model).__name__}",
                hint="targets are torch modules, Keras models, `module:callable` factories, or --out files")


def _factory_sink(plan: Plan, built: Built, planned: Inventory | None) -> TargetSink:
    """Into the model a factory built. A torch model built on the meta device is rebuilt for real
    only if the plan keeps or splices into values or the model has non-persistent buffers no checkpoint carries
    (torch names do not shift between builds; Keras models are never rebuilt)."""
    model = built.model
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module) and _on_meta(model):
        from wmap.sinks.torch_sink import meta_leftovers
        state = set(model.state_dict().keys())
        if any(s.reads_target for s in plan.steps) or any(n not in state for n in meta_leftovers(model)):
            return model_sink(plan, build_factory(built.factory, device="cpu", framework=built.framework,
                                                  config=built.config, seed=int(plan.option("seed"))))
    return model_sink(plan, model, planned)


def _on_meta(model: torch.nn.Module) -> bool:
    return any(t.is_meta for t in model.state_dict().values())


# What an output path may end in: a file format wmap writes, or none (a folder of safetensors shards)
WRITTEN_SUFFIXES = (".safetensors", ".h5", ".keras")


def _check_out_suffix(out: str) -> None:
    """A path that names a format wmap does not write (`x.pth`, `x.npz`) is refused before anything is
    created, instead of becoming a folder `x.pth/model.safetensors` nobody asked for."""
    suffix = os.path.splitext(os.path.basename(out.rstrip("/\\")))[1].lower()
    if not suffix or out.lower().endswith(WRITTEN_SUFFIXES) or os.path.isdir(out) or out.endswith(("/", os.sep)):
        return
    raise error("WM512", f"cannot write `{out}`: wmap writes safetensors (`.safetensors`, or a folder of shards: a "
                f"path without a suffix) and Keras (`.weights.h5`, `.keras`), not `{suffix}`; nothing was written",
                hint=f"write `{out[:len(out) - len(suffix)]}.safetensors`, which PyTorch loads with "
                "`safetensors.torch.load_file` (and `torch.save` turns into a .pth if you need one)")


def _file_sink(plan: Plan, obj: Endpoint, fw: str | None, out: str) -> TargetSink:
    from wmap.core.version import VERSION
    from wmap.formats import inventory_of
    from wmap.lang.validate import parse_size
    from wmap.sinks.files import SafetensorsSink

    _check_out_suffix(out)
    if out.endswith((".h5", ".keras")):
        from wmap.run.keras_target import keras_file_sink
        return keras_file_sink(plan, obj, fw, out)
    template = None
    if is_factory(obj):
        obj = Built(build_factory(obj, device="meta", framework=fw, seed=int(plan.option("seed"))), obj, fw)
    if isinstance(obj, Built):
        inv = inventory_of(obj.model)
    else:
        template = open_reader(obj, fw) if any(s.reads_target for s in plan.steps) else None
        inv = template.inventory() if template is not None else inventory_of(obj, fw)
    _check_fingerprint("the target", inv, plan.target_fingerprint)
    order = [t for s in plan.steps for t in s.targets]
    metadata = {
        "format": "pt",
        "wmap_version": VERSION,
        "wmap_spec_digest": plan.spec_digest,
        "wmap_sources": ",".join(f"{n}={fp}" for n, fp in plan.source_fingerprints),
    }
    kind: ArrayKind = "torch" if installed("torch") else "numpy"
    return SafetensorsSink(out, order, inv, metadata, parse_size(str(plan.option("shard_size"))), template, kind)
