"""Manifests of installed datasets: the sha256 and size of every file, as JSON inside the dataset folder.

``data fetch`` writes ``refsr-manifest.json`` before the folder is moved into ``REFSR_DATA``; ``data verify``
re-hashes the folder against it (and against the source card's pinned canonical manifest where one is known) and
names every changed, missing and extra file. ``data_match`` is the cheap check a run records in ``run.json``:
sizes against the manifest (no hashing) and whether the manifest itself equals the canonical one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from methods.download import sha256_of
from protocols import sources
from protocols.errors import UserError
from protocols.sources import SOURCES, DataSource

MANIFEST_NAME = "refsr-manifest.json"
MANIFEST_FORMAT = 1

FileTable = dict[str, dict[str, object]]  # relative POSIX path -> {"sha256": hex, "bytes": int}


def _files_of(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` except the manifest itself, sorted; a symbolic link is an error."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = here / name
            if path.is_symlink():
                raise UserError(f"{path} is a symbolic link; an installed dataset holds regular files only")
        found += [here / name for name in filenames if not (here == folder and name == MANIFEST_NAME)]
    return sorted(found)


def hash_folder(folder: Path) -> FileTable:
    """sha256 and size of every file under ``folder`` (the manifest excluded), keyed by relative POSIX path."""
    return {path.relative_to(folder).as_posix(): {"sha256": sha256_of(path), "bytes": path.stat().st_size}
            for path in _files_of(folder)}


def tree_sha256(files: FileTable) -> str:
    """One digest of a file table: sha256 over the sorted ``path NUL sha256 LF`` lines (order-independent)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{files[path]['sha256']}\n".encode())
    return digest.hexdigest()


def write_manifest(folder: Path, dataset: str, source: str, archive_sha256: dict[str, str]) -> dict[str, object]:
    """Hash ``folder`` and write its manifest inside it; returns the manifest."""
    files = hash_folder(folder)
    manifest: dict[str, object] = {
        "format": MANIFEST_FORMAT,
        "dataset": dataset,
        "source": source,
        "archives_sha256": archive_sha256,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tree_sha256": tree_sha256(files),
        "files": files,
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(path: Path) -> FileTable:
    """The file table of a manifest JSON file; a UserError when it is missing or malformed."""
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise UserError(f"no manifest {path}: the folder was not installed by `refsr-bench data fetch`; "
                        "install it with `refsr-bench data fetch DATASET --from FOLDER`") from error
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not a valid manifest ({error})") from error
    files = loaded.get("files") if isinstance(loaded, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, dict) and "sha256" in v for v in files.values()):
        raise UserError(f"{path} is not a valid manifest (no 'files' table of {{path: {{sha256, bytes}}}})")
    return files


@dataclass(frozen=True)
class Difference:
    """How a folder differs from a file table: relative paths, sorted."""

    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.changed or self.missing or self.extra)

    def lines(self, against: str) -> list[str]:
        """One line per differing file, e.g. ``changed: input/004.png (against the manifest)``."""
        return [f"{kind}: {path} (against {against})"
                for kind, paths in (("changed", self.changed), ("missing", self.missing), ("extra", self.extra))
                for path in paths]


def compare(actual: FileTable, expected: FileTable) -> Difference:
    """Files whose sha256 differs, files only in ``expected`` (missing), files only in ``actual`` (extra)."""
    return Difference(
        changed=sorted(p for p in actual.keys() & expected.keys() if actual[p]["sha256"] != expected[p]["sha256"]),
        missing=sorted(expected.keys() - actual.keys()),
        extra=sorted(actual.keys() - expected.keys()),
    )


def canonical_path(source: DataSource) -> Path | None:
    """The pinned canonical manifest of a source card (None: none is known)."""
    if source.canonical_manifest is None:
        return None
    path = Path(source.canonical_manifest)
    return path if path.is_absolute() else Path(sources.__file__).parent / "canonical" / path


@dataclass(frozen=True)
class Verification:
    """``data verify``: the differences against the folder's own manifest and (None: none known) the canonical."""

    folder: Path
    own: Difference
    canonical: Difference | None

    @property
    def same(self) -> bool:
        return self.own.same and (self.canonical is None or self.canonical.same)

    def lines(self) -> list[str]:
        lines = self.own.lines(f"{self.folder / MANIFEST_NAME}")
        if self.canonical is not None:
            lines += self.canonical.lines("the canonical manifest")
        return lines


def verify_folder(folder: Path, source: DataSource) -> Verification:
    """Re-hash every file of ``folder`` and compare with its manifest and the canonical manifest."""
    own = read_manifest(folder / MANIFEST_NAME)
    actual = hash_folder(folder)
    pinned = canonical_path(source)
    return Verification(folder, compare(actual, own), compare(actual, read_manifest(pinned)) if pinned else None)


def data_match(folder: Path, source: DataSource | None) -> dict[str, object]:
    """What a run records about its data folder, without hashing: ``manifest`` is ``absent``, ``sizes match`` (every
    listed file present with its recorded size and no extra file) or ``differs``; ``canonical`` is ``unknown`` (no
    pinned manifest), ``matches`` (the manifest's files equal the canonical ones and the sizes match) or
    ``differs``; ``tree_sha256`` of the manifest. ``data verify`` re-hashes for the full check."""
    result: dict[str, object] = {"folder": str(folder), "manifest": "absent", "canonical": "unknown",
                                 "tree_sha256": None}
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return result
    try:
        own = read_manifest(path)
        sizes = {p.relative_to(folder).as_posix(): p.stat().st_size for p in _files_of(folder)}
    except UserError as error:
        return {**result, "manifest": f"unreadable ({error})"}
    intact = sizes == {p: entry.get("bytes") for p, entry in own.items()}
    result.update(manifest="sizes match" if intact else "differs", tree_sha256=tree_sha256(own))
    pinned = canonical_path(source) if source is not None else None
    if pinned is not None:
        same = intact and tree_sha256(read_manifest(pinned)) == tree_sha256(own)
        result["canonical"] = "matches" if same else "differs"
    return result


def run_data_check(data_folder: str, dataset: str) -> dict[str, object] | None:
    """``run.json``'s ``data_check``: ``data_match`` of the run's data folder with its source card (None for
    embedded data)."""
    return None if data_folder == "<embedded>" else data_match(Path(data_folder), SOURCES.get(dataset))
