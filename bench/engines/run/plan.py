"""Plan a quality run: validate every option and input, load the methods, compute the run identity, and name
the units of work (groups: reference policy x image x method). Planning writes nothing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.engines.run.outputs import OutputsSource, ReleasedOutputs, prepare
from bench.engines.torchrun import apply_threads
from bench.results import provenance, rundir
from bench.results.records import RANDOM_WEIGHTS_TAG
from methods.base import Method
from methods.registry import plugin_files, resolve, source_files
from methods.weights import load_method, weight_files
from protocols.core import UserError
from protocols.datasets import DatasetItem, data_root, get_dataset, load_items, locate
from protocols.imageio import image_size
from protocols.pipeline import make_sample, resolve_policy
from protocols.scoring import check_scored_size
from protocols.spec import ProtocolSpec, get_preset


@dataclass(frozen=True)
class RunConfig:
    """One ``refsr-bench run``: a dataset under a preset, methods, where to write, and how."""

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
    metrics: tuple[str, ...] = ()  # --metrics: replaces the preset's metric list (empty: the preset's own)
    outputs: tuple[OutputsSource, ...] = ()  # --outputs NAME=DIR: released SR images scored like a method's
    threads: int | None = None  # --threads: torch intra-op threads (None: what one plain process uses)


@dataclass(frozen=True)
class Plan:
    """Everything a run computes before it writes anything."""

    spec: ProtocolSpec
    items: list[DatasetItem]  # this shard's images
    policies: tuple[str, ...]
    methods: list[tuple[Method | ReleasedOutputs, str]]  # (method or released outputs, name in the records)
    inputs: list[tuple[str, str, str, str]]  # every image's (image, role, file, sha256), all shards
    identity: dict[str, Any]
    data_folder: str
    determinism: dict[str, Any]
    pins: dict[str, str]  # absolute path -> sha256 of every input file: what evaluation may decode


Group = tuple[str, int, int]  # one unit of work: (reference policy, index into items, index into methods)


def plan(config: RunConfig) -> Plan:
    """Validate every option and input and compute the run identity; writes nothing."""
    spec = get_preset(config.preset).with_metrics(config.metrics)
    device_class = rundir.check_device(config.device)
    apply_threads(config.threads)
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
    if not config.methods and not config.outputs:
        raise UserError("nothing to run: give methods (-m NAME) and/or released outputs (--outputs NAME=DIR)")
    methods: list[tuple[Method | ReleasedOutputs, str]] = [
        _prepared(name, spec, config, policies) for name in resolve(list(config.methods))
    ]
    methods += _released(config, spec, all_items, policies, {record_name for _, record_name in methods})
    identity = run_identity(config, spec, device_class, inputs, methods, policies, determinism)
    data_folder = "<embedded>" if dataset.embedded else str(folder.resolve())
    pins = {str(folder / file): sha for _, _, file, sha in inputs if file != "<embedded>"}
    return Plan(spec, items, tuple(policies), methods, inputs, identity, data_folder, determinism, pins)


def run_identity(
    config: RunConfig, spec: ProtocolSpec, device_class: str, inputs: list[tuple[str, str, str, str]],
    methods: list[tuple[Method | ReleasedOutputs, str]], policies: tuple[str, ...], determinism: dict[str, Any],
) -> dict[str, Any]:
    """THE run identity (``bench.results.rundir`` documents each key; ``run_id`` hashes it): what a resume must
    match. The code and numeric environment are read now, so call it after the threads are set."""
    identity = {
        "schema": rundir.SCHEMA,
        "suite_version": rundir.suite_version(),
        **rundir.environment_identity(config.device, determinism, plugin_files()),
        "dataset": config.dataset,
        "preset": spec.to_dict(),
        "device_class": device_class,
        "inputs_sha256": hashlib.sha256(rundir.inputs_text(inputs).encode()).hexdigest(),
        "methods": {record_name: _identity_entry(method, record_name, config) for method, record_name in methods},
        "reference_policies": sorted(policies),
    }
    return json.loads(json.dumps(identity))  # tuples -> lists, as it reads back from run.json


def _prepared(name: str, spec: ProtocolSpec, config: RunConfig, policies: tuple[str, ...]) -> tuple[Method, str]:
    """The method with its weights, and its name in the records (tagged when it runs on random weights)."""
    method, problem = load_method(name, spec.scale, config.device, config.weights, config.methods)
    record_name = name
    if problem is not None:
        if not config.allow_random_weights:
            raise UserError(
                f"{name}: {problem}. Quality records need real weights (or --allow-random-weights for plumbing tests)."
            )
        print(f"warning: {name}: {problem}; running with random weights (records tagged {RANDOM_WEIGHTS_TAG})")
        record_name = name + RANDOM_WEIGHTS_TAG
    if method.info.needs_reference and policies == ("none",):
        raise UserError(
            f"{name} needs a reference but preset {spec.name} uses none on {config.dataset}; pass --ref-policy self_lr"
        )
    return method, record_name


def _released(config: RunConfig, spec: ProtocolSpec, all_items: list[DatasetItem], policies: tuple[str, ...],
              taken: set[str]) -> list[tuple[Method | ReleasedOutputs, str]]:
    """Each ``--outputs NAME=DIR``, its files found and checked for every image of the dataset (all shards)."""
    released: list[tuple[Method | ReleasedOutputs, str]] = []
    for source in config.outputs:
        if source.name in taken:
            raise UserError(f"--outputs {source.name}=...: the name {source.name!r} is used twice in this run")
        taken.add(source.name)
        released.append((prepare(source, all_items, spec, config.dataset, policies), source.name))
    return released


def _identity_entry(method: Method | ReleasedOutputs, record_name: str, config: RunConfig) -> dict[str, Any]:
    """One method's part of the identity: its weight files and its source files (released outputs: the
    template and every SR file's sha256)."""
    if isinstance(method, ReleasedOutputs):
        return method.identity()
    sources = source_files(record_name.removesuffix(RANDOM_WEIGHTS_TAG), method)
    return {"method": method.info.name, "weights": weight_files(method, config.weights, config.methods),
            "source": rundir.sha256_files(sources)}


