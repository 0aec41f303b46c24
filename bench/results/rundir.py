"""The run-directory contract: one configuration per directory (identity), one writer at a time (lock),
and checks of the output path before anything is written.

Identity: dataset, the preset's full frozen spec, every method's record name and weight sha256, the
reference policies, the device class (cpu/cuda), the suite version and the sha256 of every HR/reference
file of the dataset (listed per image in ``inputs.csv``). ``run_id`` is a hash of it -- not of the shard,
so an unsharded run and a complete set of its shards share one ``run_id``.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.results.records import RUN_JSON_SCHEMA
from protocols.core import UserError
from protocols.datasets import DatasetItem

SCHEMA = RUN_JSON_SCHEMA
RESUMABLE_SCHEMAS = (SCHEMA,)  # run folders this suite resumes or merges: its own schema only
LOCK_FILE = "run.lock"
INPUTS_FILE = "inputs.csv"
INPUT_COLUMNS = ("image", "role", "file", "sha256")
BASE_KEYS = ("schema", "suite_version", "dataset", "preset", "device_class", "inputs_sha256")


def suite_version() -> str:
    try:
        return version("refsr-bench")
    except PackageNotFoundError:
        return "unknown"


# --- options checked before any write -------------------------------------------------------------


def check_device(device: str) -> str:
    """Validate ``--device`` (cpu, cuda, cuda:N); returns its class ('cpu' or 'cuda')."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cpu":
        return "cpu"
    if parsed.type != "cuda":
        raise UserError(f"--device {device!r}: this suite runs on cpu or cuda[:N]")
    if not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return "cuda"


