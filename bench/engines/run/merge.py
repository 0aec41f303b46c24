"""``refsr-bench merge``: join the finished shards (``--shard i/n``) of one run into one run folder whose
``records.csv`` equals the unsharded run's byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.results import rundir
from bench.results.records import Record, is_journal, read_records, run_json_dataset, write_records
from protocols.core import UserError


def _shard_run_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no run.json)")
    try:
        run_json = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is not valid JSON") from None
    schema = run_json.get("schema") if isinstance(run_json, dict) else None
    if schema not in rundir.RESUMABLE_SCHEMAS or "shard" not in run_json:
        raise UserError(f"{run_dir}: run.json is not a schema-{rundir.SCHEMA} run of this suite; rerun it")
    if (run_dir / "records.csv").is_file() and is_journal(run_dir / "records.csv"):
        raise UserError(f"{run_dir} is not finished (its records.csv is still a journal); rerun its command")
    return run_json


def merge(run_dirs: list[Path], out_dir: Path, partial: bool = False) -> list[Record]:
    """Join the shards of one run. Refused (UserError): shards of different run identities, a shard set
    with missing shards or overlapping rows (both allowed with ``partial``; overlapping values must agree),
    or an unfinished shard. The merged ``records.csv`` equals the unsharded run's byte for byte."""
    rundir.check_out_dir(out_dir)
    if out_dir.resolve() in {d.resolve() for d in run_dirs}:
        raise UserError(f"--out {out_dir} is one of the shards; merge into a new folder")
    shard_runs = [_shard_run_json(d) for d in run_dirs]
    run_ids = {m["run_id"] for m in shard_runs}
    if len(run_ids) > 1:
        listing = ", ".join(f"{d} ({run_json_dataset(m)}:{m['protocol_spec']['name']}, run_id {m['run_id']})"
                            for d, m in zip(run_dirs, shard_runs, strict=True))
        raise UserError(f"these folders hold different runs and cannot be merged: {listing}")
    counts = {m["shard"][1] for m in shard_runs}
    if len(counts) > 1:
        splits = ", ".join(f"{m['shard'][0]}/{m['shard'][1]}" for m in shard_runs)
        raise UserError(f"shards of different splits: {splits}")
    count = counts.pop()
    indexes = [m["shard"][0] for m in shard_runs]
    repeated = sorted({i for i in indexes if indexes.count(i) > 1})
    missing = sorted(set(range(count)) - set(indexes))
    if missing and not partial:
        raise UserError(
            f"incomplete shard set: missing shard(s) {', '.join(f'{i}/{count}' for i in missing)}; "
            "run them, or pass --partial to merge what is there"
        )
    if repeated and not partial:
        twice = ", ".join(f"{i}/{count}" for i in repeated)
        raise UserError(f"shard(s) {twice} given more than once (overlapping rows)")
    seen: dict[tuple[str, ...], tuple[Record, Path]] = {}
    for run_dir, shard_run in zip(run_dirs, shard_runs, strict=True):
        records = read_records(run_dir / "records.csv")
        if not records:
            raise UserError(f"no records in {run_dir / 'records.csv'}; rerun that shard")
        for record in records:
            key = record.sort_key()
            if record.run_id != shard_run["run_id"]:
                raise UserError(f"{run_dir / 'records.csv'}: row {'/'.join(key)} has run_id {record.run_id}, "
                                f"run.json says {shard_run['run_id']}")
            if key in seen:
                other, where = seen[key]
                if not partial or other.value != record.value:
                    raise UserError(f"overlapping rows: {'/'.join(key)} is in both {where} and {run_dir}")
            seen[key] = (record, run_dir)
    rundir.make_out_dir(out_dir)
    merged = [record for record, _ in seen.values()]
    with rundir.RunLock(out_dir):
        write_records(out_dir / "records.csv", merged)
        first = shard_runs[0]
        summary = {
            "schema": rundir.SCHEMA,
            "run_id": first["run_id"],
            "identity": first["identity"],
            "merged_from": [str(d) for d in run_dirs],
            "missing_shards": [f"{i}/{count}" for i in missing],
            "runs": shard_runs,
        }
        rundir.write_atomic(out_dir / "run.json", json.dumps(summary, indent=2, default=str) + "\n")
    return read_records(out_dir / "records.csv")
