"""Real processes, real signals: a mapped source changed by another process, SIGTERM/SIGHUP, SIGKILL.

A source truncated while mapped used to kill wmap with SIGBUS (exit -7, a temporary left behind);
SIGTERM and SIGHUP killed it where it stood. Now a read lease turns the first into WM505, the
CLI aborts on TERM/HUP as on Ctrl-C (exit 128 + signal, nothing written, no temporary), and a
temporary left by SIGKILL is removed by the next run that writes into that folder.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wmap.core import lease
from wmap.formats.safetensors_file import SafetensorsFile

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="leases and these signals are Linux behaviour")


def _big(path: Path, n: int = 16, mib: int = 4) -> Path:
    header, off = {}, 0
    for i in range(n):
        size = mib << 20
        header[f"l{i}.weight"] = {"dtype": "F32", "shape": [size // 4], "data_offsets": [off, off + size]}
        off += size
    blob = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        chunk = bytes(range(256)) * 4096
        for _ in range(off >> 20):
            f.write(chunk)
    return path


def test_a_truncation_by_another_process_breaks_the_lease_and_raises(tmp_path: Path) -> None:
    src = _big(tmp_path / "src.safetensors", n=2, mib=1)
    with SafetensorsFile(src) as f:
        f.read("l0.weight")  # maps the file, and takes the lease
        if str(src) not in lease._held.values():
            pytest.skip("no lease on this file system")
        got = None
        procs: list[subprocess.Popen[bytes]] = []
        try:
            # a real writer in another process: coreutils truncate opens with O_NONBLOCK, so the
            # lease makes it fail at once, and the kernel sends us SIGIO
            procs.append(subprocess.Popen(["truncate", "-s", "100", str(src)], stderr=subprocess.DEVNULL))
            for _ in range(500):
                time.sleep(0.01)
        except lease.SourceChanged as e:
            got = e
        assert got is not None and got.path == str(src)
        for p in procs:
            assert p.wait(timeout=60) != 0
        assert os.path.getsize(src) > 100  # the truncation did not happen under us
    assert str(src) not in lease._held.values()  # closing the reader released it
    subprocess.run(["truncate", "-s", "100", str(src)], check=True)  # and now the writer may proceed
    assert os.path.getsize(src) == 100


def _cli(tmp_path: Path, spec: str) -> tuple[subprocess.Popen[str], Path]:
    src = _big(tmp_path / "src.safetensors")
    tgt = tmp_path / "tgt.safetensors"
    tgt.write_bytes(src.read_bytes())
    (tmp_path / "spec.wmap").write_text(spec)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "wmap", "apply", "spec.wmap", "-s", "src.safetensors",
                             "-t", "tgt.safetensors", "-o", "out/model.safetensors"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, out


def _wait_for_temp(out: Path, proc: subprocess.Popen[str], min_bytes: int = 0) -> None:
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        for name in os.listdir(out):
            try:
                if ".wmap-" in name and os.path.getsize(out / name) > min_bytes:
                    return
            except OSError:
                pass
        time.sleep(0.002)
    pytest.fail(f"the transfer never started writing (exit {proc.poll()})")


SLOW = "wmap 1\n{p:**} -> {p} | scale(2.0)\n"  # a transform: every value is copied in user space


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_term_and_hup_abort_like_ctrl_c(sig: str, tmp_path: Path) -> None:
    proc, out = _cli(tmp_path, SLOW)
    _wait_for_temp(out, proc)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert f"terminated by {sig}: nothing was written" in err and "Traceback" not in err
    assert os.listdir(out) == []


def test_a_source_truncated_during_apply_is_wm505_and_leaves_nothing(tmp_path: Path) -> None:
    proc, out = _cli(tmp_path, SLOW)
    _wait_for_temp(out, proc, min_bytes=8 << 20)  # a few tensors in: the source is mapped and being read
    cut = subprocess.run(["truncate", "-s", "1000", "src.safetensors"], cwd=tmp_path, capture_output=True)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the transfer finished before the truncation")
    assert cut.returncode != 0, "the lease should have refused the truncation"
    assert proc.returncode == 1 and "error[WM505]" in err and "nothing was written" in err, err
    assert os.listdir(out) == []


def test_a_temporary_left_by_sigkill_is_removed_by_the_next_run_but_a_live_ones_is_not(tmp_path: Path) -> None:
    proc, out = _cli(tmp_path, SLOW)
    _wait_for_temp(out, proc)
    proc.kill()
    proc.communicate(timeout=60)
    left = [n for n in os.listdir(out) if ".wmap-" in n]
    assert left, "SIGKILL leaves the temporary (nothing can run in the killed process)"
    live = out / f".other.safetensors.wmap-{os.getpid()}-x.tmp"  # this test process is alive
    live.write_bytes(b"in progress")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-m", "wmap", "apply", "spec.wmap", "-s", "src.safetensors", "-t",
                           "tgt.safetensors", "-o", "out/model.safetensors"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == sorted(["model.safetensors", live.name])
