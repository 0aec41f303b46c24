"""CC-Net sanity training on homography-warped pairs of scikit-image sample photos.

This is a plumbing check, not a result: a randomly initialised CC-Net is trained for a few hundred CPU steps
of the paper's classification loss (eq. 1) and its matching accuracy@1 (``match`` on held-out pairs) must
rise above the untrained value. The recipe follows docs/methods/refsr_net.md §4.3 (65x65 LR↑ patch per
query on the LR grid, a (2r+1)^2 search map centred at the ground truth minus a jitter of up to r/2,
rotations by multiples of 90°, Adam lr 1e-3, BN in training mode) with two CPU economies: a small search
map (r = 8 instead of 64), and queries taken as a k x k grid that shares one LR↑ crop and one Ref crop, so
that the valid convolutions run once for all of them (with valid convolutions the feature of each query is
exactly that of its own 65x65 patch).

Ground truth is exact by construction: the Ref is the photo warped by a known homography, so the HR pixel
p of the LR input's HR frame shows the same scene point as the Ref position H(p). Training pairs use random
warps of astronaut/coffee/chelsea; evaluation uses crops of the fixed ``rocket`` warp of
``protocols.embedded.demo_homography_pairs`` (held out).

Run ``python -m bench.commands.train_ccnet --steps 300`` to print the numbers quoted in the report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata
from skimage.transform import ProjectiveTransform, warp

from methods.refsr_net import (
    CCNET_RECEPTIVE_RADIUS_PX,
    RefSRNetMethod,
    ccnet_classification_loss,
    gather_windows,
)
from protocols.resize import from_uint8_array, pil_bicubic

TRAIN_IMAGES = ("astronaut", "coffee", "chelsea")
EVAL_IMAGE = "rocket"  # held out: never used for training


@dataclass(frozen=True)
class HomographyPair:
    """An HR image and a Ref made by warping the same photo with a known homography.

    ``hr`` (1, 3, H, W) and ``ref`` (1, 3, Hr, Wr): RGB, [0, 1], 8-bit levels. ``hr_to_ref`` (3, 3) float64
    maps homogeneous HR pixel coordinates (x = column, y = row, 1) to Ref pixel coordinates;
    ``ref_to_photo`` maps Ref pixels into the source photo of size ``photo_hw`` (to tell the zero fill)."""

    hr: torch.Tensor
    ref: torch.Tensor
    hr_to_ref: np.ndarray
    ref_to_photo: np.ndarray
    photo_hw: tuple[int, int]


def sample_image(name: str) -> np.ndarray:
    """A scikit-image sample photo as (H, W, 3) uint8 RGB."""
    image = getattr(skdata, name)()
    return image[:, :, :3] if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)


def random_homography(rng: np.random.Generator, hr_hw: tuple[int, int], ref_hw: tuple[int, int]) -> np.ndarray:
    """HR -> Ref homography (x, y order): rotation up to ±8°, zoom 0.9-1.1, mild perspective, shift up to ±12 px,
    composed around the image centres so that the HR content lands mostly inside the Ref."""
    angle = np.deg2rad(rng.uniform(-8.0, 8.0))
    zoom = rng.uniform(0.9, 1.1)
    to_origin = np.array([[1, 0, -(hr_hw[1] - 1) / 2], [0, 1, -(hr_hw[0] - 1) / 2], [0, 0, 1]], dtype=np.float64)
    similarity = np.array(
        [[zoom * np.cos(angle), -zoom * np.sin(angle), 0], [zoom * np.sin(angle), zoom * np.cos(angle), 0], [0, 0, 1]]
    )
    perspective = np.array([[1, 0, 0], [0, 1, 0], [*rng.uniform(-3e-4, 3e-4, size=2), 1]])
    shift = rng.uniform(-12.0, 12.0, size=2)
    to_ref = np.array(
        [[1, 0, (ref_hw[1] - 1) / 2 + shift[0]], [0, 1, (ref_hw[0] - 1) / 2 + shift[1]], [0, 0, 1]], dtype=np.float64
    )
    return to_ref @ perspective @ similarity @ to_origin


def make_homography_pair(
    image: np.ndarray, rng: np.random.Generator, hr_hw: tuple[int, int], ref_hw: tuple[int, int]
) -> HomographyPair:
    """Random HR crop of ``image`` (H, W, 3) uint8 and its Ref, the photo warped by a random homography
    (bicubic, zero outside the photo, rounded to 8 bits)."""
    top = int(rng.integers(0, image.shape[0] - hr_hw[0] + 1))
    left = int(rng.integers(0, image.shape[1] - hr_hw[1] + 1))
    hr_to_ref = random_homography(rng, hr_hw, ref_hw)
    crop_to_image = np.array([[1, 0, left], [0, 1, top], [0, 0, 1]], dtype=np.float64)
    ref_to_photo = crop_to_image @ np.linalg.inv(hr_to_ref)
    transform = ProjectiveTransform(matrix=ref_to_photo)
    warped = warp(image, transform, output_shape=ref_hw, order=3, mode="constant", cval=0.0)
    ref_u8 = np.clip(np.round(warped * 255.0), 0, 255).astype(np.uint8)
    hr_u8 = image[top : top + hr_hw[0], left : left + hr_hw[1]]
    return HomographyPair(
        hr=from_uint8_array(hr_u8),
        ref=from_uint8_array(ref_u8),
        hr_to_ref=hr_to_ref,
        ref_to_photo=ref_to_photo,
        photo_hw=(image.shape[0], image.shape[1]),
    )


def ref_positions(pair: HomographyPair, hr_yx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth for HR pixel positions ``hr_yx`` (..., 2) (row, column): the Ref position (..., 2) float64
    (row, column, sub-pixel) and a validity mask: the position rounded (floor(x + 0.5)) lies inside the Ref and
    shows photo content (not the zero fill outside the warped photo)."""
    ones = np.ones(hr_yx.shape[:-1] + (1,))
    homogeneous = np.concatenate([hr_yx[..., ::-1].astype(np.float64), ones], axis=-1) @ pair.hr_to_ref.T
    ref_xy = homogeneous[..., :2] / homogeneous[..., 2:]
    ref_yx = ref_xy[..., ::-1]
    rounded = np.floor(ref_yx + 0.5)
    ref_h, ref_w = pair.ref.shape[-2:]
    inside = (rounded[..., 0] >= 0) & (rounded[..., 0] < ref_h) & (rounded[..., 1] >= 0) & (rounded[..., 1] < ref_w)
    # The Ref pixel at the rounded target must show the photo, not the zero fill around the warped photo.
    back = np.concatenate([rounded[..., ::-1], ones], axis=-1) @ pair.ref_to_photo.T
    back_xy = back[..., :2] / back[..., 2:]
    in_photo = (
        (back_xy[..., 0] >= 0)
        & (back_xy[..., 0] <= pair.photo_hw[1] - 1)
        & (back_xy[..., 1] >= 0)
        & (back_xy[..., 1] <= pair.photo_hw[0] - 1)
    )
    return ref_yx, inside & in_photo


