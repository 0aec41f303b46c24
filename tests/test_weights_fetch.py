"""``refsr-bench weights fetch`` against a local HTTP server (127.0.0.1, no real network) and a stubbed Google
Drive step: every bad download is a clear error (exit 2) with nothing left in the weights folder; a good
file is kept, its sha256 printed and recorded. Also ``--weights`` parsing (FILE vs METHOD=FILE)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from gdown_stub import stub_gdown
from local_http import ROUTES
from torch import nn

from bench.commands.cli import main
from methods import registry
from methods import weights as weights_module
from methods.base import load_state_dict_strict, read_checkpoint
from methods.cards import MethodCard, WeightFile
from methods.weights import RECORDED_HASHES, parse_weights_option
from protocols.core import UserError


class _Tiny:
    """A one-convolution method: its load_weights is strict, like every real method's."""

    def __init__(self, card: MethodCard) -> None:
        self.info = type("Info", (), {"name": card.name, "weights": card.weights})()
        self.module = nn.Conv2d(3, 3, 3)
        self.weights_loaded = False

    def load_weights(self, path: str | Path) -> None:
        load_state_dict_strict(self.module, read_checkpoint(path), "tiny conv")
        self.weights_loaded = True


def _checkpoint(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


GOOD = _checkpoint(nn.Conv2d(3, 3, 3))
WRONG_LAYOUT = _checkpoint(nn.Conv2d(3, 8, 1))
HTML = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>"


def _register(monkeypatch: pytest.MonkeyPatch, url: str, sha256: str | None = None, source: str = "https") -> None:
    card = MethodCard(
        name="tiny", factory="tests:tiny", task="sisr", scales=(4,), inputs=("lr",), title="tiny", venue="-",
        year=0, official_repo=None, license="MIT",
        weights=(WeightFile("tiny.pth", url, sha256, "MIT", source=source),),
    )
    cards = registry._CARDS.copy()
    cards["tiny"] = card
    monkeypatch.setattr(registry, "_CARDS", cards)
    monkeypatch.setattr(registry, "_PLUGIN_FACTORIES", {"tiny": lambda scale=4, device="cpu": _Tiny(card)})


def _fetch(capsys: pytest.CaptureFixture[str], folder: Path) -> tuple[int, str, str]:
    status = main(["weights", "fetch", "tiny", "--weights", str(folder)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _serve(path: str, body: bytes, content_type: str = "application/octet-stream", claimed: int | None = None) -> str:
    ROUTES[path] = (200, content_type, body, claimed)
    return path


@pytest.mark.parametrize(
    "route,body,content_type,claimed,message",
    [
        ("/truncated.pth", GOOD[:200], "application/octet-stream", len(GOOD), "cut short"),
        ("/page.pth", HTML, "text/html; charset=utf-8", None, "HTML page"),
        ("/page-as-binary.pth", HTML, "application/octet-stream", None, "HTML page"),
        ("/layout.pth", WRONG_LAYOUT, "application/octet-stream", None, "does not match the tiny conv layout"),
        ("/garbage.pth", b"\x00not a checkpoint" * 10, "application/octet-stream", None, "cannot read checkpoint"),
    ],
    ids=["truncated", "html-content-type", "html-body", "wrong-layout", "not-a-checkpoint"],
)
def test_bad_downloads_are_clear_errors_and_leave_nothing(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    route: str, body: bytes, content_type: str, claimed: int | None, message: str,
) -> None:
    _register(monkeypatch, server + _serve(route, body, content_type, claimed))
    status, _, err = _fetch(capsys, tmp_path)
    assert status == 2 and message in err, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no partial, 0-byte, temporary or unverified file


def test_wrong_hash_is_an_error_and_leaves_nothing(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(monkeypatch, server + _serve("/good.pth", GOOD), sha256="0" * 64)
    status, _, err = _fetch(capsys, tmp_path)
    assert status == 2 and "sha256 mismatch" in err and hashlib.sha256(GOOD).hexdigest() in err
    assert list(tmp_path.iterdir()) == []


def test_good_file_with_pinned_hash_is_kept(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(monkeypatch, server + _serve("/good.pth", GOOD), sha256=hashlib.sha256(GOOD).hexdigest())
    status, out, _ = _fetch(capsys, tmp_path)
    assert status == 0 and (tmp_path / "tiny.pth").read_bytes() == GOOD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pth"]  # pinned: nothing to record
    assert f"ok: {tmp_path / 'tiny.pth'}" in out


def test_good_file_without_hash_is_verified_by_layout_printed_and_recorded(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(monkeypatch, server + _serve("/good.pth", GOOD))
    status, out, _ = _fetch(capsys, tmp_path)
    digest = hashlib.sha256(GOOD).hexdigest()
    assert status == 0 and (tmp_path / "tiny.pth").read_bytes() == GOOD
    assert f"sha256 {digest}" in out
    assert json.loads((tmp_path / RECORDED_HASHES).read_text()) == {"tiny.pth": digest}
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORDED_HASHES, "tiny.pth"]
    main(["weights", "list", "--json", "--weights", str(tmp_path)])
    listed = json.loads(capsys.readouterr().out)
    row = next(r for r in listed["files"] if r["file"] == "tiny.pth")
    assert row["installed"] and row["sha256"] == digest and not row["sha256_pinned"]


def _stub_gdown(monkeypatch: pytest.MonkeyPatch, body: bytes, calls: list[str]) -> None:

    def download(url: str, output: str, quiet: bool = False) -> str:
        calls.append(url)
        Path(output).write_bytes(body)
        return output

    monkeypatch.setitem(__import__("sys").modules, "gdown", types.SimpleNamespace(download=download))


def test_google_drive_goes_through_gdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://drive.google.com/uc?id=FILE_ID"
    calls: list[str] = []
    _stub_gdown(monkeypatch, GOOD, calls)
    _register(monkeypatch, url, source="gdrive")
    status, out, _ = _fetch(capsys, tmp_path)
    assert status == 0 and calls == [url] and (tmp_path / "tiny.pth").read_bytes() == GOOD
    assert f"sha256 {hashlib.sha256(GOOD).hexdigest()}" in out


def test_google_drive_html_page_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stub_gdown(monkeypatch, HTML, [])
    _register(monkeypatch, "https://drive.google.com/uc?id=FILE_ID", source="gdrive")
    status, _, err = _fetch(capsys, tmp_path)
    assert status == 2 and "HTML page" in err and list(tmp_path.iterdir()) == []


def test_interrupted_download_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(url: str, part: Path, target: Path) -> None:
        part.write_bytes(GOOD[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(weights_module, "_download_https", interrupted)
    _register(monkeypatch, "https://example.org/tiny.pth")
    assert main(["weights", "fetch", "tiny", "--weights", str(tmp_path)]) == 130
    assert list(tmp_path.iterdir()) == []


FOLDER = "https://drive.google.com/drive/folders/FOLDER_ID"


def test_drive_folder_is_listed_and_only_the_cards_file_downloaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    files = {"A": ("readme.txt", b"notes"), "B": ("models/tiny.pth", GOOD), "C": ("other.pth", WRONG_LAYOUT)}
    stub_gdown(monkeypatch, files, calls)
    _register(monkeypatch, FOLDER, source="gdrive_folder")
    status, out, err = _fetch(capsys, tmp_path)
    digest = hashlib.sha256(GOOD).hexdigest()
    assert status == 0, err
    assert calls == [f"list {FOLDER}", "https://drive.google.com/uc?id=B"]
    assert (tmp_path / "tiny.pth").read_bytes() == GOOD and f"sha256 {digest}" in out
    assert json.loads((tmp_path / RECORDED_HASHES).read_text()) == {"tiny.pth": digest}
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORDED_HASHES, "tiny.pth"]


@pytest.mark.parametrize("case", ["listing-fails", "not-in-folder", "wrong-layout", "html"])
def test_drive_folder_failures_say_what_to_download_and_leave_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    body = {"wrong-layout": WRONG_LAYOUT, "html": HTML}.get(case, GOOD)
    name = "renamed.pth" if case == "not-in-folder" else "tiny.pth"
    error = RuntimeError("Cannot retrieve the folder information") if case == "listing-fails" else None
    stub_gdown(monkeypatch, {"B": (name, body)}, [], folder_error=error)
    _register(monkeypatch, FOLDER, source="gdrive_folder")
    status, _, err = _fetch(capsys, tmp_path)
    assert status == 2 and "Traceback" not in err
    message = {"listing-fails": "could not list the Google Drive folder", "not-in-folder": "(it has: renamed.pth)",
               "wrong-layout": "does not match the tiny conv layout", "html": "HTML page"}[case]
    assert message in err, err
    if case in ("listing-fails", "not-in-folder"):  # exactly which file, from where, and where it goes
        assert f"download tiny.pth from {FOLDER}" in err and str(tmp_path / "tiny.pth") in err
        assert "weights fetch tiny.pth --from DOWNLOADED_FILE" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["masa_rec", "ttsr_rec", "srntt", "c2_matching_rec"])
def test_official_drive_folders_that_cannot_be_listed_name_the_file_and_its_place(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    stub_gdown(monkeypatch, {}, calls, folder_error=RuntimeError("offline"))
    for weight in registry.card(name).weights:  # files with a direct link (VGG19) count as present here
        if weight.source != "gdrive_folder":
            (tmp_path / weight.file_name).write_bytes(b"placeholder")
    status = main(["weights", "fetch", name, "--weights", str(tmp_path)])
    err = capsys.readouterr().err
    folders = {w.url for w in registry.card(name).weights if w.source == "gdrive_folder"}
    assert status == 2 and calls == [f"list {url}" for url in folders]  # listed once, nothing downloaded
    for weight in registry.card(name).weights:
        if weight.source == "gdrive_folder":
            assert f"download {weight.file_name} from {weight.url}" in err
            assert str(tmp_path / weight.file_name) in err and f"weights fetch {weight.file_name} --from" in err


def test_from_file_installs_through_the_same_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(monkeypatch, FOLDER, source="gdrive_folder")
    folder, downloads = tmp_path / "weights", tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "bad.pth").write_bytes(WRONG_LAYOUT)
    (downloads / "page.pth").write_bytes(HTML)
    for bad, message in [("bad.pth", "does not match the tiny conv layout"), ("page.pth", "HTML page"),
                         ("missing.pth", "no such file")]:
        status = main(["weights", "fetch", "tiny", "--from", str(downloads / bad), "--weights", str(folder)])
        err = capsys.readouterr().err
        assert status == 2 and message in err, err
        assert not folder.exists() or list(folder.iterdir()) == []
    (downloads / "my download (1).pth").write_bytes(GOOD)
    status = main(["weights", "fetch", "tiny", "--from", str(downloads / "my download (1).pth"),
                   "--weights", str(folder)])
    out = capsys.readouterr().out
    digest = hashlib.sha256(GOOD).hexdigest()
    assert status == 0 and (folder / "tiny.pth").read_bytes() == GOOD and f"sha256 {digest}" in out
    assert json.loads((folder / RECORDED_HASHES).read_text()) == {"tiny.pth": digest}
    assert (downloads / "my download (1).pth").is_file()  # copied, not moved


def test_from_file_must_say_which_file_of_a_method_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    given = tmp_path / "download.pth"
    given.write_bytes(GOOD)
    status = main(["weights", "fetch", "c2_matching_rec", "--from", str(given), "--weights", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert status == 2 and "feature_extraction.pth" in err and "weights fetch FILE_NAME --from" in err
    assert not (tmp_path / "w").exists()


def test_weights_fetch_from_exit_codes_in_real_processes(tmp_path: Path) -> None:
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    checkpoint = tmp_path / "carn.pth"
    torch.save({"not": torch.zeros(1)}, checkpoint)
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "bench", "weights", "fetch", "carn_m", "--from", str(checkpoint),
               "--weights", str(tmp_path / "w")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=root, env=env, timeout=300)
    assert result.returncode == 2 and "sha256 mismatch" in result.stderr and "Traceback" not in result.stderr
    assert list((tmp_path / "w").iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# --weights FILE / METHOD=FILE


def test_weights_option_parsing(tmp_path: Path) -> None:
    checkpoint = tmp_path / "x.pth"
    checkpoint.write_bytes(b"")
    assert parse_weights_option(None, ["bicubic", "masa"]).files == {}
    assert parse_weights_option(str(tmp_path), ["bicubic", "masa"]).folder == str(tmp_path)
    assert parse_weights_option(str(checkpoint), ["masa"]).files == {"masa_rec": str(checkpoint)}
    with pytest.raises(UserError, match="2 methods are selected.*--weights METHOD="):
        parse_weights_option(str(checkpoint), ["bicubic", "masa"])
    chosen = parse_weights_option([f"masa={checkpoint}", str(tmp_path)], ["bicubic", "masa"])
    assert chosen.files == {"masa_rec": str(checkpoint)} and chosen.folder == str(tmp_path)
    with pytest.raises(UserError, match="not among the selected methods"):
        parse_weights_option(f"ttsr={checkpoint}", ["bicubic", "masa"])
    with pytest.raises(UserError, match="checkpoint file not found"):
        parse_weights_option(f"masa={tmp_path / 'missing.pth'}", ["masa"])
    assert weights_module.weights_dir(f"masa={checkpoint}") == weights_module.weights_dir(None)


def test_run_with_one_file_and_two_methods_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "carn_m.pth"
    checkpoint.write_bytes(b"")
    status = main(["run", "-p", "demo_stereo", "-m", "bicubic", "carn_m", "--weights", str(checkpoint),
                   "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "select one method with -m, or write --weights METHOD=" in err
