"""Fixture builders for the format-reader tests: real files written by the real libraries,
plus hand-made hostile ones. Frameworks are imported inside the builders that need them."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wmap.core.errors import WmapError


def expect_wm(code: str, fn: Callable[[], Any]) -> WmapError:
    """Run `fn`, require a WmapError with `code` (never a raw exception), return it."""
    with pytest.raises(WmapError) as info:
        fn()
    err = info.value
    assert [d.code for d in err.diagnostics] == [code], err.render()
    assert err.diagnostics[0].message
    return err


def raw_safetensors(path: Path, header: Mapping[str, Any] | bytes, data: bytes = b"",
                    declared_len: int | None = None) -> Path:
    """A safetensors file from a header (dict -> JSON) and raw data, with optional wrong length."""
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(blob) if declared_len is None else declared_len
    path.write_bytes(struct.pack("<Q", n) + blob + data)
    return path


def entry(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def numpy_weights(seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        "encoder.weight": rng.standard_normal((8, 4)).astype(np.float32),
        "encoder.bias": rng.standard_normal(8).astype(np.float32),
        "head.weight": rng.standard_normal((3, 8)).astype(np.float16),
        "steps": np.arange(5, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float64),
    }


def torch_weights(seed: int = 0) -> dict[str, Any]:
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    return {
        "layer.weight": torch.randn(6, 4, generator=g),
        "layer.bias": torch.randn(6, generator=g),
        "emb.weight": torch.randn(10, 4, generator=g).to(torch.bfloat16),
        "fp8": torch.randn(4, generator=g).to(torch.float8_e4m3fn),
        "count": torch.tensor(7),
        "flags": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
    }


class Evil:
    """Pickles to a call that creates `marker`: the payload a weights-only loader must refuse."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def tiny_torch_model() -> Any:
    """Conv + BN + tied embedding/head: kinds, attrs and ties all show up."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, groups=1)
            self.bn = nn.BatchNorm2d(4, eps=1e-4, momentum=0.2)
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

    return Tiny()


def keras_functional() -> Any:
    """A built Functional model covering the layer families the name table knows."""
    keras = pytest.importorskip("keras")
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="stem")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.DepthwiseConv2D(3)(x)
    x = L.SeparableConv2D(4, 1)(x)
    x = L.Flatten()(x)
    x = L.Dense(6)(x)
    x = L.Reshape((6, 1))(x)
    x = L.LSTM(3, return_sequences=True, name="lstm")(x)
    x = L.GRU(2, return_sequences=True)(x)
    x = L.LayerNormalization()(x)
    x = L.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = L.PReLU()(x)
    x = L.Dense(2, use_bias=False)(x)
    return keras.Model(inp, x)


def h5_keras2(path: Path, layers: Mapping[str, Mapping[str, np.ndarray[Any, Any]]],
              model_config: Mapping[str, Any] | None = None) -> Path:
    """A Keras 2 style `.h5` written with h5py per Keras 2's layout (`kernel:0` names)."""
    import h5py

    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if model_config is not None else f
        if model_config is not None:
            f.attrs["model_config"] = json.dumps(model_config)
        root.attrs["layer_names"] = [n.encode() for n in layers]
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.15.0"
        for layer, weights in layers.items():
            g = root.create_group(layer)
            g.attrs["weight_names"] = [n.encode() for n in weights]
            for name, value in weights.items():
                g.create_dataset(name, data=value)
    return path
