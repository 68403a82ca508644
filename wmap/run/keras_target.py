"""The Keras model a Keras output file is written from: built from a `module:callable` factory,
rebuilt from a `.keras`/full-model `.h5` template, or copied from a given model (so writing a file
leaves the caller's model alone). The sink then applies into it and saves it."""

from __future__ import annotations

import os

from wmap.core.errors import error
from wmap.core.frameworks import KerasModel
from wmap.planning.plan import Plan
from wmap.run.factory import Built, build_factory, is_factory
from wmap.sinks.keras_sink import (
    BUILD_HINT,
    KerasFileSink,
    KerasModelSink,
    is_keras_model,
    output_kind,
    quiet_keras,
)


def keras_file_sink(plan: Plan, obj: object, fw: str | None, out: str) -> KerasFileSink:
    """The sink for a Keras output file: builds the target model in memory, checks it against the plan."""
    from wmap.formats import inventory_of

    kind, suffix = output_kind(out)
    model = _target_model(obj, fw, kind, out, int(plan.option("seed")))
    inv = inventory_of(model)
    if inv.fingerprint() != plan.target_fingerprint:
        raise error("WM604", f"the target built for `{out}` (fingerprint {inv.fingerprint()}) is not the one the plan "
                    f"was made for ({plan.target_fingerprint})", hint="make the plan again against this target")
    return KerasFileSink(KerasModelSink(model, inv), out, kind, suffix, set(plan.frozen), dict(plan.options))


def _target_model(obj: object, fw: str | None, kind: str, out: str, seed: int = 0) -> KerasModel:
    """A private built Keras model to apply into: from a factory, a template file, or a copy of a model."""
    if isinstance(obj, Built) or is_factory(obj):  # wmap's own build, for this call: no copy needed
        factory = obj.factory if isinstance(obj, Built) else obj
        model = obj.model if isinstance(obj, Built) else build_factory(obj, device=None, framework=fw, seed=seed)
        if not is_keras_model(model):
            raise error("WM521", f"`{out}` is a Keras file, but the factory `{factory}` built a "
                        f"{type(model).__module__}.{type(model).__name__}",
                        hint="write a PyTorch target to `.safetensors`, or name a Keras factory")
        return _built(model, factory)
    if isinstance(obj, (str, os.PathLike)):
        return _load_template(os.fspath(obj), out)
    if is_keras_model(obj):
        return _copy_model(_built(obj, getattr(obj, "name", "model")))
    raise error("WM521", f"`{out}` is a Keras file, but the target is a {type(obj).__module__}.{type(obj).__name__}",
                hint="give the target as a Keras model, a `module:callable` Keras factory, or a `.keras` file")


def _built(model: KerasModel, what: str) -> KerasModel:
    if not getattr(model, "built", False):
        raise error("WM502", f"Keras model `{what}` has no variables yet (it is not built)", hint=BUILD_HINT)
    return model


def _load_template(path: str, out: str) -> KerasModel:
    lower = path.lower()
    if lower.endswith(".keras") or (lower.endswith((".h5", ".hdf5")) and not lower.endswith(".weights.h5")):
        import keras

        try:
            with quiet_keras():
                model = keras.saving.load_model(path, compile=False)
        except Exception as e:
            raise error("WM521", f"cannot rebuild a Keras model from `{path}` to write `{out}`: "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                        hint="a `.h5` file holding only weights has no architecture: name a `module:callable` "
                        "Keras factory as the target instead") from None
        return _built(model, path)
    raise error("WM521", f"`{path}` holds weights but no architecture, so wmap cannot build the Keras model that "
                f"writes `{out}`", hint="name the target as a `module:callable` Keras factory or a `.keras` file")


def _copy_model(model: KerasModel) -> KerasModel:
    """A copy of a Keras model with its current weights, so writing a file leaves the caller's model alone."""
    import keras

    try:
        clone = keras.models.clone_model(model)
    except Exception as e:
        raise error("WM521", f"cannot copy Keras model `{model.name}` to write a file: {type(e).__name__}: {e}",
                    hint="apply into the model itself (no --out) and save it with `model.save(...)`") from None
    if not clone.built or len(clone.weights) != len(model.weights):
        raise error("WM521", f"the copy of Keras model `{model.name}` does not have its variables",
                    hint="apply into the model itself (no --out) and save it with `model.save(...)`")
    for src, dst in zip(model.weights, clone.weights, strict=True):
        dst.assign(src.value)
    return clone
