"""Loaders of the datasets with ground-truth correspondence (and of LF video) for the matching protocol
(``protocols.matching``) and for SR-quality runs; each dataset's card in ``protocols.datasets`` names them.

- ``sintel``: MPI Sintel training layout, LR = frame t, Ref = frame t+1, g(p) = p + flow_t(p); for quality runs,
  frame t = HR input and frame t+1 = reference (CC-Net Table 3).
- ``lf_hci``: HCI 4D light field, LR = centre view, Ref = another view, g(p) = p + sign*d(p)*(Δrow, Δcol).
- ``lf_video``: the LF-video HDF5 layout (no ground-truth correspondence: quality runs only, CC-Net Table 3).
- ``demo_stereo`` / ``demo_homography``: the embedded scikit-image pairs (``protocols.embedded``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from protocols.core import UserError
from protocols.datasets import DatasetItem
from protocols.embedded import CorrespondencePair, demo_homography_pairs, demo_stereo_pairs
from protocols.flow_io import read_flo, read_pfm
from protocols.matching import LF_HCI_CENTRE, LF_HCI_GRID, MatchingDataset, MatchingItem, MatchingOptions, view_level

LF_VIDEO_GRID = 8
# Middlebury convention: components above this magnitude mark unknown flow.
_UNKNOWN_FLOW = 1e9


def _item_from_pair(pair: CorrespondencePair) -> MatchingItem:
    return MatchingItem(pair.name, pair.image, pair.ref, pair.gt_yx, pair.valid, None, {})


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as error:
        raise UserError(f"cannot read image {path}: {error}") from error


def _read_mask(path: Path, expected_hw: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as image:
            mask = np.asarray(image.convert("L")) > 127
    except OSError as error:
        raise UserError(f"cannot read mask {path}: {error}") from error
    if mask.shape != expected_hw:
        raise UserError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} but the frame is {expected_hw[0]}x"
                        f"{expected_hw[1]} (HxW)")
    return mask


def _image_hw(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except OSError as error:
        raise UserError(f"cannot read image {path}: {error}") from error


def _flo_hw(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:12]
    if len(header) < 12:
        raise UserError(f"{path}: truncated .flo file")
    width, height = (int(v) for v in np.frombuffer(header, dtype="<i4", count=2, offset=4))
    return height, width


# ---- MPI Sintel

SINTEL_LAYOUT = (
    "training/{clean,final}/<scene>/frame_NNNN.png and training/flow/<scene>/frame_NNNN.flo "
    "(optional: training/occlusions/<scene>/frame_NNNN.png, training/invalid/<scene>/frame_NNNN.png)"
)
_FRAME_RE = re.compile(r"^frame_(\d{4})$")


def find_sintel_root(data_root: Path) -> Path:
    """The Sintel folder under a data root: ROOT/MPI-Sintel, ROOT/MPI-Sintel_subset, or ROOT itself."""
    for candidate in (data_root / "MPI-Sintel", data_root / "MPI-Sintel_subset", data_root):
        if (candidate / "training").is_dir():
            return candidate
    raise UserError(
        f"no MPI Sintel dataset under {data_root}: expected {data_root}/MPI-Sintel/ or "
        f"{data_root}/MPI-Sintel_subset/ holding {SINTEL_LAYOUT}"
    )


def _frame_path(base: Path, scene: str, index: int, suffix: str) -> Path:
    return base / scene / f"frame_{index:04d}{suffix}"


def _parse_entry(entry: str) -> tuple[str, int]:
    scene, _, frame = entry.partition("/")
    match = _FRAME_RE.match(frame)
    if not scene or match is None:
        raise UserError(f"bad Sintel frame name {entry!r}; expected '<scene>/frame_NNNN'")
    return scene, int(match.group(1))


def sintel_dataset(
    root: Path, options: MatchingOptions, frames: Sequence[str] | None = None
) -> MatchingDataset:
    """Validated Sintel dataset (``root`` = the folder holding ``training/``).

    ``frames``: entries ``<scene>/frame_NNNN`` naming frame t of each pair; every named frame must have its
    flow file and both images (strict). ``None``: every flow file whose frames t and t+1 both exist in
    the selected pass, sorted (pairs whose images are absent from that pass are listed in ``meta``).
    """
    training = root / "training"
    pass_dir, flow_dir = training / options.sintel_pass, training / "flow"
    for folder in (pass_dir, flow_dir):
        if not folder.is_dir():
            raise UserError(f"missing folder {folder}; the Sintel layout is {SINTEL_LAYOUT}")
    skipped: list[str] = []
    if frames is None:
        entries: list[str] = []
        for flow_path in sorted(flow_dir.glob("*/frame_*.flo")):
            scene, index = flow_path.parent.name, int(flow_path.stem.split("_")[1])
            pair = (_frame_path(pass_dir, scene, index, ".png"), _frame_path(pass_dir, scene, index + 1, ".png"))
            (entries if all(p.is_file() for p in pair) else skipped).append(f"{scene}/frame_{index:04d}")
        if not entries:
            raise UserError(
                f"no evaluable frame pair in {root} for pass {options.sintel_pass!r}: need a flow file "
                f"flow/<scene>/frame_t.flo with both {options.sintel_pass}/<scene>/frame_t.png and frame_t+1.png; "
                f"layout: {SINTEL_LAYOUT}"
            )
    else:
        entries = list(frames)
    for entry in entries:
        scene, index = _parse_entry(entry)
        flow_path = _frame_path(flow_dir, scene, index, ".flo")
        if not flow_path.is_file():
            raise UserError(f"missing flow file for frame {entry}: expected {flow_path}")
        frame_paths = [_frame_path(pass_dir, scene, i, ".png") for i in (index, index + 1)]
        for path in frame_paths:
            if not path.is_file():
                raise UserError(f"missing {options.sintel_pass} frame for pair {entry}: expected {path}")
        sizes = {str(p): _image_hw(p) for p in frame_paths}
        sizes[str(flow_path)] = _flo_hw(flow_path)
        for kind in ("occlusions", "invalid"):
            mask_path = _frame_path(training / kind, scene, index, ".png")
            if mask_path.is_file():
                sizes[str(mask_path)] = _image_hw(mask_path)
        if len(set(sizes.values())) != 1:
            listing = "; ".join(f"{path}: {h}x{w}" for path, (h, w) in sizes.items())
            raise UserError(f"mismatched frame/flow sizes for {entry} (HxW): {listing}")

    def load(entry: str) -> MatchingItem:
        scene, index = _parse_entry(entry)
        frame_t = _read_rgb(_frame_path(pass_dir, scene, index, ".png"))
        frame_t1 = _read_rgb(_frame_path(pass_dir, scene, index + 1, ".png"))
        hw = frame_t.shape[:2]
        flow = read_flo(_frame_path(flow_dir, scene, index, ".flo"), expected_hw=hw).astype(np.float64)
        masks: dict[str, np.ndarray] = {}
        for kind in ("occlusions", "invalid"):
            mask_path = _frame_path(training / kind, scene, index, ".png")
            if mask_path.is_file():
                masks[kind] = _read_mask(mask_path, hw)
        unknown = ~np.all(np.isfinite(flow) & (np.abs(flow) < _UNKNOWN_FLOW), axis=-1)
        invalid = unknown | masks.get("invalid", np.zeros(hw, dtype=bool))
        occluded = masks.get("occlusions")
        meta = {"masks": ",".join(sorted(masks)) or "none", "pass": options.sintel_pass}
        if options.direction == "forward":
            rows, cols = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
            gt_yx = np.stack([rows + flow[..., 1], cols + flow[..., 0]], axis=-1)
            return MatchingItem(entry, frame_t, frame_t1, gt_yx, ~invalid, occluded, meta)
        gt_yx, valid = _splat_inverse_flow(flow, invalid | (occluded if occluded is not None else False))
        meta["direction"] = "backward: inverse of the forward flow by nearest-pixel splatting"
        return MatchingItem(entry, frame_t1, frame_t, gt_yx, valid, None, meta)

    meta: dict[str, object] = {"root": str(root), "pass": options.sintel_pass, "skipped_pairs": skipped}
    return MatchingDataset("sintel", options.sintel_pass, tuple(entries), load, meta)


def _splat_inverse_flow(flow: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward correspondence t+1 -> t from the forward flow t -> t+1.

    Each usable pixel q of frame t lands at q + f(q); its nearest pixel P of frame t+1 gets the ground
    truth q + (P - (q + f(q))) (locally constant flow). When several land on one P, the one landing
    closest wins. Pixels of t+1 nobody lands on are invalid.
    """
    height, width = flow.shape[:2]
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    land_y, land_x = rows + flow[..., 1], cols + flow[..., 0]
    target_y, target_x = np.floor(land_y + 0.5), np.floor(land_x + 0.5)
    usable = ~excluded & (target_y >= 0) & (target_y <= height - 1) & (target_x >= 0) & (target_x <= width - 1)
    residual = np.hypot(target_y - land_y, target_x - land_x)[usable]
    target = (target_y[usable] * width + target_x[usable]).astype(np.int64)
    source_y = rows[usable] + (target_y - land_y)[usable]
    source_x = cols[usable] + (target_x - land_x)[usable]
    order = np.lexsort((residual, target))  # by target, then smallest residual first
    first = np.ones(order.size, dtype=bool)
    first[1:] = target[order][1:] != target[order][:-1]
    chosen = order[first]
    gt_yx = np.full((height * width, 2), np.nan)
    gt_yx[target[chosen], 0], gt_yx[target[chosen], 1] = source_y[chosen], source_x[chosen]
    valid = np.zeros(height * width, dtype=bool)
    valid[target[chosen]] = True
    return gt_yx.reshape(height, width, 2), valid.reshape(height, width)


