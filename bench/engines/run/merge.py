"""``refsr-bench merge``: join the finished shards (``--shard i/n``) of one run into one run folder whose
``records.csv`` equals the unsharded run's byte for byte."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from bench.results import rundir
from bench.results.records import (
    CHECKSUM_FILE,
    Record,
    finished_file_is_intact,
    is_journal,
    read_records,
    read_run_json,
    records_text,
    run_json_dataset,
)
from protocols.core import UserError

MERGE_FILES = ("records.csv", CHECKSUM_FILE, rundir.INPUTS_FILE, "run.json")  # what a merge writes


def _shard_run_json(run_dir: Path) -> dict[str, Any]:
    run_json = read_run_json(run_dir, "rerun that shard")
    schema = run_json.get("schema")
    if schema not in rundir.RESUMABLE_SCHEMAS or "shard" not in run_json:
        raise UserError(f"{run_dir}: run.json is not a schema-{rundir.SCHEMA} run of this suite; rerun it")
    records = run_dir / "records.csv"
    if records.is_file() and is_journal(records):
        raise UserError(f"{run_dir} is not finished (its records.csv is still a journal); rerun its command")
    if not records.is_file() or not finished_file_is_intact(records):
        raise UserError(f"{records} does not match its {CHECKSUM_FILE} (edited, truncated or missing after the shard "
                        "finished); rerun that shard")
    return run_json


def _shard_images(run_dir: Path, run_json: dict[str, Any]) -> list[str]:
    """This shard's images as the split assigns them: every n-th image of the dataset's image list (its
    ``inputs.csv``, verified against the identity's ``inputs_sha256``) starting at i."""
    path = run_dir / rundir.INPUTS_FILE
    try:
        data = path.read_bytes()
    except OSError:
        raise UserError(f"{run_dir}: {rundir.INPUTS_FILE} is missing; rerun that shard") from None
    if hashlib.sha256(data).hexdigest() != run_json["identity"].get("inputs_sha256"):
        raise UserError(f"{path} does not match the run identity (edited after the shard ran); rerun that shard")
    names = list(dict.fromkeys(row[0] for row in list(csv.reader(io.StringIO(data.decode())))[1:] if row))
    index, count = run_json["shard"]
    return names[index::count]


def _check_shard_rows(run_dir: Path, run_json: dict[str, Any], records: list[Record]) -> None:
    """The shard's rows are exactly its groups (methods x reference policies x its images), each with every
    metric of the preset."""
    identity = run_json["identity"]
    metrics = set(identity["preset"].get("metrics", []))
    expected = {(m, ref, image) for m in identity["methods"] for ref in identity["reference_policies"]
                for image in _shard_images(run_dir, run_json)}
    found: dict[tuple[str, str, str], set[str]] = {}
    for record in records:
        found.setdefault((record.method, record.reference, record.image), set()).add(record.metric)
    missing = sorted(expected - set(found))
    extra = sorted(set(found) - expected)
    short = sorted(g for g, got in found.items() if g in expected and not metrics <= got)
    for what, groups in (("missing", missing), ("not assigned to this shard", extra), ("incomplete", short)):
        if groups:
            listing = ", ".join("/".join(g) for g in groups[:3]) + (f" and {len(groups) - 3} more"
                                                                     if len(groups) > 3 else "")
            raise UserError(f"{run_dir}: groups {what}: {listing}; rerun that shard")


def _check_target(out_dir: Path, summary_text: str, records_bytes: bytes) -> bool:
    """True when ``out_dir`` already holds this very merge (nothing to write); False when it is absent or empty;
    anything else is refused naming what is there."""
    if not out_dir.exists():
        return False
    present = sorted(p.name for p in out_dir.iterdir() if p.name != rundir.LOCK_FILE)
    if not present:
        return False
    same = (sorted(present) == sorted(MERGE_FILES)
            and (out_dir / "run.json").read_text(errors="replace") == summary_text
            and (out_dir / "records.csv").read_bytes() == records_bytes
            and finished_file_is_intact(out_dir / "records.csv"))
    if same:
        return True
    listing = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
    raise UserError(f"--out {out_dir} is not empty ({listing}) and does not hold this merge; merge into a new "
                    "or empty folder (nothing was written)")


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
        _check_shard_rows(run_dir, shard_run, records)
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
    text = records_text([record for record, _ in seen.values()])
    first = shard_runs[0]
    summary = {
        "schema": rundir.SCHEMA,
        "run_id": first["run_id"],
        "identity": first["identity"],
        "merged_from": [str(d) for d in run_dirs],
        "missing_shards": [f"{i}/{count}" for i in missing],
        "runs": shard_runs,
    }
    summary_text = json.dumps(summary, indent=2, default=str) + "\n"
    if _check_target(out_dir, summary_text, text.encode()):
        return read_records(out_dir / "records.csv")  # the identical merge, already written
    rundir.make_out_dir(out_dir)
    with rundir.RunLock(out_dir) as lock:
        if _check_target(out_dir, summary_text, text.encode()):  # another merge got there first
            return read_records(out_dir / "records.csv")
        lock.check()
        contents: dict[str, bytes | str] = {rundir.INPUTS_FILE: (run_dirs[0] / rundir.INPUTS_FILE).read_bytes(),
                    CHECKSUM_FILE: hashlib.sha256(text.encode()).hexdigest() + "\n", "records.csv": text,
                    "run.json": summary_text}
        try:
            for name, content in contents.items():
                rundir.write_atomic(out_dir / name, content)
        except UserError:
            for name in contents:  # the folder was empty: leave it so, and the same merge can run again
                (out_dir / name).unlink(missing_ok=True)
            raise
    return read_records(out_dir / "records.csv")
