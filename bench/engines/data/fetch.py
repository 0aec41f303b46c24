"""``data fetch``: download (or take a hand-downloaded archive or folder), extract safely, validate the layout with
the dataset card, write the manifest, and only then move the dataset into ``REFSR_DATA`` with one rename.

Everything happens in a hidden staging folder inside the data root (``methods.download.staging``, the helper
``weights fetch`` uses too), so a failure or Ctrl-C at any step leaves neither a partial dataset nor staging debris
in ``REFSR_DATA``; a data root this command created is removed again when the fetch fails.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.engines.data.archives import ArchiveLimits, archive_kind, safe_extract, safe_member_name
from bench.engines.data.manifest import MANIFEST_NAME, Verification, data_match, verify_folder, write_manifest
from methods.download import (
    download_gdrive,
    download_https,
    list_gdrive_folder,
    reject_html,
    sha256_of,
    staging,
)
from protocols.datasets import DatasetCard, get_dataset, resolve_loader
from protocols.errors import UserError
from protocols.matching import MatchingOptions
from protocols.sources import SOURCES, DataSource, SourceLink, get_source


@dataclass(frozen=True)
class Installed:
    folder: Path
    items: int
    files: int


def require_root(root: Path | None) -> Path:
    if root is None:
        raise UserError("no data root: pass --data ROOT or set REFSR_DATA (the folder that holds every dataset)")
    return root


def installed_folder(card: DatasetCard, root: Path) -> Path | None:
    """The dataset's folder under ``root`` when one of its accepted names exists, else None."""
    return next((root / name for name in card.folders if (root / name).is_dir()), None)


def validate_layout(card: DatasetCard, root: Path) -> int:
    """Load ``root / card.folders[0]`` with the dataset card's loader (its layout checks); returns the item count."""
    try:
        if card.loader is not None:
            return len(card.discover(root / card.folders[0]))
        assert card.matching_loader is not None
        return len(resolve_loader(card.matching_loader)(root, MatchingOptions(), None).entries)
    except UserError as error:
        raise UserError(f"{card.name}: the copy does not have the expected layout ({error}); expected "
                        f"{card.layout}; nothing was installed") from error


def _hand_install(card: DatasetCard, source: DataSource, root: Path) -> str:
    return (f"{card.name}: no official download link is known ({source.origin}). Download {source.hand_install} "
            f"by hand and install it with `refsr-bench data fetch {card.name} --from ARCHIVE_OR_FOLDER --data {root}` "
            f"(expected layout: {card.layout})")


def _download_link(dataset: str, link: SourceLink, into: Path, archives: dict[str, str]) -> list[Path]:
    """Download one link into ``into``; every file is checked (not HTML, pinned sha256) and its hash recorded."""
    if link.kind == "gdrive_folder":
        entries = list_gdrive_folder(link.url)
        files = []
        for entry in entries:
            part = into.joinpath(*safe_member_name(entry.path, Path(link.url)).split("/"))
            part.parent.mkdir(parents=True, exist_ok=True)
            print(f"downloading {entry.path} from {link.page}")
            download_gdrive(entry.url, part)
            reject_html(part, entry.url, "a data file")
            archives[entry.path] = sha256_of(part)
            files.append(part)
        return files
    part = into / "archive"
    print(f"downloading {link.page}")
    if link.kind == "gdrive_file":
        download_gdrive(link.url, part)
    else:
        download_https(link.url, part, f"install it with `refsr-bench data fetch {dataset} --from FILE`")
    reject_html(part, link.url, "the archive")
    got = sha256_of(part)
    if link.sha256 is not None and got != link.sha256:
        raise UserError(f"sha256 mismatch for {link.url}: expected {link.sha256}, got {got}; nothing was installed")
    if archive_kind(part) is None:
        raise UserError(f"{link.url} did not return a zip or tar archive (a damaged download?); nothing was installed")
    print(f"sha256 {got}  {link.page}" + ("" if link.sha256 else " (no pinned hash; recorded in the manifest)"))
    archives[link.page] = got
    return [part]


def _copy_folder(source: Path, target: Path, limits: ArchiveLimits) -> None:
    """Copy a hand-prepared folder (regular files only, under the size and count limits) into ``target``."""
    total, count = 0, 0
    for dirpath, dirnames, filenames in os.walk(source):
        here = Path(dirpath)
        for name in dirnames + filenames:
            if (here / name).is_symlink():
                raise UserError(f"--from {source}: {here / name} is a symbolic link; links are refused")
        for name in filenames:
            path = here / name
            if not path.is_file():
                raise UserError(f"--from {source}: {path} is not a regular file; refused")
            total, count = total + path.stat().st_size, count + 1
            if total > limits.max_bytes or count > limits.max_members:
                raise UserError(f"--from {source}: more than {limits.max_bytes} bytes or {limits.max_members} files")
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)


