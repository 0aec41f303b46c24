"""Dataset layouts: discovery and validation before any work is done.

Roots come from ``--data`` or ``REFSR_DATA`` (one folder holding each dataset under its usual name).
A loader returns ``DatasetItem``s (paths, or arrays for the embedded sets); it never degrades images --
that is ``protocols.pipeline``'s job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from protocols.core import UserError

ImageSource = Path | np.ndarray
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class DatasetItem:
    """One HR image and the references the dataset provides for it, keyed by level/name."""

    name: str
    hr: ImageSource
    refs: tuple[tuple[str, ImageSource], ...] = ()
    candidates: tuple[ImageSource, ...] = ()  # Sun80 scene matches to draw a reference from


@dataclass(frozen=True)
class DatasetDef:
    name: str
    folders: tuple[str, ...]  # accepted folder names under the data root
    layout: str  # human description used in error messages
    discover: Callable[[Path], list[DatasetItem]] = field(repr=False)
    has_references: bool = False
    embedded: bool = False


def _images_in(folder: Path) -> list[Path]:
    """Image files of ``folder`` sorted by name; two files with one stem (``a.png``, ``a.jpg``) are an error."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    by_stem: dict[str, list[str]] = {}
    for path in images:
        by_stem.setdefault(path.stem, []).append(path.name)
    clashes = [names for names in by_stem.values() if len(names) > 1]
    if clashes:
        listing = "; ".join(" and ".join(names) for names in clashes[:5])
        raise UserError(f"{folder}: two files share an image name ({listing}); keep one of each")
    return images


def _flat_hr(root: Path) -> list[DatasetItem]:
    images = _images_in(root)
    if not images:
        raise UserError(f"no images in {root}")
    return [DatasetItem(p.stem, p) for p in images]


def _manga109(root: Path) -> list[DatasetItem]:
    """Each page may take another Manga109 image as reference (C²-Matching issue #14): all others are candidates."""
    items = _flat_hr(root)
    paths = [item.hr for item in items]
    return [DatasetItem(item.name, item.hr, candidates=tuple(p for p in paths if p is not item.hr)) for item in items]


def _wrsr(root: Path) -> list[DatasetItem]:
    pairs_file = root / "WR-SR_pairs.txt"
    if not pairs_file.is_file():
        raise UserError(f"missing {pairs_file}")
    items = []
    missing = []
    for line in pairs_file.read_text().splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise UserError(f"{pairs_file}: bad line {line!r} (expected 'NNN.png NNN_ref.png')")
        hr, ref = root / "input" / parts[0], root / "ref" / parts[1]
        missing += [str(p) for p in (hr, ref) if not p.is_file()]
        items.append(DatasetItem(Path(parts[0]).stem, hr, (("pair", ref),)))
    if missing:
        raise UserError(f"WR-SR files listed in {pairs_file.name} are missing: {', '.join(missing[:5])}")
    return items


def _flickr1024(root: Path) -> list[DatasetItem]:
    folder = root / "Test" if (root / "Test").is_dir() else root
    lefts = sorted(folder.glob("[0-9][0-9][0-9][0-9]_L.png"))
    if not lefts:
        raise UserError(f"no NNNN_L.png files in {folder}")
    items = []
    for left in lefts:
        right = left.with_name(left.name.replace("_L.png", "_R.png"))
        if not right.is_file():
            raise UserError(f"missing reference file {right} for {left.name}")
        items.append(DatasetItem(left.stem[:-2], left, (("pair", right),)))
    return items


_CUFED5_NAME = re.compile(r"^(\d{3})_([0-5])\.png$")


def _cufed5(root: Path) -> list[DatasetItem]:
    groups: dict[str, dict[int, Path]] = {}
    strays = []
    for path in sorted(root.iterdir()):
        match = _CUFED5_NAME.match(path.name)
        if match is None:
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                strays.append(path.name)
            continue
        groups.setdefault(match.group(1), {})[int(match.group(2))] = path
    if strays:
        raise UserError(f"CUFED5: unexpected file names {strays[:5]} in {root} (expected NNN_0.png ... NNN_5.png)")
    if not groups:
        raise UserError(f"CUFED5: no NNN_k.png files in {root}")
    broken = {g: sorted(set(range(6)) - set(files)) for g, files in groups.items() if set(files) != set(range(6))}
    if broken:
        listing = "; ".join(
            f"{g}: missing {', '.join(f'{g}_{k}.png' for k in ks)}" for g, ks in list(broken.items())[:5]
        )
        raise UserError(f"CUFED5: incomplete groups ({len(broken)}): {listing}")
    return [
        DatasetItem(group, files[0], tuple((str(k), files[k]) for k in range(1, 6)))
        for group, files in sorted(groups.items())
    ]


