"""Result bundles: one finished run folder as one portable, checkable file (``NAME.refsr.tar``).

Members (plain files, no folders): ``run.json``, ``records.csv``, ``records.sha256``, ``inputs.csv``,
``environment.json`` (run.json's environment and determinism flags), optionally ``images/<method>/<reference
folder>/<image>.png`` (the scored SR images, ``--with-images``), and ``bundle.json``: the manifest with the
sha256 of every other member and the claim in readable form (dataset, preset, reference policies, methods with
weight sha256, the dataset means that tables show, image count against the dataset's canonical count, suite
version, code identity).

Writing is deterministic: members sorted by name, ustar format (no pax timestamps), mtime 0, uid/gid 0,
empty owner names, mode 0644; bundling one run twice gives the same bytes.

Reading never extracts: members are read into memory after every header is checked (regular files only;
no absolute name, no ``..``, no duplicate; symlinks, hard links, devices and oversize members are refused).
``materialise`` writes chosen members into a caller's temporary folder, never outside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bench.results.records import (
    CHECKSUM_FILE,
    Record,
    finished_file_is_intact,
    is_journal,
    read_records,
    read_run_json,
    run_json_dataset,
)
from protocols.datasets import get_dataset
from protocols.errors import UserError

FORMAT = "refsr-bench result bundle"
FORMAT_VERSION = 1
MANIFEST = "bundle.json"
ENVIRONMENT = "environment.json"
RUN_MEMBERS = ("run.json", "records.csv", CHECKSUM_FILE, "inputs.csv")
IMAGES = "images"
SUFFIX = ".refsr.tar"
MAX_MEMBER_BYTES = 512 << 20
MAX_TOTAL_BYTES = 8 << 30
MAX_MEMBERS = 200_000
ALL_CHECKS = ("integrity", "inputs", "weights", "rescoring", "recomputation")  # what `verify` can check
# the datasets' published image counts (a claim on fewer images says so in bundle.json)
class UnsafeBundle(UserError):
    """A bundle whose archive cannot be read safely (the message names the member)."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_means(records: list[Record]) -> dict[str, float]:
    """``method|reference|metric`` -> the mean over images (``math.fsum``), the value a table cell shows."""
    values: dict[str, list[float]] = defaultdict(list)
    for record in records:
        values[f"{record.method}|{record.reference}|{record.metric}"].append(record.value)
    return {key: math.fsum(v) / len(v) for key, v in sorted(values.items())}


# --- writing --------------------------------------------------------------------------------------


def finished_run_json(run_dir: Path) -> dict[str, Any]:
    """run.json of a finished, unmerged run folder; a UserError saying why anything else cannot be bundled."""
    run_json = read_run_json(run_dir, "bundle a folder written by `refsr-bench run`")
    if not isinstance(run_json.get("identity"), dict):
        raise UserError(f"{run_dir}: run.json has no run identity (an older schema); rerun it to bundle it")
    if not isinstance(run_json["identity"].get("numeric"), dict):
        raise UserError(f"{run_dir}: its identity holds no code and numeric environment (made by an older suite); "
                        "rerun it to bundle it")
    if "merged_from" in run_json:
        missing = run_json.get("missing_shards") or []
        what = f"a partial merge (missing shards {', '.join(missing)})" if missing else "a merge of shards"
        raise UserError(f"{run_dir} is {what}; bundle an unsharded run (or each shard folder)")
    records = run_dir / "records.csv"
    if (run_dir / "parts").is_dir() or not records.is_file() or is_journal(records):
        raise UserError(f"{run_dir} is not finished (records.csv is missing or still a journal); rerun its command")
    if not finished_file_is_intact(records):
        raise UserError(f"{run_dir}: records.csv does not match {CHECKSUM_FILE} (changed after the run finished)")
    if not (run_dir / "inputs.csv").is_file():
        raise UserError(f"{run_dir} has no inputs.csv; rerun its command to record the input files")
    return run_json


