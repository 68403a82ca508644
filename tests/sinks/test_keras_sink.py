"""The Keras sink: atomic commits, freezing that Keras honours, unbuilt models, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import wmap  # noqa: E402
from tests.support.keras_models import (  # noqa: E402
    KERAS_TO_TORCH,
    ROOT,
    TORCH_TO_KERAS,
    images,
    keras_cnn,
    keras_out,
    keras_weights,
    random_keras,
    random_torch,
)
from wmap.core.errors import WmapError  # noqa: E402
from wmap.lang import parse_spec  # noqa: E402
from wmap.sinks.keras_sink import KerasModelSink, is_keras_model  # noqa: E402

pytestmark = [pytest.mark.tf, pytest.mark.torch,
              # Keras 3.15's own `np.array(variable)` under numpy 2; not ours to fix
              pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")]

FREEZE = TORCH_TO_KERAS.read_text() + "\nfreeze conv1.**, bn1.**, attn.**, lstm.lstm_cell.kernel\n"


@pytest.fixture(scope="module")
def source() -> Any:
    return random_torch(seed=4)


@pytest.fixture(scope="module")
def plan(source: Any) -> wmap.Plan:
    return wmap.plan(TORCH_TO_KERAS, source=source, target=keras_cnn())


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


# -- atomicity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("fault", [RuntimeError("injected"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_fault_at_any_step_leaves_the_keras_model_unchanged(plan: wmap.Plan, source: Any, where: str,
                                                            fault: BaseException) -> None:
    n = len(plan.steps)
    at = {"first": 0, "middle": n // 2, "last": n - 1}[where]
    target = random_keras(seed=5)
    before = keras_weights(target)

    def hook(i: int, step: Any) -> None:
        if i == at:
            raise fault

    with pytest.raises(type(fault)):
        wmap.apply(plan, source=source, target=target, on_step=hook)
    assert _same(keras_weights(target), before)
    wmap.apply(plan, source=source, target=target)  # and the same plan then applies cleanly
    assert not _same(keras_weights(target), before)


DENSE_RULES = "{i:int}.weight -> dense_{i}.kernel | linear_to_dense\n{i:int}.bias -> dense_{i}.bias\n"


def _dense_stack() -> tuple[Any, dict[str, Any], wmap.Spec]:
    """Three Dense(512) layers: kernels of 2**18 elements, copied on the sink's worker threads."""
    from wmap.sinks.base import PARALLEL_MIN_ELEMENTS

    inp = keras.Input((512,))
    x = inp
    for i in range(3):
        x = keras.layers.Dense(512, name=f"dense_{i}")(x)
    model = keras.Model(inp, x, name="stack")
    src = {f"{i}.weight": torch.randn(512, 512) for i in range(3)} | {f"{i}.bias": torch.randn(512) for i in range(3)}
    assert src["0.weight"].numel() >= PARALLEL_MIN_ELEMENTS
    return model, src, parse_spec("wmap 1\n" + DENSE_RULES)


def test_large_copies_on_worker_threads_land_exactly() -> None:
    model, src, spec = _dense_stack()
    wmap.apply(spec, source=src, target=model)
    for i in range(3):
        assert np.array_equal(model.get_layer(f"dense_{i}").kernel.numpy(), src[f"{i}.weight"].numpy().T)


def test_a_failing_worker_copy_fails_before_anything_is_assigned(monkeypatch: pytest.MonkeyPatch) -> None:
    model, src, spec = _dense_stack()
    before = keras_weights(model)
    real = KerasModelSink._own

    def flaky(self: KerasModelSink, value: Any, name: str) -> Any:
        if name.endswith("dense_2.kernel"):
            raise MemoryError  # the last staged copy: every other one has landed in staging by then
        return real(self, value, name)

    monkeypatch.setattr(KerasModelSink, "_own", flaky)
    with pytest.raises(MemoryError):
        wmap.apply(spec, source=src, target=model)
    assert _same(keras_weights(model), before)


