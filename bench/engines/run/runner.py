"""``refsr-bench run``: one protocol (dataset + preset), several methods, per-image records.

A run directory holds one configuration (``bench.results.rundir``: identity, lock). Resumable: records are
journalled one group at a time with a checksum (``bench.results.records``); rerunning the same command skips what
is done and the final ``records.csv`` is identical to an uninterrupted run's. Shardable: ``--shard i/n``
takes every n-th image starting at i; ``refsr-bench merge`` joins a complete shard set.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from bench.engines.data.manifest import run_data_check
from bench.results import provenance, rundir
from bench.results.records import (
    RANDOM_WEIGHTS_TAG,
    Record,
    RecordAppender,
    is_journal,
    read_records,
    run_json_dataset,
    write_records,
)
from methods.base import Method, sha256_of
from methods.registry import create, resolve
from methods.weights import try_load, weight_file_for, weights_dir
from protocols.core import Sample, UserError
from protocols.datasets import DatasetItem, data_root, get_dataset, load_items, locate
from protocols.imageio import image_size
from protocols.pipeline import center_pad_amounts, make_sample, resolve_policy
from protocols.scoring import check_scored_size, score_levels, scored_levels
from protocols.spec import ProtocolSpec, get_preset


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    preset: str
    methods: tuple[str, ...]
    out_dir: Path
    data_root: str | None = None
    weights: str | tuple[str, ...] | None = None  # --weights values: a folder, FILE or METHOD=FILE
    device: str = "cpu"
    reference_policies: tuple[str, ...] = ()  # empty: the preset's policy for this dataset
    shard: tuple[int, int] = (0, 1)
    allow_random_weights: bool = False
    save_images: bool = False
    show_progress: bool = True


def parse_protocol(text: str) -> tuple[str, str]:
    """``DATASET[:PRESET]`` -> (dataset, preset); the preset defaults to the suite's ``refsr``."""
    dataset, _, preset = text.partition(":")
    get_dataset(dataset)
    preset = preset or "refsr"
    get_preset(preset)
    return dataset, preset


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError as error:
        raise UserError(f"--shard must look like i/n (e.g. 0/4); got {text!r}") from error
    if not 0 <= index < count:
        raise UserError(f"--shard {text}: need 0 <= i < n")
    return index, count


def level_policies(levels: str | None) -> tuple[str, ...]:
    """The reference policies ``--level`` selects: CUFED5 levels 1..5, a comma list, ``all`` (= 1..5) or a
    stitching recipe name; for datasets with random references, ``draws:K`` (= draw:0 .. draw:K-1, one seeded
    reference choice per draw)."""
    if not levels:
        return ()
    if levels == "all":
        return tuple(f"level:{k}" for k in "12345")
    policies: list[str] = []
    for part in levels.split(","):
        part = part.strip()
        if part in "12345" and len(part) == 1:
            policies.append(f"level:{part}")
        elif part.startswith(("stitch5_", "level:")) or (part.startswith("draw:") and part[5:].isdigit()):
            policies.append(part)
        elif part.startswith("draws:") and part[6:].isdigit() and int(part[6:]) > 0:
            policies += [f"draw:{k}" for k in range(int(part[6:]))]
        else:
            raise UserError(
                f"--level {part!r}: use 1..5, all, stitch5_masa / stitch5_zero500_topleft, draws:K or draw:SEED"
            )
    return tuple(policies)


def _as_method_input(image: torch.Tensor | None, device: str) -> torch.Tensor | None:
    if image is None:
        return None
    if image.shape[1] == 1:  # Y-only presets: methods see the luma replicated into RGB
        image = image.repeat(1, 3, 1, 1)
    return image.to(device)


