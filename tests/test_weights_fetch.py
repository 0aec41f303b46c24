"""``refsr-bench weights fetch`` against a local HTTP server (127.0.0.1, no real network) and a stubbed Google
Drive step: every bad download is a clear error (exit 2) with nothing left in the weights folder; a good
file is kept, its sha256 printed and recorded. Also ``--weights`` parsing (FILE vs METHOD=FILE)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.commands.cli import main
from methods import registry
from methods import weights as weights_module
from methods.base import load_state_dict_strict, read_checkpoint
from methods.cards import MethodCard, WeightFile
from methods.weights import RECORDED_HASHES, parse_weights_option
from protocols.core import UserError

ROUTES: dict[str, tuple[int, str, bytes, int | None]] = {}  # path -> (status, content type, body, claimed length)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status, content_type, body, claimed = ROUTES.get(self.path, (404, "text/plain", b"not found", None))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(claimed if claimed is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)  # a claimed length above len(body) makes the download come up short

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


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
    monkeypatch.setattr(registry, "_CARDS", {**registry._CARDS, "tiny": card})
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
    import types

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


@pytest.mark.parametrize("name", ["masa_rec", "ttsr_rec", "srntt", "c2_matching_rec"])
def test_methods_without_a_direct_link_say_where_to_get_the_file(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("no download may be attempted")

    monkeypatch.setattr(weights_module, "_download_https", no_network)
    monkeypatch.setattr(weights_module, "_download_gdrive", no_network)
    for weight in registry.card(name).weights:  # files with a direct link (VGG19) count as present here
        if weight.source != "manual":
            (tmp_path / weight.file_name).write_bytes(b"placeholder")
    status = main(["weights", "fetch", name, "--weights", str(tmp_path)])
    err = capsys.readouterr().err
    page = registry.card(name).weights[0].url
    assert status == 2 and "no direct download link" in err and page in err
    assert str(tmp_path / registry.card(name).weights[0].file_name) in err


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
