"""Dataset cards (one registry, ``DATASETS``) and layouts: discovery and validation before any work is done.

Roots come from ``--data`` or ``REFSR_DATA`` (one folder holding each dataset under its usual name).
A loader returns ``DatasetItem``s (paths, or arrays for the embedded sets); it never degrades images --
that is ``protocols.pipeline``'s job.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocols.errors import UserError
from protocols.registry import CardRegistry

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
class JobStep:
    """One step of ``refsr-bench dataset-job DATASET`` (what ``tox -e DATASET`` runs).

    ``kind`` ``quality`` runs ``refsr-bench run`` with ``preset`` (``levels`` as ``--level``; ``methods`` empty =
    every SR method whose weights are installed); ``matching`` runs ``refsr-bench match`` with every matcher.
    """

    preset: str
    levels: str | None = None  # CUFED5: "all" = five separate levels, or a stitching recipe
    methods: tuple[str, ...] = ()
    kind: str = "quality"  # "quality" or "matching"


# A loader: a callable or "module:function", imported only when the dataset is loaded (keeps this module light).
Loader = Callable[..., Any] | str


@dataclass(frozen=True)
class DatasetCard:
    """Everything the suite knows about one dataset, as data. Every consumer (``run``, ``match``, ``list``,
    ``dataset-job``, the report tables, the paper-value checks) reads these cards; a plugin file adds one with
    ``register_dataset(card)``.

    - ``loader(folder) -> list[DatasetItem]``: quality items (HR + references) from the located folder; None
      when the dataset cannot be used by ``run``.
    - ``matching_loader(data_root, options, frames) -> protocols.matching.MatchingDataset``: items with
      ground-truth correspondence for ``match``; None when there is none. ``kind`` follows from it.
    - ``folders``: names accepted under the data root; ``layout``: the expected layout, quoted in errors.
    - ``column_label``: the dataset's column header in report and paper tables ('' = ``name``).
    - ``level_names``: printed names of the reference levels (CUFED5: level:1 = XH ... level:5 = XL).
    - ``matching_passes``: render passes the matching loader accepts (``match --pass``; each becomes a level).
    - ``job``: the steps of ``refsr-bench dataset-job``.
    """

    name: str
    display_name: str
    folders: tuple[str, ...]  # accepted folder names under the data root
    layout: str  # human description used in error messages
    loader: Loader | None = field(default=None, repr=False)
    matching_loader: Loader | None = field(default=None, repr=False)
    has_references: bool = False
    embedded: bool = False
    job: tuple[JobStep, ...] = ()
    column_label: str = ""
    level_names: tuple[tuple[str, str], ...] = ()
    matching_passes: tuple[str, ...] = ()
    image_count: int = 0  # images of the canonical (published) set; 0 = no canonical count. Reports mark fewer.

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise UserError(f"dataset card name {self.name!r}: use lower-case letters, digits and _")
        if self.loader is None and self.matching_loader is None:
            raise UserError(f"dataset card {self.name!r} needs a loader or a matching_loader")
        for step in self.job:
            if step.kind not in ("quality", "matching"):
                raise UserError(f"dataset card {self.name!r}: job step kind {step.kind!r} is not quality/matching")
            missing = self.loader is None if step.kind == "quality" else self.matching_loader is None
            if missing:
                raise UserError(f"dataset card {self.name!r}: a {step.kind} job step needs a {step.kind} loader")

    @property
    def kind(self) -> str:
        """``matching``: ground-truth correspondence (``refsr-bench match``); ``quality``: SR quality only."""
        return "matching" if self.matching_loader is not None else "quality"

    @property
    def label(self) -> str:
        return self.column_label or self.name

    def discover(self, folder: Path) -> list[DatasetItem]:
        """Quality items from the located dataset folder (``locate``)."""
        if self.loader is None:
            raise UserError(
                f"dataset {self.name!r} has no SR-quality loader (it is for matching accuracy only); "
                f"use `refsr-bench match -d {self.name}`"
            )
        items: list[DatasetItem] = resolve_loader(self.loader)(folder)
        check_item_names(items, folder)
        return items


RESERVED_IMAGE_NAMES = ("ALL", "MEAN")  # aggregate rows of records (pooled, mean over frames) and golden files


def _unsafe_name(name: str) -> str | None:
    """Why an image name cannot be written to records.csv / inputs.csv and read back as the same name."""
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in name):
        return "is not valid UTF-8"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "holds a control character (newline, tab, ...)"
    if name in RESERVED_IMAGE_NAMES:
        return f"is reserved for aggregate rows ({' and '.join(RESERVED_IMAGE_NAMES)})"
    return None


def check_item_names(items: list[DatasetItem], folder: Path) -> None:
    """Refuse image names that cannot round-trip through the records (shown with ``ascii()``, which is safe to
    print for any name); commas and quotes are fine (CSV quoting)."""
    bad = [(item.name, why) for item in items if (why := _unsafe_name(item.name)) is not None]
    if bad:
        listing = "; ".join(f"{ascii(name)} {why}" for name, why in bad[:5])
        raise UserError(f"{ascii(str(folder))}: image name(s) that records cannot hold: {listing}"
                        f"{f' (and {len(bad) - 5} more)' if len(bad) > 5 else ''}; rename them")


def resolve_loader(loader: Loader) -> Callable[..., Any]:
    """A loader callable from a callable or a ``module:function`` path."""
    if callable(loader):
        return loader
    module_name, _, attribute = loader.partition(":")
    return getattr(importlib.import_module(module_name), attribute)  # type: ignore[no-any-return]


def _entry_problem(path: Path) -> str | None:
    """Why a folder entry with an image suffix cannot be read as an image (None: a readable regular file)."""
    if path.is_symlink() and not path.exists():
        return "dangling symlink"
    if not path.exists():
        return "vanished"
    if not path.is_file():
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable"
    return None


def _images_in(folder: Path) -> list[Path]:
    """Image files of ``folder`` sorted by name; two files with one stem (``a.png``, ``a.jpg``) are an error, and so
    is an entry with an image suffix that is no readable regular file (dangling symlink, folder, FIFO ...)."""
    entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    broken = [(p, why) for p in entries if (why := _entry_problem(p)) is not None]
    if broken:
        listing = "; ".join(f"{ascii(p.name)} ({why})" for p, why in broken[:5])
        raise UserError(f"{ascii(str(folder))}: entries that are not readable image files: {listing}; "
                        "fix or remove them (every entry of a dataset folder is accounted for)")
    images = entries
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


_REFSR = JobStep("refsr")
_SISR = JobStep("sisr_std", methods=("bicubic_matlab", "carn_m"))
_CCNET_MATCHING = JobStep("ccnet2017", kind="matching")
# CC-Net Table 3 (×8): its rows the suite has; each runs only when its weights are installed
_CCNET_QUALITY = JobStep("ccnet2017", methods=("bicubic", "refsr_net"))
_SINTEL_LAYOUT = (
    "MPI-Sintel/{testing,training}/clean/<scene>/frame_NNNN.png; SR quality: frame t = input, frame t+1 = reference "
    "(testing/ when present: CC-Net Table 3's 552 pairs); matching also needs training/flow/<scene>/frame_NNNN.flo "
    "(optional training/occlusions/, training/invalid/)"
)

BUILTIN_DATASETS: tuple[DatasetCard, ...] = (
    DatasetCard("set5", "Set5", ("Set5",), "Set5/<name>.png (5 HR images)", _flat_hr, column_label="Set5",
                image_count=5),
    DatasetCard("set14", "Set14", ("Set14",), "Set14/<name>.png (14 HR images)", _flat_hr,
                column_label="Set14", image_count=14),
    DatasetCard("b100", "B100 (BSD100)", ("B100", "BSD100", "BSDS100"), "B100/<name>.png (100 HR images)", _flat_hr,
                column_label="B100", image_count=100),
    DatasetCard("urban100", "Urban100", ("Urban100",), "Urban100/img_NNN.png", _flat_hr, column_label="Urban100",
                job=(_REFSR, _SISR), image_count=100),
    DatasetCard("manga109", "Manga109", ("Manga109",), "Manga109/<Title>.png (109 images)", _manga109,
                column_label="Manga109", job=(_REFSR, _SISR), image_count=109),
    DatasetCard("wrsr", "WR-SR", ("WR-SR",), "WR-SR/input/NNN.png, WR-SR/ref/NNN_ref.png, WR-SR/WR-SR_pairs.txt",
                _wrsr, has_references=True, column_label="WR-SR", job=(_REFSR, JobStep("c2matching2021")),
                image_count=80),
    DatasetCard(
        "sun80", "Sun80 (Sun & Hays)", ("Sun80", "Sun_Hays80"),
        "Sun80/Sun_Hays_SR_groundtruth/<name>.jpg and Sun80/Sun_Hays_SR_scenematches/<name>.jpg/*.jpg",
        _sun80, has_references=True, column_label="Sun80", job=(_REFSR,), image_count=80,
    ),
    DatasetCard(
        "flickr1024", "Flickr1024 (stereo)", ("Flickr1024",),
        "Flickr1024/Test/NNNN_L.png (input) and NNNN_R.png (reference)", _flickr1024, has_references=True,
        column_label="Flickr1024", job=(_REFSR, JobStep("e2ent2_2020")), image_count=112,
    ),
    DatasetCard(
        "cufed5", "CUFED5", ("CUFED5",), "CUFED5/NNN_0.png (HR) and NNN_1.png ... NNN_5.png (references XH..XL)",
        _cufed5, has_references=True, column_label="CUFED5",
        level_names=(("level:1", "XH"), ("level:2", "H"), ("level:3", "M"), ("level:4", "L"), ("level:5", "XL")),
        job=(JobStep("refsr", levels="all"), JobStep("refsr", levels="stitch5_masa")), image_count=126,
    ),
    DatasetCard(
        "sintel", "MPI Sintel", ("MPI-Sintel", "MPI-Sintel_subset"), _SINTEL_LAYOUT,
        "protocols.matching_data:sintel_quality_items", "protocols.matching_data:sintel_matching",
        has_references=True, column_label="Sintel", matching_passes=("clean", "final"),
        job=(_CCNET_MATCHING, _CCNET_QUALITY),
    ),
    DatasetCard(
        "lf_hci", "HCI 4D light field", ("LF_HCI4D",),
        "LF_HCI4D/<group>/<scene>/input_Cam000.png ... input_Cam080.png (9x9 views) + gt_disp_lowres.pfm",
        matching_loader="protocols.matching_data:lf_hci_matching", job=(_CCNET_MATCHING,),
    ),
    DatasetCard(
        "lf_video", "Light-field video (CrossNet HDF5)", ("LF_video", "LF-video"),
        "LF_video/*.h5 with /img_HR uint8 (N, 8, 8, 3, H, W); input view (3, 3), reference view (0, 0)",
        "protocols.matching_data:lf_video_quality_items", has_references=True, column_label="LF video",
        job=(_CCNET_QUALITY,),
    ),
    DatasetCard(
        "demo_stereo", "Demo stereo pair", (), "embedded: scikit-image Middlebury motorcycle pair",
        _embedded("stereo"), "protocols.matching_data:demo_stereo_matching", has_references=True, embedded=True,
    ),
    DatasetCard(
        "demo_homography", "Demo homography pairs", (), "embedded: scikit-image photos + homography-warped references",
        _embedded("homography"), "protocols.matching_data:demo_homography_matching", has_references=True,
        embedded=True,
    ),
)
# The registry every consumer reads: built-in cards, then plugins (``register_dataset``).
DATASETS: CardRegistry[DatasetCard] = CardRegistry("dataset", BUILTIN_DATASETS)


def register_dataset(card: DatasetCard) -> None:
    """Add a plugin's dataset card (``refsr-bench --plugin FILE``); it must not shadow a built-in dataset."""
    DATASETS.register(card)


def matching_datasets() -> list[str]:
    """Names of the datasets with ground-truth correspondence (``refsr-bench match -d``)."""
    return [name for name, card in DATASETS.items() if card.kind == "matching"]


class DatasetLabels(Mapping[str, str]):
    """Live read-only view dataset name -> column label over the registry (plugins included)."""

    def __getitem__(self, name: str) -> str:
        return DATASETS[name].label

    def __iter__(self) -> Iterator[str]:
        return iter(DATASETS)

    def __len__(self) -> int:
        return len(DATASETS)


def data_root(explicit: str | Path | None) -> Path | None:
    value = explicit or os.environ.get("REFSR_DATA")
    return Path(value) if value else None


def get_dataset(name: str) -> DatasetCard:
    """The dataset card called ``name``; an unknown name is a UserError listing the valid ones."""
    return DATASETS.lookup(name)


def locate(dataset: DatasetCard, root: Path | None) -> Path:
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
