"""Pictures of a matcher's correspondences, coloured by their error against the ground truth.

``match_errors`` redoes the evaluation geometry of ``protocols.matching.evaluate_item`` (positions (s*m, s*n)
of the mod-cropped HR input, Euclidean distance, unrounded) for one predicted ``ref_yx`` field, and
``draw_matches`` puts the input and the reference side by side: a dot on every scored input position and a
line from a few of them to the matched reference position, coloured by error: green within 1 HR px of the
ground truth, orange within 4 px, red beyond. Written by the demo next to its matching records
(``<run>/match_images/<method>/<level>/<frame>.png``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from protocols.matching import MatchingItem
from protocols.pipeline import modcrop

# Error bands (HR pixels) and their colours (RGB): the report's legend repeats them.
ERROR_BANDS_PX: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (1.0, (40, 170, 60)),
    (4.0, (245, 150, 20)),
    (float("inf"), (220, 40, 40)),
)
MISSING_COLOUR = (120, 120, 120)


@dataclass(frozen=True)
class MatchErrors:
    """Per evaluated position (LR grid, shape (h, w)): query (y, x) in input HR pixels, predicted (y, x) in
    reference pixels, error in HR px (inf where the prediction is not finite) and ``usable`` (ground truth known
    and inside the reference)."""

    query_yx: np.ndarray
    predicted_yx: np.ndarray
    error_px: np.ndarray
    usable: np.ndarray


class RecordingMatcher:
    """Wraps a matcher and keeps the ``ref_yx`` (float64 (h, w, 2), numpy) of its last ``match`` call."""

    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher
        self.info = matcher.info
        self.last_ref_yx: np.ndarray | None = None

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Any:
        correspondence = self.matcher.match(lr, ref)
        self.last_ref_yx = correspondence.ref_yx.detach().to("cpu", torch.float64).numpy()
        return correspondence


def match_errors(item: MatchingItem, predicted_yx: np.ndarray, scale: int) -> MatchErrors:
    """Errors of ``predicted_yx`` (float (h, w, 2), reference pixels) at the positions the protocol scores."""
    image, ref = modcrop(item.image, scale), modcrop(item.ref, scale)
    lr_h, lr_w = image.shape[0] // scale, image.shape[1] // scale
    gt = item.gt_yx[::scale, ::scale][:lr_h, :lr_w].astype(np.float64)
    usable = item.valid[::scale, ::scale][:lr_h, :lr_w] & np.all(np.isfinite(gt), axis=-1)
    if item.occluded is not None:
        usable &= ~item.occluded[::scale, ::scale][:lr_h, :lr_w]
    safe_gt = np.where(np.isfinite(gt), gt, -1.0)
    usable &= (safe_gt[..., 0] >= 0) & (safe_gt[..., 0] <= ref.shape[0] - 1)
    usable &= (safe_gt[..., 1] >= 0) & (safe_gt[..., 1] <= ref.shape[1] - 1)
    query = np.stack(np.meshgrid(scale * np.arange(lr_h), scale * np.arange(lr_w), indexing="ij"), axis=-1)
    error = np.sqrt(((predicted_yx - safe_gt) ** 2).sum(axis=-1))
    error = np.where(np.isfinite(error), error, np.inf)
    return MatchErrors(query.astype(np.float64), predicted_yx, error, usable)


def error_colour(error_px: float) -> tuple[int, int, int]:
    for limit, colour in ERROR_BANDS_PX:
        if error_px <= limit:
            return colour
    return ERROR_BANDS_PX[-1][1]


def draw_matches(image: np.ndarray, ref: np.ndarray, errors: MatchErrors, *, max_lines: int = 30,
                 zoom: int = 1) -> Image.Image:
    """Input (uint8 (H, W, 3) RGB, left) and reference (uint8 (H', W', 3) RGB, right) side by side, enlarged by
    ``zoom`` (nearest neighbour): a dot on every scored position of the input coloured by its error, and for
    about ``max_lines`` of them (a regular subsample of the LR grid) a line to the predicted reference position."""
    height = max(image.shape[0], ref.shape[0])
    gap = 8
    canvas = Image.new("RGB", ((image.shape[1] + gap + ref.shape[1]) * zoom, height * zoom), (255, 255, 255))
    nearest = Image.Resampling.NEAREST
    canvas.paste(Image.fromarray(image).resize((image.shape[1] * zoom, image.shape[0] * zoom), nearest), (0, 0))
    offset_x = image.shape[1] + gap
    canvas.paste(Image.fromarray(ref).resize((ref.shape[1] * zoom, ref.shape[0] * zoom), nearest), (offset_x * zoom, 0))
    draw = ImageDraw.Draw(canvas)
    usable = np.argwhere(errors.usable)
    dot = max(1.5, zoom * 0.9)
    for m, n in usable:  # every scored position on the input, coloured by its error: an error map
        qy, qx = errors.query_yx[m, n]
        centre = ((qx + 0.5) * zoom, (qy + 0.5) * zoom)
        draw.ellipse([centre[0] - dot, centre[1] - dot, centre[0] + dot, centre[1] + dot],
                     fill=error_colour(float(errors.error_px[m, n])))
    positions = usable
    if len(positions) > max_lines:
        step = int(np.ceil(np.sqrt(len(positions) / max_lines)))
        positions = positions[(positions[:, 0] % step == 0) & (positions[:, 1] % step == 0)]
    # a few matches drawn as lines to the chosen reference position, the worst last so red stays visible
    order = np.argsort([errors.error_px[m, n] for m, n in positions], kind="stable")
    for m, n in positions[order]:
        qy, qx = errors.query_yx[m, n]
        py, px = errors.predicted_yx[m, n]
        if not (np.isfinite(py) and np.isfinite(px)):
            continue
        colour = error_colour(float(errors.error_px[m, n]))
        end = ((offset_x + px + 0.5) * zoom, (py + 0.5) * zoom)
        draw.line([((qx + 0.5) * zoom, (qy + 0.5) * zoom), end], fill=colour, width=1)
        draw.ellipse([end[0] - dot, end[1] - dot, end[0] + dot, end[1] + dot], outline=colour, width=2)
    return canvas


def save_match_picture(path: Path, item: MatchingItem, predicted_yx: np.ndarray, scale: int) -> MatchErrors:
    """Write the picture of ``predicted_yx`` for ``item`` as PNG at ``path``; returns the errors drawn."""
    errors = match_errors(item, predicted_yx, scale)
    image, ref = modcrop(item.image, scale), modcrop(item.ref, scale)
    zoom = max(1, min(4, 384 // max(image.shape[0], 1)))
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_matches(np.ascontiguousarray(image), np.ascontiguousarray(ref), errors, zoom=zoom).save(path, format="PNG")
    return errors
