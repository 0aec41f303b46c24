"""``refsr-bench data fetch | verify`` against a local HTTP server (127.0.0.1, no real network) and a stubbed
``gdown`` (Drive files and folder listings): every bad download or unsafe archive is a clear error (exit 2) that
leaves nothing in the data root; a good zip or tar installs with a manifest whose hashes equal ``hashlib``'s;
``--from`` takes an archive or a folder through the same checks; ``verify`` names changed, missing and extra files.
The replicas are tiny PNGs written here, so the source cards are pointed at them (``dataclasses.replace``)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gdown_stub import stub_gdown
from local_http import ROUTES
from PIL import Image

from bench.commands.cli import main
from bench.engines.data.manifest import MANIFEST_NAME, data_match
from protocols.sources import SOURCES, DataSource, SourceLink

ROOT = Path(__file__).resolve().parents[1]
def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


SET5 = {f"Set5/img_{i}.png": _png(i) for i in range(5)}  # a 5-image replica of the Set5 layout


def _zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, body in members.items():
            handle.writestr(name, body)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            handle.writestr(info, target)
    return buffer.getvalue()


def _tar(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            handle.addfile(info, io.BytesIO(body))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            handle.addfile(info)
    return buffer.getvalue()


def _point_set5(monkeypatch: pytest.MonkeyPatch, url: str, sha256: str | None = None, **changes: object) -> None:
    source = dataclasses.replace(SOURCES["set5"], links=(SourceLink("https", url, sha256),), **changes)
    monkeypatch.setitem(SOURCES, "set5", source)


def _serve(server: str, path: str, body: bytes, content_type: str = "application/zip",
           claimed: int | None = None) -> str:
    ROUTES[path] = (200, content_type, body, claimed)
    return server + path


def _fetch(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, str, str]:
    status = main(["data", "fetch", *extra, "--data", str(root)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _hashes(folder: Path) -> dict[str, str]:
    """The oracle: hashlib over every file except the manifest."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME}


def _assert_installed(root: Path, folder: str, members: dict[str, bytes]) -> dict[str, object]:
    assert sorted(p.name for p in root.iterdir()) == [folder]  # no staging folder left beside it
    manifest = json.loads((root / folder / MANIFEST_NAME).read_text())
    expected = {name.split("/", 1)[1]: hashlib.sha256(body).hexdigest() for name, body in members.items()}
    assert _hashes(root / folder) == expected
    assert {p: entry["sha256"] for p, entry in manifest["files"].items()} == expected
    return manifest


@pytest.mark.parametrize("packer,route", [(_zip, "/set5.zip"), (_tar, "/set5.tar.gz")], ids=["zip", "tar.gz"])
def test_good_archive_installs_with_manifest(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    packer: object, route: str,
) -> None:
    body = packer(SET5)  # type: ignore[operator]
    _point_set5(monkeypatch, _serve(server, route, body), sha256=hashlib.sha256(body).hexdigest())
    status, out, err = _fetch(capsys, tmp_path / "data", "set5")
    assert status == 0, err
    manifest = _assert_installed(tmp_path / "data", "Set5", SET5)
    assert manifest["archives_sha256"] == {server + route: hashlib.sha256(body).hexdigest()}
    assert "5 items" in out


