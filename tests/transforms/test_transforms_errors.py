"""Errors are TransformErrors with a message naming the shapes and a hint saying what to write."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wmap.core.inventory import TensorMeta
from wmap.transforms import REGISTRY, ArrayMeta, InferContext, TransformError, build, doc, signature


def _ctx(*targets: tuple[int, ...], last: bool = True) -> InferContext:
    metas = tuple(TensorMeta(f"t{i}", s, "float32") for i, s in enumerate(targets))
    return InferContext(sources=(), targets=metas, is_last=last)


def _infer(name: str, shapes: list[tuple[int, ...]], *args: object, ctx: InferContext | None = None,
           **kwargs: object) -> tuple[ArrayMeta, ...]:
    t = build(name, list(args), list(kwargs.items()))
    return t.infer([ArrayMeta(s, "float32") for s in shapes], ctx or _ctx())[1]


def test_split_sizes_message() -> None:
    with pytest.raises(TransformError) as e:
        _infer("split", [(190, 8)], 0, ctx=_ctx((64, 8), (64, 8), (64, 8)))
    assert e.value.message == ("`split` into 3 parts of [64, 64, 64] along dim 0 needs size 192, "
                               "the source (190, 8) has 190")
    assert e.value.hint


def test_unknown_transform_did_you_mean() -> None:
    with pytest.raises(TransformError) as e:
        build("transpos", [], [])
    assert e.value.code == "WM103" and "`transpose`" in (e.value.hint or "")


def test_unknown_parameter_did_you_mean() -> None:
    with pytest.raises(TransformError) as e:
        build("split", [], [("size", [1, 2])])
    assert e.value.code == "WM104" and "`sizes`" in (e.value.hint or "")


def test_rearrange_axes_are_keywords_but_typos_in_others_are_not() -> None:
    t = build("rearrange", ["(h d) e -> h d e"], [("h", 4)])
    assert t.params() == {"pattern": "(h d) e -> h d e", "h": 4}
    assert "**axes" in signature(REGISTRY["rearrange"])
    with pytest.raises(TransformError, match="no parameter"):
        build("pad", [], [("too", 5)])


@pytest.mark.parametrize("name,args,shapes,match", [
    ("sub", (), [(2, 2)] * 3, "takes 2 inputs"),
    ("lerp", (0.5,), [(2, 2)], "takes 2 inputs"),
    ("lora", (), [(2, 2)] * 2, "takes 3 inputs"),
    ("transpose", (), [(2, 2)] * 2, "takes one input"),
    ("lstm_bias_to_keras", (), [(8,)], "takes 2 inputs"),
    ("mha_in_from_keras", (), [(8, 2, 4)] * 2, "takes 3 inputs"),
])
def test_wrong_arity(name: str, args: tuple[object, ...], shapes: list[tuple[int, ...]], match: str) -> None:
    with pytest.raises(TransformError, match=match):
        _infer(name, shapes, *args)


@pytest.mark.parametrize("name,args,kwargs,shapes,targets,match", [
    ("transpose", (), {}, [(2, 3, 4)], (), "reverses a 2-D matrix; the input is 3-D"),
    ("permute", ([0, 0, 1],), {}, [(2, 3, 4)], (), "not a permutation"),
    ("reshape", ([5, 5],), {}, [(2, 3, 4)], (), "needs 25 elements"),
    ("reshape", ([-1, 5],), {}, [(2, 3, 4)], (), "cannot infer -1"),
    ("chunk", (3,), {}, [(8, 2)], (), "not divisible by 3"),
    ("concat", (0,), {}, [(2, 3), (2, 4)], (), "must agree on every dim except 0"),
    ("stack", (0,), {}, [(2, 3), (3, 2)], (), "must agree on every dim"),
    ("rearrange", ("(h d) e -> h d e",), {"h": 5}, [(12, 3)], (), "does not fit shape"),
    ("pad", (0,), {}, [(6, 3)], ((4, 3),), "already has 6"),
    ("truncate", (0,), {}, [(3, 3)], ((4, 3),), "keeps 4 of dim 0"),
    ("resize", (), {"prefix_tokens": 0}, [(1, 197, 8)], ((1, 257, 8),), "not a square grid"),
    ("depthwise_to_keras", (), {}, [(8, 2, 3, 3)], ((3, 3, 4, 2),), "not depthwise"),
    ("lora", (), {}, [(6, 5), (6, 2), (2, 5)], (), "the order is W, A, B"),
    ("add", (), {}, [(2, 3), (3, 2)], (), "element-wise arithmetic needs equal shapes"),
    ("mha_in_to_keras", (), {"num_heads": 5}, [(96, 32)], (), "do not split into 5 heads"),
    ("mha_out_to_keras", (), {}, [(32, 32)], ((4, 8),), "not a 3-D Keras attention tensor"),
    ("gru_bias_from_keras", (), {}, [(96,)], (), "reset_after=True"),
    ("flatten_dense_to_keras", (), {"c": 3}, [(10, 400)], (), "at least two of c, h, w"),
    ("flatten_dense_to_keras", (), {"c": 3, "h": 7}, [(10, 400)], (), "not a multiple of 21"),
    ("prelu_from_keras", (), {}, [(4, 4, 8)], (), "varies over positions"),
    ("reorder_gates", ("ifgo", "ifco"), {}, [(10, 3)], (), "4 equal gate blocks"),
    ("select", (0, 5), {}, [(3, 3)], (), "out of range"),
    ("squeeze", (0,), {}, [(3, 3)], (), "has size 3, not 1"),
    ("slice", (0, 5, 7), {}, [(3, 3)], (), "is empty"),
])
def test_shape_errors(name: str, args: tuple[object, ...], kwargs: dict[str, object],
                      shapes: list[tuple[int, ...]], targets: tuple[tuple[int, ...], ...], match: str) -> None:
    with pytest.raises(TransformError) as e:
        _infer(name, shapes, *args, ctx=_ctx(*targets), **kwargs)
    assert match in f"{e.value.message} | hint: {e.value.hint}"
    assert e.value.code.startswith("WM3")


def test_bad_parameter_values_fail_at_build() -> None:
    with pytest.raises(TransformError, match="unknown init"):
        build("pad", [], [("init", "gaussian")])
    with pytest.raises(TransformError, match="unknown dtype"):
        build("cast", ["bf16"], [])
    with pytest.raises(TransformError, match="same gates once each"):
        build("reorder_gates", ["ifgo", "ifo"], [])
    with pytest.raises(TransformError, match="must be an integer"):
        build("split", [True], [])


def test_reorder_gates_aliases_and_no_default_order() -> None:
    assert _infer("reorder_gates", [(8, 2)], "ifgo", "ifco")[0].shape == (8, 2)
    with pytest.raises(TransformError, match="needs parameter `order_from`"):
        build("reorder_gates", [], [])


def test_sizes_from_targets_only_in_last_position() -> None:
    for name in ("reshape", "pad", "truncate", "resize", "adapt_channels", "repeat", "depthwise_to_keras"):
        with pytest.raises(TransformError, match="only the last transform"):
            _infer(name, [(4, 1, 3, 3)], ctx=_ctx((4, 1, 3, 3), last=False))


def test_dtype_errors() -> None:
    with pytest.raises(TransformError, match="needs floating-point"):
        build("scale", [2.0], []).infer([ArrayMeta((2,), "int32")], _ctx())
    with pytest.raises(TransformError, match="input 2 is float16"):
        build("concat", [0], []).infer([ArrayMeta((2,), "float32"), ArrayMeta((2,), "float16")], _ctx())
    out = build("add", [], []).infer([ArrayMeta((2,), "bfloat16"), ArrayMeta((2,), "float16")], _ctx())[1]
    assert out[0].dtype == "float32"


def test_explain_docs_exist() -> None:
    for name, cls in REGISTRY.items():
        text = doc(cls)
        assert len(text.splitlines()[0]) > 15, name
        assert signature(cls).startswith(name)


def test_import_does_not_load_frameworks() -> None:
    code = ("import sys, wmap, wmap.transforms as T; T.get_ops('numpy'); "
            "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, "
            "[m for m in sys.modules if m.startswith(('torch', 'tensorflow'))][:3]")
    subprocess.run([sys.executable, "-c", code], check=True)