# ---- HCI 4D light field

LF_HCI_LAYOUT = (
    "<group>/<scene>/input_Cam000.png ... input_Cam080.png (9x9 views, index 9*row+col) + gt_disp_lowres.pfm"
)


def find_hci_scenes(data_root: Path) -> list[Path]:
    """Scenes with ground truth under ROOT/LF_HCI4D/<group>/<scene>, ROOT/<group>/<scene> or ROOT itself."""
    candidates = [data_root / "LF_HCI4D", data_root]
    for base in candidates:
        if (base / "gt_disp_lowres.pfm").is_file():
            return [base]
        scenes = sorted(p.parent for p in base.glob("*/*/gt_disp_lowres.pfm"))
        scenes += sorted(p.parent for p in base.glob("*/gt_disp_lowres.pfm"))
        if scenes:
            return scenes
    raise UserError(
        f"no HCI 4D light-field scene with ground truth under {data_root}: expected "
        f"{data_root}/LF_HCI4D/{LF_HCI_LAYOUT}"
    )


def hci_view_path(scene: Path, view: tuple[int, int]) -> Path:
    return scene / f"input_Cam{LF_HCI_GRID * view[0] + view[1]:03d}.png"


def hci_disparity_sign(centre: np.ndarray, ref: np.ndarray, disparity: np.ndarray,
                       offset: tuple[int, int]) -> tuple[int, dict[str, float]]:
    """The global sign s of g(p) = p + s*d(p)*(Δrow, Δcol): the one with the lower photometric error.

    Error = mean |ref(g(p)) - centre(p)| (bilinear, RGB levels) over the pixels whose g(p) is inside the
    reference. Returns the sign and both errors (recorded in the run manifest).
    """
    from protocols.embedded import bilinear_sample

    height, width = disparity.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    known = np.isfinite(disparity)
    errors: dict[str, float] = {}
    for sign in (1, -1):
        ys = rows + sign * np.where(known, disparity, 0.0) * offset[0]
        xs = cols + sign * np.where(known, disparity, 0.0) * offset[1]
        values, inside = bilinear_sample(ref.astype(np.float64), ys, xs)
        use = inside & known
        errors[f"{sign:+d}"] = float(np.abs(values - centre.astype(np.float64))[use].mean())
    best = 1 if errors["+1"] < errors["-1"] else -1
    return best, errors


