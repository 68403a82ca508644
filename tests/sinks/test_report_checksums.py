"""The apply report's checksums read the output once, not once per tensor.

The CLI's `apply` writes a report with a checksum of every landed tensor. It used to re-open and
re-parse the output file for each tensor, which made `wmap apply` quadratic in the tensor count
(2000 tiny tensors: 41 s; a DeepSeek-size checkpoint would have taken hours).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import wmap
import wmap.formats as formats
from wmap.core.checksum import checksum


def test_checksums_open_the_output_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tensors = {f"t{i}": np.full((3,), i, np.float32) for i in range(300)}
    save_file(tensors, str(tmp_path / "src.safetensors"))
    out = tmp_path / "out.safetensors"
    report = wmap.apply(wmap.parse_spec("wmap 1\n{p} -> {p}\n"), source=str(tmp_path / "src.safetensors"),
                        target=str(tmp_path / "src.safetensors"), out=out)
    opened: list[str] = []
    real = formats.open_source

    def counting(obj: object, *a: object, **k: object) -> object:
        opened.append(str(obj))
        return real(obj, *a, **k)  # type: ignore[arg-type]
    monkeypatch.setattr(formats, "open_source", counting)
    sums = report.checksums()
    assert opened == [str(out)]
    landed = load_file(str(out))
    assert sums == {name: checksum(v) for name, v in landed.items()}
