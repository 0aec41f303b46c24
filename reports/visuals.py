"""Pictures for the report page, written as PNG files next to it (``OUT/visuals/``), never inlined.

- ``crop_grids``: for every dataset with saved SR images (``run --save-images``), one image of it, the same
  crop from the HR ground truth (when the dataset can be loaded here) and from every method's output, each
  tile labelled with that method's PSNR on the whole image (from the run's records).
- ``match_pictures``: the demo's pictures of matches coloured by error (``<run>/match_images/...``), copied
  next to the page with the run's accuracy in the caption.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reports.collect import Results, RunInfo, SavedImage
from reports.tables import DATASET_NAMES, safe_id

CROP_SIDE_PX = 96  # side of the crop, in SR pixels
TILE_ZOOM = 2  # nearest-neighbour enlargement of each tile


@dataclass(frozen=True)
class Tile:
    label: str
    caption: str  # e.g. "PSNR-Y 28.89 dB (whole image)"
    file: str  # path relative to the page


@dataclass(frozen=True)
class CropGrid:
    dataset: str
    preset: str
    reference: str
    image: str
    run: str
    crop: tuple[int, int, int]  # (top, left, side) in SR pixels
    tiles: tuple[Tile, ...]
    note: str


@dataclass(frozen=True)
class MatchPicture:
    dataset: str
    method: str
    reference: str
    frame: str
    run: str
    caption: str
    file: str


def _rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a PNG (grey images repeated to three channels)."""
    with Image.open(path) as opened:
        return np.asarray(opened.convert("RGB"))


def textured_crop(image: np.ndarray, side: int) -> tuple[int, int, int]:
    """(top, left, side) of the ``side`` square with the most gradient energy (uint8 (H, W, 3) input), searched on a
    grid of half-crop steps; the side shrinks to the image where the image is smaller."""
    height, width = image.shape[:2]
    side = min(side, height, width)
    grey = image.astype(np.float64).mean(axis=-1)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, side // 2)
    best, best_at = -1.0, (0, 0)
    for top in range(0, height - side + 1, step):
        for left in range(0, width - side + 1, step):
            total = (integral[top + side, left + side] - integral[top, left + side] - integral[top + side, left]
                     + integral[top, left])
            if total > best:
                best, best_at = total, (top, left)
    return best_at[0], best_at[1], side


def _save_tile(array: np.ndarray, crop: tuple[int, int, int], path: Path) -> None:
    top, left, side = crop
    tile = np.zeros((side, side, 3), dtype=np.uint8)
    part = array[top:top + side, left:left + side]
    tile[:part.shape[0], :part.shape[1]] = part
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tile).resize((side * TILE_ZOOM, side * TILE_ZOOM), Image.Resampling.NEAREST).save(path)


