"""A stubbed ``gdown`` for the fetch tests: Drive files and folder listings served from memory, no network."""

from __future__ import annotations

import collections
import sys
import types
from pathlib import Path

import pytest

Listed = collections.namedtuple("Listed", ("id", "path", "local_path"))  # gdown's GoogleDriveFileToDownload


def stub_gdown(monkeypatch: pytest.MonkeyPatch, files: dict[str, tuple[str, bytes]], calls: list[str],
                folder_error: Exception | None = None) -> None:
    """``files``: Drive id -> (path in the folder, body). ``download`` writes the body of ``?id=``."""

    def download(url: str, output: str, quiet: bool = False) -> str:
        calls.append(url)
        Path(output).write_bytes(files[url.rsplit("id=", 1)[1]][1])
        return output

    def download_folder(url: str, skip_download: bool = False, quiet: bool = False) -> list[Listed]:
        assert skip_download, "the folder must only be listed, never downloaded whole"
        calls.append(f"list {url}")
        if folder_error is not None:
            raise folder_error
        return [Listed(file_id, path, f"/nowhere/{path}") for file_id, (path, _) in files.items()]

    stub = types.SimpleNamespace(download=download, download_folder=download_folder)
    monkeypatch.setitem(sys.modules, "gdown", stub)
