"""``refsr-bench run``: one protocol (dataset + preset), several methods, per-image records.

Resumable: records are appended one image at a time; rerunning the same command skips what is done
and the final ``records.csv`` is identical to an uninterrupted run's. Shardable: ``--shard i/n`` takes
every n-th image starting at i; ``refsr-bench merge`` joins the shards.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from bench import provenance
from bench.records import Record, RecordAppender, read_records, write_records
from bench.weights import try_load, weight_file_for, weights_dir
from methods.base import Method, sha256_of
from methods.registry import create, resolve
from protocols.core import Sample, UserError
from protocols.datasets import get_dataset, load_items
from protocols.pipeline import make_sample, resolve_policy, score
from protocols.spec import ProtocolSpec, get_preset

RANDOM_WEIGHTS_TAG = "[random-weights]"


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    preset: str
    methods: tuple[str, ...]
    out_dir: Path
    data_root: str | None = None
    weights: str | None = None
    device: str = "cpu"
    reference_policies: tuple[str, ...] = ()  # empty: the preset's policy for this dataset
    shard: tuple[int, int] = (0, 1)
    allow_random_weights: bool = False
    save_images: bool = False
    show_progress: bool = True

    def run_id(self) -> str:
        """Stable id of what is computed (not of when), so a resumed run keeps its id."""
        key = json.dumps([self.dataset, self.preset, sorted(self.methods), self.reference_policies, self.shard])
        return hashlib.sha1(key.encode()).hexdigest()[:12]


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
    """``--level``: CUFED5 levels 1..5, a comma list, ``all`` (= 1..5) or a stitching recipe name; for datasets
    with random references, ``draws:K`` (= draw:0 .. draw:K-1, one seeded reference choice per draw)."""
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


def _save_png(path: Path, image: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.clip(np.round(image[0].detach().cpu().double().permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path)


def _prepare_method(name: str, spec: ProtocolSpec, config: RunConfig) -> tuple[Method, str]:
    """Create the method and load weights; returns (method, name used in the records)."""
    method = create(name, scale=spec.scale, device=config.device)
    if explicit_file := weight_file_for(config.weights, config.methods, name):  # --weights FILE / METHOD=FILE
        method.load_weights(explicit_file)
        return method, name
    problem = try_load(method, weights_dir(config.weights))
    if problem is None:
        return method, name
    if config.allow_random_weights:
        print(f"warning: {name}: {problem}; running with random weights (records tagged {RANDOM_WEIGHTS_TAG})")
        return method, name + RANDOM_WEIGHTS_TAG
    raise UserError(
        f"{name}: {problem}. Quality records need real weights (or --allow-random-weights for plumbing tests)."
    )


def _weights_manifest(method: Method, config: RunConfig) -> list[dict[str, Any]]:
    folder = weights_dir(config.weights)
    rows = []
    for weight in method.info.weights:
        path = folder / weight.file_name
        rows.append({"file": weight.file_name, "sha256": sha256_of(path) if path.is_file() else None})
    if config.weights and Path(config.weights).is_file():
        rows.append({"file": Path(config.weights).name, "sha256": sha256_of(config.weights)})
    return rows


def run(config: RunConfig, prediction_cache: dict[tuple[str, ...], torch.Tensor] | None = None) -> list[Record]:
    """Evaluate ``config``; ``prediction_cache`` (optional) reuses SR outputs across presets that give a
    method identical inputs (the protocol audit runs many presets that share an LR)."""
    spec = get_preset(config.preset)
    items = load_items(config.dataset, config.data_root)  # validates the layout before any work
    index, count = config.shard
    items = items[index::count]
    policies = config.reference_policies or (
        resolve_policy(spec.reference_policy_for(config.dataset), get_dataset(config.dataset).has_references),
    )
    run_id = config.run_id()
    config.out_dir.mkdir(parents=True, exist_ok=True)
    determinism = provenance.set_deterministic()

    methods: list[tuple[Method, str]] = []
    for name in resolve(list(config.methods)):
        method, record_name = _prepare_method(name, spec, config)
        if method.info.needs_reference and policies == ("none",):
            raise UserError(
                f"{name} needs a reference but preset {spec.name} uses none on {config.dataset}; "
                "pass --ref-policy self_lr"
            )
        methods.append((method, record_name))

    manifest = {
        "run_id": run_id,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "protocol": config.dataset,
        "protocol_spec": spec.to_dict(),
        "protocol_sentence": spec.sentence(config.dataset),
        "reference_policies": list(policies),
        "environment": provenance.environment(config.device),
        "determinism": determinism,
        "methods": [
            {"record_name": record_name, "info": _info_dict(method), "weights": _weights_manifest(method, config)}
            for method, record_name in methods
        ],
        "images": [item.name for item in items],
    }
    (config.out_dir / "run.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")

    appender = RecordAppender(config.out_dir / "records.csv", spec.metrics)
    total = len(items) * len(policies) * len(methods)
    progress = tqdm(total=total, desc=f"{config.dataset}:{config.preset}", unit="img", disable=not config.show_progress)
    for policy in policies:
        for item in items:
            pending = [
                (m, n) for m, n in methods if (config.dataset, config.preset, n, policy, item.name) not in appender.done
            ]
            progress.update(len(methods) - len(pending))
            if not pending:
                continue
            sample = make_sample(item, spec, config.dataset, policy)
            for method, record_name in pending:
                sr = _cached_predict(method, record_name, sample, config.device, prediction_cache)
                values = score(sr.cpu(), sample, spec)
                appender.append(
                    [
                        Record(run_id, config.dataset, config.preset, record_name, policy, item.name, metric, value)
                        for metric, value in values.items()
                    ]
                )
                if config.save_images:
                    _save_png(
                        config.out_dir / "images" / record_name / policy.replace(":", "_") / f"{item.name}.png", sr
                    )
                progress.update(1)
    progress.close()
    return appender.finish()


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


def merge(run_dirs: list[Path], out_dir: Path) -> list[Record]:
    """Join shard outputs: records concatenated (duplicates must agree) and the manifests listed."""
    seen: dict[tuple[str, ...], Record] = {}
    for run_dir in run_dirs:
        records = read_records(run_dir / "records.csv")
        if not records:
            raise UserError(f"no records in {run_dir / 'records.csv'}")
        for record in records:
            key = record.sort_key()
            if key in seen and seen[key].value != record.value:
                raise UserError(f"shards disagree on {key}: {seen[key].value} vs {record.value}")
            seen[key] = record
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = list(seen.values())
    write_records(out_dir / "records.csv", merged)
    manifests = [json.loads((d / "run.json").read_text()) for d in run_dirs if (d / "run.json").is_file()]
    (out_dir / "run.json").write_text(
        json.dumps({"merged_from": [str(d) for d in run_dirs], "runs": manifests}, indent=2, default=str) + "\n"
    )
    return merged
