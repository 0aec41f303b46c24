"""Each paper preset pinned on real images: bicubic under the preset vs an independent computation of the
preset's documented definition (protocols.md §3-4) written here with Pillow, numpy and scikit-image only.

The definitions below are transcribed from the documentation, not read from ``ProtocolSpec``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from methods.registry import create
from protocols.datasets import load_items
from protocols.pipeline import make_sample, resolve_policy, score
from protocols.spec import get_preset

Y255 = (65.481 / 255, 128.553 / 255, 24.966 / 255)
Y256 = (65.738 / 256, 129.057 / 256, 25.064 / 256)


@dataclasses.dataclass(frozen=True)
class Documented:
    scale: int = 4
    size: str = "modcrop"  # modcrop | pad_center:<m> | zero_pad | resize4
    luma: tuple[float, float, float] = Y255
    offset: float = 16.0
    swap_rb: bool = False
    colour: str = "y"  # y | rgb | both
    crop: int = 0


DOCUMENTED = {
    "refsr": Documented(crop=4),
    "ttsr2020": Documented(luma=Y256),
    "masa2021": Documented(size="pad_center:32"),
    "masa2021_prefix": Documented(size="pad_center:32", swap_rb=True),
    "c2matching2021": Documented(size="zero_pad", crop=4),
    "ssen2020": Documented(),
    "e2ent2_2020": Documented(colour="both"),
    "srntt2019": Documented(),
    "srntt_port": Documented(size="resize4", luma=(0.299, 0.587, 0.114), offset=0.0),
    "ccnet2017": Documented(scale=8, colour="rgb_psnr"),
    "mmagic_ttsr": Documented(colour="rgb", crop=4),
}
MASA_64 = {"urban100"}  # masa2021 pads Sun80/Urban100/Manga109 HR to x64


def _pil(array: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BICUBIC))


def independent_scores(hr_path: Path, ref_path: Path | None, doc: Documented, dataset: str) -> dict[str, float]:
    hr = np.asarray(Image.open(hr_path).convert("RGB"))
    s = doc.scale
    crop_back = None
    if doc.size == "modcrop":
        hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
        degraded = hr
    elif doc.size == "resize4":
        hr = _pil(hr, hr.shape[1] // 4 * 4, hr.shape[0] // 4 * 4)
        degraded = hr
    elif doc.size.startswith("pad_center"):
        m = 64 if dataset in MASA_64 else int(doc.size.split(":")[1])
        dh, dw = -hr.shape[0] % m, -hr.shape[1] % m
        top, left = dh // 2, dw // 2
        degraded = np.pad(hr, ((top, dh - top), (left, dw - left), (0, 0)), mode="edge")
        crop_back = (top, left)
    else:  # zero_pad: mod-crop HR and Ref, pad both (bottom/right) to the larger size
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        degraded = hr
        if ref_path is not None:
            ref = np.asarray(Image.open(ref_path).convert("RGB"))
            ref = ref[: ref.shape[0] // 4 * 4, : ref.shape[1] // 4 * 4]
            h, w = max(hr.shape[0], ref.shape[0]), max(hr.shape[1], ref.shape[1])
            degraded = np.zeros((h, w, 3), np.uint8)
            degraded[: hr.shape[0], : hr.shape[1]] = hr
    lr = _pil(degraded, degraded.shape[1] // s, degraded.shape[0] // s)
    sr = _pil(lr, degraded.shape[1], degraded.shape[0])
    if crop_back is not None:
        sr = sr[crop_back[0] : crop_back[0] + hr.shape[0], crop_back[1] : crop_back[1] + hr.shape[1]]
    sr = sr[: hr.shape[0], : hr.shape[1]].astype(np.float64)
    hr = hr.astype(np.float64)
    c = doc.crop
    if c:
        sr, hr = sr[c:-c, c:-c], hr[c:-c, c:-c]

    def luma(image: np.ndarray) -> np.ndarray:
        r, g, b = (
            (image[..., 2], image[..., 1], image[..., 0])
            if doc.swap_rb
            else (image[..., 0], image[..., 1], image[..., 2])
        )
        return doc.offset + doc.luma[0] * r + doc.luma[1] * g + doc.luma[2] * b

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))

    def ssim(a: np.ndarray, b: np.ndarray) -> float:
        axis = -1 if a.ndim == 3 else None
        return float(
            structural_similarity(
                a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=axis
            )
        )

    values = {}
    if doc.colour in ("y", "both"):
        values["psnr_y"], values["ssim_y"] = psnr(luma(sr), luma(hr)), ssim(luma(sr), luma(hr))
    if doc.colour in ("rgb", "both"):
        values["psnr_rgb"], values["ssim_rgb"] = psnr(sr, hr), ssim(sr, hr)
    if doc.colour == "rgb_psnr":
        values["psnr_rgb"] = psnr(sr, hr)
    return values


def _subset(shared: Path, dataset: str) -> list:
    items = load_items(dataset, shared / "data")
    return items if dataset == "set5" else items[:3]  # subsets keep the default test run short


@pytest.mark.parametrize("preset", sorted(DOCUMENTED))
@pytest.mark.parametrize("dataset", ["set5", "set14", "urban100", "wrsr"])
def test_preset_matches_its_documented_definition(shared: Path, preset: str, dataset: str) -> None:
    spec, doc = get_preset(preset), DOCUMENTED[preset]
    method = create("bicubic", scale=spec.scale)
    for item in _subset(shared, dataset):
        policy = resolve_policy(spec.reference_policy_for(dataset), dataset == "wrsr")
        sample = make_sample(item, spec, dataset, policy)
        ours = score(method.predict(sample.lr), sample, spec)
        ref_path = dict(item.refs).get("pair") if dataset == "wrsr" else None
        expected = independent_scores(item.hr, ref_path, doc, dataset)
        assert set(ours) == set(expected), (preset, set(ours), set(expected))
        for metric, value in expected.items():
            assert ours[metric] == pytest.approx(value, abs=1e-9), (preset, dataset, item.name, metric)


def test_known_magnitudes(shared: Path) -> None:
    """RGB vs Y differs by more than 1 dB on natural images; the R/B-swapped luma differs from the correct one."""
    items = load_items("set5", shared / "data") + load_items("urban100", shared / "data")[:3]
    gaps, swaps = [], []
    method = create("bicubic")
    for item in items:
        both = score(
            method.predict(make_sample(item, get_preset("e2ent2_2020"), "set5", "self_lr").lr),
            make_sample(item, get_preset("e2ent2_2020"), "set5", "self_lr"),
            get_preset("e2ent2_2020"),
        )
        gaps.append(both["psnr_y"] - both["psnr_rgb"])
        sample = make_sample(item, get_preset("masa2021"), "set5", "self_lr")
        sr = method.predict(sample.lr)
        swaps.append(
            score(sr, sample, get_preset("masa2021_prefix"))["psnr_y"]
            - score(sr, sample, get_preset("masa2021"))["psnr_y"]
        )
    assert np.mean(gaps) > 1.0 and min(gaps) > 0.5
    assert all(abs(d) > 1e-3 for d in swaps)
