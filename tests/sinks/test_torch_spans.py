"""Plain copies from safetensors into a torch model are read by the kernel straight into the parameters.

What lands must be what the safetensors library loads, bit for bit, for every dtype and shape, read
in one piece or many; and whatever the kernel cannot read into (a cast, a strided parameter, a NaN
scan) still goes through `read`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")

import wmap  # noqa: E402
from wmap.formats.safetensors_file import SafetensorsFile  # noqa: E402
from wmap.sinks import torch_sink  # noqa: E402

IDENTITY = "wmap 1\n{p:**} -> {p}\n"


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(33, 17, generator=g),
        "bf16": torch.randn(5, 7, 3, generator=g).to(torch.bfloat16),
        "f16": torch.randn(129, generator=g).to(torch.float16),
        "f64": torch.randn(3, 3, generator=g, dtype=torch.float64),
        "i64": torch.randint(-2**62, 2**62, (11,), generator=g),
        "u8": torch.randint(0, 255, (4, 9), generator=g, dtype=torch.uint8),
        "flag": torch.rand(13, generator=g) > 0.5,
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 4),
    }


class Holder(torch.nn.Module):
    """Every tensor as a parameter or buffer of the same name, zeroed."""

    def __init__(self, like: dict[str, torch.Tensor]):
        super().__init__()
        for name, t in like.items():
            if t.is_floating_point():
                self.register_parameter(name, torch.nn.Parameter(torch.zeros_like(t)))
            else:
                self.register_buffer(name, torch.zeros_like(t))


def _write(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> str:
    path = str(tmp_path / "src.safetensors")
    st.save_file(tensors, path)
    return path


def _no_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    real = SafetensorsFile.read

    def counted(self: SafetensorsFile, name: str, kind: str = "numpy") -> object:
        read.append(name)
        return real(self, name, kind)  # type: ignore[arg-type]

    monkeypatch.setattr(SafetensorsFile, "read", counted)
    return read


@pytest.mark.parametrize("piece", [torch_sink.SPAN_PIECE, 7, 64])
def test_every_dtype_lands_as_the_safetensors_library_loads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               piece: int) -> None:
    monkeypatch.setattr(torch_sink, "SPAN_PIECE", piece)  # small pieces: many reads per tensor, on threads
    tensors = _tensors()
    path = _write(tmp_path, tensors)
    reads = _no_reads(monkeypatch)
    model = Holder(tensors)
    wmap.apply(wmap.parse_spec(IDENTITY), source=path, target=model)
    assert reads == []  # every step was read into the model, none through `read`
    theirs = st.load_file(path)
    ours = model.state_dict()
    assert set(ours) == set(theirs)
    for name, t in theirs.items():
        assert ours[name].dtype == t.dtype and ours[name].shape == t.shape
        assert torch.equal(ours[name].view(-1).view(torch.uint8), t.view(-1).view(torch.uint8)), name


def test_what_the_kernel_cannot_read_into_goes_through_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(1)
    src = {"cast": torch.randn(6, 5, generator=g).to(torch.float16), "strided": torch.randn(4, 3, generator=g),
           "plain": torch.randn(8, generator=g)}
    path = _write(tmp_path, src)
    model = torch.nn.Module()
    model.register_parameter("cast", torch.nn.Parameter(torch.zeros(6, 5)))  # f16 -> f32: a widening cast
    model.register_parameter("strided", torch.nn.Parameter(torch.zeros(3, 4).t()))  # a transposed view
    model.register_parameter("plain", torch.nn.Parameter(torch.zeros(8)))
    reads = _no_reads(monkeypatch)
    wmap.apply(wmap.parse_spec(IDENTITY), source=path, target=model)
    assert sorted(reads) == ["cast", "strided"]
    assert not model.strided.is_contiguous()
    for name, t in st.load_file(path).items():
        assert torch.equal(getattr(model, name).detach(), t.to(torch.float32)), name


def test_a_nonfinite_scan_reads_every_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tensors = {"w": torch.randn(4, 4), "b": torch.randn(4)}
    path = _write(tmp_path, tensors)
    reads = _no_reads(monkeypatch)
    model = Holder(tensors)
    wmap.apply(wmap.parse_spec("wmap 1\noption nonfinite = \"error\"\n{p:**} -> {p}\n"), source=path, target=model)
    assert sorted(reads) == ["b", "w"]
    assert all(torch.equal(getattr(model, k).detach(), v) for k, v in tensors.items())


def test_a_sharded_checkpoint_reads_each_tensor_from_its_shard(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    tensors = _tensors()
    names = sorted(tensors)
    shards = {"a.safetensors": names[:4], "b.safetensors": names[4:]}
    for shard, keys in shards.items():
        st.save_file({k: tensors[k] for k in keys}, str(tmp_path / shard))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {k: s for s, ks in shards.items() for k in ks}}))
    reads = _no_reads(monkeypatch)
    model = Holder(tensors)
    wmap.apply(wmap.parse_spec(IDENTITY), source=str(index), target=model)
    assert reads == []
    for name, t in tensors.items():
        assert torch.equal(model.state_dict()[name].view(-1).view(torch.uint8), t.view(-1).view(torch.uint8)), name


def test_a_parameter_viewing_part_of_a_larger_buffer_gets_exactly_its_bytes(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Parameters that are contiguous views at an offset into one flat buffer (as flat-parameter
    wrappers make them): each read lands in its own region, and the bytes around them stay."""
    g = torch.Generator().manual_seed(2)
    src = {"a": torch.randn(4, 5, generator=g), "b": torch.randn(7, generator=g)}
    path = _write(tmp_path, src)
    flat = torch.full((64,), -1.0)
    model = torch.nn.Module()
    model.register_parameter("a", torch.nn.Parameter(flat[3:23].view(4, 5)))
    model.register_parameter("b", torch.nn.Parameter(flat[30:37]))
    reads = _no_reads(monkeypatch)
    wmap.apply(wmap.parse_spec(IDENTITY), source=path, target=model)
    assert reads == []
    assert torch.equal(flat[3:23].view(4, 5), src["a"]) and torch.equal(flat[30:37], src["b"])
    rest = torch.cat([flat[:3], flat[23:30], flat[37:]])
    assert torch.equal(rest, torch.full_like(rest, -1.0))
