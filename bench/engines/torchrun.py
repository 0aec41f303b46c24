"""torchrun (torch.distributed) for every engine: this process's rank, joining the job's process group, and the
deterministic split of weighted work over ranks. The run engine's executor (``bench.engines.run.torchrun``), the
cost pipeline and matching accuracy build on these; verbs that make several runs hold one ``process_group``.

Launched by torchrun, ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set; outside it this process is rank 0 of 1.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

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
