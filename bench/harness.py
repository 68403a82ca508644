"""Benchmark harness: each case runs in a fresh subprocess; wall time and peak anonymous memory.

Peak RssAnon (anonymous pages only: memory-mapped file pages do not count) is sampled
from /proc/self/status every 2 ms by a thread, since the kernel keeps no peak for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def proc_status(fields: tuple[str, ...]) -> dict[str, float]:
    """These /proc/self/status fields (`RssAnon`, `VmRSS`, ...) in MiB; 0 where there is none."""
    got = dict.fromkeys(fields, 0.0)
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in got:
                got[key] = int(line.split()[1]) / 1024
    return got


def rss_anon_mb() -> float:
    return proc_status(("RssAnon",))["RssAnon"]


def sample_peaks(fn: Callable[[], Any], fields: tuple[str, ...]) -> tuple[float, dict[str, float], dict[str, float]]:
    """Run fn once: its seconds, and the fields before it and at their peak during it (sampled every 2 ms)."""
    base = proc_status(fields)
    peak = dict(base)
    stop = threading.Event()

    def take() -> None:
        for k, v in proc_status(fields).items():
            peak[k] = max(peak[k], v)

    def sample() -> None:
        while not stop.is_set():
            take()
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    stop.set()
    t.join()
    take()
    return seconds, base, peak


def measure(fn: Callable[[], Any]) -> dict[str, float]:
    """Run fn once; return seconds, peak RssAnon during the run, and RssAnon before it."""
    seconds, base, peak = sample_peaks(fn, ("RssAnon",))
    return {"seconds": seconds, "peak_anon_mb": peak["RssAnon"], "base_anon_mb": base["RssAnon"]}


def run_once(module: str, case: str, *args: str) -> dict[str, Any]:
    """Run `python -m MODULE CASE ARGS` in a fresh process; its last stdout line is the result."""
    out = subprocess.run([sys.executable, "-m", module, case, *args], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{module} {case} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_pair(module: str, cases: tuple[str, str], path: str, repeat: int = 5) -> tuple[dict[str, Any], ...]:
    """Run two cases `repeat` times each, alternating, each run in a fresh process from a warm page
    cache; keep each case's fastest run. Alternating keeps slow drift on a shared machine from
    landing on one side only."""
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    for _ in range(repeat):
        for case in cases:
            warm(path)
            runs[case].append(run_once(module, case))
    return tuple(min(runs[case], key=lambda r: r["seconds"]) for case in cases)


def warm(path: str) -> None:
    """Read a file once so every case starts from a warm page cache."""
    for root, _, files in os.walk(path) if os.path.isdir(path) else [(os.path.dirname(path), [], [os.path.basename(path)])]:
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                while f.read(1 << 24):
                    pass


def emit(result: dict[str, float]) -> None:
    print(json.dumps(result))