def _unpack(files: list[Path], base: Path, tree: Path, limits: ArchiveLimits) -> None:
    """Extract archives into ``tree``; other files keep their path relative to ``base``."""
    for path in files:
        if archive_kind(path) is not None:
            safe_extract(path, tree, limits)
        else:
            destination = tree / path.relative_to(base)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)


def _content_root(card: DatasetCard, tree: Path) -> Path:
    """The extracted folder that is the dataset: one named like the card within two levels, else the single
    top-level folder chain (an archive of ``Set5/*.png`` or of the images alone both work)."""
    for depth_glob in ("*", "*/*"):
        named = sorted(p for p in tree.glob(depth_glob) if p.is_dir() and p.name in card.folders)
        if named:
            return named[0]
    folder = tree
    while True:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder


def _install(card: DatasetCard, source: DataSource, tree: Path, ready: Path, root: Path, origin: str,
             archives: dict[str, str]) -> Installed:
    content = _content_root(card, tree)
    ready.mkdir()
    os.rename(content, ready / card.folders[0])
    items = validate_layout(card, ready)
    if source.expected_items is not None and items != source.expected_items:
        raise UserError(f"{card.name}: the copy has {items} items, a complete copy has {source.expected_items} "
                        f"({source.counted}); nothing was installed")
    manifest = write_manifest(ready / card.folders[0], card.name, origin, archives)
    final = root / card.folders[0]
    if installed_folder(card, root) is not None:
        raise UserError(f"{card.name}: {final} appeared while fetching; nothing was installed")
    os.rename(ready / card.folders[0], final)
    files = manifest["files"]
    return Installed(final, items, len(files) if isinstance(files, dict) else 0)


def fetch_dataset(name: str, root: Path, from_path: Path | None = None) -> Installed:
    """Download (or take ``from_path``: an archive or a folder) and install dataset ``name`` under ``root``."""
    card, source = get_dataset(name), get_source(name)
    existing = installed_folder(card, root)
    if existing is not None:
        raise UserError(f"{name} is already installed at {existing}; check it with `refsr-bench data verify {name}` "
                        "or remove it to fetch again")
    if from_path is None and not source.links:
        raise UserError(_hand_install(card, source, root))
    if from_path is not None and not from_path.exists():
        raise UserError(f"--from {from_path}: no such file or folder")
    limits = ArchiveLimits(max_bytes=source.max_bytes)
    created_root = not root.exists()
    try:
        with staging(root, f"fetch-{name}") as stage:
            downloads, tree = stage / "download", stage / "tree"
            downloads.mkdir()
            tree.mkdir()
            archives: dict[str, str] = {}
            if from_path is None:
                files = [f for link in source.links for f in _download_link(name, link, downloads, archives)]
                _unpack(files, downloads, tree, limits)
                origin = ", ".join(link.page for link in source.links)
            elif from_path.is_dir():
                _copy_folder(from_path, tree / from_path.name, limits)
                origin = f"--from {from_path.resolve()}"
            else:
                if archive_kind(from_path) is None:
                    raise UserError(f"--from {from_path}: not a zip or tar archive (nor a folder)")
                archives[from_path.name] = sha256_of(from_path)
                safe_extract(from_path, tree, limits)
                origin = f"--from {from_path.resolve()}"
            return _install(card, source, tree, stage / "ready", root, origin, archives)
    except BaseException:
        if created_root and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        raise


def verify_dataset(name: str, root: Path) -> Verification:
    """Re-hash the installed dataset against its manifest (and the canonical one where known)."""
    card, source = get_dataset(name), get_source(name)
    folder = installed_folder(card, root)
    if folder is None:
        raise UserError(f"{name} is not installed under {root} (expected {root / card.folders[0]}); "
                        f"install it with `refsr-bench data fetch {name}`")
    if not (folder / MANIFEST_NAME).is_file():
        raise UserError(f"{folder} has no {MANIFEST_NAME}: it was not installed by `refsr-bench data fetch`; "
                        f"reinstall it with `refsr-bench data fetch {name} --from {folder}` into another data root")
    return verify_folder(folder, source)


def list_sources(root: Path | None) -> list[dict[str, object]]:
    """One row per source card: links, licence, expected items, archive sha256 and the installed state."""
    rows: list[dict[str, object]] = []
    for name in sorted(SOURCES):
        card, source = get_dataset(name), get_source(name)
        folder = installed_folder(card, root) if root is not None else None
        rows.append({
            "dataset": name,
            "display_name": card.display_name,
            "links": [{"kind": link.kind, "url": link.page, "sha256": link.sha256 or "unknown", "note": link.note}
                      for link in source.links],
            "origin": source.origin,
            "license": source.license,
            "expected_items": source.expected_items,
            "counted": source.counted,
            "installed": str(folder) if folder else None,
            "data": data_match(folder, source) if folder else None,
        })
    return rows

