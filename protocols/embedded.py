"""Demo datasets with exact correspondence, built from images that ship inside the scikit-image wheel.

Nothing is downloaded: ``skimage.data`` holds the Middlebury 2014 "motorcycle" stereo pair with its
ground-truth disparity and a few photographs. Two small, deterministic datasets come out of them:

- ``demo_stereo_pairs()``: input = left view, reference = right view, ground truth from the disparity:
  a left pixel (y, x) is seen at (y, x - d) in the right view, i.e. flow(left -> right) = (-d, 0).
- ``demo_homography_pairs()``: input = the photograph, reference = the photograph warped by a fixed
  homography ``H`` (bilinear resampling), so the correspondence of pixel p is exactly ``H(p)``.

Every image is cropped (top-left kept) to a multiple of 8 pixels per side so that the x4 and x8
protocols can mod-crop without losing anything. The quality runs use these pairs too.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

# Multiple the demo images are cropped to, so x4 / x8 protocols keep every pixel.
CROP_MULTIPLE_PX = 8


@dataclass(frozen=True, eq=False)
class CorrespondencePair:
    """One input/reference pair with dense ground-truth correspondence (arrays are read-only).

    - ``image``: uint8 (H, W, 3) RGB, the HR version of the input;
    - ``ref``: uint8 (H', W', 3) RGB, the reference at HR resolution;
    - ``gt_yx``: float64 (H, W, 2), position (y, x) in ``ref`` pixel coordinates (0-based, pixel centres
      at integers) of every ``image`` pixel; NaN where undefined;
    - ``valid``: bool (H, W), True where ``gt_yx`` is defined and lies inside ``ref``.
    """

    name: str
    image: np.ndarray
    ref: np.ndarray
    gt_yx: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class HomographySpec:
    """A homography written as a similarity plus perspective terms about the image centre.

    In coordinates centred on the image centre (x right, y down, pixels), a point u = (x, y) maps to
    ``(A u + t) / (1 + g . u)`` with A = scale * rotation(angle_deg) (positive angle = counter-clockwise
    on screen, i.e. clockwise in the y-down frame), t = ``shift_xy_px`` and g = ``perspective_per_px``.
    """

    image: str
    angle_deg: float
    scale: float
    shift_xy_px: tuple[float, float]
    perspective_per_px: tuple[float, float]

    def matrix(self, height: int, width: int) -> np.ndarray:
        """3x3 float64 matrix acting on homogeneous (x, y, 1) image pixel coordinates -> ref coordinates."""
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        theta = math.radians(self.angle_deg)
        cos, sin = self.scale * math.cos(theta), self.scale * math.sin(theta)
        centred = np.array(
            [
                [cos, sin, self.shift_xy_px[0]],
                [-sin, cos, self.shift_xy_px[1]],
                [self.perspective_per_px[0], self.perspective_per_px[1], 1.0],
            ]
        )
        to_centre = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
        from_centre = np.array([[1.0, 0.0, cx], [0.0, 1.0, cy], [0.0, 0.0, 1.0]])
        return from_centre @ centred @ to_centre


# Mild, fixed warps (rotation a few degrees, scale within 8 %, shifts of a few pixels, weak perspective):
# every correspondence moves by well under the 100 px search window of the matching protocol.
DEMO_HOMOGRAPHIES: tuple[HomographySpec, ...] = (
    HomographySpec("astronaut", angle_deg=4.0, scale=1.05, shift_xy_px=(6.0, -4.0), perspective_per_px=(1e-4, 0.0)),
    HomographySpec("coffee", angle_deg=-3.0, scale=0.95, shift_xy_px=(-8.0, 5.0), perspective_per_px=(0.0, 1.5e-4)),
    HomographySpec("chelsea", angle_deg=2.0, scale=1.08, shift_xy_px=(4.0, 6.0), perspective_per_px=(-1e-4, 1e-4)),
    HomographySpec("rocket", angle_deg=-5.0, scale=1.0, shift_xy_px=(10.0, -3.0), perspective_per_px=(1e-4, -1e-4)),
)


def _crop_to_multiple(array: np.ndarray, multiple: int = CROP_MULTIPLE_PX) -> np.ndarray:
    height, width = array.shape[:2]
    return array[: height - height % multiple, : width - width % multiple]


def _read_only(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


def _rgb_uint8(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3], dtype=np.uint8)


@functools.cache
def demo_stereo_pairs() -> tuple[CorrespondencePair, ...]:
    """The Middlebury "motorcycle" pair: left view = input, right view = reference.

    Ground truth: flow(left -> right) = (-d, 0), i.e. ``gt_yx[y, x] = (y, x - d[y, x])``; pixels whose
    disparity is NaN/inf (unknown) or whose target leaves the right view are invalid. 496 x 736 after the
    crop to a multiple of 8.
    """
    from skimage import data

    left, right, disparity = data.stereo_motorcycle()
    left, right = _crop_to_multiple(_rgb_uint8(left)), _crop_to_multiple(_rgb_uint8(right))
    disparity = _crop_to_multiple(np.asarray(disparity, dtype=np.float64))
    height, width = disparity.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    known = np.isfinite(disparity)
    target_x = np.where(known, cols - np.where(known, disparity, 0.0), np.nan)
    gt_yx = np.stack([np.where(known, rows, np.nan), target_x], axis=-1)
    valid = known & (target_x >= 0) & (target_x <= width - 1)
    gt_yx[~valid] = np.nan
    _read_only(left, right, gt_yx, valid)
    return (CorrespondencePair("motorcycle", left, right, gt_yx, valid),)


def bilinear_sample(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample float (H, W, C) at float positions; returns (values (..., C), inside mask). Outside -> 0."""
    height, width = image.shape[:2]
    inside = (ys >= 0) & (ys <= height - 1) & (xs >= 0) & (xs <= width - 1)
    ys_c, xs_c = np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)
    y0 = np.minimum(np.floor(ys_c).astype(np.int64), height - 2)
    x0 = np.minimum(np.floor(xs_c).astype(np.int64), width - 2)
    wy, wx = (ys_c - y0)[..., None], (xs_c - x0)[..., None]
    top = image[y0, x0] * (1 - wx) + image[y0, x0 + 1] * wx
    bottom = image[y0 + 1, x0] * (1 - wx) + image[y0 + 1, x0 + 1] * wx
    values = top * (1 - wy) + bottom * wy
    return np.where(inside[..., None], values, 0.0), inside