def _image_members(run_dir: Path, records: list[Record]) -> dict[str, bytes]:
    """Every group's scored PNG (a UserError names the first missing one)."""
    members = {}
    for method, reference, image in sorted({(r.method, r.reference, r.image) for r in records}):
        name = f"{IMAGES}/{method}/{reference.replace(':', '_')}/{image}.png"
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir}: --with-images needs every scored image, {name} is missing "
                            "(rerun the run with --save-images)")
        members[name] = (run_dir / name).read_bytes()
    return members


def _canonical_images(dataset: str) -> int | None:
    """Images of the canonical (published) set, from the dataset card (None: no card, or no canonical count)."""
    try:
        count = get_dataset(dataset).image_count
    except UserError:
        return None
    return count or None


def claim(run_json: dict[str, Any], records: list[Record]) -> dict[str, Any]:
    """What the run claims, in readable form (bundle.json's ``claim``)."""
    identity = run_json["identity"]
    dataset = run_json_dataset(run_json)
    return {
        "dataset": dataset,
        "preset": identity.get("preset", {}).get("name", ""),
        "reference_policies": identity.get("reference_policies", []),
        "methods": {name: entry.get("weights", []) for name, entry in sorted(identity.get("methods", {}).items())},
        "images": len({r.image for r in records}),
        "canonical_images": _canonical_images(dataset),
        "shard": run_json.get("shard", [0, 1]),
        "means": bundle_means(records),
    }


def code_identity(run_json: dict[str, Any]) -> dict[str, Any]:
    """The code that produced the run, as its identity records it: suite version, git commit and dirty flag,
    plugin files and each method's source files (sha256)."""
    identity = run_json["identity"]
    methods = identity.get("methods") or {}
    return {"suite_version": identity.get("suite_version"), "git": identity.get("git"),
            "plugins": identity.get("plugins"),
            "method_sources": {name: entry.get("source") for name, entry in sorted(methods.items())
                               if isinstance(entry, dict) and "source" in entry}}


