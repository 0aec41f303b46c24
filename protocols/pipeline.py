"""From dataset items to ``Sample``s (size recipe, degradation, reference policy); scoring the SR outputs is
``protocols.scoring``. The whole numerical convention of a run is the ``ProtocolSpec`` passed in here."""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from protocols.core import Sample, UserError
from protocols.datasets import DatasetItem, ImageSource
from protocols.imageio import read_image
from protocols.resize import from_uint8_array, matlab_imresize, pil_bicubic
from protocols.scoring import check_scored_size, luma
from protocols.scoring import score as score  # re-exported: tests/test_golden.py, test_presets.py import it here
from protocols.spec import ProtocolSpec, center_pad_amounts

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"


# --- image-size recipes (arrays (H, W[, C]) uint8) -------------------------------------------------


def modcrop(image: np.ndarray, multiple: int) -> np.ndarray:
    """Keep the top-left H - H mod m rows and W - W mod m columns."""
    h, w = image.shape[:2]
    return image[: h - h % multiple, : w - w % multiple]


def pad_replicate(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    widths = ((top, bottom), (left, right)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, widths, mode="edge")


def pad_zero(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Zero-pad bottom/right to (height, width)."""
    widths = ((0, height - image.shape[0]), (0, width - image.shape[1])) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, widths, mode="constant")


def resize_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """srntt-pytorch port: PIL-bicubic resize to (W - W mod m, H - H mod m)."""
    h, w = image.shape[:2]
    return _to_array(pil_bicubic(from_uint8_array(image), (h - h % multiple, w - w % multiple)))


def _to_array(image: torch.Tensor) -> np.ndarray:
    array = np.clip(np.round(image[0].permute(1, 2, 0).double().numpy() * 255.0), 0, 255).astype(np.uint8)
    return array[:, :, 0] if array.shape[2] == 1 else array


# --- degradation ---------------------------------------------------------------------------------


def downscale(image: np.ndarray, scale: int, spec: ProtocolSpec) -> torch.Tensor:
    """LR from an 8-bit HR array (H, W[, C]) by the preset's backend -> (1, C, H/s, W/s) float32 [0, 1]."""
    h, w = image.shape[:2]
    if spec.resize_backend == "pil":
        return pil_bicubic(from_uint8_array(image), (h // scale, w // scale))
    if spec.resize_backend == "matlab_u8":
        return from_uint8_array(matlab_imresize(image, 1.0 / scale, uint8_passes=True))
    low = matlab_imresize(image.astype(np.float32) / np.float32(255.0), 1.0 / scale)
    if low.ndim == 2:
        low = low[:, :, None]
    if spec.lr_quantise:
        low = np.clip(np.round(low * np.float32(255.0)), 0, 255) / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(low, dtype=np.float32)).permute(2, 0, 1)[None]


def _read(source: ImageSource, spec: ProtocolSpec) -> np.ndarray:
    if isinstance(source, np.ndarray):
        return source
    return read_image(source, grey=spec.grey_input, high_bit_depth=spec.high_bit_depth)


def _integer_luma(image: np.ndarray, spec: ProtocolSpec) -> np.ndarray:
    """Legacy Y-first input: integer Y of an RGB file, or a single-channel file's raw grey values."""
    if image.ndim == 2:
        return image
    return np.round(luma(image.astype(np.float64), spec)).astype(np.uint8)


# --- references ----------------------------------------------------------------------------------


def stitch5_masa(refs: list[np.ndarray]) -> np.ndarray:
    """MASA-SR TestSet_multi: each reference replicate-padded centred to 512x512, stacked vertically
    in level order (2560x512), then padded bottom/right to a multiple of 16 (a no-op here)."""
    tiles = []
    for ref in refs:
        h, w = ref.shape[:2]
        if h > 512 or w > 512:
            raise UserError(f"stitch5_masa expects references of at most 512x512; got {h}x{w}")
        top, left = (512 - h) // 2, (512 - w) // 2
        tiles.append(pad_replicate(ref, top, 512 - h - top, left, 512 - w - left))
    return np.concatenate(tiles, axis=0)


def stitch5_zero500_topleft(refs: list[np.ndarray]) -> np.ndarray:
    """researchmm/TTSR issue #25: a 2500x500 black canvas, one reference at the top-left of each 500-px slot."""
    canvas = np.zeros((2500, 500, 3), dtype=np.uint8)
    for slot, ref in enumerate(refs):
        h, w = min(ref.shape[0], 500), min(ref.shape[1], 500)
        canvas[slot * 500 : slot * 500 + h, :w] = ref[:h, :w]
    return canvas


STITCH_RECIPES = {"stitch5_masa": stitch5_masa, "stitch5_zero500_topleft": stitch5_zero500_topleft}


def read_manifest(dataset: str) -> dict[str, str]:
    """Committed {image name -> chosen reference file name} for datasets with random references."""
    path = MANIFEST_DIR / f"{dataset}.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"image", "reference"} <= set(reader.fieldnames or ()):
            raise UserError(f"{path}: a manifest needs the columns image,reference; regenerate it with "
                            f"`refsr-bench manifest {dataset}`")
        return {row["image"]: row["reference"] for row in reader}


def seeded_choice(image_name: str, candidates: list[Path], seed: int = 0) -> Path:
    """The documented rule behind the manifests: one ``numpy.random.default_rng((seed, crc32(image_name)))``
    draw over the candidates sorted by file name, so each image's choice depends only on its own name."""
    ordered = sorted(candidates, key=lambda p: p.name)
    rng = np.random.default_rng((seed, zlib.crc32(image_name.encode())))
    return ordered[int(rng.integers(len(ordered)))]


def _draw_seed(policy: str) -> int:
    """``draw:SEED`` -> SEED: the manifest rule with another seed, for mean ± std over reference draws."""
    text = policy.split(":", 1)[1]
    if not text.isdigit():
        raise UserError(f"reference policy {policy!r}: expected draw:SEED with a non-negative integer seed")
    return int(text)


def resolve_policy(policy: str, dataset_has_references: bool) -> str:
    """``auto`` -> ``pair`` for datasets that ship references, ``self_lr`` for the others."""
    if policy == "auto":
        return "pair" if dataset_has_references else "self_lr"
    return policy


def _reference_array(item: DatasetItem, policy: str, dataset: str, spec: ProtocolSpec) -> np.ndarray | None:
    refs = dict(item.refs)
    if policy in ("none", "self_lr"):
        return None
    if policy == "pair":
        if "pair" not in refs:
            raise UserError(f"{dataset}/{item.name}: the dataset provides no reference; use --ref-policy self_lr")
        return _read(refs["pair"], spec)
    if policy.startswith("level:"):
        level = policy.split(":", 1)[1]
        if level not in refs:
            raise UserError(
                f"{dataset}/{item.name}: no reference level {level}; available: {', '.join(refs) or 'none'}"
            )
        return _read(refs[level], spec)
    if policy in STITCH_RECIPES:
        missing = [k for k in "12345" if k not in refs]
        if missing:
            raise UserError(f"{dataset}/{item.name}: {policy} needs references 1-5; missing {missing}")
        return STITCH_RECIPES[policy]([_read(refs[k], spec) for k in "12345"])
    if policy == "manifest" or policy.startswith("draw:"):
        paths = [c for c in item.candidates if isinstance(c, Path)]
        if not paths:
            raise UserError(
                f"{dataset}/{item.name}: no reference images found (expected "
                f"Sun_Hays_SR_scenematches/{item.name}.jpg/*.jpg); add them or use --ref-policy self_lr"
            )
        if policy.startswith("draw:"):
            return _read(seeded_choice(item.name, paths, _draw_seed(policy)), spec)
        chosen_name = read_manifest(dataset).get(item.name)
        if not chosen_name:
            return _read(seeded_choice(item.name, paths), spec)
        chosen = next((p for p in paths if p.name == chosen_name), None)
        if chosen is None:
            raise UserError(
                f"{dataset}/{item.name}: manifest reference {chosen_name} not found among the scene matches"
            )
        return _read(chosen, spec)
    raise UserError(
        f"unknown reference policy {policy!r}; valid: none, pair, self_lr, manifest, draw:SEED, level:1..5, "
        f"{', '.join(STITCH_RECIPES)}"
    )


def _apply_ref_recipe(ref: np.ndarray, spec: ProtocolSpec) -> np.ndarray:
    if spec.ref_recipe == "modcrop":
        return modcrop(ref, spec.ref_multiple)
    if spec.ref_recipe == "pad_br_replicate":
        h, w = ref.shape[:2]
        return pad_replicate(ref, 0, (-h) % spec.ref_multiple, 0, (-w) % spec.ref_multiple)
    if spec.ref_recipe == "pad_center_replicate":
        return pad_replicate(ref, *center_pad_amounts(ref.shape[0], ref.shape[1], spec.ref_multiple))
    return ref


def reference_inputs(
    ref: np.ndarray | None, lr: torch.Tensor, spec: ProtocolSpec, *, self_lr: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(Ref, Ref↓) as a method receives them: ``ref`` (H, W[, C]) uint8 at HR resolution after the preset's
    reference recipe, and its Pillow-bicubic ÷scale copy; without ``ref``, ``self_lr`` uses the LR itself
    ((1, C, h, w) float [0, 1]) and its ÷scale copy, else (None, None). Used by samples and ``predict``."""
    scale = spec.scale
    if ref is not None:
        ref = _apply_ref_recipe(ref, spec)
        ref_tensor = from_uint8_array(ref)
        return ref_tensor, pil_bicubic(ref_tensor, (ref.shape[0] // scale, ref.shape[1] // scale))
    if self_lr:
        return lr, pil_bicubic(lr, (max(1, lr.shape[2] // scale), max(1, lr.shape[3] // scale)))
    return None, None


# --- samples -------------------------------------------------------------------------------------


def make_sample(item: DatasetItem, spec: ProtocolSpec, dataset: str, policy: str) -> Sample:
    """Apply the preset's size recipe, degradation and reference policy to one dataset item."""
    scale = spec.scale
    multiple = spec.hr_multiple_for(dataset)
    hr = _read(item.hr, spec)
    file_hw = hr.shape[:2]
    if spec.degrade_luma_only:
        hr = _integer_luma(hr, spec)
    ref = _reference_array(item, policy, dataset, spec)
    sr_crop = (0, 0, 0, 0)
    if spec.hr_recipe == "modcrop":
        hr = modcrop(hr, multiple)
        degraded = hr
    elif spec.hr_recipe == "resize_to_multiple":
        hr = resize_to_multiple(hr, multiple)
        degraded = hr
    elif spec.hr_recipe == "pad_center_replicate":
        sr_crop = center_pad_amounts(hr.shape[0], hr.shape[1], multiple)
        degraded = pad_replicate(hr, *sr_crop)
    else:  # zero_pad_to_common (C²-Matching test): mod-crop both, zero-pad both to the larger size
        hr = modcrop(hr, multiple)
        degraded = hr
        if ref is not None:
            ref = modcrop(ref, multiple)
            height, width = max(hr.shape[0], ref.shape[0]), max(hr.shape[1], ref.shape[1])
            degraded, ref = pad_zero(hr, height, width), pad_zero(ref, height, width)
            sr_crop = (0, height - hr.shape[0], 0, width - hr.shape[1])
    check_scored_size(f"{dataset}/{item.name}", file_hw, hr.shape[:2], degraded.shape[:2], spec)
    lr = downscale(degraded, scale, spec)
    ref_tensor, ref_lr = reference_inputs(ref, lr, spec, self_lr=policy == "self_lr")
    level = policy
    return Sample(item.name, from_uint8_array(hr), lr, ref_tensor, ref_lr, level, sr_crop)


def iter_samples(items: list[DatasetItem], spec: ProtocolSpec, dataset: str, policy: str) -> Iterator[Sample]:
    for item in items:
        yield make_sample(item, spec, dataset, policy)