def _save_png(path: Path, levels: np.ndarray) -> None:
    """Write the scored image (``scored_levels``' (H, W, C) levels) as an 8-bit PNG. Presets that round
    hold integers on [0, 255] here, so the PNG is byte-equal to what the metrics saw."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.clip(np.round(levels), 0, 255).astype(np.uint8)
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path)


_CHECKPOINT_ERRORS = (RuntimeError, ValueError, KeyError, OSError, EOFError, pickle.UnpicklingError)


def _short(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return first if len(first) <= 200 else first[:200] + " ..."


def _check_checkpoint_file(path: Path) -> None:
    """Short reasons for files that cannot be checkpoints, before torch prints its long ones."""
    head = path.read_bytes()[:4] if path.stat().st_size else b""
    if not head:
        raise UserError(f"checkpoint {path} is empty (0 bytes); download it again")
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise UserError(f"checkpoint {path} is not a PyTorch checkpoint (neither zip nor pickle); download it again")


def _load_weights(method: Method, name: str, load: Any) -> Any:
    try:
        return load()
    except UserError as error:
        raise UserError(f"{name}: {_short(str(error))}") from None
    except _CHECKPOINT_ERRORS as error:
        raise UserError(f"{name}: the checkpoint does not fit this method: {_short(str(error))}") from None


def _prepare_method(name: str, spec: ProtocolSpec, config: RunConfig) -> tuple[Method, str]:
    """Create the method and load weights; returns (method, name used in the records)."""
    method = create(name, scale=spec.scale, device=config.device)
    if explicit_file := weight_file_for(config.weights, config.methods, name):  # --weights FILE / METHOD=FILE
        _check_checkpoint_file(Path(explicit_file))
        _load_weights(method, name, lambda: method.load_weights(explicit_file))
        return method, name
    folder = weights_dir(config.weights)
    for weight in method.info.weights:
        if (folder / weight.file_name).is_file():
            _check_checkpoint_file(folder / weight.file_name)
    problem = _load_weights(method, name, lambda: try_load(method, folder))
    if problem is None:
        return method, name
    if config.allow_random_weights:
        print(f"warning: {name}: {problem}; running with random weights (records tagged {RANDOM_WEIGHTS_TAG})")
        return method, name + RANDOM_WEIGHTS_TAG
    raise UserError(
        f"{name}: {problem}. Quality records need real weights (or --allow-random-weights for plumbing tests)."
    )


def _weight_files(method: Method, config: RunConfig) -> list[dict[str, Any]]:
    """Each weight file a method loads, with its sha256 (None when the file is absent)."""
    folder = weights_dir(config.weights)
    rows = []
    for weight in method.info.weights:
        path = folder / weight.file_name
        rows.append({"file": weight.file_name, "sha256": sha256_of(path) if path.is_file() else None})
    if explicit_file := weight_file_for(config.weights, config.methods, method.info.name):
        rows.append({"file": Path(explicit_file).name, "sha256": sha256_of(explicit_file)})
    return rows


def _check_sizes(items: list[DatasetItem], spec: ProtocolSpec, dataset: str) -> None:
    """Every HR file fits the pixel limit and bit-depth rule and leaves enough to score under the preset
    (file headers only; references are checked when read)."""
    multiple = spec.hr_multiple_for(dataset)
    for item in items:
        if not isinstance(item.hr, Path):
            continue
        h, w = image_size(item.hr, spec.high_bit_depth)
        if spec.hr_recipe == "pad_center_replicate":
            top, bottom, left, right = center_pad_amounts(h, w, multiple)
            hr_hw, degraded_hw = (h, w), (h + top + bottom, w + left + right)
        else:
            hr_hw = degraded_hw = (h - h % multiple, w - w % multiple)
        check_scored_size(f"{dataset}/{item.name}", (h, w), hr_hw, degraded_hw, spec)


@dataclass(frozen=True)
class _Plan:
    """Everything a run computes before it writes anything."""

    spec: ProtocolSpec
    items: list[DatasetItem]
    policies: tuple[str, ...]
    methods: list[tuple[Method, str]]
    inputs: list[tuple[str, str, str, str]]
    identity: dict[str, Any]
    data_folder: str
    determinism: dict[str, Any]


def plan(config: RunConfig) -> _Plan:
    """Validate every option and input and compute the run identity; writes nothing."""
    spec = get_preset(config.preset)
    device_class = rundir.check_device(config.device)
    determinism = provenance.set_deterministic()  # before any method is created (seeded random weights)
    rundir.check_out_dir(config.out_dir)
    dataset = get_dataset(config.dataset)
    all_items = load_items(config.dataset, config.data_root)  # validates the layout before any work
    index, count = config.shard
    items = all_items[index::count]
    if not items:
        raise UserError(
            f"--shard {index}/{count} selects no image: {config.dataset} has {len(all_items)}; "
            f"use at most {len(all_items)} shards"
        )
    policies = config.reference_policies or (
        resolve_policy(spec.reference_policy_for(config.dataset), dataset.has_references),
    )
    _check_sizes(all_items, spec, config.dataset)
    for policy in policies:  # an unusable level or policy fails here, on the first image
        make_sample(items[0], spec, config.dataset, policy)
    folder = locate(dataset, data_root(config.data_root))
    inputs = rundir.input_fingerprints(all_items, folder)
    methods: list[tuple[Method, str]] = []
    for name in resolve(list(config.methods)):
        method, record_name = _prepare_method(name, spec, config)
        if method.info.needs_reference and policies == ("none",):
            raise UserError(
                f"{name} needs a reference but preset {spec.name} uses none on {config.dataset}; "
                "pass --ref-policy self_lr"
            )
        methods.append((method, record_name))
    identity = {
        "schema": rundir.SCHEMA,
        "suite_version": rundir.suite_version(),
        "dataset": config.dataset,
        "preset": spec.to_dict(),
        "device_class": device_class,
        "inputs_sha256": hashlib.sha256(rundir.inputs_text(inputs).encode()).hexdigest(),
        "methods": {
            record_name: {"method": method.info.name, "weights": _weight_files(method, config)}
            for method, record_name in methods
        },
        "reference_policies": sorted(policies),
    }
    identity = json.loads(json.dumps(identity))  # tuples -> lists, as it reads back from run.json
    data_folder = "<embedded>" if dataset.embedded else str(folder.resolve())
    return _Plan(spec, items, tuple(policies), methods, inputs, identity, data_folder, determinism)


def run(
    config: RunConfig,
    prediction_cache: dict[tuple[str, ...], torch.Tensor] | None = None,
    allow_distributed: bool = False,
) -> list[Record]:
    """Evaluate ``config``; ``prediction_cache`` (optional) reuses SR outputs across presets that give a
    method identical inputs (the protocol audit runs many presets that share an LR). Under torchrun,
    ``allow_distributed`` (the ``run``, ``audit`` and ``dataset-job`` verbs) spreads the work over the ranks
    (``bench.engines.distributed``); other callers are refused there rather than run once per rank into one folder."""
    from bench.engines import distributed

    ctx = distributed.context()
    if ctx.world_size > 1:
        if not allow_distributed:
            raise UserError("only `run`, `audit`, `dataset-job`, `match` and `cost` are distributed under torchrun; "
                            "run this verb as one process")
        return distributed.run(config, ctx)
    work = plan(config)
    rundir.make_out_dir(config.out_dir)
    with rundir.RunLock(config.out_dir):
        resume = rundir.reconcile(config.out_dir, work.identity, work.data_folder, config.shard, work.inputs)
        run_id = rundir.run_id_of(resume.identity)
        appender = RecordAppender(config.out_dir / "records.csv", work.spec.metrics, run_id)  # a bad file fails here
        _write_run_json(config, work, resume, run_id)
        return _evaluate(config, work, run_id, appender, prediction_cache)


def _write_run_json(config: RunConfig, work: _Plan, resume: rundir.Resume, run_id: str) -> None:
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
        "methods": [
            {"record_name": record_name, "info": _info_dict(method), "weights": _weight_files(method, config)}
            for method, record_name in work.methods
        ],
        "images": [item.name for item in work.items],
    }
    rundir.write_atomic(config.out_dir / rundir.INPUTS_FILE, rundir.inputs_text(work.inputs))
    rundir.write_atomic(config.out_dir / "run.json", json.dumps(run_json, indent=2, default=str) + "\n")


Group = tuple[str, int, int]  # one unit of work: (reference policy, index into items, index into methods)


def group_key(config: RunConfig, work: _Plan, group: Group) -> tuple[str, str, str, str, str]:
    policy, item_index, method_index = group
    return (config.dataset, config.preset, work.methods[method_index][1], policy, work.items[item_index].name)


def describe(config: RunConfig, work: _Plan, group: Group) -> str:
    """A group as users name it: ``dataset:preset method reference image``."""
    dataset, preset, method, policy, image = group_key(config, work, group)
    return f"{dataset}:{preset} {method} {policy} {image}"


def pending_groups(config: RunConfig, work: _Plan, done: set[tuple[str, ...]]) -> list[Group]:
    """Groups without records (or, with --save-images, without their PNG), in policy, image, method order."""
    pending = []
    for policy in work.policies:
        for item_index, item in enumerate(work.items):
            for method_index, (_, record_name) in enumerate(work.methods):
                group = (policy, item_index, method_index)
                if group_key(config, work, group) not in done or (
                    config.save_images and not _image_path(config, record_name, policy, item.name).is_file()
                ):
                    pending.append(group)
    return pending


def evaluate_groups(
    config: RunConfig,
    work: _Plan,
    run_id: str,
    groups: list[Group],
    appender: RecordAppender,
    prediction_cache: dict[tuple[str, ...], torch.Tensor] | None = None,
    after_each: Any = None,
) -> None:
    """Predict and score ``groups``, appending each group's records; consecutive groups of one image share
    its sample. ``after_each(group)`` (optional) is called after each group (progress)."""
    spec = work.spec
    sample: Sample | None = None
    sample_of: tuple[str, int] | None = None
    for group in groups:
        policy, item_index, method_index = group
        item = work.items[item_index]
        method, record_name = work.methods[method_index]
        if sample_of != (policy, item_index):
            sample, sample_of = make_sample(item, spec, config.dataset, policy), (policy, item_index)
        assert sample is not None
        sr = _cached_predict(method, record_name, sample, config.device, prediction_cache)
        levels = scored_levels(sr.cpu(), sample, spec)
        values = score_levels(levels, sample, spec)
        if config.save_images:
            _save_png(_image_path(config, record_name, policy, item.name), levels)
        if group_key(config, work, group) not in appender.done:
            appender.append(
                [
                    Record(run_id, config.dataset, config.preset, record_name, policy, item.name, metric, value)
                    for metric, value in values.items()
                ]
            )
        if after_each is not None:
            after_each(group)


def _evaluate(
    config: RunConfig,
    work: _Plan,
    run_id: str,
    appender: RecordAppender,
    prediction_cache: dict[tuple[str, ...], torch.Tensor] | None,
) -> list[Record]:
    if appender.dropped:
        print(f"note: {appender.dropped} incomplete record group(s) from an interrupted run will be recomputed")
    total = len(work.items) * len(work.policies) * len(work.methods)
    pending = pending_groups(config, work, appender.done)
    progress = tqdm(total=total, desc=f"{config.dataset}:{config.preset}", unit="img", disable=not config.show_progress)
    progress.update(total - len(pending))
    evaluate_groups(config, work, run_id, pending, appender, prediction_cache, lambda _: progress.update(1))
    progress.close()
    return appender.finish()


def _image_path(config: RunConfig, record_name: str, policy: str, image: str) -> Path:
    return config.out_dir / "images" / record_name / policy.replace(":", "_") / f"{image}.png"


def _digest(image: torch.Tensor | None) -> str:
    if image is None:
        return "-"
    array = image.detach().cpu().contiguous().numpy()
    return hashlib.sha1(array.tobytes() + str(array.shape).encode()).hexdigest()


def _cached_predict(
    method: Method, record_name: str, sample: Sample, device: str, cache: dict[tuple[str, ...], torch.Tensor] | None
) -> torch.Tensor:
    if cache is None:
        return _predict(method, sample, device)
    inputs = (sample.lr, sample.ref, sample.ref_lr) if method.info.needs_reference else (sample.lr,)
    key = (record_name, *(_digest(image) for image in inputs))
    if key not in cache:
        cache[key] = _predict(method, sample, device).cpu()
    return cache[key]


def _predict(method: Method, sample: Sample, device: str) -> torch.Tensor:
    lr = _as_method_input(sample.lr, device)
    assert lr is not None
    if method.info.needs_reference:
        if sample.ref is None:
            raise UserError(f"{method.info.name} needs a reference; {sample.name} has none under this policy")
        return method.predict(lr, _as_method_input(sample.ref, device), _as_method_input(sample.ref_lr, device))
    return method.predict(lr)


def _info_dict(method: Method) -> dict[str, Any]:
    info = asdict(method.info)
    info["parts"] = dict(method.info.parts)
    info["choices"] = dict(method.info.choices)
    return info


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
