"""What the transforms compute, against independent references (timm's rules, torch ops)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from wmap.core.inventory import TensorMeta
from wmap.transforms import ArrayMeta, InferContext, Transform, TransformError, build, get_ops

NP = get_ops("numpy")


def run(name: str, xs: list[np.ndarray], *args: Any, targets: tuple[tuple[int, ...], ...] = (),
        **kw: Any) -> tuple[Transform, tuple[np.ndarray, ...]]:
    ctx = InferContext((), tuple(TensorMeta(f"t{i}", s, str(xs[0].dtype)) for i, s in enumerate(targets)))
    t = build(name, list(args), list(kw.items()))
    given = xs[:-1] if t.READS_TARGET else xs  # the target's current value is not an input to infer
    resolved, outs = t.infer([ArrayMeta(x.shape, str(x.dtype)) for x in given], ctx)
    ys = resolved.apply(xs, NP)
    assert [y.shape for y in ys] == [o.shape for o in outs]
    return resolved, ys


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def timm_adapt_input_conv(in_chans: int, w: np.ndarray) -> np.ndarray:
    """timm.models._manipulate.adapt_input_conv, restated in numpy for the 3-channel case."""
    o, i, kh, kw = w.shape
    if in_chans == 1:
        return w.sum(axis=1, keepdims=True)
    rep = int(math.ceil(in_chans / 3))
    return np.tile(w, (1, rep, 1, 1))[:, :in_chans] * (3 / float(in_chans))


@pytest.mark.parametrize("to", [1, 2, 4, 13])
def test_adapt_channels_is_timms_rule(to: int) -> None:
    w = rand(8, 3, 3, 3)
    resolved, (y,) = run("adapt_channels", [w], targets=((8, to, 3, 3),))
    assert resolved.describe() == f"adapt_channels(to={to})"
    np.testing.assert_allclose(y, timm_adapt_input_conv(to, w), rtol=1e-6, atol=1e-6)


def test_adapt_channels_zeros_keeps_rgb() -> None:
    w = rand(8, 3, 3, 3)
    _, (y,) = run("adapt_channels", [w], mode="zeros", targets=((8, 4, 3, 3),))
    np.testing.assert_array_equal(y[:, :3], w)
    assert not y[:, 3:].any()


@pytest.mark.parametrize("prefix,src,dst", [(1, 4, 6), (1, 6, 3), (0, 5, 7), (4, 3, 3)])
def test_resize_token_grid_matches_torch_interpolate(prefix: int, src: int, dst: int) -> None:
    torch = pytest.importorskip("torch")
    d = 6
    pos = rand(1, prefix + src * src, d)
    resolved, (y,) = run("resize", [pos], prefix_tokens=prefix, targets=((1, prefix + dst * dst, d),))
    assert resolved.params()["from_grid"] == [src, src] and resolved.params()["size"] == [dst, dst]
    grid = torch.from_numpy(pos[:, prefix:]).reshape(1, src, src, d).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=False)
    ref = ref.permute(0, 2, 3, 1).reshape(1, dst * dst, d).numpy()
    np.testing.assert_array_equal(y[:, :prefix], pos[:, :prefix])
    np.testing.assert_allclose(y[:, prefix:], ref, rtol=1e-5, atol=1e-5)


def test_resize_layout_follows_the_differing_dims() -> None:
    assert run("resize", [rand(1, 4, 4, 3)], targets=((1, 6, 6, 3),))[0].params()["layout"] == "hwc"
    assert run("resize", [rand(1, 3, 4, 4)], targets=((1, 3, 6, 6),))[0].params()["layout"] == "chw"
    assert run("resize", [rand(1, 17, 3)], prefix_tokens=1, targets=((1, 50, 3),))[0].params()["layout"] == "tokens"


def test_pad_fills() -> None:
    w = rand(4, 3)
    _, (m,) = run("pad", [w], 0, init="mean", targets=((6, 3),))
    np.testing.assert_array_equal(m[:4], w)
    np.testing.assert_allclose(m[4:], np.repeat(w.mean(0, keepdims=True), 2, 0), rtol=1e-6)
    _, (n1,) = run("pad", [w], 0, 2000, init="normal", std=0.5, seed=7)
    _, (n2,) = run("pad", [w], 0, 2000, init="normal", std=0.5, seed=7)
    _, (n3,) = run("pad", [w], 0, 2000, init="normal", std=0.5, seed=8)
    np.testing.assert_array_equal(n1, n2)
    assert not np.array_equal(n1, n3)
    assert abs(float(n1[4:].std()) - 0.5) < 0.03
    _, (s,) = run("pad", [w], 1, 5, side="start", init="constant", value=-1.0)
    np.testing.assert_array_equal(s[:, 2:], w)
    assert (s[:, :2] == -1).all()


def test_lora_merge() -> None:
    w, a, b = rand(6, 5, seed=1), rand(2, 5, seed=2), rand(6, 2, seed=3)
    _, (y,) = run("lora", [w, a, b], 0.5)
    np.testing.assert_allclose(y, w + 0.5 * b @ a, rtol=1e-6, atol=1e-6)


def test_arithmetic() -> None:
    a, b = rand(3, 4, seed=1), rand(3, 4, seed=2)
    np.testing.assert_allclose(run("lerp", [a, b], 0.25)[1][0], a + 0.25 * (b - a), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(run("sub", [a, b])[1][0], a - b)
    np.testing.assert_allclose(run("update", [a, b], 0.1)[1][0], a - 0.1 * b, rtol=1e-6)
    np.testing.assert_allclose(run("average", [a, b], weights=[1, 3])[1][0], 0.25 * a + 0.75 * b, rtol=1e-6)
    np.testing.assert_allclose(run("average", [a, b], weights=[1, -1], normalize=False)[1][0], a - b, rtol=1e-6)
    np.testing.assert_array_equal(run("prune", [a], 0.5)[1][0], np.where(np.abs(a) < 0.5, 0, a))


def test_add_row_is_numpy_broadcasting_of_one_row() -> None:
    """XLM-RoBERTa's fold (keras-hub: `position + token_type[0]`), as numpy broadcasts it, to the bit."""
    pos, types = rand(6, 4, seed=1), rand(2, 4, seed=2)
    np.testing.assert_array_equal(run("add_row", [pos, types])[1][0], pos + types[0])
    np.testing.assert_array_equal(run("add_row", [pos, rand(6, 3, seed=3)], 2, dim=1)[1][0],
                                  pos + rand(6, 3, seed=3)[:, 2:3])
    with pytest.raises(TransformError, match="does not fit"):
        run("add_row", [pos, rand(2, 5)])
    with pytest.raises(TransformError, match="out of range"):
        run("add_row", [pos, types], 2)


