"""The Keras sink's commit through TensorFlow's raw variable ops (issue 18): the same values as
Keras' own `assign`, and Keras' path wherever Keras does more than assign (a stateless scope)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import wmap  # noqa: E402
from wmap.lang import parse_spec  # noqa: E402

pytestmark = [pytest.mark.tf, pytest.mark.torch]

SPEC = parse_spec("wmap 1\nw -> dense.kernel | linear_to_dense\nb -> dense.bias\n")


def _model() -> Any:
    inp = keras.Input((3,))
    return keras.Model(inp, keras.layers.Dense(4, name="dense")(inp))


def _source() -> dict[str, Any]:
    g = torch.Generator().manual_seed(3)
    return {"w": torch.randn(4, 3, generator=g), "b": torch.randn(4, generator=g)}


def test_values_land_as_keras_assign_lands_them_and_the_variables_stay_keras_variables() -> None:
    ours, theirs, src = _model(), _model(), _source()
    wmap.apply(SPEC, source=src, target=ours)
    dense = theirs.get_layer("dense")
    dense.kernel.assign(src["w"].numpy().T)
    dense.bias.assign(src["b"].numpy())
    for a, b in zip(ours.weights, theirs.weights, strict=True):
        assert a.numpy().tobytes() == b.numpy().tobytes() and a.dtype == b.dtype and type(a) is type(b)
    x = np.ones((2, 3), "float32")
    assert np.array_equal(ours(x).numpy(), theirs(x).numpy())  # the model computes with what landed


def test_inside_a_stateless_scope_the_assign_is_left_to_keras() -> None:
    """Keras records an assign made in a `StatelessScope` instead of making it: the raw op would
    write the variable behind the scope's back."""
    model, src = _model(), _source()
    before = model.get_layer("dense").kernel.numpy().copy()
    with keras.StatelessScope() as scope:
        wmap.apply(SPEC, source=src, target=model)
        recorded = scope.get_current_value(model.get_layer("dense").kernel)
    assert np.array_equal(model.get_layer("dense").kernel.numpy(), before)
    assert np.array_equal(np.asarray(recorded), src["w"].numpy().T)
