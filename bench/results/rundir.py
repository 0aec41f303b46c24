"""The run-directory contract: one configuration per directory (identity), one writer at a time (lock),
and checks of the output path before anything is written.

Identity: dataset, the preset's full frozen spec, every method's record name, weight sha256 and source
sha256 (its own modules), the reference policies, the device class (cpu/cuda), the suite version, the code
(``git``: commit and dirty flag of a checkout; ``plugins``: sha256 of every ``--plugin`` file), the numeric
environment (``numeric``: torch version, intra-op threads, device model, deterministic flags) and the sha256
of every HR/reference file of the dataset (listed per image in ``inputs.csv``). ``run_id`` is a hash of it --
not of the shard, so an unsharded run and a complete set of its shards share one ``run_id``.

One writer: the lock is an ``flock`` on a descriptor of the run directory itself, so deleting or replacing
``run.lock`` (which only names the holder's PID) cannot let a second writer in; before every write the holder
checks the directory is still the one it locked.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.results.records import RUN_JSON_SCHEMA, is_journal, read_journal, write_file
from bench.results.records import write_atomic as write_atomic  # the run engine writes run.json through rundir
from protocols.core import UserError
from protocols.datasets import DatasetItem
from protocols.imageio import file_sha256

SCHEMA = RUN_JSON_SCHEMA
RESUMABLE_SCHEMAS = (SCHEMA,)  # run folders this suite resumes or merges: its own schema only
LOCK_FILE = "run.lock"
INPUTS_FILE = "inputs.csv"
INPUT_COLUMNS = ("image", "role", "file", "sha256")
CODE_KEYS = ("git", "plugins", "numeric")  # added to the identity by issue 21; older run.json files lack them
BASE_KEYS = ("schema", "suite_version", *CODE_KEYS, "dataset", "preset", "device_class", "inputs_sha256")
CHECKOUT = Path(__file__).resolve().parents[2]  # the source tree this module runs from (a git checkout or not)


def suite_version() -> str:
    try:
        return version("refsr-bench")
    except PackageNotFoundError:
        return "unknown"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=CHECKOUT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """``{"commit": sha or "unknown", "dirty": bool or None}`` of the checkout the suite runs from (tracked files
    only); ``unknown`` / None when it is not a git checkout or git is absent -- never an error."""
    if not (CHECKOUT / ".git").exists():
        return {"commit": "unknown", "dirty": None}
    commit = (_git("rev-parse", "HEAD") or "").strip() or "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status.strip())}


def sha256_files(paths: list[Path]) -> dict[str, str]:
    """``{name: sha256}`` of source files, named relative to the suite's checkout when inside it, else by file
    name (so the identity does not depend on where the suite or a plugin lives); an unreadable file maps to
    ``unreadable``."""
    out = {}
    for path in paths:
        try:
            name = path.resolve().relative_to(CHECKOUT).as_posix()
        except ValueError:
            name = path.name
        try:
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            out[name] = "unreadable"
    return out


def numeric_environment(device: str, determinism: dict[str, Any]) -> dict[str, Any]:
    """What the numbers depend on besides code and inputs: torch version, intra-op threads, device model and the
    deterministic flags in force."""
    from bench.results.provenance import device_model

    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "device_model": device_model(device),
            "deterministic": determinism}


def environment_identity(device: str, determinism: dict[str, Any], plugins: list[Path]) -> dict[str, Any]:
    """The code and environment part of a run identity (``CODE_KEYS``)."""
    return {"git": git_state(), "plugins": sha256_files(plugins), "numeric": numeric_environment(device, determinism)}


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
    """Exclusive advisory lock (``flock``) on a descriptor of the run directory itself. The kernel drops it
    when the holding process dies, so a killed run never blocks the next one; deleting or replacing ``run.lock``
    (which only holds the holder's PID, for messages) does not release it. ``check()`` (called before every
    write) stops a writer whose directory was removed or replaced under it."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path = out_dir / LOCK_FILE
        self._handle: int | None = None
        self._identity: tuple[int, int] | None = None

    def acquire(self) -> RunLock:
        try:
            handle = os.open(self.out_dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise UserError(f"cannot open run folder {self.out_dir}: {error.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(handle)
            try:
                holder = self.path.read_text().strip() or "unknown"
            except (OSError, UnicodeDecodeError):
                holder = "unknown"
            raise UserError(
                f"{self.out_dir} is being written by another refsr-bench process (PID {holder}); "
                "wait for it to finish or use another --out"
            ) from None
        stat = os.fstat(handle)
        self._handle, self._identity = handle, (stat.st_dev, stat.st_ino)
        try:
            write_file(self.path, f"{os.getpid()}\n")
        except UserError:
            self.release()
            raise
        return self

    def check(self) -> None:
        """Raise a UserError unless this process still holds the lock of the directory at ``out_dir``."""
        try:
            stat = os.stat(self.out_dir)
            same = self._handle is not None and (stat.st_dev, stat.st_ino) == self._identity
        except OSError:
            same = False
        if not same:
            raise UserError(f"lost the lock on {self.out_dir}: the folder was removed or replaced while this run "
                            "was writing it; stopped without writing more. Rerun the same command to resume")

    def release(self) -> None:
        if self._handle is not None:
            os.close(self._handle)  # closing the descriptor releases the flock
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


# --- input fingerprints ---------------------------------------------------------------------------


def _source_fingerprint(source: Path | np.ndarray, folder: Path) -> tuple[str, str]:
    if isinstance(source, np.ndarray):
        array = np.ascontiguousarray(source)
        return "<embedded>", hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest()
    try:
        name = str(source.relative_to(folder))
    except ValueError:
        name = str(source)
    return name, file_sha256(source)


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
        if (out_dir / "records.csv").is_file() and not _empty_journal(out_dir / "records.csv"):
            raise _refuse(out_dir, "records.csv without run.json")
        return Resume(identity, [], [], None)
    try:
        previous = json.loads(run_json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _refuse(out_dir, "run.json is not valid JSON") from None
    stored = previous.get("identity") if isinstance(previous, dict) else None
    if not isinstance(stored, dict) or stored.get("schema") not in RESUMABLE_SCHEMAS:
        raise _refuse(out_dir, f"run.json was written by another run-directory schema (this suite writes {SCHEMA})")
    if any(key not in stored for key in CODE_KEYS):
        raise _refuse(out_dir, "run.json was written before run identities held the code and numeric environment")
    differences = [d for key in BASE_KEYS if key != "schema"  # a schema-2 run resumes as schema 3
                   for d in _key_difference(out_dir, key, stored.get(key), identity[key], inputs)]
    if previous.get("data_folder") != data_folder:
        differences.append(f"data folder {previous.get('data_folder')} -> {data_folder}")
    if tuple(previous.get("shard", (0, 1))) != tuple(shard):
        differences.append(f"shard {'/'.join(map(str, previous.get('shard', (0, 1))))} -> {shard[0]}/{shard[1]}")
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
    """What changed in one method's identity entry: its weights, its code, the method itself, or (released
    outputs) which SR files."""
    if "outputs" in new:
        old_files = (old.get("outputs") or {}).get("files") or {}
        new_files = new["outputs"].get("files") or {}
        changed = sorted(f for f in set(old_files) | set(new_files) if old_files.get(f) != new_files.get(f))
        if not changed:
            return f"the --outputs template of {name} changed"
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        return f"SR output files of {name} changed: {', '.join(changed[:3])}{more}"
    parts = []
    if old.get("weights") != new.get("weights"):
        parts.append(f"weights of {name} changed")
    if old.get("source") != new.get("source"):
        parts.append(f"code of {name} changed ({_changed_files(old.get('source'), new.get('source'))})")
    if old.get("method") != new.get("method"):
        parts.append(f"{name} is method {old.get('method')!r} there, {new.get('method')!r} now")
    return "; ".join(parts) or f"the identity entry of {name} changed"


def _empty_journal(path: Path) -> bool:
    """A journal holding no group (what a run that failed to write run.json can leave): safe to resume."""
    try:
        return is_journal(path) and not read_journal(path)[0]
    except (OSError, UserError):
        return False


def _key_difference(out_dir: Path, key: str, old: Any, new: Any, inputs: list[tuple[str, str, str, str]]) -> list[str]:
    """What differs in one identity key, as the refusal names it (empty: nothing)."""
    if old == new:
        return []
    if key == "preset":
        return [_spec_difference(old or {}, new)]
    if key == "inputs_sha256":
        return [_input_difference(out_dir, inputs, old)]
    if key == "plugins":
        return [f"plugin files changed ({_changed_files(old, new)})"]
    if key == "numeric" and isinstance(old, dict):
        names = {"threads": "intra-op threads", "torch": "torch version", "device_model": "device model",
                 "deterministic": "deterministic flags"}
        return [f"{names.get(k, k)} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)]
    if key == "git" and isinstance(old, dict):
        return [f"suite code (git {k}) {old.get(k)!r} -> {new.get(k)!r}" for k in ("commit", "dirty")
                if old.get(k) != new.get(k)]
    return [f"{key} {old!r} -> {new!r}"]


def _changed_files(old: Any, new: Any) -> str:
    old, new = old or {}, new or {}
    changed = sorted(f"{Path(f).name} {'added' if f not in old else 'removed' if f not in new else 'edited'}"
                     for f in set(old) | set(new) if old.get(f) != new.get(f))
    return ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


def _input_difference(out_dir: Path, inputs: list[tuple[str, str, str, str]], stored_sha256: Any) -> str:
    """The changed input files, from the folder's ``inputs.csv`` -- only when that file is the one the identity
    hashed (a missing or edited inputs.csv cannot tell which files changed, and the message says so)."""
    path = out_dir / INPUTS_FILE
    try:
        intact = hashlib.sha256(path.read_bytes()).hexdigest() == stored_sha256
    except OSError:
        intact = False
    if not intact:
        return (f"input files differ from the run's ({INPUTS_FILE} is missing or was edited, so which files "
                "changed cannot be named)")
    old = _read_inputs(path)
    new = {(r[0], r[1], r[2]): r[3] for r in inputs}
    changed = sorted({key[2] for key in set(old) | set(new) if old.get(key) != new.get(key)})
    if not changed:
        return "input files differ"
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return f"input files changed: {', '.join(changed[:3])}{more}"


