"""Start N gloo ranks on this machine (loopback only), wait with a deadline, and always reap them."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1 (the rendezvous never leaves the machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    import torch
    import torch.distributed as dist

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # gloo binds the loopback interface only
    torch.set_num_threads(1)  # N ranks share 2 cores
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=90))
    try:
        fn(rank, world, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()


# Ranks fork from a forkserver that has imported these once: a fresh `spawn` imports torch in every
# rank (seconds each, all at once on a small machine), and forking the test process itself would
# copy whatever threads it runs. The server starts clean and single-threaded, and is reused.
PRELOAD = ["torch", "torch.distributed.checkpoint", "torch.distributed.fsdp", "torch.distributed.tensor",
           "safetensors.torch", "wmap.api", "wmap.cli", "wmap.run.distributed", "wmap.sinks.dtensor_sink",
           "wmap.formats.dcp_reader", "tests.dist.workers"]


def run_ranks(fn: Callable[..., None], world: int, *args: Any, timeout: float = 240.0) -> None:
    """Run `fn(rank, world, *args)` on `world` processes in one gloo group. Raises the first rank's
    failure (with its traceback), or TimeoutError; no process outlives the call."""
    import multiprocessing
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    ctx = mp.start_processes(_rank_main, args=(world, free_port(), fn, args), nprocs=world, join=False,
                             start_method="forkserver")
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{world} ranks did not finish within {timeout:.0f} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
            p.join(timeout=10)


def stop_forkserver() -> None:
    """Stop the forkserver now (it would also go when this process exits, a moment later)."""
    from multiprocessing import forkserver
    stop = getattr(forkserver._forkserver, "_stop", None)  # CPython's own (its tests use it)
    if stop is not None:
        stop()