def lf_hci_dataset(data_root: Path, options: MatchingOptions) -> MatchingDataset:
    """Every HCI scene with ``gt_disp_lowres.pfm``; LR = ``lf_lr_view`` (must be the centre), Ref = ``lf_ref_view``."""
    if tuple(options.lf_lr_view) != LF_HCI_CENTRE:
        raise UserError(
            f"lf_hci: LR view {tuple(options.lf_lr_view)} has no ground truth; HCI provides disparity for the "
            f"centre view {LF_HCI_CENTRE} only. Use LR view (4, 4) and choose the Ref view for the offset you want "
            "(default (1, 1) = CC-Net's (3, 3) -> (0, 0) offset)."
        )
    if tuple(options.lf_ref_view) == LF_HCI_CENTRE:
        raise UserError("lf_hci: the Ref view must differ from the LR view (4, 4)")
    if options.direction != "forward":
        raise UserError("lf_hci: only direction 'forward' (LR view -> Ref view) has ground truth")
    scenes = find_hci_scenes(data_root)
    for scene in scenes:
        missing = [hci_view_path(scene, (r, c)).name for r in range(LF_HCI_GRID) for c in range(LF_HCI_GRID)
                   if not hci_view_path(scene, (r, c)).is_file()]
        if missing:
            raise UserError(f"{scene}: missing views {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}; "
                            f"layout: {LF_HCI_LAYOUT}")
        sizes = {_image_hw(hci_view_path(scene, v)) for v in (options.lf_lr_view, options.lf_ref_view)}
        if len(sizes) != 1:
            raise UserError(f"{scene}: LR and Ref views differ in size: {sorted(sizes)}")
    by_name = {f"{scene.parent.name}/{scene.name}": scene for scene in scenes}
    offset = (options.lf_ref_view[0] - options.lf_lr_view[0], options.lf_ref_view[1] - options.lf_lr_view[1])
    signs: dict[str, dict[str, object]] = {}

    def load(entry: str) -> MatchingItem:
        scene = by_name[entry]
        centre = _read_rgb(hci_view_path(scene, options.lf_lr_view))
        ref = _read_rgb(hci_view_path(scene, options.lf_ref_view))
        disparity = read_pfm(scene / "gt_disp_lowres.pfm", expected_hw=centre.shape[:2]).astype(np.float64)
        sign, errors = hci_disparity_sign(centre, ref, disparity, offset)
        signs[entry] = {"sign": sign, "photometric_error_by_sign": errors}
        known = np.isfinite(disparity)
        rows, cols = np.mgrid[0 : centre.shape[0], 0 : centre.shape[1]].astype(np.float64)
        gt_yx = np.stack([rows + sign * disparity * offset[0], cols + sign * disparity * offset[1]], axis=-1)
        meta = {"disparity_sign": str(sign), "view_offset_rc": f"{offset[0]},{offset[1]}"}
        return MatchingItem(entry, centre, ref, gt_yx, known, None, meta)

    meta: dict[str, object] = {
        "scenes": sorted(by_name),
        "view_offset_rc": list(offset),
        "disparity_sign": signs,  # filled while loading: sign chosen on the data per scene
        "ground_truth": "g(p) = p + sign * d(p) * (Δrow, Δcol); no occlusion information",
    }
    return MatchingDataset("lf_hci", view_level(options.lf_lr_view, options.lf_ref_view), tuple(sorted(by_name)),
                           load, meta)