def _apply_homography(matrix: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    denominator = matrix[2, 0] * xs + matrix[2, 1] * ys + matrix[2, 2]
    out_x = (matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]) / denominator
    out_y = (matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]) / denominator
    return out_y, out_x


def homography_pair(name: str, image: np.ndarray, spec: HomographySpec) -> CorrespondencePair:
    """Warp ``image`` (uint8 (H, W, 3) RGB) by ``spec``: ref(q) = image(H^-1 q), bilinear, 0 outside.

    ``gt_yx[p] = H(p)``, valid where it lies inside the reference (same size as the image).
    """
    image = _crop_to_multiple(_rgb_uint8(image))
    height, width = image.shape[:2]
    matrix = spec.matrix(height, width)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    src_y, src_x = _apply_homography(np.linalg.inv(matrix), rows, cols)
    warped, _ = bilinear_sample(image.astype(np.float64), src_y, src_x)
    ref = np.clip(np.round(warped), 0, 255).astype(np.uint8)
    gt_y, gt_x = _apply_homography(matrix, rows, cols)
    valid = (gt_y >= 0) & (gt_y <= height - 1) & (gt_x >= 0) & (gt_x <= width - 1)
    gt_yx = np.stack([gt_y, gt_x], axis=-1)
    gt_yx[~valid] = np.nan
    image = np.ascontiguousarray(image)
    _read_only(image, ref, gt_yx, valid)
    return CorrespondencePair(name, image, ref, gt_yx, valid)


@functools.cache
def demo_homography_pairs() -> tuple[CorrespondencePair, ...]:
    """astronaut, coffee, chelsea, rocket, each with its fixed ``DEMO_HOMOGRAPHIES`` warp as reference."""
    from skimage import data

    return tuple(homography_pair(spec.image, getattr(data, spec.image)(), spec) for spec in DEMO_HOMOGRAPHIES)