@pytest.mark.parametrize("where", [0, 2])  # the first and the last value staged
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_the_nan_check_runs_on_the_staged_copy_and_refuses_before_any_assign(where: int, bad: float) -> None:
    model, src, spec = _dense_stack()
    before = keras_weights(model)
    src = dict(src)
    src[f"{where}.weight"] = src[f"{where}.weight"].clone()
    src[f"{where}.weight"][5, 7] = bad  # one value in a large (worker-copied) tensor
    with pytest.raises(WmapError) as e:
        wmap.apply(parse_spec('wmap 1\noption nonfinite = "error"\n' + DENSE_RULES), source=src, target=model)
    assert e.value.diagnostics[0].code == "WM603" and f"dense_{where}.kernel" in e.value.diagnostics[0].message
    assert _same(keras_weights(model), before)
    report = wmap.apply(parse_spec('wmap 1\noption nonfinite = "warn"\n' + DENSE_RULES), source=src, target=model)
    assert [w.code for w in report.warnings] == ["WM603"]
    kernel = model.get_layer(f"dense_{where}").kernel.numpy()
    assert np.array_equal(kernel, src[f"{where}.weight"].numpy().T, equal_nan=True)


def _fail_assign(monkeypatch: pytest.MonkeyPatch, call: int, exc: BaseException) -> None:
    """Make the sink's `call`-th variable assign (counting from 1) raise `exc`."""
    calls = {"n": 0}
    real = KerasModelSink._assign

    def flaky(self: KerasModelSink, v: Any, value: Any) -> None:
        calls["n"] += 1
        if calls["n"] == call:
            raise exc
        real(self, v, value)

    monkeypatch.setattr(KerasModelSink, "_assign", flaky)


@pytest.mark.parametrize("fail_at", [0, 7, 28])
def test_a_failing_assign_mid_commit_restores_what_was_assigned(plan: wmap.Plan, source: Any, fail_at: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    target = random_keras(seed=6)
    before = keras_weights(target)
    _fail_assign(monkeypatch, fail_at + 1, RuntimeError("device lost"))
    with pytest.raises(WmapError) as e:
        wmap.apply(plan, source=source, target=target)
    assert e.value.diagnostics[0].code == "WM602"
    assert "device lost" in str(e.value) and f"the {fail_at} variable(s) already assigned were restored" in str(e.value)
    assert _same(keras_weights(target), before)


def test_memory_error_mid_commit_is_re_raised_after_restoring(plan: wmap.Plan, source: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    target = random_keras(seed=7)
    before = keras_weights(target)
    _fail_assign(monkeypatch, 12, MemoryError())
    with pytest.raises(MemoryError):
        wmap.apply(plan, source=source, target=target)
    assert _same(keras_weights(target), before)


def test_stage_refuses_a_value_that_does_not_fit(plan: wmap.Plan) -> None:
    target = keras_cnn()
    sink = KerasModelSink(target, wmap.inventory_of(target))
    meta = plan.steps[0].targets[0]
    with pytest.raises(WmapError, match="does not fit") as e:
        sink.stage(meta, np.zeros((1, 2), np.float32))
    assert e.value.diagnostics[0].code == "WM602"
    with pytest.raises(WmapError, match="dtype"):
        sink.stage(meta, np.zeros(meta.shape, np.float64))


def test_source_and_target_may_be_the_same_keras_model() -> None:
    """Swapping two layers' weights inside one model reads every old value before any lands."""
    inp = keras.Input((4,))
    out = keras.layers.Dense(4, name="b")(keras.layers.Dense(4, name="a")(inp))
    model = keras.Model(inp, out)
    a, b = (np.array(model.get_layer(n).kernel.numpy()) for n in "ab")
    spec = parse_spec("wmap 1\na.kernel -> b.kernel\nb.kernel -> a.kernel\n{a,b}.bias -> {a,b}.bias\n")
    wmap.apply(spec, source=model, target=model)
    assert np.array_equal(model.get_layer("a").kernel.numpy(), b)
    assert np.array_equal(model.get_layer("b").kernel.numpy(), a)


def test_landed_values_share_no_memory_with_the_source() -> None:
    """With TensorFlow an assigned tensor's buffer can become the variable's: staging copies, so
    training the source model afterwards must not move the Keras model."""
    src = random_torch(seed=13)
    target = keras_cnn()
    wmap.apply(TORCH_TO_KERAS, source=src, target=target)
    landed = keras_weights(target)
    with torch.no_grad():
        for t in src.state_dict().values():
            t.add_(1)
    assert _same(keras_weights(target), landed)


def test_numpy_and_torch_staging_land_the_same_bytes(plan: wmap.Plan, source: Any) -> None:
    """Without torch the sink stages numpy arrays; the bytes must not depend on it."""
    from wmap.run.execute import run_steps
    from wmap.run.resolve import open_sources

    landed = []
    for kind in ("torch", "numpy"):
        target = keras_cnn()
        sink = KerasModelSink(target, wmap.inventory_of(target), array_kind=kind)  # type: ignore[arg-type]
        readers = open_sources(plan, source)
        run_steps(plan, readers, sink)
        sink.settle()
        assert all(type(v).__module__.startswith("tensorflow") for _, v in sink.staged.items)
        sink.commit()
        landed.append(keras_weights(target))
    assert _same(*landed)


# -- freezing ----------------------------------------------------------------------------------------


def test_freeze_sets_trainable_reports_recompile_and_batchnorm(source: Any) -> None:
    target = keras_cnn()
    report = wmap.apply(parse_spec(FREEZE), source=source, target=target)
    layer = target.get_layer
    assert not layer("conv1").trainable and not layer("bn1").trainable and not layer("attn").trainable
    assert layer("lstm").trainable and layer("up").trainable  # partly frozen / not frozen
    cell = layer("lstm").cell
    assert not cell.kernel.trainable and cell.recurrent_kernel.trainable and cell.bias.trainable
    trainable = {v.path for v in target.trainable_weights}
    assert "lstm/lstm_cell/kernel" not in trainable and "conv1/kernel" not in trainable
    assert "lstm/lstm_cell/bias" in trainable and "up/kernel" in trainable
    text = "\n".join(report.notes)
    assert "trainable=False: conv1, bn1, attn" in text
    assert "lstm.lstm_cell.kernel" in text
    assert "compile the Keras model again" in text
    assert "BatchNormalization layer(s) in frozen parts: bn1" in text and "inference mode" in text


def test_frozen_variables_do_not_move_in_training(source: Any) -> None:
    """Freezing that freezes: an optimizer step over `model.trainable_weights` (what `fit` updates)
    changes exactly the variables that are not frozen; the frozen BatchNorm keeps its statistics."""
    import tensorflow as tf

    target = keras_cnn()
    wmap.apply(parse_spec(FREEZE), source=source, target=target)
    before = keras_weights(target)
    x = np.ascontiguousarray(images(4).transpose(0, 2, 3, 1))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(target(x, training=True) - 1.0))
    grads = tape.gradient(loss, target.trainable_weights)
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, target.trainable_weights))
    after = keras_weights(target)
    frozen = {"conv1/kernel", "conv1/bias", "bn1/gamma", "bn1/beta", "bn1/moving_mean", "bn1/moving_variance",
              "lstm/lstm_cell/kernel", *(k for k in before if k.startswith("attn/"))}
    for k in before:
        moved = not np.array_equal(before[k], after[k])
        assert moved == (k not in frozen), k