def test_archive_of_bare_images_installs_under_the_cards_folder_name(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = {name.split("/", 1)[1]: body for name, body in SET5.items()}
    _point_set5(monkeypatch, _serve(server, "/bare.zip", _zip(bare)))
    status, out, err = _fetch(capsys, tmp_path, "set5")
    assert status == 0, err
    _assert_installed(tmp_path, "Set5", SET5)
    assert "no pinned hash" in out


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("Set5/zeros.png", b"\0" * (4 << 20))  # 4 MiB of zeros deflate to about 4 KiB
    return buffer.getvalue()


BAD = {
    "truncated": ("/cut.zip", _zip(SET5)[:300], "application/zip", len(_zip(SET5)), "cut short"),
    "html-content-type": ("/page", b"<html><body>quota exceeded</body></html>", "text/html", None, "HTML page"),
    "html-body": ("/page.zip", b"<!DOCTYPE html><html><head></head></html>", "application/zip", None, "HTML page"),
    "not-an-archive": ("/noise.zip", b"\x01\x02 not an archive" * 20, "application/zip", None, "not return a zip"),
    "wrong-layout": ("/four.zip", _zip(dict(list(SET5.items())[:4])), "application/zip", None, "has 4 items"),
    "no-images": ("/txt.zip", _zip({"Set5/readme.txt": b"x"}), "application/zip", None, "expected layout"),
    "zip-slip": ("/slip.zip", _zip({**SET5, "../evil.png": b"x"}), "application/zip", None, "zip-slip"),
    "absolute": ("/abs.zip", _zip({**SET5, "/tmp/evil.png": b"x"}), "application/zip", None, "absolute"),
    "zip-symlink": ("/link.zip", _zip(SET5, {"Set5/evil.png": "/etc/passwd"}), "application/zip", None,
                    "symbolic link"),
    "tar-symlink": ("/link.tar.gz", _tar(SET5, {"Set5/evil.png": "../../x"}), "application/gzip", None,
                    "symbolic link"),
    "tar-slip": ("/slip.tar.gz", _tar({**SET5, "Set5/../../evil.png": b"x"}), "application/gzip", None, "zip-slip"),
    "bomb": ("/bomb.zip", _bomb(), "application/zip", None, "archive bomb"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("root_exists", [True, False], ids=["root", "no-root"])
def test_bad_downloads_and_unsafe_archives_leave_nothing(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    case: str, root_exists: bool,
) -> None:
    route, body, content_type, claimed, message = BAD[case]
    _point_set5(monkeypatch, _serve(server, route, body, content_type, claimed))
    root = tmp_path / "data"
    if root_exists:
        root.mkdir()
    status, _, err = _fetch(capsys, root, "set5")
    assert status == 2 and message in err, err
    assert "Traceback" not in err
    assert (list(root.iterdir()) == []) if root_exists else not root.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["data"] if root_exists else [])  # nothing escaped


def test_wrong_hash_leaves_nothing(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _zip(SET5)
    _point_set5(monkeypatch, _serve(server, "/set5.zip", body), sha256="0" * 64)
    status, _, err = _fetch(capsys, tmp_path, "set5")
    assert status == 2 and "sha256 mismatch" in err and hashlib.sha256(body).hexdigest() in err
    assert list(tmp_path.iterdir()) == []


def test_size_and_member_limits_come_from_the_card(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    total = sum(len(body) for body in SET5.values())
    _point_set5(monkeypatch, _serve(server, "/set5.zip", _zip(SET5)), max_bytes=total - 1)
    status, _, err = _fetch(capsys, tmp_path, "set5")
    assert status == 2 and f"extracts to {total} bytes, more than the limit {total - 1}" in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_mid_download_leaves_nothing(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tqdm

    class Interrupting(tqdm.tqdm):  # type: ignore[misc]
        def update(self, n: float | None = 1) -> bool | None:
            raise KeyboardInterrupt  # after the first chunk has been written to the staging file

    monkeypatch.setattr(tqdm, "tqdm", Interrupting)
    _point_set5(monkeypatch, _serve(server, "/set5.zip", _zip(SET5)))
    status, _, err = _fetch(capsys, tmp_path, "set5")
    assert status == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_says_how_to_install_a_hand_downloaded_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _point_set5(monkeypatch, f"http://127.0.0.1:{port}/set5.zip")
    status, _, err = _fetch(capsys, tmp_path, "set5")
    assert status == 2 and "could not download" in err and "data fetch set5 --from FILE" in err, err
    assert list(tmp_path.iterdir()) == []


def test_already_installed_is_refused(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Set5").mkdir()
    _point_set5(monkeypatch, _serve(server, "/set5.zip", _zip(SET5)))
    status, _, err = _fetch(capsys, tmp_path, "set5")
    assert status == 2 and "already installed" in err and list(tmp_path.iterdir()) == [tmp_path / "Set5"]


def test_a_set_without_a_link_says_how_to_install_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _fetch(capsys, tmp_path, "urban100")
    assert status == 2 and "no official download link" in err and "data fetch urban100 --from" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# Google Drive (stubbed gdown)

CUFED5 = {f"CUFED5/{g:03d}_{k}.png": _png(10 * g + k) for g in range(2) for k in range(6)}


def test_drive_file_goes_through_gdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    stub_gdown(monkeypatch, {"FILEID": ("CUFED5.zip", _zip(CUFED5))}, calls)
    source = dataclasses.replace(SOURCES["cufed5"], links=(SourceLink("gdrive_file", "FILEID"),), expected_items=2)
    monkeypatch.setitem(SOURCES, "cufed5", source)
    status, _, err = _fetch(capsys, tmp_path, "cufed5")
    assert status == 0, err
    assert calls == ["https://drive.google.com/uc?id=FILEID"]
    _assert_installed(tmp_path, "CUFED5", CUFED5)


def _wrsr_files() -> dict[str, tuple[str, bytes]]:
    pairs = b"".join(f"00{i}.png 00{i}_ref.png\n".encode() for i in range(3))
    files = {"PAIRS": ("WR-SR/WR-SR_pairs.txt", pairs)}
    for i in range(3):
        files[f"IN{i}"] = (f"WR-SR/input/00{i}.png", _png(i))
        files[f"REF{i}"] = (f"WR-SR/ref/00{i}_ref.png", _png(100 + i))
    return files


def test_drive_folder_is_listed_and_each_file_downloaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files, calls = _wrsr_files(), []
    stub_gdown(monkeypatch, files, calls)
    source = dataclasses.replace(SOURCES["wrsr"], links=(SourceLink("gdrive_folder", "FOLDERID"),), expected_items=3)
    monkeypatch.setitem(SOURCES, "wrsr", source)
    status, _, err = _fetch(capsys, tmp_path, "wrsr")
    assert status == 0, err
    assert calls[0] == "list https://drive.google.com/drive/folders/FOLDERID" and len(calls) == 1 + len(files)
    _assert_installed(tmp_path, "WR-SR", dict(files.values()))


@pytest.mark.parametrize("case", ["listing-fails", "html-file", "missing-pair"])
def test_drive_folder_failures_leave_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    files = _wrsr_files()
    if case == "html-file":
        files["IN1"] = (files["IN1"][0], b"<html><body>Too many users have viewed this file</body></html>")
    if case == "missing-pair":
        del files["REF2"]
    error = RuntimeError("Cannot retrieve the folder information") if case == "listing-fails" else None
    stub_gdown(monkeypatch, files, [], folder_error=error)
    source = dataclasses.replace(SOURCES["wrsr"], links=(SourceLink("gdrive_folder", "FOLDERID"),), expected_items=3)
    monkeypatch.setitem(SOURCES, "wrsr", source)
    status, _, err = _fetch(capsys, tmp_path, "wrsr")
    message = {"listing-fails": "could not list the Google Drive folder", "html-file": "HTML page",
               "missing-pair": "expected layout"}[case]
    assert status == 2 and message in err, err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# --from


def test_from_archive_and_from_folder_install_through_the_same_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "Set5.tar.gz"
    archive.write_bytes(_tar(SET5))
    status, _, err = _fetch(capsys, tmp_path / "a", "set5", "--from", str(archive))
    assert status == 0, err
    manifest = _assert_installed(tmp_path / "a", "Set5", SET5)
    assert manifest["archives_sha256"] == {"Set5.tar.gz": hashlib.sha256(archive.read_bytes()).hexdigest()}
    status, _, err = _fetch(capsys, tmp_path / "b", "set5", "--from", str(tmp_path / "a" / "Set5"))
    assert status == 0, err
    _assert_installed(tmp_path / "b", "Set5", SET5)  # the copied manifest is replaced by a fresh one
    assert (tmp_path / "a" / "Set5" / MANIFEST_NAME).is_file()  # the source folder is left as it was


@pytest.mark.parametrize("case", ["symlink-in-folder", "zip-slip-archive", "incomplete-folder", "not-an-archive"])
def test_from_refuses_what_fetch_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    given = tmp_path / "given" / "Set5"
    given.mkdir(parents=True)
    for name, body in SET5.items():
        (given / name.split("/", 1)[1]).write_bytes(body)
    if case == "symlink-in-folder":
        os.symlink("/etc/passwd", given / "img_5.png")
    elif case == "incomplete-folder":
        (given / "img_0.png").unlink()
    elif case == "zip-slip-archive":
        given = tmp_path / "given" / "slip.zip"
        given.write_bytes(_zip({**SET5, "Set5/../../evil.png": b"x"}))
    else:
        given = tmp_path / "given" / "notes.txt"
        given.write_text("hello")
    root = tmp_path / "data"
    status, _, err = _fetch(capsys, root, "set5", "--from", str(given))
    message = {"symlink-in-folder": "symbolic link", "zip-slip-archive": "zip-slip", "incomplete-folder": "4 items",
               "not-an-archive": "not a zip or tar archive"}[case]
    assert status == 2 and message in err, err
    assert not root.exists()


# ---------------------------------------------------------------------------------------------------
# verify


def _install_set5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    archive = tmp_path / "set5.zip"
    archive.write_bytes(_zip(SET5))
    root = tmp_path / "data"
    assert _fetch(capsys, root, "set5", "--from", str(archive))[0] == 0
    return root


def test_verify_names_changed_missing_and_extra_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _install_set5(tmp_path, capsys)
    assert main(["data", "verify", "set5", "--data", str(root)]) == 0
    assert "matches its manifest" in capsys.readouterr().out
    folder = root / "Set5"
    (folder / "img_1.png").write_bytes(_png(99))
    (folder / "img_2.png").unlink()
    (folder / "extra").mkdir()
    (folder / "extra" / "notes.txt").write_text("added by hand")
    assert main(["data", "verify", "set5", "--data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "changed: img_1.png" in out and "missing: img_2.png" in out and "extra: extra/notes.txt" in out
    assert "3 differences" in out
    assert "img_0.png" not in out  # untouched files are not named


def test_verify_against_a_pinned_canonical_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _install_set5(tmp_path, capsys)
    own = json.loads((root / "Set5" / MANIFEST_NAME).read_text())
    canonical = {"files": dict(own["files"])}
    canonical["files"]["img_3.png"] = {"sha256": "f" * 64, "bytes": 1}  # the canonical copy differs in one file
    pinned = tmp_path / "canonical.json"
    pinned.write_text(json.dumps(canonical))
    monkeypatch.setitem(SOURCES, "set5", dataclasses.replace(SOURCES["set5"], canonical_manifest=str(pinned)))
    assert main(["data", "verify", "set5", "--data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "changed: img_3.png (against the canonical manifest)" in out and "1 differences" in out
    assert data_match(root / "Set5", SOURCES["set5"])["canonical"] == "differs"
    pinned.write_text(json.dumps({"files": own["files"]}))
    assert main(["data", "verify", "set5", "--data", str(root)]) == 0
    assert data_match(root / "Set5", SOURCES["set5"]) == {
        "folder": str(root / "Set5"), "manifest": "sizes match", "canonical": "matches",
        "tree_sha256": own["tree_sha256"]}


def test_data_match_is_a_cheap_size_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _install_set5(tmp_path, capsys)
    source: DataSource = SOURCES["set5"]
    assert data_match(root / "Set5", source)["manifest"] == "sizes match"
    assert data_match(root / "Set5", source)["canonical"] == "unknown"  # no canonical manifest is known for Set5
    (root / "Set5" / "img_4.png").write_bytes(b"short")
    assert data_match(root / "Set5", source)["manifest"] == "differs"
    assert data_match(tmp_path, source)["manifest"] == "absent"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REFSR_DATA", None)
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


def test_exit_codes_in_real_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "set5.zip"
    archive.write_bytes(_zip(SET5))
    root = tmp_path / "data"
    fetched = _cli("data", "fetch", "set5", "--from", str(archive), "--data", str(root))
    assert fetched.returncode == 0 and "installed" in fetched.stdout, fetched.stderr
    assert _cli("data", "verify", "set5", "--data", str(root)).returncode == 0
    (root / "Set5" / "img_0.png").unlink()
    changed = _cli("data", "verify", "set5", "--data", str(root))
    assert changed.returncode == 1 and "missing: img_0.png" in changed.stdout
    for args, message in [(("data", "verify", "nope", "--data", str(root)), "unknown dataset 'nope'"),
                          (("data", "verify", "set14", "--data", str(root)), "set14 is not installed"),
                          (("data", "fetch", "set5"), "no data root")]:
        result = _cli(*args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result


def test_run_json_records_whether_the_data_matches_its_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def image(seed: int) -> bytes:
        pixels = np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()

    archive = tmp_path / "set5.zip"
    archive.write_bytes(_zip({f"Set5/img_{i}.png": image(i) for i in range(5)}))
    root = tmp_path / "data"
    assert _fetch(capsys, root, "set5", "--from", str(archive))[0] == 0
    tree = json.loads((root / "Set5" / MANIFEST_NAME).read_text())["tree_sha256"]
    out = tmp_path / "run"
    assert main(["run", "-p", "set5:sisr_std", "-m", "bicubic", "--data", str(root), "--out", str(out)]) == 0
    check = json.loads((out / "run.json").read_text())["data_check"]
    assert check == {"folder": str((root / "Set5").resolve()), "manifest": "sizes match", "canonical": "unknown",
                     "tree_sha256": tree}
