"""Atomicity: a fault at any step leaves an in-memory target unchanged and no output file behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")

import wmap  # noqa: E402
from tests.support.torch_models import BACKBONE, Backbone, NewArch  # noqa: E402
from wmap.core.checksum import checksum  # noqa: E402
from wmap.core.errors import WmapError  # noqa: E402
from wmap.formats.safetensors_file import SafetensorsFile  # noqa: E402
from wmap.sinks.torch_sink import TorchModuleSink  # noqa: E402


def _fingerprint(model: torch.nn.Module) -> dict[str, str]:
    return {k: checksum(v) for k, v in model.state_dict().items()}


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[str, wmap.Plan]:
    torch.manual_seed(3)
    path = str(tmp_path / "src.safetensors")
    st.save_file(Backbone().state_dict(), path)
    return path, wmap.plan(wmap.parse_spec(BACKBONE), source=path, target=NewArch())


FAULTS: dict[str, Callable[[], BaseException]] = {
    "io": lambda: OSError(5, "Input/output error"),
    "transform": lambda: RuntimeError("transform blew up"),
    "interrupt": lambda: KeyboardInterrupt(),
}


def _at(n_steps: int) -> list[int]:
    return [0, n_steps // 2, n_steps - 1]


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_in_memory_target_unchanged(setup: tuple[str, wmap.Plan], fault: str, where: str) -> None:
    path, plan = setup
    target = NewArch()
    before = _fingerprint(target)
    index = _at(len(plan.steps))[["first", "middle", "last"].index(where)]

    def hook(i: int, step: object) -> None:
        if i == index:
            raise FAULTS[fault]()

    with pytest.raises((WmapError, OSError, RuntimeError, KeyboardInterrupt)):
        plan.apply(source=path, target=target, on_step=hook)
    assert _fingerprint(target) == before
    assert all(p.requires_grad for p in target.parameters())


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_output_file_all_or_nothing(tmp_path: Path, setup: tuple[str, wmap.Plan], fault: str, where: str) -> None:
    path, _ = setup
    out = tmp_path / "out" / "model.safetensors"
    out.parent.mkdir()
    plan = wmap.plan(wmap.parse_spec(BACKBONE), source=path, target="tests.support.torch_models:new_arch")
    index = _at(len(plan.steps))[["first", "middle", "last"].index(where)]

    def hook(i: int, step: object) -> None:
        if i == index:
            raise FAULTS[fault]()

    with pytest.raises((WmapError, OSError, RuntimeError, KeyboardInterrupt)):
        plan.apply(source=path, out=str(out), on_step=hook)
    assert os.listdir(out.parent) == []  # no output, no temporary file
    plan.apply(source=path, out=str(out))
    old = out.read_bytes()
    with pytest.raises((WmapError, OSError, RuntimeError, KeyboardInterrupt)):
        plan.apply(source=path, out=str(out), on_step=hook)
    assert os.listdir(out.parent) == ["model.safetensors"] and out.read_bytes() == old  # the old file survives


@pytest.mark.parametrize("access", ["read", "byte_span"])
def test_read_error_inside_a_step_is_reported_and_nothing_lands(setup: tuple[str, wmap.Plan], access: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A source that fails while the steps run, by either way a step reaches its bytes: the values it
    reads (`read`) or, for a plain copy into a torch model, where they lie (`byte_span`)."""
    path, plan = setup
    calls = {"n": 0}
    real = getattr(SafetensorsFile, access)

    def flaky(self: SafetensorsFile, *args: object) -> object:
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(5, "Input/output error")
        return real(self, *args)

    monkeypatch.setattr(SafetensorsFile, access, flaky)
    if access == "read":  # a sink that takes every value through `stage`
        monkeypatch.setattr(TorchModuleSink, "stage_span", lambda self, meta, span: False)
    target = NewArch()
    before = _fingerprint(target)
    with pytest.raises(WmapError) as e:
        plan.apply(source=path, target=target)
    assert calls["n"] == 4
    assert e.value.diagnostics[0].code == "WM601" and "Input/output error" in e.value.diagnostics[0].message
    assert _fingerprint(target) == before


def test_a_source_cut_short_during_commit_is_named_with_what_it_leaves(setup: tuple[str, wmap.Plan],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes read at commit (a plain copy into a torch model) from a file that could not be leased
    and was truncated after its size was checked: WM505 that says the model is partially written,
    where a read through a mapping would have been a SIGBUS."""
    from wmap.core import lease

    path, plan = setup
    monkeypatch.setattr(lease, "take", lambda p: None)  # a file system that refuses leases
    real = SafetensorsFile.byte_span

    def then_truncate(self: SafetensorsFile, *args: object) -> object:
        span = real(self, *args)  # type: ignore[arg-type]
        os.truncate(path, self.header_bytes)  # after the size check: every tensor's bytes are gone
        return span

    monkeypatch.setattr(SafetensorsFile, "byte_span", then_truncate)
    with pytest.raises(WmapError) as e:
        plan.apply(source=path, target=NewArch())
    d = e.value.diagnostics[0]
    assert d.code == "WM505" and "partially written" in d.message and "src.safetensors" in d.message


def test_transform_failing_on_real_data(setup: tuple[str, wmap.Plan], monkeypatch: pytest.MonkeyPatch) -> None:
    from wmap.transforms.layout import Transpose
    path, _ = setup
    src = {"a": torch.ones(2, 3), "b": torch.ones(3, 2)}
    target = torch.nn.Module()
    target.register_parameter("a", torch.nn.Parameter(torch.zeros(3, 2)))
    target.register_parameter("b", torch.nn.Parameter(torch.zeros(2, 3)))
    monkeypatch.setattr(Transpose, "apply", lambda self, xs, ops: (_ for _ in ()).throw(ValueError("bad data")))
    with pytest.raises(WmapError) as e:
        wmap.apply(wmap.parse_spec("wmap 1\n{x} -> {x} | transpose\n"), source=src, target=target)
    assert e.value.diagnostics[0].code == "WM601"
    assert float(target.a.detach().abs().sum()) == 0.0 and float(target.b.detach().abs().sum()) == 0.0


def test_an_io_error_while_reading_at_commit_is_named_with_what_it_leaves(setup: tuple[str, wmap.Plan],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk failing under the kernel's read of a plain copy at commit: WM500 naming the file and the
    tensor, and saying the model is partially written (never a bare OSError)."""
    path, plan = setup

    def failing(fd: int, buffers: object, offset: int) -> int:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "preadv", failing)
    with pytest.raises(WmapError) as e:
        plan.apply(source=path, target=NewArch())
    d = e.value.diagnostics[0]
    assert d.code == "WM500" and "Input/output error" in d.message and "partially written" in d.message
    assert "src.safetensors" in d.message