# -- unbuilt models, lazy imports --------------------------------------------------------------------


def test_unbuilt_keras_target_is_wm502_with_a_hint(source: Any) -> None:
    spec = parse_spec('wmap 1\ntarget keras "wmap.examples.models:keras_unbuilt"\nfc.weight -> fc.kernel\n')
    with pytest.raises(WmapError) as e:
        wmap.plan(spec, source=source)
    d = e.value.diagnostics[0]
    assert d.code == "WM502" and "not built" in d.message and d.hint and "build" in d.hint.lower()
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(WmapError) as e2:
        KerasModelSink(unbuilt, wmap.inventory_of(keras_cnn()))
    assert e2.value.diagnostics[0].code == "WM502" and "keras.Input" in (e2.value.diagnostics[0].hint or "")


def test_is_keras_model() -> None:
    assert is_keras_model(keras_cnn()) and is_keras_model(keras.layers.Dense(2))
    assert not is_keras_model(torch.nn.Linear(2, 2)) and not is_keras_model({"a": np.zeros(2)})


def test_imports_stay_lazy() -> None:
    code = ("import sys\nfrom wmap.sinks.keras_sink import is_keras_model\nimport wmap.examples.models\n"
            "assert not is_keras_model(object())\n"
            "bad = [m for m in ('keras', 'tensorflow', 'torch') if m in sys.modules]\nassert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ROOT))


def test_keras_to_torch_factory_target(tmp_path: Path) -> None:
    """The reverse example spec, with the source given as a Keras 3 weights file."""
    km = random_keras(seed=8)
    path = tmp_path / "twin_cnn.weights.h5"
    km.save_weights(path)
    tm = wmap.apply(KERAS_TO_TORCH, source=str(path)).target
    x = images()
    with torch.no_grad():
        y = tm(torch.from_numpy(x)).numpy()
    assert np.abs(y - keras_out(km, x)).max() < 1e-4
