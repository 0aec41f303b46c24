"""Evaluate planned groups: make each sample, predict, score with the preset's metrics, append the group's
records to a journal (``bench.results.records.RecordAppender``). Both executors (one process, torchrun) call
``evaluate_groups``; neither knows how a group is scored."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.engines.run.outputs import ReleasedOutputs
from bench.engines.run.plan import Group, Plan, RunConfig, group_key, image_path
from bench.results.records import Record, RecordAppender, write_atomic, write_error
from methods.base import Method
from protocols.core import Sample, UserError
from protocols.imageio import levels_png_bytes, pinned_sha256
from protocols.pipeline import make_sample
from protocols.scoring import score_levels, scored_levels

PredictionCache = dict[tuple[str, ...], torch.Tensor]


def evaluate_groups(
    config: RunConfig,
    work: Plan,
    run_id: str,
    groups: list[Group],
    appender: RecordAppender,
    prediction_cache: PredictionCache | None = None,
    after_each: Callable[[Group], object] | None = None,
) -> None:
    """Predict and score ``groups``, appending each group's records; consecutive groups of one image share
    its sample. ``after_each(group)`` (optional) is called after each group (progress)."""
    with pinned_sha256(work.pins):  # every decoded input must still be the file the identity hashed
        _evaluate(config, work, run_id, groups, appender, prediction_cache, after_each)


def _evaluate(
    config: RunConfig, work: Plan, run_id: str, groups: list[Group], appender: RecordAppender,
    prediction_cache: PredictionCache | None, after_each: Callable[[Group], object] | None,
) -> None:
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
        if isinstance(method, ReleasedOutputs):  # loaded, not predicted; scored by the same two calls
            sr, scored_sample = method.load(sample, policy)
        else:
            sr, scored_sample = _cached_predict(method, record_name, sample, config.device, prediction_cache), sample
        levels = scored_levels(sr.cpu(), scored_sample, spec)
        values = score_levels(levels, scored_sample, spec)
        if config.save_images:
            _save_png(image_path(config, record_name, policy, item.name), levels)
        if group_key(config, work, group) not in appender.done:
            appender.append(
                [
                    Record(run_id, config.dataset, config.preset, record_name, policy, item.name, metric, value)
                    for metric, value in values.items()
                ]
            )
        if after_each is not None:
            after_each(group)


def predict(method: Method, sample: Sample, device: str) -> torch.Tensor:
    """The method's SR of one sample, (1, 3, sH, sW) float32 RGB on [0, 1] (Y-only presets give the method
    the luma replicated into RGB)."""
    lr = _as_method_input(sample.lr, device)
    assert lr is not None
    if method.info.needs_reference:
        if sample.ref is None:
            raise UserError(f"{method.info.name} needs a reference; {sample.name} has none under this policy")
        return method.predict(lr, _as_method_input(sample.ref, device), _as_method_input(sample.ref_lr, device))
    return method.predict(lr)


def _as_method_input(image: torch.Tensor | None, device: str) -> torch.Tensor | None:
    if image is None:
        return None
    if image.shape[1] == 1:  # Y-only presets: methods see the luma replicated into RGB
        image = image.repeat(1, 3, 1, 1)
    return image.to(device)


def _save_png(path: Path, levels: np.ndarray) -> None:
    """Write the scored image (``scored_levels``' (H, W, C) levels) as an 8-bit PNG. Presets that round
    hold integers on [0, 255] here, so the PNG is byte-equal to what the metrics saw."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(path.parent, error) from None
    write_atomic(path, levels_png_bytes(levels))  # never a partial PNG under the name that marks the group done


def _digest(image: torch.Tensor | None) -> str:
    if image is None:
        return "-"
    array = image.detach().cpu().contiguous().numpy()
    return hashlib.sha1(array.tobytes() + str(array.shape).encode()).hexdigest()


def _cached_predict(
    method: Method, record_name: str, sample: Sample, device: str, cache: PredictionCache | None
) -> torch.Tensor:
    """``predict``, reusing an SR output when the same method saw identical inputs (the protocol audit runs many
    presets that share an LR)."""
    if cache is None:
        return predict(method, sample, device)
    inputs = (sample.lr, sample.ref, sample.ref_lr) if method.info.needs_reference else (sample.lr,)
    key = (record_name, *(_digest(image) for image in inputs))
    if key not in cache:
        cache[key] = predict(method, sample, device).cpu()
    return cache[key]
