"""The one download step shared by ``weights fetch`` and ``data fetch``: a private staging folder, an HTTPS
stream with a progress bar, Google Drive files and folder listings through ``gdown``, and the checks every
downloaded file gets (not cut short, not an HTML page, sha256 where one is pinned).

Nothing here decides where a verified file ends up: callers download into ``staging(...)``, verify, and move the
result into place with ``os.replace`` / ``os.rename`` (same file system), so a failure or Ctrl-C at any point
leaves no partial file under an official name and no staging folder behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protocols.errors import UserError

CHUNK_BYTES = 1 << 20
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")


@contextlib.contextmanager
def staging(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh hidden folder inside ``parent`` (so the final move is a rename on one file system), removed on exit
    whatever happens -- success, error or KeyboardInterrupt. Whatever the caller wants to keep it must move out."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str | None, url: str) -> str:
    """The file's sha256; a UserError when ``expected`` is pinned and differs."""
    got = sha256_of(path)
    if expected is not None and got != expected:
        raise UserError(f"sha256 mismatch for {url}: expected {expected}, got {got}; the file was not kept")
    return got


def download_https(url: str, part: Path, offline_hint: str) -> None:
    """Stream ``url`` into ``part`` with a progress bar; a short body or an HTML page is a UserError.
    ``offline_hint`` ends the error when the host cannot be reached (what to do with a hand-downloaded copy)."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "refsr-bench"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(part, "wb") as handle:
            if "text/html" in (response.headers.get("Content-Type") or ""):
                raise UserError(f"{url} returned an HTML page, not the file (a login or confirmation page?)")
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=part.name, leave=False) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except http.client.IncompleteRead as error:
        raise UserError(f"download of {url} was cut short ({error}); run the fetch again") from error
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise UserError(
            f"could not download {url}: {error}. If this machine is offline, download the file elsewhere "
            f"and {offline_hint}"
        ) from error
    if expected is not None and received != expected:
        raise UserError(f"download of {url} was cut short: {received} of {expected} bytes; run the fetch again")


def _gdown() -> object:
    try:
        import gdown
    except ImportError as error:
        raise UserError("Google Drive downloads need gdown: `python3 -m pip install gdown`") from error
    return gdown


def download_gdrive(url: str, part: Path) -> None:
    """Download a Google Drive file through ``gdown`` (which handles the large-file confirmation page)."""
    gdown = _gdown()
    try:
        result = gdown.download(url, output=str(part), quiet=False)  # type: ignore[attr-defined]
    except Exception as error:  # gdown raises its own and requests' exception types
        raise UserError(f"could not download {url} from Google Drive: {error}") from error
    if result is None or not part.is_file():
        raise UserError(f"could not download {url} from Google Drive (gdown returned no file)")


@dataclass(frozen=True)
class DriveEntry:
    """One file of a listed Google Drive folder: its file id and its path inside the folder ('/'-separated)."""

    id: str
    path: str

    @property
    def url(self) -> str:
        return f"https://drive.google.com/uc?id={self.id}"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def list_gdrive_folder(url: str) -> list[DriveEntry]:
    """The files of a Google Drive folder (recursively), listed by ``gdown.download_folder(skip_download=True)``
    without downloading anything; a UserError when the folder cannot be listed."""
    gdown = _gdown()
    try:
        listed = gdown.download_folder(url=url, skip_download=True, quiet=True)  # type: ignore[attr-defined]
    except Exception as error:  # gdown raises its own and requests' exception types
        raise UserError(f"could not list the Google Drive folder {url}: {error}") from error
    if not listed:
        raise UserError(f"could not list the Google Drive folder {url} (gdown returned nothing)")
    entries = []
    for item in listed:
        file_id, path = (item.id, item.path) if hasattr(item, "id") else (item[0], item[1])
        entries.append(DriveEntry(str(file_id), str(path).replace("\\", "/")))
    return entries


def reject_html(part: Path, url: str, what: str = "the file") -> None:
    """A UserError when the downloaded file is empty or an HTML page (a login, quota or confirmation page)."""
    with open(part, "rb") as handle:
        head = handle.read(1024).lstrip().lower()
    if any(head.startswith(marker) for marker in _HTML_MARKERS) or b"<html" in head:
        raise UserError(f"{url} returned an HTML page, not {what} (a login, quota or confirmation page?)")
    if not head:
        raise UserError(f"{url} returned an empty file")
