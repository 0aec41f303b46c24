"""``run(RunConfig)``: plan, then execute in this process — or, under torchrun, over every rank
(``bench.engines.run.distributed``). Resumable: records are journalled one group at a time with a checksum
(``bench.results.records``); rerunning the same command skips what is done and the final ``records.csv`` is
identical to an uninterrupted run's. Shardable: ``--shard i/n`` takes every n-th image starting at i
(``bench.engines.run.merge`` joins a complete shard set)."""

from __future__ import annotations

from tqdm import tqdm

from bench.engines import torchrun
from bench.engines.run import distributed
from bench.engines.run.evaluate import PredictionCache, evaluate_groups
from bench.engines.run.folder import open_journal
from bench.engines.run.plan import RunConfig, group_count, pending_groups, plan
from bench.results import rundir
from bench.results.records import Record
from protocols.core import UserError


def run(
    config: RunConfig, prediction_cache: PredictionCache | None = None, allow_distributed: bool = False
) -> list[Record]:
    """Evaluate ``config``; ``prediction_cache`` (optional) reuses SR outputs across presets that give a
    method identical inputs (the protocol audit runs many presets that share an LR). Under torchrun,
    ``allow_distributed`` (the ``run``, ``audit`` and ``dataset-job`` verbs) spreads the work over the ranks;
    other callers are refused there rather than run once per rank into one folder."""
    ctx = torchrun.context()
    if ctx.world_size > 1:
        if not allow_distributed:
            raise UserError("only `run`, `audit`, `dataset-job`, `match` and `cost` are distributed under torchrun; "
                            "run this verb as one process")
        return distributed.run_distributed(config, ctx)
    work = plan(config)
    rundir.make_out_dir(config.out_dir)
    with rundir.RunLock(config.out_dir) as lock:
        run_id, appender, _ = open_journal(config, work, lock)
        if appender.dropped:
            print(f"note: {appender.dropped} incomplete record group(s) from an interrupted run will be recomputed")
        total = group_count(work)
        pending = pending_groups(config, work, appender.done)
        progress = tqdm(total=total, initial=total - len(pending), desc=f"{config.dataset}:{config.preset}",
                        unit="img", disable=not config.show_progress)
        evaluate_groups(config, work, run_id, pending, appender, prediction_cache, lambda _: progress.update(1))
        progress.close()
        return appender.finish()
