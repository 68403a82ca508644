"""Keras sink: lands values in a built Keras 3 model, atomically; and Keras files via Keras itself.

Where the work happens, and why:
- `stage` checks shape and dtype against the variable and makes the one copy of the value,
  C-contiguous and owned by the sink alone. Cross-framework presets are mostly transposes,
  and a transposed copy costs ~6x more in numpy than in torch, so the sink asks the executor
  for torch tensors when torch is installed, copies with `Tensor.contiguous()`, and hands the
  result to TensorFlow through DLPack (no second copy: `tf.convert_to_tensor` would copy a
  numpy array again). Large copies run on a few worker threads (torch releases the GIL), so
  they overlap each other and the executor's reads and NaN scan; `commit` first waits for
  all of them, so a failed copy still fails before anything is assigned. The copy is not
  optional: the source may be a live model or a memory-mapped file, and TensorFlow may adopt
  an assigned tensor's buffer as the variable's own.
- `commit` only calls `variable.assign`. Before each assign it keeps a reference to the
  variable's current value (with TensorFlow a zero-copy read: variable buffers are
  copy-on-write, so the reference keeps the old values alive), and if an assign raises,
  every variable already assigned gets its old value back. Ctrl-C is deferred to the end of
  the commit. The price of staging plus rollback is memory: old and new values coexist until
  the commit ends (peak ~2x the bytes assigned; the hand-written `set_weights` loop needs 1x,
  and leaves a half-written model when it fails).
- `finish` freezes: a layer whose trainable variables are all frozen gets
  `layer.trainable = False` (for BatchNormalization this also switches it to inference
  mode); a frozen variable in a partly frozen layer gets `variable.trainable = False`,
  which Keras 3 honours in `trainable_weights`. Keras fixes the trainable set when it
  compiles, so the notes say to compile again.

`KerasFileSink` writes `.weights.h5`, `.keras` or legacy `.h5` outputs: it applies into a
built Keras model it is handed (how that model is built, from a factory, a template or a
copy, is `run/keras_target.py`'s business), then saves with Keras itself to a temporary file
in the output's folder and renames it into place. An abort leaves nothing behind.

Keras is never imported here unless the caller already has a Keras object or asks for a
Keras output file.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from types import ModuleType
from typing import TYPE_CHECKING, TypeGuard

import numpy as np

from wmap.core.atomic import fsync_path, new_file_mode, sweep, temp_file
from wmap.core.errors import WmapError, error
from wmap.core.frameworks import KerasModel, KerasVariable, installed
from wmap.core.inventory import Inventory, TensorMeta
from wmap.formats._common import as_kind, dtype_name, is_torch_tensor, to_numpy, torch_dtype_name
from wmap.formats.keras_naming import keras_names
from wmap.sinks.base import (
    PARALLEL_MIN_ELEMENTS,
    ArrayKind,
    Check,
    LandedReader,
    StagedValues,
    defer_sigint,
    fresh_copy,
    worker_pool,
)

BUILD_HINT = ("build the model before planning: give it an input (`keras.Input(shape)` in a Functional model), "
               "call `model.build((None, ...))`, or call it once on a batch; a `module:callable` factory must "
               "return a built model")

if TYPE_CHECKING:
    import tensorflow as tf
    import torch

    from wmap.formats.base import Array


def is_keras_model(obj: object) -> TypeGuard[KerasModel]:
    """True for a Keras 3 model or layer; never imports Keras (an object of it implies it is loaded)."""
    keras = sys.modules.get("keras")
    layers = getattr(keras, "layers", None) if keras is not None else None
    layer_cls = getattr(layers, "Layer", None)
    return layer_cls is not None and isinstance(obj, layer_cls)


def _backend() -> str:
    keras = sys.modules.get("keras")
    try:
        return str(keras.backend.backend()) if keras is not None else "tensorflow"
    except Exception:  # pragma: no cover - a Keras without backend(): use the generic path
        return "unknown"


class KerasModelSink:
    """Stages values for a built Keras model's variables; commit assigns them all or none."""

    framework = "keras"
    checks_while_staging = True  # the executor hands its NaN/Inf check to `stage` (see TargetSink)

    def __init__(self, model: KerasModel, inventory: Inventory, array_kind: ArrayKind | None = None):
        if not getattr(model, "built", True):
            raise error("WM502", f"Keras model `{getattr(model, 'name', '?')}` has no variables yet (it is not "
                        "built)", hint=BUILD_HINT)
        self.model = model
        self._inventory = inventory
        self.array_kind: ArrayKind = array_kind or ("torch" if installed("torch") else "numpy")
        self.variables: dict[str, KerasVariable] = {}
        for name, v in keras_names(model):  # the names the model's inventory gave (formats.memory)
            self.variables.setdefault(name, v)
            self.variables.setdefault(getattr(v, "path", None) or v.name, v)
        self.staged: StagedValues[object] = StagedValues()  # owned arrays, or copies still running
        self._tf = _backend() == "tensorflow"
        self._pool: ThreadPoolExecutor | None = None

    def inventory(self) -> Inventory:
        return self._inventory

    @property
    def result(self) -> KerasModel:
        return self.model

    def _variable(self, meta: TensorMeta) -> KerasVariable:
        v = self.variables.get(meta.name)
        if v is None and meta.native:
            v = self.variables.get(meta.native)
        if v is None:
            raise error("WM602", f"the target Keras model has no variable `{meta.name}`",
                        hint="the model changed since the plan was made; plan again")
        return v

    def read_current(self, meta: TensorMeta) -> Array:
        v = self._variable(meta)
        return as_kind(np.asarray(v.numpy()), self.array_kind, f"`{meta.name}`")

    def landed(self) -> AbstractContextManager[LandedReader]:
        return contextlib.nullcontext(self.read_current)

    def stage(self, meta: TensorMeta, value: Array, check: Check | None = None) -> Callable[[], bool]:
        """Copy `value` for `meta`'s variable; with `check`, run it on that fresh copy (fused, so the
        NaN/Inf scan reads bytes already in cache). Returns the check's verdict, as a callable."""
        v = self._variable(meta)
        want_shape = tuple(int(d) for d in v.shape)
        if tuple(int(d) for d in value.shape) != want_shape:
            raise error("WM602", f"`{meta.name}`: value {tuple(value.shape)} does not fit the Keras variable "
                        f"{want_shape}", hint="the model changed since the plan was made; plan again")
        got = torch_dtype_name(value.dtype) if is_torch_tensor(value) else dtype_name(np.asarray(value).dtype)
        want_dtype = str(getattr(v.dtype, "name", v.dtype))
        if got != want_dtype:
            raise error("WM602", f"`{meta.name}`: value of dtype {got} does not fit the Keras variable "
                        f"({want_dtype})", hint="the model changed since the plan was made; plan again")
        if is_torch_tensor(value) and value.numel() >= PARALLEL_MIN_ELEMENTS:
            # large copies (mostly transposes) run on worker threads, overlapping the executor's
            # reads; torch and numpy release the GIL while they copy and scan
            job = self._workers().submit(self._own_checked, value, meta.name, check)
            self.staged.add(meta, job)
            return lambda: job.result()[1]
        owned, verdict = self._own_checked(value, meta.name, check)
        self.staged.add(meta, owned)
        return lambda: verdict

    def _own_checked(self, value: Array, name: str, check: Check | None) -> tuple[object, bool]:
        owned, plain = self._own(value, name)
        return owned, (check is not None and check(plain))

    def _workers(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = worker_pool("wmap-stage")
        return self._pool

    def settle(self) -> None:
        """Wait for every staged copy; the first failure is raised (before anything is assigned)."""
        items = self.staged.items
        try:
            for i, (meta, value) in enumerate(items):
                if isinstance(value, Future):
                    items[i] = (meta, value.result()[0])
        finally:
            self._stop_workers()

    def _stop_workers(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _own(self, value: Array, name: str) -> tuple[object, Array]:
        """A C-contiguous copy of `value` that nothing else references, in the form `assign` takes
        without copying again (with TensorFlow, a tensor: TF would copy a numpy array itself), and
        the same bytes as a torch tensor or numpy array (for the NaN/Inf check).

        The copy is what makes staging safe: the source may be a live model or a memory-mapped file,
        and with TensorFlow an assigned tensor's buffer can become the variable's own buffer.
        """
        if is_torch_tensor(value):
            t = value.detach()
            t = t.cpu() if t.device.type != "cpu" else t
            t = fresh_copy(t)  # one (transposed) copy, by torch
            if self._tf:
                tensor = _tf_from_torch(t)
                if tensor is not None:
                    return tensor, t
            arr = to_numpy(t, f"`{name}`")
            return (_tf().convert_to_tensor(arr) if self._tf else arr), t  # (TF's conversion copies once more)
        if self._tf:
            arr = np.asarray(value)
            return _tf().convert_to_tensor(arr), arr  # TF copies numpy input into a C-order tensor
        arr = np.array(value, copy=True, order="C")
        return arr, arr

    def _snapshot(self, v: KerasVariable) -> object:
        """The variable's current value, kept alive across an assign (zero-copy with TensorFlow)."""
        raw = self._raw_variable(v)
        if raw is not None:
            return _tf().raw_ops.ReadVariableOp(resource=raw.handle, dtype=raw.dtype)
        if self._tf and hasattr(v.value, "read_value"):
            return v.value.read_value()
        return np.array(v.numpy(), copy=True)

    def _assign(self, v: KerasVariable, value: object) -> None:
        raw = self._raw_variable(v)
        if raw is not None:
            _tf().raw_ops.AssignVariableOp(resource=raw.handle, value=value)
        else:
            v.assign(value)

    def _raw_variable(self, v: KerasVariable) -> tf.Variable | None:
        """The plain eager TensorFlow variable behind a Keras variable, when the raw read and assign
        ops can stand in for Keras' `assign` (~25 us a variable, where `read_value` + `assign` take
        ~100 us): staging has already checked shape and dtype, which is all Keras' assign adds. None
        under a distribution strategy, inside a stateless scope, or with another backend."""
        if not self._tf:
            return None
        raw = getattr(v, "_value", None)
        if type(raw).__name__ != "ResourceVariable" or _in_stateless_scope():
            return None
        return raw

    def commit(self) -> None:
        done: list[tuple[str, KerasVariable, object]] = []
        try:
            self.settle()
        except BaseException:
            self.staged.clear()
            raise
        items = self.staged.items
        try:
            with defer_sigint():
                try:
                    for i, (meta, value) in enumerate(items):
                        v = self._variable(meta)
                        old = self._snapshot(v)
                        self._assign(v, value)
                        items[i] = (meta, None)  # let the staged copy go as soon as it has landed
                        done.append((meta.name, v, old))
                except BaseException as exc:
                    failed = items[len(done)][0].name if len(done) < len(items) else "?"
                    replacement = self._rollback(done, failed, exc)
                    if replacement is exc:
                        raise
                    raise replacement from exc
        finally:
            self.staged.clear()

    def _rollback(self, done: list[tuple[str, KerasVariable, object]], failed: str, exc: BaseException) -> BaseException:
        lost = []
        for name, v, old in reversed(done):
            try:
                self._assign(v, old)
            except Exception:
                lost.append(name)
        if isinstance(exc, (KeyboardInterrupt, MemoryError)) and not lost:
            return exc
        what = f"{type(exc).__name__}: {exc}" if not isinstance(exc, WmapError) else exc.render(limit=1)
        if lost:
            return error("WM602", f"assigning `{failed}` failed ({what}), and {len(lost)} variable(s) already "
                         f"assigned could not be restored: {', '.join(sorted(lost)[:8])}",
                         hint="the Keras model is partly written: rebuild it or reload its weights")
        return error("WM602", f"assigning `{failed}` failed ({what}); the {len(done)} variable(s) already "
                     "assigned were restored, so the Keras model is as it was")

    def abort(self) -> None:
        self._stop_workers()
        self.staged.clear()

    def finish(self, frozen: set[str], options: dict[str, object]) -> list[str]:
        if not frozen:
            return []
        frozen_ids = {id(v) for name, v in self.variables.items() if name in frozen}
        layers, partial, bn = _freeze(self.model, frozen_ids, {id(v): n for n, v in keras_names(self.model)})
        notes: list[str] = []
        if layers:
            notes.append(f"{len(layers)} Keras layer(s) set trainable=False: {_names(layers)}")
        if partial:
            notes.append(f"{len(partial)} variable(s) in partly frozen layers set trainable=False: "
                         f"{_names(partial)}")
        if layers or partial:
            notes.append("compile the Keras model again (`model.compile(...)`) before training: a compiled "
                         "model keeps the trainable variables it was compiled with")
        if bn:
            notes.append(f"{len(bn)} BatchNormalization layer(s) in frozen parts: {_names(bn)}; with "
                         "trainable=False Keras runs them in inference mode (moving statistics, no updates) even "
                         "when training=True")
        return notes


def _names(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", and {len(items) - limit} more" if len(items) > limit else "")


def _freeze(model: KerasModel, frozen_ids: set[int], names: dict[int, str]) -> tuple[list[str], list[str], list[str]]:
    """Freeze whole layers where every trainable variable is frozen, else single variables.

    Returns (frozen layer paths, variables frozen one by one, BatchNormalization layers frozen).
    """
    layers: list[str] = []
    partial: list[str] = []
    bn: list[str] = []

    def visit(layer: KerasModel, path: str) -> None:
        own = [v for v in layer.weights if v.trainable]
        if not own or not any(id(v) in frozen_ids for v in own):
            return
        if all(id(v) in frozen_ids for v in own):
            layer.trainable = False
            layers.append(path or layer.name)
            bn.extend(sub for sub, la in _walk(layer, path or layer.name) if type(la).__name__ == "BatchNormalization")
            return
        for child in _sublayers(layer):
            visit(child, f"{path}.{child.name}" if path else child.name)
        for v in layer.weights:  # what no child could freeze whole: variable by variable
            if id(v) in frozen_ids and v.trainable:
                v.trainable = False
                partial.append(names.get(id(v), getattr(v, "path", None) or v.name))

    visit(model, "")
    return layers, partial, bn


def _walk(layer: KerasModel, path: str) -> Iterator[tuple[str, KerasModel]]:
    yield path, layer
    for child in _sublayers(layer):
        yield from _walk(child, f"{path}.{child.name}")


def _sublayers(layer: KerasModel) -> list[KerasModel]:
    if not hasattr(layer, "_flatten_layers"):
        return []
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _tf() -> ModuleType:
    import tensorflow as tf

    return tf


def _in_stateless_scope() -> bool:
    """Inside `keras.StatelessScope`, an assign is recorded, not made: leave it to Keras."""
    scope = sys.modules.get("keras.src.backend.common.stateless_scope")
    return bool(scope is not None and scope.in_stateless_scope())


def _tf_from_torch(t: torch.Tensor) -> tf.Tensor | None:
    """A TF tensor sharing a contiguous torch tensor's memory (DLPack), or None if TF refuses it."""
    try:
        from torch.utils import dlpack

        return _tf().experimental.dlpack.from_dlpack(dlpack.to_dlpack(t))
    except Exception:  # an old TF, a dtype DLPack lacks: the numpy route copies instead
        return None




# ---------------------------------------------------------------------------------------------
# Keras output files


_KINDS = ((".weights.h5", "weights"), (".keras", "keras"), (".h5", "h5"), (".hdf5", "h5"))


def output_kind(out: str) -> tuple[str, str]:
    lower = out.lower()
    for suffix, kind in _KINDS:
        if lower.endswith(suffix):
            return kind, out[len(out) - len(suffix):]
    raise error("WM521", f"`{out}` is not a Keras output file", hint="Keras outputs end in .weights.h5, .keras or .h5")


class KerasFileSink:
    """Applies into a private in-memory Keras model, then saves it with Keras, atomically."""

    framework = "keras"  # the in-memory model already holds what `keep` keeps
    checks_while_staging = True  # through the inner sink

    def __init__(self, inner: KerasModelSink, path: str, kind: str, suffix: str, frozen: set[str],
                 options: dict[str, object]):
        self.inner = inner
        self.path = path
        self.kind = kind
        self.suffix = suffix
        self.array_kind = inner.array_kind
        self._frozen = frozen
        self._options = options
        self._notes: list[str] = []
        self._tmp: str | None = None

    def inventory(self) -> Inventory:
        return self.inner.inventory()

    @property
    def result(self) -> str:
        return self.path

    @property
    def model(self) -> KerasModel:
        return self.inner.model

    def read_current(self, meta: TensorMeta) -> Array:
        return self.inner.read_current(meta)

    def landed(self) -> AbstractContextManager[LandedReader]:
        return self.inner.landed()  # the file holds exactly the model that was saved

    def stage(self, meta: TensorMeta, value: Array, check: Check | None = None) -> Callable[[], bool]:
        return self.inner.stage(meta, value, check)

    def commit(self) -> None:
        self.inner.commit()
        if self.kind == "weights":
            if self._frozen:
                self._notes.append(f"{len(self._frozen)} tensor(s) are marked frozen; a `.weights.h5` file has "
                                   "no trainable flag, so `freeze` applies when the plan is applied to a model")
        else:  # `.keras` and full-model `.h5` store each layer's `trainable` in the model config
            self._notes += self.inner.finish(self._frozen, self._options)
        self._save()

    def _save(self) -> None:
        sweep(os.path.dirname(os.path.abspath(self.path)))
        try:
            fd, tmp = temp_file(self.path, self.suffix)
        except OSError as e:
            raise error("WM512", f"cannot write `{self.path}`: {e.strerror}",
                        hint="check the folder exists and is writable") from None
        os.close(fd)
        self._tmp = tmp
        model = self.inner.model
        try:
            with quiet_keras():
                if self.kind == "weights":
                    model.save_weights(tmp, overwrite=True)
                else:
                    model.save(tmp, overwrite=True)
            os.chmod(tmp, new_file_mode())  # Keras writes the file anew: give it an ordinary file's permissions
            fsync_path(tmp)
            os.replace(tmp, self.path)
        except WmapError:
            raise
        except OSError as e:
            raise error("WM512", f"cannot write `{self.path}`: {e.strerror or e}") from None
        except Exception as e:
            raise error("WM512", f"Keras could not save `{self.path}`: {type(e).__name__}: {e}",
                        hint="a `.keras`/`.h5` file needs a model Keras can serialise (custom layers must be "
                        "registered); `.weights.h5` needs only the weights") from None
        self._tmp = None

    def abort(self) -> None:
        self.inner.abort()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def finish(self, frozen: set[str], options: dict[str, object]) -> list[str]:
        return [*self._notes, f"saved with Keras {_keras_version()} to `{self.path}`"]


def _keras_version() -> str:
    keras = sys.modules.get("keras")
    return str(getattr(keras, "__version__", "?"))


@contextlib.contextmanager
def quiet_keras() -> Iterator[None]:
    """Keras warns that `.h5` is a legacy format; the user asked for it by name."""
    import logging
    import warnings

    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
