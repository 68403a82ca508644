"""Property: for random chains of 1:1 transforms over random shapes, the shapes and dtypes
`infer` predicts (from metadata alone) are the ones execution produces, on numpy and torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings

from tests.support.transform_strategies import Shape, chains
from wmap.transforms import ArrayMeta, Transform, get_ops


def _run(steps: list[Transform], x: Any, backend: str) -> list[Any]:
    ops = get_ops(backend)
    vals = [ops.asarray(x, None)]
    for t in steps:
        (y,) = t.apply([vals[-1]], ops)
        vals.append(y)
    return vals


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains())
def test_inferred_shapes_match_execution(chain: tuple[Shape, list[Transform], list[ArrayMeta]]) -> None:
    shape, steps, metas = chain
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    backends = ["numpy"]
    try:
        import torch  # noqa: F401
        backends.append("torch")
    except ImportError:  # pragma: no cover
        pass
    results = {}
    for b in backends:
        ops = get_ops(b)
        vals = _run(steps, x, b)
        for v, m, t in zip(vals, metas, [None, *steps], strict=True):
            assert ops.shape(v) == m.shape, f"{t.describe() if t else 'input'} on {b}"
            assert ops.dtype_name(v) == m.dtype
        results[b] = vals[-1]
    if "torch" in results:
        got = get_ops("torch").to_numpy(results["torch"])  # type: ignore[attr-defined]
        np.testing.assert_allclose(got.astype(np.float64), results["numpy"].astype(np.float64), rtol=1e-6, atol=1e-6)

