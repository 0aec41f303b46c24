"""Read run folders for the report: records.csv + run.json (quality and matching runs), cost.csv + run.json
(cost runs), result bundles (``NAME.refsr.tar``, named in ``--results`` or found in its folders: their records
and run.json, each labelled verified or not by ``bench.results.bundle.verification_mark``), saved SR images
(``images/<method>/<reference>/<image>.png``) and pictures of matches
(``match_images/<method>/<reference>/<frame>.png``, written by the demo).

Reports only read. Records of methods run with random weights (``[random-weights]`` in the method name)
are dropped here, so nothing downstream can render them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.results.bundle import SUFFIX, read_bundle, verification_mark
from bench.results.cost_csv import CostRow, loaded_measurements, read_cost_csv  # the cost.csv format (torch-free)
from bench.results.records import RANDOM_WEIGHTS_TAG, Record, is_journal, read_records, run_json_dataset
from protocols.core import UserError
from protocols.datasets import DATASETS

POOLED_IMAGE = "ALL"  # a record over all images (matching accuracy is pooled over positions), not an image


@dataclass(frozen=True)
class RunInfo:
    """One run folder: ``label`` is its path relative to the results folder it was found in."""

    label: str
    path: Path
    kind: str  # "records" (quality / matching) or "cost"
    run_json: dict[str, Any]  # the folder's run.json ({} when absent or unreadable)
    verification: str = ""  # bundles: "verified DATE on DEVICE" or "unverified bundle"; run folders: ""

    @property
    def dataset(self) -> str:
        """The dataset of a records run ("" for cost runs)."""
        return run_json_dataset(self.run_json)


@dataclass(frozen=True)
class SavedImage:
    run: str
    method: str
    reference_folder: str  # the reference policy with ':' replaced by '_' (bench.engines.run.plan.image_path)
    image: str
    path: Path


@dataclass
class Results:
    records: list[Record] = field(default_factory=list)
    cost: list[CostRow] = field(default_factory=list)
    runs: list[RunInfo] = field(default_factory=list)
    images: list[SavedImage] = field(default_factory=list)
    match_images: list[SavedImage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped_random_weight_records: int = 0
    unfinished: set[tuple[str, str, str]] = field(default_factory=set)  # (dataset, preset, method) of unfinished runs
    # (dataset, preset, method, reference) -> the verification mark of the bundle its records came from
    marks: dict[tuple[str, str, str, str], str] = field(default_factory=dict)


MeanKey = tuple[str, str, str, str, str]  # (dataset, preset, method, reference, metric)


@dataclass(frozen=True)
class Mean:
    value: float
    count: int  # images averaged; 0 when the value is a pooled record (image "ALL")
    pooled: bool
    expected: int = 0  # the dataset's canonical image count (its card's image_count; 0 = none)
    unfinished: bool = False  # from a run that did not finish

    @property
    def partial(self) -> str:
        """How this value is partial, as tables print it ("2/14", "unfinished"), or "" when it is complete: a mean
        over fewer images than the dataset's canonical set, or any value of an unfinished run."""
        if not self.pooled and self.expected and self.count < self.expected:
            return f"{self.count}/{self.expected}" + (" unfinished" if self.unfinished else "")
        return "unfinished" if self.unfinished else ""


def means(records: list[Record], unfinished: set[tuple[str, str, str]] | frozenset[tuple[str, str, str]] = frozenset(),
          ) -> dict[MeanKey, Mean]:
    """Dataset values: the mean of per-image values, or the pooled record (image ``ALL``) where a run wrote one
    (matching accuracy is pooled over all positions of all frames: protocols.md §6 #11). Each carries the
    dataset's canonical image count and whether its (dataset, preset, method) came from an unfinished run."""
    per_image: dict[MeanKey, list[float]] = defaultdict(list)
    pooled: dict[MeanKey, float] = {}
    for r in records:
        key = (r.dataset, r.preset, r.method, r.reference, r.metric)
        if r.image == POOLED_IMAGE:
            pooled[key] = r.value
        else:
            per_image[key].append(r.value)
    out: dict[MeanKey, Mean] = {}
    for key, values in per_image.items():
        card = DATASETS.get(key[0])
        out[key] = Mean(math.fsum(values) / len(values), len(values), False, card.image_count if card else 0,
                        key[:3] in unfinished)
    for key, value in pooled.items():
        out[key] = Mean(value, 0, True, 0, key[:3] in unfinished)
    return out


