"""Matching-accuracy protocol (CC-Net Table 2 / Fig. 3).

For every evaluated HR position p = (s*m, s*n) of an input image with valid ground truth g(p) in the
reference, the protocol measures the distance between the matcher's position and g(p) and reports the
fraction within t = 0..7 HR pixels: pooled over all positions of all frames (image ``ALL``, the
headline number), per frame, and the mean of the per-frame values (image ``MEAN``).

Every choice the paper leaves open is a field of ``MatchingOptions`` (defaults from ``protocols.md`` §6)
and is recorded with the results. The matcher only ever sees the LR (made here: mod-crop to a multiple
of s, PIL bicubic ÷s on 8-bit images) and the HR reference (mod-cropped the same way).

Datasets (``load_dataset``): every dataset card with a ``matching_loader`` (``protocols.datasets``); the
built-in loaders (Sintel, HCI light field, the embedded demo pairs) live in ``protocols.matching_data``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from protocols.core import Matcher, UserError
from protocols.datasets import DATASETS as DATASET_CARDS
from protocols.datasets import matching_datasets, resolve_loader
from protocols.errors import unknown_name
from protocols.pipeline import modcrop
from protocols.resize import from_uint8_array, pil_bicubic

THRESHOLDS_PX: tuple[int, ...] = tuple(range(8))
SUPPORTED_SCALES = (1, 2, 4, 8)
LF_HCI_GRID = 9
LF_HCI_CENTRE = (4, 4)
def metric_name(threshold_px: int) -> str:
    return f"acc_le_{threshold_px}px"


@dataclass(frozen=True)
class MatchingOptions:
    """Every knob of the matching-accuracy protocol; defaults = the ``ccnet2017`` preset (protocols.md §6).

    - ``scale``: LR factor s (8 in CC-Net; 4 for the x4 methods; 1 = identity, no degradation).
    - ``norm``: distance between predicted and ground-truth positions, ``l2`` (Euclidean) or ``linf``.
    - ``gt_rounding``: ``nearest`` rounds the ground truth and the prediction per coordinate to
      floor(x + 0.5) ("<= 0 px" = exact integer match); ``none`` compares raw float positions.
    - ``sintel_pass``: ``clean`` or ``final``.
    - ``direction``: ``forward`` (LR = frame t, Ref = frame t+1, g = p + flow_t(p)); ``backward`` (LR =
      frame t+1, Ref = frame t; g from the forward flow of the non-occluded pixels of frame t splatted to
      their nearest pixel of frame t+1 -- approximate, Sintel ships no backward flow). Sintel only.
    - ``search_radius_px``: Chebyshev radius R around p; a ground truth outside it counts as a miss.
    - ``occlusion``: ``exclude`` positions flagged by Sintel's occlusions/ and invalid/ masks, or
      ``include`` them (invalid = unknown flow stays excluded: there is no ground truth).
    - ``lf_lr_view`` / ``lf_ref_view``: (row, column) of the HCI 9x9 grid. Ground-truth disparity
      exists for the centre view only, so the LR view must be (4, 4); the default Ref (1, 1) has the
      same offset (-3, -3) as CC-Net's LF-video pair LR (3, 3) -> Ref (0, 0).
    Fixed (recorded, not options): evaluated positions (s*m, s*n) 0-based (= the paper's 1-based
    (8m+1, 8n+1)); LR = mod-crop to a multiple of s (top-left kept) then PIL bicubic ÷s on uint8;
    the reference is mod-cropped the same way; targets outside the cropped reference are excluded.
    """

    scale: int = 8
    norm: Literal["l2", "linf"] = "l2"
    gt_rounding: Literal["nearest", "none"] = "nearest"
    sintel_pass: Literal["clean", "final"] = "clean"
    direction: Literal["forward", "backward"] = "forward"
    search_radius_px: int = 100
    occlusion: Literal["exclude", "include"] = "exclude"
    lf_lr_view: tuple[int, int] = LF_HCI_CENTRE
    lf_ref_view: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        choices: dict[str, tuple[object, ...]] = {
            "scale": SUPPORTED_SCALES,
            "norm": ("l2", "linf"),
            "gt_rounding": ("nearest", "none"),
            "sintel_pass": ("clean", "final"),
            "direction": ("forward", "backward"),
            "occlusion": ("exclude", "include"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise UserError(f"matching option {name}={getattr(self, name)!r} is not valid; choose from {valid}")
        if not isinstance(self.search_radius_px, int) or self.search_radius_px < 0:
            raise UserError(f"search_radius_px must be a non-negative integer; got {self.search_radius_px!r}")
        for name in ("lf_lr_view", "lf_ref_view"):
            view = getattr(self, name)
            if len(view) != 2 or not all(0 <= v < LF_HCI_GRID for v in view):
                raise UserError(f"{name}={view!r} is outside the {LF_HCI_GRID}x{LF_HCI_GRID} view grid (0..8, 0..8)")

    # Fields that only select the data (they become the record's ``reference``), not the preset.
    _LEVEL_FIELDS = ("sintel_pass", "lf_lr_view", "lf_ref_view")

    def preset_id(self) -> str:
        """``ccnet2017`` when every protocol knob has its default, else e.g. ``ccnet2017[norm=linf;scale=4]``."""
        default = MatchingOptions()
        changed = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in self._LEVEL_FIELDS and getattr(self, f.name) != getattr(default, f.name)
        ]
        return "ccnet2017" + (f"[{';'.join(sorted(changed))}]" if changed else "")

    def sentence(self) -> str:
        """One sentence stating the protocol above a results table."""
        norm = "Euclidean" if self.norm == "l2" else "Chebyshev"
        rounding = "rounded to the nearest pixel" if self.gt_rounding == "nearest" else "not rounded"
        occlusion = "occluded/invalid positions excluded" if self.occlusion == "exclude" else "occluded included"
        return (
            f"Matching accuracy (CC-Net Table 2 style): x{self.scale}, HR mod-cropped to x{self.scale}, LR by PIL "
            f"bicubic (8-bit), evaluated at HR positions ({self.scale}m, {self.scale}n), {norm} distance, positions "
            f"{rounding}, {occlusion}, ground truth outside a ±{self.search_radius_px} px window counted as a miss, "
            f"{self.direction} direction, fraction within t = 0..7 px pooled over all positions."
        )

    def to_dict(self) -> dict[str, object]:
        """Options plus the fixed conventions, JSON-ready (recorded in run.json)."""
        values: dict[str, object] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        values.update(
            preset=self.preset_id(),
            thresholds_px=list(THRESHOLDS_PX),
            evaluated_positions="HR (s*m, s*n), 0-based, one per LR pixel",
            lr_generation=f"mod-crop to x{self.scale} (top-left), PIL bicubic ÷{self.scale} on uint8",
            reference="HR, mod-cropped like the input; ground-truth targets outside it excluded",
            aggregation="ALL = pooled over positions of all frames (micro); MEAN = mean of per-frame values",
        )
        return values


def view_level(lr_view: tuple[int, int], ref_view: tuple[int, int]) -> str:
    return f"lr{lr_view[0]}-{lr_view[1]}_ref{ref_view[0]}-{ref_view[1]}"


# --------------------------------------------------------------------------------------------------
# items and datasets


@dataclass(frozen=True, eq=False)
class MatchingItem:
    """One frame to evaluate.

    ``image``: uint8 (H, W, 3) RGB, the HR input (the protocol makes the LR); ``ref``: uint8 (H', W', 3)
    RGB; ``gt_yx``: float64 (H, W, 2) ground-truth (y, x) in ``ref`` pixels; ``valid``: bool (H, W),
    ground truth known; ``occluded``: bool (H, W) or None (no occlusion information).
    """

    name: str
    image: np.ndarray
    ref: np.ndarray
    gt_yx: np.ndarray
    valid: np.ndarray
    occluded: np.ndarray | None = None
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MatchingDataset:
    """A validated dataset: entry names in evaluation order and a loader for one entry."""

    name: str
    level: str
    entries: tuple[str, ...]
    load: Callable[[str], MatchingItem]
    meta: dict[str, object] = field(default_factory=dict)

    def items(self, max_frames: int | None = None) -> Iterator[MatchingItem]:
        for entry in self.entries[:max_frames]:
            yield self.load(entry)


def load_dataset(name: str, data_root: Path | None, options: MatchingOptions,
                 frames: Sequence[str] | None = None) -> MatchingDataset:
    """A validated matching dataset by name (a dataset card with a ``matching_loader``); ``data_root`` is needed
    except for embedded datasets."""
    card = DATASET_CARDS.get(name)
    if card is None:
        raise unknown_name("matching dataset", name, matching_datasets())
    if card.matching_loader is None:
        raise UserError(
            f"{name} has no ground-truth correspondence, so matching accuracy cannot be measured on it; "
            f"measure SR quality with `refsr-bench run -p {name}:PRESET`"
        )
    if data_root is None and not card.embedded:
        raise UserError(f"dataset {name!r} needs a data root: pass --data ROOT or set REFSR_DATA")
    dataset: MatchingDataset = resolve_loader(card.matching_loader)(data_root, options, frames)
    return dataset


def check_dataset(name: str, data: str | Path | None, options: MatchingOptions | None = None) -> None:
    """Validate a matching dataset's layout up front (``data`` or ``$REFSR_DATA`` as root); UserError if wrong."""
    import os

    root = data if data is not None else os.environ.get("REFSR_DATA")
    load_dataset(name, Path(root) if root else None, options or MatchingOptions())