def test_splice_is_numpy_slice_assignment_into_the_target() -> None:
    """`splice` = numpy's `t[..., a:b, ...] = x` on a copy of the target's value (given last)."""
    part, current = rand(4, 3, seed=1), rand(6, 3, seed=2)
    want = current.copy()
    want[2:] = part
    _, (y,) = run("splice", [part, current], 0, 2, targets=((6, 3),))
    np.testing.assert_array_equal(y, want)
    column = rand(6, 1, seed=3)
    want = current.copy()
    want[:, 1:2] = column
    _, (y,) = run("splice", [column, current], 1, 1, 2, targets=((6, 3),))
    np.testing.assert_array_equal(y, want)
    with pytest.raises(TransformError, match=r"part 1:6 of the target \(6, 3\) is \(5, 3\), the input is \(4, 3\)"):
        run("splice", [part, current], 0, 1, targets=((6, 3),))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_deduplicate_gives_the_one_tensor_and_refuses_copies_that_differ(backend: str) -> None:
    from wmap.core.errors import WmapError
    if backend == "torch":
        pytest.importorskip("torch")
    ops = get_ops(backend)
    x = rand(3, 4, seed=1)
    t = build("deduplicate", [], [])
    (y,) = t.apply([ops.asarray(x, None), ops.asarray(x.copy(), None)], ops)
    np.testing.assert_array_equal(np.asarray(y if backend == "numpy" else y.numpy()), x)
    off = x.copy()
    off[2, 3] = np.nextafter(off[2, 3], np.inf)  # one ulp in one value
    with pytest.raises(WmapError) as e:
        t.apply([ops.asarray(x, None), ops.asarray(off, None)], ops)
    assert e.value.diagnostics[0].code == "WM607"


def test_gate_reorder_and_gru_swap() -> None:
    h = 2
    r, z, n = (np.full((h, 3), v, np.float32) for v in (1, 2, 3))
    _, (y,) = run("reorder_gates", [np.concatenate([r, z, n])], "rzn", "zrh")
    np.testing.assert_array_equal(y, np.concatenate([z, r, n]))
    _, (k,) = run("gru_kernel_to_keras", [np.concatenate([r, z, n])])
    np.testing.assert_array_equal(k, np.concatenate([z, r, n]).T)


def test_split_chunk_concat_roundtrip_and_sizes_from_targets() -> None:
    x = rand(7, 2)
    s, parts = run("split", [x], 0, targets=((3, 2), (4, 2)))
    assert s.describe() == "split(sizes=[3, 4])"
    c, (y,) = run("concat", list(parts), 0)
    assert c.describe() == "concat(sizes=[3, 4])"
    np.testing.assert_array_equal(y, x)


def test_transpose_forms() -> None:
    x = rand(2, 3, 4)
    assert run("transpose", [x], 0, 2)[0].describe() == "transpose(dims=[2, 1, 0])"
    np.testing.assert_array_equal(run("transpose", [x], 0, 2)[1][0], x.transpose(2, 1, 0))
    np.testing.assert_array_equal(run("transpose", [x], dims=[1, 2, 0])[1][0], x.transpose(1, 2, 0))
    np.testing.assert_array_equal(run("transpose", [x[0]])[1][0], x[0].T)


def test_rearrange_records_sizes_its_inverse_needs() -> None:
    x = rand(4, 6)
    t, (y,) = run("rearrange", [x], "h (d e) -> (h d) e", d=2)
    assert t.params() == {"pattern": "h (d e) -> (h d) e", "d": 2, "h": 4}
    inv = t.inverse()
    assert inv is not None
    back, _ = inv.infer([ArrayMeta(y.shape, "float32")], InferContext((), ()))
    np.testing.assert_array_equal(back.apply([y], NP)[0], x)


def test_layout_ops_are_views_where_declared() -> None:
    x = rand(4, 6)
    for name, args in [("transpose", ()), ("reshape", ([3, 8],)), ("slice", (0, 1, 3)), ("permute", ([1, 0],))]:
        t, (y,) = run(name, [x], *args)
        assert t.VIEW and np.shares_memory(x, y), name