def bundle_members(run_dir: Path, with_images: bool) -> dict[str, bytes]:
    """Every member of the bundle of ``run_dir`` (bundle.json included)."""
    run_json = finished_run_json(run_dir)
    members = {name: (run_dir / name).read_bytes() for name in RUN_MEMBERS}
    environment = {"environment": run_json.get("environment"), "determinism": run_json.get("determinism")}
    members[ENVIRONMENT] = (json.dumps(environment, indent=2, sort_keys=True, default=str) + "\n").encode()
    records = read_records(run_dir / "records.csv")
    if with_images:
        members.update(_image_members(run_dir, records))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "run_id": run_json.get("run_id"),
        "claim": claim(run_json, records),
        "code": code_identity(run_json),
        "with_images": with_images,
        "members": {name: sha256_bytes(data) for name, data in sorted(members.items())},
    }
    members[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return members


def write_tar(members: dict[str, bytes], out: Path) -> None:
    """A deterministic ustar archive of ``members`` (see the module docstring), written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(members[name]), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(members[name]))
    os.replace(tmp, out)


def write_bundle(run_dir: Path, out: Path, with_images: bool = False) -> dict[str, bytes]:
    """Bundle the finished run ``run_dir`` into ``out``; returns the members."""
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name ending in {SUFFIX}")
    members = bundle_members(run_dir, with_images)
    write_tar(members, out)
    return members


def verification_dir(bundle_path: Path) -> Path:
    """Where ``verify`` writes ``verification.json``/``.md`` by default and where reports look for them:
    ``NAME.verification/`` beside ``NAME.refsr.tar``."""
    name = bundle_path.name.removesuffix(".tar").removesuffix(".refsr")
    return bundle_path.with_name(name + ".verification")


def verification_mark(bundle_path: Path, bundle_sha256: str) -> str:
    """How a report labels the numbers of a bundle: ``verified DATE on DEVICE`` when ``verification.json``
    beside it passed for these exact bytes, else ``unverified bundle`` (or ``verification failed DATE``)."""
    path = verification_dir(bundle_path) / "verification.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return "unverified bundle"
    if not isinstance(report, dict) or report.get("bundle_sha256") != bundle_sha256:
        return "unverified bundle (its verification.json is for other bytes)"
    machine = report.get("machine") or {}
    if not report.get("passed"):
        return f"verification failed {report.get('date')}"
    ran = sorted(str(c.get("name")) for c in report.get("checks") or [] if isinstance(c, dict))
    partial = "" if set(ran) >= set(ALL_CHECKS) else f" ({', '.join(ran)} only)"
    return f"verified {report.get('date')} on {machine.get('model') or machine.get('device')}{partial}"


# --- reading --------------------------------------------------------------------------------------


def _check_header(info: tarfile.TarInfo, seen: set[str]) -> None:
    name = info.name
    path = PurePosixPath(name)
    if not info.isreg():
        kind = "a symlink" if info.issym() else "a hard link" if info.islnk() else "a folder" if info.isdir() else \
            "a device or special file"
        raise UnsafeBundle(f"member {name!r} is {kind}; bundles hold regular files only")
    if path.is_absolute() or name.startswith(("/", "\\")) or "\\" in name or ".." in path.parts or not name:
        raise UnsafeBundle(f"member {name!r} has an unsafe path (absolute or leading outside the bundle)")
    if info.size > MAX_MEMBER_BYTES:
        raise UnsafeBundle(f"member {name!r} is {info.size} bytes, over the {MAX_MEMBER_BYTES} byte limit")
    if name in seen:
        raise UnsafeBundle(f"member {name!r} appears twice")


@dataclass(frozen=True)
class Bundle:
    """A bundle read into memory: ``members`` name -> bytes, ``sha256`` of the whole file."""

    path: Path
    members: dict[str, bytes]
    sha256: str

    def json_member(self, name: str) -> dict[str, Any]:
        """A JSON member as a dict ({} when absent or not a JSON object)."""
        try:
            value = json.loads(self.members[name])
        except (KeyError, ValueError, UnicodeDecodeError):
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def manifest(self) -> dict[str, Any]:
        return self.json_member(MANIFEST)

    @property
    def run_json(self) -> dict[str, Any]:
        return self.json_member("run.json")

    def records(self, temp_dir: Path) -> list[Record]:
        """The bundle's records (read through a copy in ``temp_dir``)."""
        return read_records(materialise(self, ["records.csv"], temp_dir)[0])


def read_bundle(path: Path) -> Bundle:
    """Read ``path`` safely into memory (see the module docstring); UserError when it is no bundle,
    UnsafeBundle naming the member when a header is refused."""
    if not path.is_file():
        raise UserError(f"bundle not found: {path} (give a {SUFFIX} file written by `refsr-bench bundle`)")
    members: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                _check_header(info, set(members))
                total += info.size
                if total > MAX_TOTAL_BYTES or len(members) >= MAX_MEMBERS:
                    raise UnsafeBundle(f"{path} holds more than {MAX_TOTAL_BYTES} bytes or {MAX_MEMBERS} members")
                handle = tar.extractfile(info)
                assert handle is not None  # a regular file
                members[info.name] = handle.read()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UserError(f"{path} is not a readable bundle ({error}); give a {SUFFIX} file") from None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return Bundle(path, members, digest.hexdigest())


def materialise(bundle: Bundle, names: list[str], temp_dir: Path) -> list[Path]:
    """Write the members ``names`` under ``temp_dir`` (which must exist) and return their paths; a name that
    would resolve outside ``temp_dir`` is refused (read_bundle already refused such names)."""
    root = temp_dir.resolve()
    paths = []
    for name in names:
        target = (root / name).resolve()
        if root not in target.parents:
            raise UnsafeBundle(f"member {name!r} would be written outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bundle.members[name])
        paths.append(target)
    return paths