def check_out_dir(out_dir: Path) -> None:
    """Reject an ``--out`` that cannot become a run directory, without writing anything."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder; choose a folder path")
    parent = out_dir
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--out {out_dir}: {parent} is a file, so no folder can be made under it")
    resolved = parent.resolve()
    virtual = len(resolved.parts) > 1 and resolved.parts[1] in ("proc", "sys")  # kernel file systems
    if virtual or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out_dir}: {parent} is not writable; choose another folder")


def make_out_dir(out_dir: Path) -> None:
    """Create the run directory and prove it is writable (the probe file, unique to this process so that two
    processes started together do not remove each other's, is removed)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=out_dir)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise UserError(f"--out {out_dir} is not writable ({error.strerror}); choose another folder") from None


# --- one writer -----------------------------------------------------------------------------------


class RunLock:
    """Exclusive advisory lock (``flock``) on ``run.lock`` in the run directory. The kernel drops it when
    the holding process dies, so a killed run never blocks the next one. The file holds the holder's PID."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_FILE
        self._handle: io.TextIOWrapper | None = None

    def acquire(self) -> RunLock:
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(
                f"{self.path.parent} is being written by another refsr-bench process (PID {holder}); "
                "wait for it to finish or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


# --- input fingerprints ---------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    return digest.hexdigest()


def _source_fingerprint(source: Path | np.ndarray, folder: Path) -> tuple[str, str]:
    if isinstance(source, np.ndarray):
        array = np.ascontiguousarray(source)
        return "<embedded>", hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest()
    try:
        name = str(source.relative_to(folder))
    except ValueError:
        name = str(source)
    return name, _sha256_file(source)


def input_fingerprints(items: list[DatasetItem], folder: Path) -> list[tuple[str, str, str, str]]:
    """(image, role, file relative to the dataset folder, sha256) for every file an item may read:
    the HR (role ``hr``), each reference (``ref:<key>``) and each candidate reference (``candidate``)."""
    rows = []
    for item in items:
        rows.append((item.name, "hr", *_source_fingerprint(item.hr, folder)))
        rows += [(item.name, f"ref:{key}", *_source_fingerprint(source, folder)) for key, source in item.refs]
        rows += [(item.name, "candidate", *_source_fingerprint(source, folder)) for source in item.candidates]
    return rows


def inputs_text(rows: list[tuple[str, str, str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INPUT_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def _read_inputs(path: Path) -> dict[tuple[str, str, str], str]:
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {(r[0], r[1], r[2]): r[3] for r in list(csv.reader(handle))[1:] if len(r) == 4}


# --- identity -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resume:
    """What resuming into an existing run directory means: the merged identity and what was added."""

    identity: dict[str, Any]
    added_methods: list[str]
    added_references: list[str]
    previous: dict[str, Any] | None


def run_id_of(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def _spec_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    fields = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "preset spec differs (" + "; ".join(fields[:3]) + ")"


def _refuse(out_dir: Path, what: str) -> UserError:
    return UserError(
        f"refusing to resume {out_dir}: it holds another configuration ({what}). "
        f"Start a fresh run with another --out, or delete {out_dir}."
    )


def reconcile(
    out_dir: Path,
    identity: dict[str, Any],
    data_folder: str,
    shard: tuple[int, int],
    inputs: list[tuple[str, str, str, str]],
) -> Resume:
    """Compare the new configuration with the run directory's ``run.json``: identical or extended by
    methods/reference policies is fine; anything else is refused naming what differs."""
    run_json_path = out_dir / "run.json"
    if not run_json_path.is_file():
        if (out_dir / "records.csv").is_file():
            raise _refuse(out_dir, "records.csv without run.json")
        return Resume(identity, [], [], None)
    try:
        previous = json.loads(run_json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _refuse(out_dir, "run.json is not valid JSON") from None
    stored = previous.get("identity") if isinstance(previous, dict) else None
    if not isinstance(stored, dict) or stored.get("schema") not in RESUMABLE_SCHEMAS:
        raise _refuse(out_dir, f"run.json was written by another run-directory schema (this suite writes {SCHEMA})")
    differences = []
    for key in BASE_KEYS:
        if stored.get(key) == identity[key]:
            continue
        if key == "preset":
            differences.append(_spec_difference(stored.get(key) or {}, identity[key]))
        elif key == "inputs_sha256":
            differences.append(_input_difference(out_dir, inputs))
        else:
            differences.append(f"{key} {stored.get(key)!r} -> {identity[key]!r}")
    if previous.get("data_folder") != data_folder:
        differences.append(f"data folder {previous.get('data_folder')} -> {data_folder}")
    if tuple(previous.get("shard", (0, 1))) != tuple(shard):
        differences.append(f"shard {'/'.join(map(str, previous.get('shard')))} -> {shard[0]}/{shard[1]}")
    stored_methods: dict[str, Any] = stored.get("methods", {})
    for name, entry in identity["methods"].items():
        if name in stored_methods and stored_methods[name] != entry:
            differences.append(_method_difference(name, stored_methods[name], entry))
    if differences:
        raise _refuse(out_dir, "; ".join(differences))
    added_methods = sorted(set(identity["methods"]) - set(stored_methods))
    added_references = sorted(set(identity["reference_policies"]) - set(stored.get("reference_policies", [])))
    merged = {
        **identity,
        "methods": {**stored_methods, **identity["methods"]},
        "reference_policies": sorted(set(identity["reference_policies"]) | set(stored.get("reference_policies", []))),
    }
    return Resume(merged, added_methods, added_references, previous)


def _method_difference(name: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """What changed in one method's identity entry: its weights, or (released outputs) which SR files."""
    if "outputs" not in new:
        return f"weights of {name} changed"
    old_files = (old.get("outputs") or {}).get("files") or {}
    new_files = new["outputs"].get("files") or {}
    changed = sorted(f for f in set(old_files) | set(new_files) if old_files.get(f) != new_files.get(f))
    if not changed:
        return f"the --outputs template of {name} changed"
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return f"SR output files of {name} changed: {', '.join(changed[:3])}{more}"


def _input_difference(out_dir: Path, inputs: list[tuple[str, str, str, str]]) -> str:
    old = _read_inputs(out_dir / INPUTS_FILE)
    new = {(r[0], r[1], r[2]): r[3] for r in inputs}
    changed = sorted({key[2] for key in set(old) | set(new) if old.get(key) != new.get(key)})
    if not changed:
        return "input files differ"
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return f"input files changed: {', '.join(changed[:3])}{more}"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