def _ground_truth(dataset: str, preset: str, reference: str, image: str, run_json: dict[str, Any],
                  data: str | None) -> np.ndarray | None:
    """The HR the run scored against (uint8 (H, W, 3) RGB), rebuilt by the protocol; None when the dataset or
    preset cannot be loaded on this machine."""
    try:
        from protocols.datasets import load_items
        from protocols.pipeline import make_sample
        from protocols.spec import PRESETS
        from reports.tables import spec_from_run_json

        spec = spec_from_run_json(run_json.get("protocol_spec") or {}) or PRESETS.get(preset)
        if spec is None:
            return None
        item = next((i for i in load_items(dataset, data) if i.name == image), None)
        if item is None:
            return None
        hr = make_sample(item, spec, dataset, reference).hr
    except Exception:  # the HR tile is optional: a missing dataset only drops it (the note says so)
        return None
    array = np.clip(np.round(hr[0].detach().double().permute(1, 2, 0).numpy() * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def _psnr_text(results: Results, dataset: str, preset: str, method: str, reference: str, image: str) -> str:
    values = {r.metric: r.value for r in results.records
              if (r.dataset, r.preset, r.method, r.reference, r.image) == (dataset, preset, method, reference, image)}
    for metric, label in (("psnr_y", "PSNR-Y"), ("psnr_rgb", "PSNR-RGB")):
        if metric in values:
            return f"{label} {values[metric]:.2f} dB"
    return "no PSNR record"


def _method_order(method: str) -> tuple[int, str]:
    return (0 if method.startswith("bicubic") else 1, method)


def crop_grids(results: Results, out_dir: Path, data: str | None = None, max_methods: int = 10) -> list[CropGrid]:
    """One crop grid per (dataset, preset) with saved images: the first image (sorted) saved by the most methods."""
    runs: dict[str, RunInfo] = {r.label: r for r in results.runs if r.kind == "records"}
    GroupKey = tuple[str, str, str]  # (run, reference folder, image)
    by_dataset: dict[tuple[str, str], dict[GroupKey, list[SavedImage]]] = defaultdict(lambda: defaultdict(list))
    for saved in results.images:
        run = runs.get(saved.run)
        if run is None:
            continue
        dataset = run.dataset
        preset = str((run.run_json.get("protocol_spec") or {}).get("name", ""))
        by_dataset[(dataset, preset)][(saved.run, saved.reference_folder, saved.image)].append(saved)
    grids = []
    for (dataset, preset), groups in sorted(by_dataset.items()):
        (run_label, reference_folder, image), members = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[0]
        references = {r.reference for r in results.records
                      if r.dataset == dataset and r.preset == preset and r.image == image}
        reference = next((rf for rf in sorted(references) if rf.replace(":", "_") == reference_folder),
                         reference_folder)
        members = sorted(members, key=lambda m: _method_order(m.method))[:max_methods]
        arrays = [(m.method, _rgb(m.path)) for m in members]
        hr = _ground_truth(dataset, preset, reference, image, runs[run_label].run_json, data)
        if hr is not None and hr.shape[:2] != arrays[0][1].shape[:2]:
            hr = None  # an output that was not stored at the HR size: no honest side-by-side
        crop = textured_crop(hr if hr is not None else arrays[0][1], CROP_SIDE_PX)
        stem = safe_id(f"crop_{dataset}_{preset}_{reference}_{image}")
        tiles = []
        if hr is not None:
            _save_tile(hr, crop, out_dir / "visuals" / f"{stem}_hr.png")
            tiles.append(Tile("HR (ground truth)", "", f"visuals/{stem}_hr.png"))
        for method, array in arrays:
            file = f"visuals/{stem}_{safe_id(method)}.png"
            _save_tile(array, crop, out_dir / file)
            tiles.append(Tile(method, _psnr_text(results, dataset, preset, method, reference, image), file))
        note = "" if hr is not None else "HR not shown: the dataset is not available here (pass --data)."
        grids.append(CropGrid(dataset, preset, reference, image, run_label, crop, tuple(tiles), note))
    return grids


def match_pictures(results: Results, out_dir: Path) -> list[MatchPicture]:
    """Copy the runs' match pictures next to the page, captioned with the pooled accuracy at ≤1 and ≤4 px."""
    runs: dict[str, RunInfo] = {r.label: r for r in results.runs if r.kind == "records"}
    pictures = []
    for saved in results.match_images:
        run = runs.get(saved.run)
        dataset = run.dataset if run is not None else ""
        accuracy = {r.metric: r.value for r in results.records
                    if (r.dataset, r.method, r.reference, r.image)
                    == (dataset, saved.method, saved.reference_folder, "ALL")}
        parts = [f"≤{t} px {100 * accuracy[f'acc_le_{t}px']:.1f}%" for t in (1, 4) if f"acc_le_{t}px" in accuracy]
        file = f"visuals/{safe_id(f'match_{saved.run}_{saved.method}_{saved.reference_folder}_{saved.image}')}.png"
        (out_dir / "visuals").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(saved.path, out_dir / file)
        caption = f"{saved.method} on {DATASET_NAMES.get(dataset, dataset)} {saved.image} ({saved.reference_folder})"
        if parts:
            caption += ": accuracy " + ", ".join(parts)
        pictures.append(MatchPicture(dataset, saved.method, saved.reference_folder, saved.image, saved.run, caption,
                                     file))
    return pictures
