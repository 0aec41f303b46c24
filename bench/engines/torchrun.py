"""torchrun (torch.distributed) for every engine: this process's rank, joining the job's process group, and the
deterministic split of weighted work over ranks. The run engine's executor (``bench.engines.run.torchrun``), the
cost pipeline and matching accuracy build on these; verbs that make several runs hold one ``process_group``.

Launched by torchrun, ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set; outside it this process is rank 0 of 1.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from protocols.core import UserError


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int


def context() -> Context:
    """The torchrun environment, or rank 0 of 1 outside it."""
    try:
        return Context(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                       int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None


def balanced_split(costs: list[float], world_size: int) -> list[list[int]]:
    """Indices of ``costs`` per rank: longest job first to the least loaded rank (ties: lower index/rank),
    each share then in its original order. Deterministic for a given input."""
    loads = [0.0] * world_size
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        loads[rank] += costs[index]
        shares[rank].append(index)
    return [sorted(share) for share in shares]


def init_process_group(backend: str, ctx: Context) -> None:
    """Join the job's process group through torchrun's store, under a key prefix of this restart attempt
    (an elastic restart must not read the previous attempt's gloo addresses)."""
    timeout = timedelta(hours=6)
    address, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not address or not port:
        dist.init_process_group(backend, timeout=timeout, rank=ctx.rank, world_size=ctx.world_size)
        return
    agent_hosts_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(address, int(port), ctx.world_size, is_master=not agent_hosts_store and ctx.rank == 0,
                          timeout=timedelta(minutes=15), multi_tenant=not agent_hosts_store)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    prefixed = dist.PrefixStore(f"refsr-bench/attempt{attempt}", store)
    dist.init_process_group(backend, store=prefixed, rank=ctx.rank, world_size=ctx.world_size, timeout=timeout)


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


@contextlib.contextmanager
def process_group(device: str = "cpu") -> Iterator[Context]:
    """Join torchrun's process group for the whole block (a verb making several runs); outside torchrun, or
    when the group is already joined, nothing is done. Yields this process's ``Context``."""
    ctx = context()
    if ctx.world_size <= 1 or dist.is_initialized():
        yield ctx
        return
    init_process_group(backend_for(device), ctx)
    try:
        yield ctx
    finally:
        dist.destroy_process_group()


def raise_first(errors: list[str | None]) -> None:
    """Raise the first rank's error (all ranks call this with the same gathered list)."""
    for rank, error in enumerate(errors):
        if error is not None:
            raise UserError(f"rank {rank}: {error}" if len(errors) > 1 else error)


def _launcher_environment() -> dict[str, str] | None:
    """The environment torchrun (this rank's parent) was started with, before it changed its own (Linux /proc);
    None when it cannot be read."""
    try:
        raw = Path(f"/proc/{os.getppid()}/environ").read_bytes()
    except OSError:
        return None
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def single_process_threads() -> int | None:
    """Under torchrun (world size > 1): the intra-op thread count one plain process would use with the user's
    environment. torchrun sets ``OMP_NUM_THREADS=1`` for every rank when the user did not set it; a rank then
    asks a fresh interpreter without it for torch's default, so a torchrun run computes with the threads of the
    single-process run (and its records are byte-identical). None outside torchrun, or when the user set
    ``OMP_NUM_THREADS`` themselves (it is then already what a single process would use)."""
    if context().world_size <= 1 or os.environ.get("OMP_NUM_THREADS") != "1":
        return None
    launcher = _launcher_environment()
    if launcher is None or "OMP_NUM_THREADS" in launcher:
        return None
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    probe = [sys.executable, "-c", "import torch; print(torch.get_num_threads())"]
    try:
        out = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=120, check=True)
        return int(out.stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads: ``threads`` (``--threads``) when given, else under torchrun what one
    process would use (``single_process_threads``), else torch's choice. Returns the count in force."""
    if threads is not None and threads < 1:
        raise UserError(f"--threads {threads}: give a positive number of threads")
    chosen = threads if threads is not None else single_process_threads()
    if chosen is not None and chosen != torch.get_num_threads():
        torch.set_num_threads(chosen)
    return torch.get_num_threads()
