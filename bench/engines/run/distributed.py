"""The torchrun executor of the run engine (``torchrun ... -m bench run ...``): one run directory, evaluated
by every rank of a torch.distributed job.

Launched by torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set, ``WORLD_SIZE`` > 1), ``run`` goes here:

1. every rank validates the command (``bench.engines.run.plan.plan``); any rank's error stops all ranks before a write;
2. rank 0 takes the run directory's lock for the whole job, checks the identity, folds part files left
   by an interrupted attempt into ``records.csv``, writes ``run.json`` and splits the remaining groups
   (image x reference policy x method) over the ranks by expected cost (HR pixels x references read; longest first,
   each to the least loaded rank -- deterministic);
3. each rank writes only ``parts/rank<R>.csv`` (the checksummed journal format of ``bench.results.records``) and
   ``parts/rank<R>.current`` (the group it is working on);
4. after a barrier rank 0 folds the parts into ``records.csv`` and finishes it: byte-identical to the
   single-process run of the same command, ``run_id`` included.

A rerun (or torchrun's ``--max-restarts``) resumes from every part written. Ranks run on ``cuda:LOCAL_RANK``
when ``--device cuda`` is given, else on the CPU with the gloo backend.

Verbs that make several runs (``audit``, ``dataset-job``) join the process group once
(``bench.engines.torchrun.process_group``) and make each inner run this way, every rank taking part in each run
in the same order; rank 0 alone then writes what comes after the runs (tables, gate, report).
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch.distributed as dist
from tqdm import tqdm

from bench.engines.run.evaluate import evaluate_groups
from bench.engines.run.folder import open_journal
from bench.engines.run.plan import Group, Plan, RunConfig, describe, group_count, pending_groups, plan
from bench.engines.torchrun import Context, backend_for, balanced_split, init_process_group, raise_first
from bench.results import rundir
from bench.results.records import Record, RecordAppender, read_journal, write_error, write_file
from protocols.core import UserError
from protocols.imageio import image_size

PARTS_DIR = "parts"

def _group_cost(work: Plan, group: Group, pixels: dict[int, float]) -> float:
    policy, item_index, _ = group
    if item_index not in pixels:
        source = work.items[item_index].hr
        h, w = image_size(source, work.spec.high_bit_depth) if isinstance(source, Path) else source.shape[:2]
        pixels[item_index] = float(h * w)
    references = 5.0 if policy.startswith("stitch5") else 1.0  # stitched levels read and match five references
    return pixels[item_index] * (1.0 + references)


def _part(out_dir: Path, rank: int, suffix: str) -> Path:
    return out_dir / PARTS_DIR / f"rank{rank}.{suffix}"


def absorb_parts(out_dir: Path, appender: RecordAppender) -> None:
    """Fold every verified group of ``parts/*.csv`` into ``records.csv`` (skipping done ones), then remove
    the part files; notes name what an interrupted attempt's ranks were working on."""
    folder = out_dir / PARTS_DIR
    if not folder.is_dir():
        return
    for current in sorted(folder.glob("rank*.current")):
        print(f"note: the previous attempt's {current.stem} stopped while working on {current.read_text().strip()}")
    for part in sorted(folder.glob("rank*.csv")):
        groups, _ = read_journal(part)
        for group in groups:
            if group[0].group() not in appender.done and {r.metric for r in group} >= appender.expected:
                appender.append([Record(appender.run_id, *dataclasses.astuple(r)[1:]) for r in group])
    for path in sorted(folder.iterdir()):
        path.unlink()
    folder.rmdir()


def run_distributed(config: RunConfig, ctx: Context) -> list[Record]:
    """The distributed form of ``bench.engines.run.execute.run`` (see the module docstring); rank 0 returns the
    records."""
    device = config.device
    if device.startswith("cuda"):
        device = f"cuda:{ctx.local_rank}"
    joined_here = not dist.is_initialized()  # else a verb's ``process_group`` holds it across several runs
    if joined_here:
        init_process_group(backend_for(device), ctx)
    lock: rundir.RunLock | None = None
    try:
        rank_config = dataclasses.replace(config, device=device)
        error: str | None = None
        work = None
        try:
            work = plan(rank_config)
        except UserError as failure:
            error = str(failure)
        errors: list[str | None] = [None] * ctx.world_size
        dist.all_gather_object(errors, error)
        raise_first(errors)
        assert work is not None
        message: list[Any] = [None, None, None, None]
        if ctx.rank == 0:
            try:
                rundir.make_out_dir(config.out_dir)
                lock = rundir.RunLock(config.out_dir).acquire()
                run_id, appender, _ = open_journal(config, work, lock)
                absorb_parts(config.out_dir, appender)
                pending = pending_groups(config, work, appender.done)
                pixels: dict[int, float] = {}
                costs = [_group_cost(work, group, pixels) for group in pending]
                shares = [[pending[i] for i in share] for share in balanced_split(costs, ctx.world_size)]
                total = group_count(work)
                message = [None, run_id, shares, total - len(pending)]
            except UserError as failure:
                message = [str(failure), None, None, None]
        dist.broadcast_object_list(message, src=0)
        raise_first([message[0]])
        run_id, shares, done_before = message[1], message[2], message[3]
        _evaluate_share(rank_config, work, run_id, shares, done_before, ctx)
        dist.barrier()
        if ctx.rank != 0:
            return []
        absorb_parts(config.out_dir, appender)
        return appender.finish()
    finally:
        if lock is not None:
            lock.release()
        if joined_here:
            dist.destroy_process_group()


def _evaluate_share(config: RunConfig, work: Plan, run_id: str, shares: list[list[Group]], done_before: int,
                    ctx: Context) -> None:
    try:
        (config.out_dir / PARTS_DIR).mkdir(exist_ok=True)
    except OSError as error:
        raise write_error(config.out_dir / PARTS_DIR, error) from None
    part = RecordAppender(_part(config.out_dir, ctx.rank, "csv"), work.spec.metrics, run_id)
    current = _part(config.out_dir, ctx.rank, "current")
    total = done_before + sum(len(share) for share in shares)
    progress = tqdm(total=total, initial=done_before, desc=f"{config.dataset}:{config.preset} x{ctx.world_size}",
                    unit="img", disable=not (config.show_progress and ctx.rank == 0))
    if ctx.rank == 0:
        signal.signal(signal.SIGTERM, lambda *_: _report_stopped(config.out_dir, ctx.world_size))

    def refresh(_: object = None) -> None:
        if ctx.rank == 0:
            written = sum(_part(config.out_dir, r, "csv").read_bytes().count(b"\n#end,")
                          for r in range(ctx.world_size) if _part(config.out_dir, r, "csv").is_file())
            progress.update(done_before + written - progress.n)

    for group in shares[ctx.rank]:
        write_file(current, describe(config, work, group) + "\n")
        try:
            evaluate_groups(config, work, run_id, [group], part, after_each=refresh)
        except UserError as failure:
            raise UserError(f"rank {ctx.rank} failed on {describe(config, work, group)}: {failure}") from None
    current.unlink(missing_ok=True)
    write_file(_part(config.out_dir, ctx.rank, "done"), "")
    if ctx.rank == 0:
        while not all(_part(config.out_dir, r, "done").is_file() for r in range(ctx.world_size)):
            refresh()
            time.sleep(0.2)
        refresh()
    progress.close()


def _report_stopped(out_dir: Path, world_size: int) -> None:
    """SIGTERM on rank 0 (torchrun stops the job when a rank fails): name the unfinished ranks' groups."""
    for rank in range(world_size):
        current = _part(out_dir, rank, "current")
        if current.is_file() and not _part(out_dir, rank, "done").is_file():
            print(f"error: job stopped; rank {rank} was working on {current.read_text().strip()}", file=sys.stderr)
    print("rerun the same command to resume from the records already written", file=sys.stderr)
    sys.exit(143)