# --------------------------------------------------------------------------------------------------
# the protocol


@dataclass(frozen=True)
class FrameAccuracy:
    """Hit counts of one frame: ``hits[k]`` positions within ``THRESHOLDS_PX[k]`` of ``n_positions``."""

    image: str
    hits: tuple[int, ...]
    n_positions: int

    def accuracy(self) -> tuple[float, ...]:
        return tuple(h / self.n_positions if self.n_positions else float("nan") for h in self.hits)


def make_lr(image: np.ndarray, scale: int) -> torch.Tensor:
    """uint8 (H, W, 3) RGB with H, W multiples of ``scale`` -> LR (1, 3, H/s, W/s) float32 [0, 1], PIL bicubic."""
    hr = from_uint8_array(image)
    if scale == 1:
        return hr
    return pil_bicubic(hr, (image.shape[0] // scale, image.shape[1] // scale))


def _round(values: np.ndarray, rounding: str) -> np.ndarray:
    return np.floor(values + 0.5) if rounding == "nearest" else values


def evaluate_item(matcher: Matcher, item: MatchingItem, options: MatchingOptions) -> FrameAccuracy:
    """Match one item and count hits at every threshold (see ``MatchingOptions`` for the conventions)."""
    scale = options.scale
    method_scale = getattr(getattr(matcher, "info", None), "scale", scale)
    if method_scale != scale:
        raise UserError(f"the matcher was built for x{method_scale} but the protocol runs x{scale}")
    image, ref = modcrop(item.image, scale), modcrop(item.ref, scale)
    lr_h, lr_w = image.shape[0] // scale, image.shape[1] // scale
    correspondence = matcher.match(make_lr(image, scale), from_uint8_array(ref))
    predicted = correspondence.ref_yx.detach().to("cpu", torch.float64).numpy()
    if predicted.shape != (lr_h, lr_w, 2):
        raise UserError(f"matcher returned ref_yx of shape {predicted.shape}; expected ({lr_h}, {lr_w}, 2)")
    # Evaluated positions (s*m, s*n) of the input's HR grid.
    gt = item.gt_yx[::scale, ::scale][:lr_h, :lr_w].astype(np.float64)
    usable = item.valid[::scale, ::scale][:lr_h, :lr_w] & np.all(np.isfinite(gt), axis=-1)
    if options.occlusion == "exclude" and item.occluded is not None:
        usable &= ~item.occluded[::scale, ::scale][:lr_h, :lr_w]
    gt = _round(np.where(np.isfinite(gt), gt, -1.0), options.gt_rounding)
    inside = (gt[..., 0] >= 0) & (gt[..., 0] <= ref.shape[0] - 1) & (gt[..., 1] >= 0) & (gt[..., 1] <= ref.shape[1] - 1)
    usable &= inside
    query = np.stack(np.meshgrid(scale * np.arange(lr_h), scale * np.arange(lr_w), indexing="ij"), axis=-1)
    in_window = np.abs(gt - query).max(axis=-1) <= options.search_radius_px
    error = _round(predicted, options.gt_rounding) - gt
    distance = np.abs(error).max(axis=-1) if options.norm == "linf" else np.sqrt((error**2).sum(axis=-1))
    distance = np.where(in_window & np.isfinite(distance), distance, np.inf)[usable]
    # A tiny tolerance so that float noise in non-rounded positions does not flip an exact hit.
    hits = tuple(int(np.count_nonzero(distance <= t + 1e-9)) for t in THRESHOLDS_PX)
    return FrameAccuracy(item.name, hits, int(usable.sum()))


def accuracy_rows(frames: Sequence[FrameAccuracy]) -> list[tuple[str, str, float]]:
    """Rows (image, metric, value): per frame, ``ALL`` (pooled over positions) and ``MEAN`` (over frames).

    Metrics: ``acc_le_{t}px`` (fraction in [0, 1]) for t = 0..7 and ``n_positions``; ``MEAN`` carries
    ``n_frames`` (frames with at least one evaluated position) instead of ``n_positions``.
    """
    rows: list[tuple[str, str, float]] = []
    for frame in frames:
        rows += [(frame.image, metric_name(t), a) for t, a in zip(THRESHOLDS_PX, frame.accuracy(), strict=True)]
        rows.append((frame.image, "n_positions", float(frame.n_positions)))
    total = sum(f.n_positions for f in frames)
    pooled = [sum(f.hits[k] for f in frames) for k in range(len(THRESHOLDS_PX))]
    rows += [
        ("ALL", metric_name(t), h / total if total else float("nan"))
        for t, h in zip(THRESHOLDS_PX, pooled, strict=True)
    ]
    rows.append(("ALL", "n_positions", float(total)))
    counted = [f for f in frames if f.n_positions]
    for k, t in enumerate(THRESHOLDS_PX):
        mean = float(np.mean([f.accuracy()[k] for f in counted])) if counted else float("nan")
        rows.append(("MEAN", metric_name(t), mean))
    rows.append(("MEAN", "n_frames", float(len(counted))))
    return rows


def evaluate(matcher: Matcher, items: Iterator[MatchingItem] | Sequence[MatchingItem],
             options: MatchingOptions) -> list[tuple[str, str, float]]:
    """Evaluate ``matcher`` on every item; returns ``accuracy_rows`` of the per-frame results."""
    return accuracy_rows([evaluate_item(matcher, item, options) for item in items])


def options_json(options: MatchingOptions) -> str:
    return json.dumps(options.to_dict(), sort_keys=True)
