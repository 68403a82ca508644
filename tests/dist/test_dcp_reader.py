"""The byte-range StorageReader on its own: the runs of a box are exactly its bytes, a read fetches
those bytes and counts them, and every file goes through wmap's safetensors validation first."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed.checkpoint")

from torch.distributed.checkpoint.metadata import MetadataIndex  # noqa: E402
from torch.distributed.checkpoint.planner import LoadItemType, LoadPlan, LoadPlanner, ReadItem  # noqa: E402

from wmap.core.errors import WmapError  # noqa: E402
from wmap.formats import open_source  # noqa: E402
from wmap.formats.dcp_reader import SafetensorsRangeReader, runs, storage_key  # noqa: E402

BOXES = [((2, 3), (0, 5)), ((0, 6), (1, 3)), ((1, 1), (4, 1)), ((0, 6), (0, 5)), ((3, 0), (0, 5))]


@pytest.mark.parametrize("box", BOXES)
def test_the_runs_of_a_box_are_its_bytes_in_order(box: tuple[tuple[int, int], ...]) -> None:
    t = torch.arange(30, dtype=torch.float32).reshape(6, 5)
    raw = t.numpy().tobytes()
    got = b"".join(raw[o:o + n] for o, n in runs((6, 5), box, 4))
    want = t[tuple(slice(s, s + n) for s, n in box)].contiguous().numpy().tobytes()
    assert got == want


def test_runs_of_a_3d_box_cut_in_the_middle_dim() -> None:
    t = torch.arange(2 * 4 * 3, dtype=torch.int16).reshape(2, 4, 3)
    box = ((0, 2), (1, 2), (0, 3))
    spans = list(runs((2, 4, 3), box, 2))
    assert spans == [(6, 12), (30, 12)]  # one run per outer index, the trailing dim whole
    raw = t.numpy().tobytes()
    assert b"".join(raw[o:o + n] for o, n in spans) == t[:, 1:3].contiguous().numpy().tobytes()


class _Collect(LoadPlanner):
    """A LoadPlanner that keeps what the reader fills (no process group needed)."""

    def __init__(self) -> None:
        self.got: dict[str, Any] = {}

    def set_up_planner(self, *a: Any, **k: Any) -> None: ...
    def create_local_plan(self) -> LoadPlan: return LoadPlan([])
    def create_global_plan(self, p: list[LoadPlan]) -> list[LoadPlan]: return p
    def finish_plan(self, p: LoadPlan) -> LoadPlan: return p
    def load_bytes(self, *a: Any) -> None: ...

    def resolve_tensor(self, item: ReadItem) -> Any:
        return torch.empty(tuple(item.lengths), dtype=torch.float32)

    def commit_tensor(self, item: ReadItem, t: Any) -> None:
        self.got[item.dest_index.fqn] = t


def _item(dest: str, key: str, box: tuple[tuple[int, int], ...]) -> ReadItem:
    return ReadItem(LoadItemType.TENSOR, MetadataIndex(dest), torch.Size([0] * len(box)), MetadataIndex(key),
                    torch.Size([s for s, _ in box]), torch.Size([n for _, n in box]))


def test_a_read_fetches_and_counts_only_the_box(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    w = torch.randn(64, 32)
    save_file({"w": w, "b": torch.randn(32)}, str(tmp_path / "m.safetensors"))
    src = open_source(str(tmp_path / "m.safetensors"))
    reader = SafetensorsRangeReader({"src": src})
    planner = _Collect()
    items = [_item("rows", storage_key("src", "w"), ((16, 16), (0, 32))), _item("cols", storage_key("src", "w"),
                                                                                  ((0, 64), (8, 8)))]
    reader.read_data(LoadPlan(items), planner).wait()
    assert torch.equal(planner.got["rows"], w[16:32]) and torch.equal(planner.got["cols"], w[:, 8:16])
    assert reader.bytes_read == (16 * 32 + 64 * 8) * 4  # the boxes, not the tensors
    assert reader.header_bytes == (tmp_path / "m.safetensors").stat().st_size - (64 * 32 + 32) * 4
    assert set(reader.read_metadata().state_dict_metadata) == {"src/w", "src/b"}
    src.close()


def test_only_safetensors_sources_are_read_by_byte_range(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(2)}, tmp_path / "m.pt")
    src = open_source(str(tmp_path / "m.pt"))
    with pytest.raises(WmapError) as e:
        SafetensorsRangeReader({"src": src})
    assert e.value.diagnostics[0].code == "WM522"
    src.close()


def test_a_damaged_header_is_refused_before_any_read(tmp_path: Path) -> None:
    """Offsets that leave a hole: wmap's header validation (WM505) runs on every file the reader serves."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(12))
    with pytest.raises(WmapError) as e:
        SafetensorsRangeReader({"src": open_source(str(tmp_path / "bad.safetensors"))})
    assert e.value.diagnostics[0].code == "WM505"


def test_a_file_that_shrank_since_it_was_opened_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.randn(16, 16)}, str(path))
    reader = SafetensorsRangeReader({"src": open_source(str(path))})
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 64)
    with pytest.raises(RuntimeError, match="WM505"):
        reader.read_data(LoadPlan([_item("x", "src/w", ((0, 16), (0, 16)))]), _Collect())
    assert reader.failure is not None and reader.failure.diagnostics[0].code == "WM505"


def test_apply_without_a_process_group_says_how_to_start_one() -> None:
    from wmap.run import distributed
    with pytest.raises(WmapError) as e:
        distributed.apply("unused.wmap")
    assert e.value.diagnostics[0].code == "WM522" and "torchrun" in (e.value.diagnostics[0].hint or "")


def test_the_command_outside_torchrun_says_how_to_start_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support import paths
    from wmap.cli import main
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MASTER_PORT", "29500")
    rc = main(["apply", str(paths.EXAMPLES / "fused_qkv_split.wmap"), "--distributed", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 1 and "WM522" in err and "RANK, WORLD_SIZE, MASTER_ADDR are not set" in err and "torchrun" in err
    assert not (tmp_path / "c").exists()