# ---- LF video (HDF5)

LF_VIDEO_DATASETS = ("img_HR", "img_LR_4", "img_LR_8", "img_LR_4_upsample", "img_LR_8_upsample", "MDSR_4", "MDSR_8")


@dataclass(frozen=True, eq=False)
class ViewPair:
    """One LF-video test item: HR input view, HR reference view (uint8 (H, W, 3) RGB) and, when the file
    holds it, the stored LR of the input view (uint8 (H/s, W/s, 3) RGB)."""

    name: str
    image: np.ndarray
    ref: np.ndarray
    lr: np.ndarray | None


def validate_lf_video(path: Path) -> dict[str, tuple[int, ...]]:
    """Check the CrossNet LF-video layout: uint8 arrays (N, 8, 8, C, H, W); returns the dataset shapes."""
    import h5py

    if not path.is_file():
        raise UserError(f"LF-video file not found: {path} (HDF5 with /img_HR shaped (N, 8, 8, 3, H, W))")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise UserError(f"{path} is not a readable HDF5 file: {error}") from error
    with handle:
        if "img_HR" not in handle:
            raise UserError(f"{path}: no /img_HR dataset; found {sorted(handle.keys())}; expected some of "
                            f"{', '.join('/' + n for n in LF_VIDEO_DATASETS)}")
        shapes = {name: tuple(handle[name].shape) for name in LF_VIDEO_DATASETS if name in handle}
        for name, shape in shapes.items():
            dtype = handle[name].dtype
            if len(shape) != 6 or shape[1:3] != (LF_VIDEO_GRID, LF_VIDEO_GRID) or shape[3] != 3:
                raise UserError(f"{path}:/{name} has shape {shape}; expected (N, 8, 8, 3, H, W)")
            if dtype != np.uint8:
                raise UserError(f"{path}:/{name} has dtype {dtype}; expected uint8")
    count, height, width = shapes["img_HR"][0], shapes["img_HR"][4], shapes["img_HR"][5]
    for name, shape in shapes.items():
        factor = int(name.split("_")[-1]) if name.startswith("img_LR") and not name.endswith("upsample") else 1
        expected = (count, LF_VIDEO_GRID, LF_VIDEO_GRID, 3, height // factor, width // factor)
        if shape != expected:
            raise UserError(
                f"{path}:/{name} has shape {shape}; expected {expected} to match /img_HR {shapes['img_HR']}"
            )
    return shapes


def lf_video_pairs(
    path: Path, lr_view: tuple[int, int] = (3, 3), ref_view: tuple[int, int] = (0, 0), scale: int = 8
) -> Iterator[ViewPair]:
    """LF-video test pairs (CC-Net / CrossNet ``Fixed-inv``: LR view (3, 3), Ref view (0, 0)).

    No ground-truth correspondence exists for this dataset; use it for quality runs.
    """
    import h5py

    for name, view in (("lr_view", lr_view), ("ref_view", ref_view)):
        if len(view) != 2 or not all(0 <= v < LF_VIDEO_GRID for v in view):
            raise UserError(f"{name}={tuple(view)} is outside the 8x8 LF-video view grid (0..7, 0..7)")
    shapes = validate_lf_video(path)
    lr_name = f"img_LR_{scale}"
    with h5py.File(path, "r") as handle:
        for index in range(shapes["img_HR"][0]):
            hr = handle["img_HR"]
            image = np.ascontiguousarray(np.transpose(hr[index, lr_view[0], lr_view[1]], (1, 2, 0)))
            ref = np.ascontiguousarray(np.transpose(hr[index, ref_view[0], ref_view[1]], (1, 2, 0)))
            lr = None
            if lr_name in handle:
                lr = np.ascontiguousarray(np.transpose(handle[lr_name][index, lr_view[0], lr_view[1]], (1, 2, 0)))
            yield ViewPair(f"{path.stem}/{index:04d}", image, ref, lr)


def _embedded_dataset(name: str, pairs: tuple[CorrespondencePair, ...], options: MatchingOptions) -> MatchingDataset:
    if options.direction != "forward":
        raise UserError(f"{name}: only direction 'forward' (input -> reference) has ground truth")
    by_name = {pair.name: pair for pair in pairs}
    return MatchingDataset(name, "-", tuple(by_name), lambda entry: _item_from_pair(by_name[entry]),
                           {"source": "scikit-image bundled data (protocols.embedded)"})



# ---- the loaders the dataset cards name (protocols.datasets)


def sintel_matching(data_root: Path, options: MatchingOptions, frames: Sequence[str] | None) -> MatchingDataset:
    return sintel_dataset(find_sintel_root(data_root), options, frames)


def lf_hci_matching(data_root: Path, options: MatchingOptions, frames: Sequence[str] | None) -> MatchingDataset:
    if frames:
        raise UserError("lf_hci: --frames selects Sintel frames; HCI evaluates every scene with ground truth")
    return lf_hci_dataset(data_root, options)


def demo_stereo_matching(_: Path | None, options: MatchingOptions, frames: Sequence[str] | None) -> MatchingDataset:
    return _embedded_dataset("demo_stereo", demo_stereo_pairs(), options)


def demo_homography_matching(_: Path | None, options: MatchingOptions,
                             frames: Sequence[str] | None) -> MatchingDataset:
    return _embedded_dataset("demo_homography", demo_homography_pairs(), options)


# CC-Net does not state the Sintel pass; the benchmark default is clean (protocols.md §5.7).
SINTEL_QUALITY_PASS = "clean"


def sintel_quality_items(folder: Path) -> list[DatasetItem]:
    """CC-Net Table 3 pairs of the clean pass: HR input = frame t, reference (``pair``) = frame t+1, for every
    frame t whose successor exists in the same scene. ``testing/`` (the paper's 552 test pairs) when present,
    else ``training/`` (e.g. the shared subset)."""
    split = next((folder / s for s in ("testing", "training") if (folder / s / SINTEL_QUALITY_PASS).is_dir()), None)
    if split is None:
        raise UserError(f"no {SINTEL_QUALITY_PASS} pass under {folder}: expected {folder}/testing/"
                        f"{SINTEL_QUALITY_PASS}/<scene>/frame_NNNN.png (or training/{SINTEL_QUALITY_PASS}/...)")
    items = []
    for scene in sorted(p for p in (split / SINTEL_QUALITY_PASS).iterdir() if p.is_dir()):
        frames = {int(match.group(1)): path for path in scene.iterdir()
                  if path.suffix == ".png" and (match := _FRAME_RE.match(path.stem))}
        items += [DatasetItem(f"{scene.name}/frame_{index:04d}", frames[index], (("pair", frames[index + 1]),))
                  for index in sorted(frames) if index + 1 in frames]
    if not items:
        raise UserError(f"no consecutive frame pair frame_t.png / frame_t+1.png under {split / SINTEL_QUALITY_PASS}")
    return items


LF_VIDEO_SUFFIXES = (".h5", ".hdf5")


def lf_video_quality_items(folder: Path) -> list[DatasetItem]:
    """CC-Net Table 3 LF-video pairs of every HDF5 file in ``folder`` (sorted by name): HR input = view (3, 3),
    reference (``pair``) = view (0, 0), as uint8 (H, W, 3) RGB arrays (the protocol makes the LR)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in LF_VIDEO_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"no LF-video HDF5 file (*.h5) in {folder}; expected /img_HR shaped (N, 8, 8, 3, H, W)")
    pairs = [pair for path in files for pair in lf_video_pairs(path)]
    return [DatasetItem(pair.name, pair.image, (("pair", pair.ref),)) for pair in pairs]