def lr_ground_truth(pair: HomographyPair, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of every LR pixel (i, j), which stands for HR (scale*i, scale*j): (h, w, 2), (h, w)."""
    lr_h, lr_w = pair.hr.shape[-2] // scale, pair.hr.shape[-1] // scale
    grid = np.stack(np.meshgrid(np.arange(lr_h), np.arange(lr_w), indexing="ij"), axis=-1) * scale
    return ref_positions(pair, grid)


def make_lr(pair: HomographyPair, scale: int) -> torch.Tensor:
    """The LR input: PIL bicubic ÷scale of the HR (whose size is a multiple of scale). (1, 3, h, w) RGB [0, 1]."""
    return pil_bicubic(pair.hr, (pair.hr.shape[-2] // scale, pair.hr.shape[-1] // scale))


@dataclass(frozen=True)
class EvalPair:
    """A matching-accuracy item: LR (1, 3, h, w) and Ref (1, 3, H, W) RGB [0, 1], the ground truth of
    every LR pixel (i, j) = HR (s*i, s*j) as ``gt_yx`` (h, w, 2) float64 Ref (row, column), and ``valid`` (h, w)."""

    lr: torch.Tensor
    ref: torch.Tensor
    gt_yx: np.ndarray
    valid: np.ndarray


def eval_pair(pair: HomographyPair, scale: int) -> EvalPair:
    gt_yx, valid = lr_ground_truth(pair, scale)
    return EvalPair(lr=make_lr(pair, scale), ref=pair.ref, gt_yx=gt_yx, valid=valid)


def embedded_eval_pairs(name: str, scale: int, hr_px: int, count: int, margin_px: int = 16) -> list[EvalPair]:
    """Crops of the ``protocols.embedded`` demo homography pair ``name`` (the fixed warps another module
    ships): ``count`` HR windows of ``hr_px`` along the diagonal, each with the Ref region holding its ground
    truth plus ``margin_px``, cropped so that matching stays cheap. LR = PIL bicubic ÷scale of the HR window."""
    from protocols.embedded import demo_homography_pairs

    pair = next(p for p in demo_homography_pairs() if p.name == name)
    height, width = pair.image.shape[:2]
    items = []
    for k in range(count):
        top = (height - hr_px) * (k + 1) // (count + 1)
        left = (width - hr_px) * (k + 1) // (count + 1)
        gt = pair.gt_yx[top : top + hr_px : scale, left : left + hr_px : scale]
        valid = pair.valid[top : top + hr_px : scale, left : left + hr_px : scale]
        low = np.maximum(np.floor(np.nanmin(gt[valid], axis=0)).astype(int) - margin_px, 0)
        high = np.minimum(np.ceil(np.nanmax(gt[valid], axis=0)).astype(int) + margin_px + 1, pair.ref.shape[:2])
        hr = from_uint8_array(np.ascontiguousarray(pair.image[top : top + hr_px, left : left + hr_px]))
        ref = from_uint8_array(np.ascontiguousarray(pair.ref[low[0] : high[0], low[1] : high[1]]))
        lr = pil_bicubic(hr, (hr_px // scale, hr_px // scale))
        items.append(EvalPair(lr=lr, ref=ref, gt_yx=gt - low, valid=valid))
    return items


def pooled_accuracy(
    method: RefSRNetMethod, pairs: Sequence[EvalPair], thresholds_px: Sequence[float] = (0, 1, 2, 4)
) -> dict[float, float]:
    """Fraction of valid LR positions (pooled over ``pairs``, micro average) whose ``method.match`` position
    lies within L2 distance t HR px of the ground truth rounded to the nearest integer (protocols.md §6
    rows 1-2)."""
    distances: list[np.ndarray] = []
    for pair in pairs:
        predicted = method.match(pair.lr, pair.ref).ref_yx.numpy().astype(np.float64)
        target = np.floor(np.nan_to_num(pair.gt_yx) + 0.5)
        distances.append(np.linalg.norm(predicted - target, axis=-1)[pair.valid])
    pooled = np.concatenate(distances)
    return {t: float(np.mean(pooled <= t)) for t in thresholds_px}


def rotate_pair(pair: HomographyPair, turns: int) -> HomographyPair:
    """Both images rotated by ``turns`` x 90° counter-clockwise (``torch.rot90``), homography updated
    (doc §4.3 step 4: the same rotation for LR and Ref)."""

    def rotation(height: int, width: int) -> np.ndarray:
        # torch.rot90(x, 1, dims=(2, 3)): new[y', x'] = old[x', W - 1 - y'], i.e. old (x, y) -> new (y, W - 1 - x).
        return np.array([[0, 1, 0], [-1, 0, width - 1], [0, 0, 1]], dtype=np.float64)

    hr, ref, matrix, to_photo = pair.hr, pair.ref, pair.hr_to_ref, pair.ref_to_photo
    for _ in range(turns % 4):
        hr_turn, ref_turn = rotation(*hr.shape[-2:]), rotation(*ref.shape[-2:])
        matrix = ref_turn @ matrix @ np.linalg.inv(hr_turn)
        to_photo = to_photo @ np.linalg.inv(ref_turn)
        hr, ref = torch.rot90(hr, 1, dims=(2, 3)), torch.rot90(ref, 1, dims=(2, 3))
    return HomographyPair(hr=hr, ref=ref, hr_to_ref=matrix, ref_to_photo=to_photo, photo_hw=pair.photo_hw)


@dataclass(frozen=True)
class TrainingCrop:
    """One dense training example: a k x k grid of queries sharing one LR↑ crop and one Ref crop.

    ``lr_crop`` (1, 3, 65 + s(k-1), 65 + s(k-1)) and ``ref_crop`` (1, 3, Hc, Wc): RGB [0, 1], the Ref crop zero
    outside the Ref. With valid convolutions, CC-Net(lr_crop)[..., s*m, s*n] is the feature of the 65x65 patch
    centred at query (m, n) and CC-Net(ref_crop)[..., u, v] that of the Ref patch centred at crop pixel
    (u + 32, v + 32). ``valid`` (k, k) bool; ``window_yx`` (Q, 2) top-left of each valid query's (2r+1)^2
    search window in the Ref feature map; ``label_yx`` (Q, 2) the ground-truth cell in that window."""

    lr_crop: torch.Tensor
    ref_crop: torch.Tensor
    valid: torch.Tensor
    window_yx: torch.Tensor
    label_yx: torch.Tensor


def sample_crop(
    pair: HomographyPair, lr_up: torch.Tensor, rng: np.random.Generator, scale: int, queries: int, radius_px: int
) -> TrainingCrop | None:
    """A ``queries`` x ``queries`` grid of LR-grid queries (HR (s*m, s*n)) at a random place of the LR↑ and the
    Ref region holding their search windows (doc §4.3 steps 2-3, with the computation shared between queries).
    Each window is centred at the rounded ground truth minus a jitter of up to ±r/2 px. None when no query of
    the grid has a valid ground truth."""
    half = CCNET_RECEPTIVE_RADIUS_PX
    span = scale * (queries - 1)
    height, width = lr_up.shape[-2:]
    # First query on the LR grid with its 65x65 patch inside the LR↑ and the whole grid inside too.
    low = -(-half // scale)
    top = scale * int(rng.integers(low, (height - 1 - half - span) // scale + 1))
    left = scale * int(rng.integers(low, (width - 1 - half - span) // scale + 1))
    grid = np.stack(np.meshgrid(np.arange(queries), np.arange(queries), indexing="ij"), axis=-1) * scale
    grid = grid + np.array([top, left])
    gt_yx, valid = ref_positions(pair, grid.astype(np.float64))
    if not valid.any():
        return None
    target = np.floor(gt_yx[valid] + 0.5).astype(np.int64)  # (Q, 2)
    jitter = rng.integers(-(radius_px // 2), radius_px // 2 + 1, size=target.shape)
    window_centre = target - jitter
    # Ref crop: all windows plus the receptive-field halo; feature (u, v) <-> Ref (crop_top + half + u, ...).
    crop_top_left = window_centre.min(axis=0) - radius_px - half
    crop_bottom_right = window_centre.max(axis=0) + radius_px + half + 1
    ref_h, ref_w = pair.ref.shape[-2:]
    pad = (
        max(0, -crop_top_left[1]),
        max(0, crop_bottom_right[1] - ref_w),
        max(0, -crop_top_left[0]),
        max(0, crop_bottom_right[0] - ref_h),
    )
    padded = F.pad(pair.ref, pad)
    y0, x0 = crop_top_left[0] + pad[2], crop_top_left[1] + pad[0]
    ref_crop = padded[
        ..., y0 : y0 + crop_bottom_right[0] - crop_top_left[0], x0 : x0 + crop_bottom_right[1] - crop_top_left[1]
    ]
    lr_crop = lr_up[..., top - half : top + span + half + 1, left - half : left + span + half + 1]
    window_yx = window_centre - radius_px - crop_top_left - half
    return TrainingCrop(
        lr_crop=lr_crop,
        ref_crop=ref_crop,
        valid=torch.from_numpy(valid),
        window_yx=torch.from_numpy(window_yx),
        label_yx=torch.from_numpy(radius_px + jitter),
    )


def crop_loss(ccnet: torch.nn.Module, crop: TrainingCrop, scale: int, radius_px: int) -> torch.Tensor:
    """``ccnet_classification_loss`` of one ``TrainingCrop`` (valid convolutions, mean over its queries)."""
    lr_features = ccnet(crop.lr_crop, same_padding=False)[:, :, ::scale, ::scale]  # (1, C, k, k)
    query = lr_features[0].permute(1, 2, 0)[crop.valid]  # (Q, C)
    ref_features = ccnet(crop.ref_crop, same_padding=False)
    windows = gather_windows(ref_features, crop.window_yx[:, 0], crop.window_yx[:, 1], 2 * radius_px + 1)
    return ccnet_classification_loss(query[:, :, None, None], windows, crop.label_yx)


def optimise(
    ccnet: torch.nn.Module,
    batches: Iterator[list[TrainingCrop]],
    *,
    steps: int,
    scale: int,
    radius_px: int,
    learning_rate: float = 1e-3,
) -> list[float]:
    """Adam (paper: lr 1e-3) on the mean ``crop_loss`` of each batch of crops, BN in training mode.
    Returns the per-step losses; leaves ``ccnet`` in eval mode."""
    optimizer = torch.optim.Adam(ccnet.parameters(), lr=learning_rate)
    losses = []
    ccnet.train()
    for _ in range(steps):
        loss = torch.stack([crop_loss(ccnet, crop, scale, radius_px) for crop in next(batches)]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    ccnet.eval()
    return losses


def random_crops(
    method: RefSRNetMethod,
    pairs: Sequence[HomographyPair],
    *,
    crops_per_step: int,
    queries: int,
    radius_px: int,
    seed: int,
) -> Iterator[list[TrainingCrop]]:
    """Endless batches of ``TrainingCrop`` from random pairs, each randomly rotated by a multiple of 90°."""
    scale = method.config.scale
    rng = np.random.default_rng(seed)
    rotated = [[rotate_pair(pair, turns) for turns in range(4)] for pair in pairs]
    lr_ups = [[method.module.upsample_lr(make_lr(p, scale)) for p in group] for group in rotated]
    while True:
        crops: list[TrainingCrop] = []
        while len(crops) < crops_per_step:
            index, turns = int(rng.integers(len(pairs))), int(rng.integers(4))
            crop = sample_crop(rotated[index][turns], lr_ups[index][turns], rng, scale, queries, radius_px)
            if crop is not None:
                crops.append(crop)
        yield crops


def train_ccnet(
    method: RefSRNetMethod,
    pairs: Sequence[HomographyPair],
    *,
    steps: int,
    crops_per_step: int,
    queries: int,
    radius_px: int,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``method``'s CC-Net in place on random crops of ``pairs``; returns the per-step losses."""
    batches = random_crops(
        method, pairs, crops_per_step=crops_per_step, queries=queries, radius_px=radius_px, seed=seed
    )
    return optimise(
        method.module.ccnet,
        batches,
        steps=steps,
        scale=method.config.scale,
        radius_px=radius_px,
        learning_rate=learning_rate,
    )


def make_pairs(
    names: Sequence[str], count: int, seed: int, hr_hw: tuple[int, int], ref_hw: tuple[int, int]
) -> list[HomographyPair]:
    """``count`` pairs cycling through the named photos, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    images = [sample_image(name) for name in names]
    return [make_homography_pair(images[k % len(images)], rng, hr_hw, ref_hw) for k in range(count)]


def sanity_check(
    method: RefSRNetMethod,
    *,
    steps: int,
    crops_per_step: int = 1,
    queries: int = 8,
    radius_px: int = 8,
    train_pairs: int = 12,
    train_hr_px: int = 192,
    eval_pairs: int = 2,
    eval_hr_px: int = 192,
    seed: int = 0,
) -> dict[str, object]:
    """Accuracy of ``method.match`` (its own search radius) on crops of the held-out embedded ``rocket`` demo
    pair before and after training the CC-Net on random-homography pairs of astronaut/coffee/chelsea (Refs
    16 px larger than the HR). Evaluation crops are large enough (192 HR px by default) for most queries to
    have a receptive field free of the zero padding. Returns accuracies (dicts threshold -> fraction), the
    per-step losses and the training time in seconds."""
    train_hw, ref_hw = (train_hr_px, train_hr_px), (train_hr_px + 16, train_hr_px + 16)
    train = make_pairs(TRAIN_IMAGES, train_pairs, seed, train_hw, ref_hw)
    held_out = embedded_eval_pairs(EVAL_IMAGE, method.config.scale, eval_hr_px, eval_pairs)
    before = pooled_accuracy(method, held_out)
    start = time.perf_counter()
    losses = train_ccnet(
        method, train, steps=steps, crops_per_step=crops_per_step, queries=queries, radius_px=radius_px, seed=seed
    )
    seconds = time.perf_counter() - start
    after = pooled_accuracy(method, held_out)
    return {"accuracy_before": before, "accuracy_after": after, "losses": losses, "train_seconds": seconds}
