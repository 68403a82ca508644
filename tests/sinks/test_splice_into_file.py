"""A `splice` (the reverse of a `slice`) into a safetensors file keeps the rest of the template's tensor.

The file sink opened its template only when the plan had a `keep` step, so a reverse whose only
target-reading step was a splice (PaliGemma's vocabulary cut at the image token, run backwards) failed
with WM602 although the template was given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

import wmap


def test_a_splice_alone_reads_the_template_file(tmp_path: Path) -> None:
    table = np.arange(24, dtype=np.float32).reshape(6, 4)
    save_file({"embed": table, "norm": np.ones(4, np.float32)}, str(tmp_path / "hf.safetensors"))
    cut = {"emb": table[:4] * 0 - 1, "scale": np.full(4, 2, np.float32)}  # new values for the kept rows
    save_file(cut, str(tmp_path / "keras.safetensors"))
    spec = wmap.parse_spec("wmap 1\nemb -> embed | splice(0, stop=4)\nscale -> norm\n")
    out = tmp_path / "back.safetensors"
    wmap.apply(spec, source=str(tmp_path / "keras.safetensors"), target=str(tmp_path / "hf.safetensors"), out=out,
               show_progress=False)
    back = load_file(str(out))
    assert np.array_equal(back["embed"][:4], cut["emb"]) and np.array_equal(back["embed"][4:], table[4:])
    assert np.array_equal(back["norm"], cut["scale"])
