"""The run folder as the run engine writes it: check the identity against what the folder holds (resume or
refuse), open the records journal, write ``run.json`` and ``inputs.csv``. The caller holds the folder's lock."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.engines.data.manifest import run_data_check
from bench.engines.run.outputs import ReleasedOutputs
from bench.engines.run.plan import Plan, RunConfig
from bench.results import provenance, rundir
from bench.results.records import RecordAppender
from methods.base import Method
from methods.weights import weight_files


def open_journal(config: RunConfig, work: Plan, lock: rundir.RunLock) -> tuple[str, RecordAppender, rundir.Resume]:
    """(run_id, the records journal, how this run relates to what the folder held); refuses another
    configuration (UserError) before anything is written. ``run.json`` and ``inputs.csv`` are written before
    the first journal byte, so a run stopped by any write failure resumes with the same command. Every later
    write first checks that ``lock`` still holds the folder."""
    resume = rundir.reconcile(config.out_dir, work.identity, work.data_folder, config.shard, work.inputs)
    run_id = rundir.run_id_of(resume.identity)
    lock.check()
    write_run_json(config, work, resume, run_id)
    appender = RecordAppender(config.out_dir / "records.csv", work.spec.metrics, run_id, guard=lock.check)
    return run_id, appender, resume


def write_run_json(config: RunConfig, work: Plan, resume: rundir.Resume, run_id: str) -> None:
    """``inputs.csv`` and ``run.json``: the identity plus what describes this execution of it."""
    extensions = list((resume.previous or {}).get("extensions", []))
    if resume.added_methods or resume.added_references:
        extensions.append({"added_methods": resume.added_methods, "added_references": resume.added_references})
    run_json = {
        "schema": rundir.SCHEMA,
        "run_id": run_id,
        "identity": resume.identity,
        "data_folder": work.data_folder,
        "data_check": run_data_check(work.data_folder, config.dataset),  # not part of the identity
        "shard": list(config.shard),
        "extensions": extensions,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "dataset": config.dataset,
        "protocol_spec": work.spec.to_dict(),
        "protocol_sentence": work.spec.sentence(config.dataset),
        "reference_policies": list(resume.identity["reference_policies"]),
        "environment": provenance.environment(config.device),
        "determinism": work.determinism,
        "methods": [_method_entry(method, record_name, config) for method, record_name in work.methods],
        "images": [item.name for item in work.items],
    }
    rundir.write_atomic(config.out_dir / rundir.INPUTS_FILE, rundir.inputs_text(work.inputs))
    rundir.write_atomic(config.out_dir / "run.json", json.dumps(run_json, indent=2, default=str) + "\n")


def _method_entry(method: Method | ReleasedOutputs, record_name: str, config: RunConfig) -> dict[str, Any]:
    entry = {"record_name": record_name, "info": _info_dict(method)}
    if isinstance(method, ReleasedOutputs):
        return {**entry, "weights": [], "released_outputs": method.provenance()}
    return {**entry, "weights": weight_files(method, config.weights, config.methods)}


def _info_dict(method: Method | ReleasedOutputs) -> dict[str, Any]:
    info = asdict(method.info)
    info["parts"] = dict(method.info.parts)
    info["choices"] = dict(method.info.choices)
    return info
