"""Where official checkpoints live, and the one explicit verb that downloads them.

Weights are never downloaded implicitly. ``REFSR_WEIGHTS`` (default ``~/.cache/refsr-bench/weights``)
is a folder holding the official file names; users may fill it by hand.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from methods.base import Method, WeightFile, sha256_of
from methods.registry import create, list_methods
from protocols.core import UserError


def weights_dir(explicit: str | Path | None = None) -> Path:
    value = explicit or os.environ.get("REFSR_WEIGHTS")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "refsr-bench" / "weights"


@dataclass(frozen=True)
class WeightEntry:
    method: str
    file: WeightFile


def all_weight_entries() -> list[WeightEntry]:
    entries = []
    for name in list_methods():
        try:
            method = create(name)  # each factory's own default scale
        except UserError:
            continue
        entries += [WeightEntry(name, f) for f in method.info.weights]
    return entries


def missing_files(method: Method, folder: Path) -> list[str]:
    return [f.file_name for f in method.info.weights if not (folder / f.file_name).is_file()]


def try_load(method: Method, folder: Path) -> str | None:
    """Load the method's official weights from ``folder``; return None on success, else why not."""
    if method.weights_loaded:
        return None
    if not method.info.weights:
        return "no official checkpoint exists; pass your own with --weights"
    missing = missing_files(method, folder)
    if missing:
        return (
            f"weights not installed: {', '.join(missing)} not in {folder} "
            f"(run `refsr-bench weights fetch {method.info.name}` or place the files there)"
        )
    method.load_weights(folder)
    return None


def fetch(name: str, folder: Path) -> list[Path]:
    """Download the official files of a method (or one file name) into ``folder``, sha256-checked."""
    entries = [e for e in all_weight_entries() if name in (e.method, e.file.file_name)]
    if not entries:
        valid = sorted({e.method for e in all_weight_entries()})
        raise UserError(f"no official weights registered for {name!r}; methods with weights: {', '.join(valid)}")
    folder.mkdir(parents=True, exist_ok=True)
    done = []
    for entry in {e.file.file_name: e for e in entries}.values():
        target = folder / entry.file.file_name
        if target.is_file() and (entry.file.sha256 is None or sha256_of(target) == entry.file.sha256):
            done.append(target)
            continue
        print(f"downloading {entry.file.url} -> {target}")
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as handle:
            try:
                with urllib.request.urlopen(entry.file.url, timeout=60) as response:
                    shutil.copyfileobj(response, handle)
            except (urllib.error.URLError, OSError) as error:
                os.unlink(handle.name)
                raise UserError(
                    f"could not download {entry.file.url}: {error}. If this machine is offline, download the "
                    f"file elsewhere and place it at {target}"
                ) from error
        got = sha256_of(handle.name)
        if entry.file.sha256 is not None and got != entry.file.sha256:
            os.unlink(handle.name)
            raise UserError(f"sha256 mismatch for {entry.file.url}: expected {entry.file.sha256}, got {got}")
        os.replace(handle.name, target)
        done.append(target)
    return done