def _check_sizes(items: list[DatasetItem], spec: ProtocolSpec, dataset: str) -> None:
    """Every HR file fits the pixel limit and bit-depth rule and leaves enough to score under the preset
    (file headers only; references are checked when read)."""
    for item in items:
        if not isinstance(item.hr, Path):
            continue
        h, w = image_size(item.hr, spec.high_bit_depth)
        hr_hw, degraded_hw = spec.prepared_hw((h, w), dataset)
        check_scored_size(f"{dataset}/{item.name}", (h, w), hr_hw, degraded_hw, spec)


def group_key(config: RunConfig, work: Plan, group: Group) -> tuple[str, str, str, str, str]:
    """(dataset, preset, record name, reference policy, image): how the records name one group."""
    policy, item_index, method_index = group
    return (config.dataset, config.preset, work.methods[method_index][1], policy, work.items[item_index].name)


def describe(config: RunConfig, work: Plan, group: Group) -> str:
    """A group as users name it: ``dataset:preset method reference image``."""
    dataset, preset, method, policy, image = group_key(config, work, group)
    return f"{dataset}:{preset} {method} {policy} {image}"


def image_path(config: RunConfig, record_name: str, policy: str, image: str) -> Path:
    """Where ``--save-images`` writes the scored image of one group."""
    return config.out_dir / "images" / record_name / policy.replace(":", "_") / f"{image}.png"


def pending_groups(config: RunConfig, work: Plan, done: set[tuple[str, ...]]) -> list[Group]:
    """Groups without records (or, with --save-images, without their PNG), in policy, image, method order."""
    pending = []
    for policy in work.policies:
        for item_index, item in enumerate(work.items):
            for method_index, (_, record_name) in enumerate(work.methods):
                group = (policy, item_index, method_index)
                if group_key(config, work, group) not in done or (
                    config.save_images and not image_path(config, record_name, policy, item.name).is_file()
                ):
                    pending.append(group)
    return pending


def group_count(work: Plan) -> int:
    """All groups of this shard, done or not."""
    return len(work.items) * len(work.policies) * len(work.methods)