def _read_run_json(folder: Path, warnings: list[str]) -> dict[str, Any]:
    path = folder / "run.json"
    if not path.is_file():
        warnings.append(f"{folder}: no run.json (protocol sentence and provenance unknown)")
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        warnings.append(f"{path}: unreadable ({error})")
        return {}
    return data if isinstance(data, dict) else {}


def _saved_images(folder: Path, run_label: str, subfolder: str = "images") -> list[SavedImage]:
    root = folder / subfolder
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.glob("*/*/*.png")):
        method, reference_folder = path.parent.parent.name, path.parent.name
        if RANDOM_WEIGHTS_TAG in method:
            continue
        found.append(SavedImage(run_label, method, reference_folder, path.stem, path))
    return found


def run_folders(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) holding records.csv or cost.csv, sorted; images/ and
    match_images/ are skipped."""
    found = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("images", "match_images"))
        if "records.csv" in files or "cost.csv" in files:
            found.append(Path(current))
    return sorted(found)


def _keep(records: list[Record], label: str, results: Results, seen: dict[tuple[str, ...], tuple[float, str]]
          ) -> list[Record]:
    """Records not seen before (a disagreeing duplicate is a warning; the first value is used), without
    random-weight records."""
    kept = []
    for record in records:
        if RANDOM_WEIGHTS_TAG in record.method:
            results.dropped_random_weight_records += 1
            continue
        key = record.sort_key()
        if key in seen:
            if seen[key][0] != record.value and not (math.isnan(seen[key][0]) and math.isnan(record.value)):
                results.warnings.append(
                    f"{label}: {'/'.join(key)} = {record.value} disagrees with {seen[key][1]} "
                    f"({seen[key][0]}); the first value is used")
            continue
        seen[key] = (record.value, label)
        kept.append(record)
    return kept


def _collect_bundle(path: Path, label: str, results: Results, seen: dict[tuple[str, ...], tuple[float, str]]) -> None:
    bundle = read_bundle(path)
    with tempfile.TemporaryDirectory(prefix="refsr-report-") as temp:
        records = _keep(bundle.records(Path(temp)), label, results, seen)
    mark = verification_mark(path, bundle.sha256)
    for record in records:
        results.marks[(record.dataset, record.preset, record.method, record.reference)] = mark
    results.records += records
    results.runs.append(RunInfo(label, path, "records", bundle.run_json, mark))


def _collect_folder(folder: Path, label: str, results: Results,
                    seen: dict[tuple[str, ...], tuple[float, str]]) -> None:
    run_json = _read_run_json(folder, results.warnings)
    if (folder / "records.csv").is_file():
        try:
            records = read_records(folder / "records.csv")
        except ValueError as error:
            raise UserError(str(error)) from error
        if is_journal(folder / "records.csv"):
            results.warnings.append(f"{label}: an unfinished run (records.csv is still a journal); its values "
                                    "are marked partial")
            results.unfinished |= {(r.dataset, r.preset, r.method) for r in records}
        results.records += _keep(records, label, results, seen)
        results.runs.append(RunInfo(label, folder, "records", run_json))
        results.images += _saved_images(folder, label)
        results.match_images += _saved_images(folder, label, "match_images")
    if (folder / "cost.csv").is_file():
        environment = run_json.get("environment", {}) if isinstance(run_json.get("environment"), dict) else {}
        threads = environment.get("torch_threads")
        results.cost += read_cost_csv(folder / "cost.csv", label, str(environment.get("device_name") or ""),
                                      threads if isinstance(threads, int) else 0, loaded_measurements(run_json))
        results.runs.append(RunInfo(label, folder, "cost", run_json))


def collect(result_dirs: list[Path]) -> Results:
    """Everything the report needs from the given results folders (searched recursively for run folders and
    bundles) and bundle files."""
    results = Results()
    seen: dict[tuple[str, ...], tuple[float, str]] = {}
    for root in result_dirs:
        root = Path(root)
        if root.is_file() and root.name.endswith(SUFFIX):
            _collect_bundle(root, root.name, results, seen)
            continue
        if not root.is_dir():
            raise UserError(f"results folder not found: {root} (pass folders written by `refsr-bench run`/`cost`, "
                            f"or {SUFFIX} bundles)")
        for folder in run_folders(root):
            relative = folder.relative_to(root).as_posix()
            _collect_folder(folder, root.name if relative == "." else f"{root.name}/{relative}", results, seen)
        for bundle in sorted(root.rglob("*" + SUFFIX)):
            _collect_bundle(bundle, f"{root.name}/{bundle.relative_to(root).as_posix()}", results, seen)
    return results