def _sun80(root: Path) -> list[DatasetItem]:
    hr_folder = root / "Sun_Hays_SR_groundtruth"
    matches = root / "Sun_Hays_SR_scenematches"
    if not hr_folder.is_dir():
        hr_folder = root  # HR-only copy (flat folder of the 80 images): usable with --ref-policy self_lr
    items = []
    for path in _images_in(hr_folder):
        folder = matches / path.name
        candidates = tuple(_images_in(folder)) if folder.is_dir() else ()
        items.append(DatasetItem(path.stem, path, candidates=candidates))
    if not items:
        raise UserError(f"Sun80: no images in {hr_folder}")
    return items


def _embedded(kind: str) -> Callable[[Path], list[DatasetItem]]:
    def discover(_: Path) -> list[DatasetItem]:
        from protocols import embedded

        pairs = embedded.demo_stereo_pairs() if kind == "stereo" else embedded.demo_homography_pairs()
        return [DatasetItem(p.name, p.image, (("pair", p.ref),)) for p in pairs]

    return discover


DATASETS: dict[str, DatasetDef] = {
    d.name: d
    for d in (
        DatasetDef("set5", ("Set5",), "Set5/<name>.png (5 HR images)", _flat_hr),
        DatasetDef("set14", ("Set14",), "Set14/<name>.png (14 HR images)", _flat_hr),
        DatasetDef("b100", ("B100", "BSD100", "BSDS100"), "B100/<name>.png (100 HR images)", _flat_hr),
        DatasetDef("urban100", ("Urban100",), "Urban100/img_NNN.png", _flat_hr),
        DatasetDef("manga109", ("Manga109",), "Manga109/<Title>.png (109 images)", _manga109),
        DatasetDef(
            "wrsr", ("WR-SR",), "WR-SR/input/NNN.png, WR-SR/ref/NNN_ref.png, WR-SR/WR-SR_pairs.txt", _wrsr, True
        ),
        DatasetDef(
            "sun80",
            ("Sun80", "Sun_Hays80"),
            "Sun80/Sun_Hays_SR_groundtruth/<name>.jpg and Sun80/Sun_Hays_SR_scenematches/<name>.jpg/*.jpg",
            _sun80,
            True,
        ),
        DatasetDef(
            "flickr1024",
            ("Flickr1024",),
            "Flickr1024/Test/NNNN_L.png (input) and NNNN_R.png (reference)",
            _flickr1024,
            True,
        ),
        DatasetDef(
            "cufed5",
            ("CUFED5",),
            "CUFED5/NNN_0.png (HR) and NNN_1.png ... NNN_5.png (references XH..XL)",
            _cufed5,
            True,
        ),
        DatasetDef(
            "demo_stereo", (), "embedded: scikit-image Middlebury motorcycle pair", _embedded("stereo"), True, True
        ),
        DatasetDef(
            "demo_homography",
            (),
            "embedded: scikit-image photos + homography-warped references",
            _embedded("homography"),
            True,
            True,
        ),
    )
}


def data_root(explicit: str | Path | None) -> Path | None:
    value = explicit or os.environ.get("REFSR_DATA")
    return Path(value) if value else None


def get_dataset(name: str) -> DatasetDef:
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def locate(dataset: DatasetDef, root: Path | None) -> Path:
    """The dataset folder under ``root``; a UserError naming the expected layout when absent."""
    if dataset.embedded:
        return Path(".")
    if root is None:
        raise UserError(
            f"dataset {dataset.name!r} needs a data root: pass --data ROOT or set REFSR_DATA. "
            f"Expected layout under ROOT: {dataset.layout}"
        )
    for folder in dataset.folders:
        if (root / folder).is_dir():
            return root / folder
    raise UserError(
        f"dataset {dataset.name!r} not found under {root}: expected one of "
        f"{', '.join(str(root / f) for f in dataset.folders)} with layout {dataset.layout}"
    )


def load_items(name: str, root: str | Path | None) -> list[DatasetItem]:
    dataset = get_dataset(name)
    return dataset.discover(locate(dataset, data_root(root)))
