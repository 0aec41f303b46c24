"""Source cards: where each public test set comes from, as data beside the dataset cards (``protocols.datasets``).

``refsr-bench data list | fetch | verify`` reads these cards. A card names the official link(s) (only links the
official READMEs give, see ``docs/sources.md`` of the shared material; a set whose RefSR papers give no link has
none, and ``data fetch`` then explains how to install a hand-downloaded copy with ``--from``), the licence as far
as the source states one, how many items the dataset's loader must find, and -- where it can be known -- the
sha256 of the archive and a pinned canonical manifest. No hash is ever guessed: unknown is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.errors import UserError

LINK_KINDS = ("https", "gdrive_file", "gdrive_folder")


@dataclass(frozen=True)
class SourceLink:
    """One official download: ``https`` (a direct archive URL), ``gdrive_file`` (a Drive file id, fetched with
    ``gdown``) or ``gdrive_folder`` (a Drive folder id: every file in it is downloaded, archives are extracted).
    ``sha256`` of the archive where known (None: unknown; the fetched archive's hash is printed and recorded)."""

    kind: str
    target: str  # the URL (https) or the Drive id
    sha256: str | None = None
    note: str = ""  # size and provenance as the source states them

    def __post_init__(self) -> None:
        if self.kind not in LINK_KINDS:
            raise ValueError(f"link kind must be one of {LINK_KINDS}; got {self.kind!r}")
        if self.kind == "https" and not self.target.startswith(("https://", "http://")):
            raise ValueError(f"an https link needs a URL; got {self.target!r}")

    @property
    def url(self) -> str:
        """The URL to download from (a Drive file as ``uc?id=``, which ``gdown`` takes; a Drive folder's page)."""
        if self.kind == "gdrive_file":
            return f"https://drive.google.com/uc?id={self.target}"
        if self.kind == "gdrive_folder":
            return f"https://drive.google.com/drive/folders/{self.target}"
        return self.target

    @property
    def page(self) -> str:
        """The URL a person opens in a browser."""
        if self.kind == "gdrive_file":
            return f"https://drive.google.com/file/d/{self.target}/view"
        return self.url


@dataclass(frozen=True)
class DataSource:
    """Where one dataset (``protocols.datasets`` card ``dataset``) comes from.

    - ``links``: official downloads, tried in order; empty = no official link is known here (install by hand).
    - ``expected_items``: how many items the dataset card's loader must find in a complete copy (``counted``
      says what an item is); None = unknown (not checked).
    - ``canonical_manifest``: a pinned manifest (JSON ``{"files": {path: {"sha256": ...}}}``) of the canonical
      copy, a file name under ``protocols/canonical/`` or an absolute path; None where none is known.
    - ``max_bytes``: the largest total uncompressed size an archive of this set may extract to (archive bombs).
    """

    dataset: str
    links: tuple[SourceLink, ...]
    license: str
    expected_items: int | None
    counted: str
    origin: str  # who publishes it / which README the link is from
    hand_install: str = ""  # what to download by hand where there is no link
    canonical_manifest: str | None = None
    max_bytes: int = 20 << 30


_C2_REPO = "yumingj/C2-Matching README (commit 6d60149)"
_NO_LINK = "the RefSR papers cite the original source; no link in the RefSR repos"

BUILTIN_SOURCES: tuple[DataSource, ...] = (
    DataSource(
        "cufed5",
        (SourceLink("gdrive_file", "1Fa1mopExA9YGG1RxrCZZn7QFTYXLx6ph",
                    note="zip of about 233 MB (S-aiueo32/srntt-pytorch download_dataset.py), extracts to CUFED5/"),),
        license="unstated by the source (SRNTT authors); research use",
        expected_items=126, counted="groups NNN_0.png .. NNN_5.png (756 images)",
        origin="SRNTT authors (ZZUTK/SRNTT); the same link in the MASA-SR, TTSR and C2-Matching READMEs",
    ),
    DataSource(
        "wrsr",
        (SourceLink("gdrive_folder", "16UKRu-7jgCYcndOlGYBmo5Pp0_Mq71hP", note="the test set folder"),),
        license="unstated by the source (C2-Matching authors); research use",
        expected_items=80, counted="input/reference pairs listed in WR-SR_pairs.txt",
        origin=f"{_C2_REPO}; dataset page: Drive folder 1Pt7blJA2cK4oQ6yWB9tcHerZ4pwICmxp",
    ),
    DataSource("sun80", (), license="unstated here (Sun & Hays, ICCP 2012)", expected_items=80,
               counted="HR images (Sun_Hays_SR_groundtruth/)", origin=_NO_LINK,
               hand_install="the 80 ground-truth images and their scene matches of Sun & Hays (ICCP 2012)"),
    DataSource("urban100", (), license="unstated here (Huang et al., CVPR 2015)", expected_items=100,
               counted="HR images img_001.png .. img_100.png", origin=_NO_LINK,
               hand_install="the 100 HR images of Urban100 (Huang et al., CVPR 2015)"),
    DataSource("manga109", (), license="Manga109 terms of use (see its owners' site; not redistributable here)",
               expected_items=109, counted="pages named by title", origin=_NO_LINK,
               hand_install="the 109 Manga109 images (one page per title) as used by the SR literature"),
    DataSource("set5", (), license="unstated here (Bevilacqua et al., BMVC 2012)", expected_items=5,
               counted="HR images", origin="no link in the RefSR repos (SISR test set)",
               hand_install="the 5 HR images of Set5"),
    DataSource("set14", (), license="unstated here (Zeyde et al., 2010)", expected_items=14, counted="HR images",
               origin="no link in the RefSR repos (SISR test set)", hand_install="the 14 HR images of Set14"),
    DataSource("b100", (), license="unstated here (BSD300 test split, Martin et al., ICCV 2001)",
               expected_items=100, counted="HR images", origin="no link in the RefSR repos (SISR test set)",
               hand_install="the 100 HR images of B100 (BSD100)"),
    DataSource("flickr1024", (), license="research use (Wang et al., 2019)", expected_items=112,
               counted="test stereo pairs NNNN_L.png / NNNN_R.png in Test/", origin="no link in the RefSR repos",
               hand_install="the Flickr1024 Test/ split (112 pairs)", max_bytes=40 << 30),
    DataSource("sintel", (), license="MPI-IS Sintel, research use", expected_items=None,
               counted="frame pairs (not checked: the count depends on which parts are installed)",
               origin="no link in the RefSR repos (MPI Sintel flow dataset)",
               hand_install="the MPI Sintel flow dataset (training/ with flow/, and testing/)", max_bytes=40 << 30),
    DataSource("lf_hci", (), license="CC BY-NC-SA 4.0 (HCI 4D light field benchmark)", expected_items=None,
               counted="scenes (not checked: the count depends on which groups are installed)",
               origin="no link in the RefSR repos (HCI 4D light field benchmark)",
               hand_install="the HCI 4D light field benchmark scenes (<group>/<scene>/input_CamNNN.png)"),
)
SOURCES: dict[str, DataSource] = {source.dataset: source for source in BUILTIN_SOURCES}


def get_source(name: str) -> DataSource:
    """The source card of dataset ``name``; a UserError naming the datasets that have one."""
    if name not in SOURCES:
        raise UserError(f"no source card for dataset {name!r}; datasets with one: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]
