"""Issue 21: a hostile user against the run directory. Every case asserts the exit status, that no traceback is
printed, and the data state byte for byte against a fresh run (``clean``) -- no silent wrong number.

Interrupted runs are made in-process by raising KeyboardInterrupt after k journal appends (the SIGINT path of
``main``); the lock cases use real processes."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rundata import cli, make_set5

from bench.results import records as records_module
from bench.results import rundir
from bench.results.records import CHECKSUM_FILE, RecordAppender, read_records
from protocols.core import UserError
from protocols.imageio import pinned_sha256, read_image

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = "set5:sisr_std"
FILES = ("records.csv", CHECKSUM_FILE, rundir.INPUTS_FILE)  # compared byte for byte with the fresh run


def _run(capsys, data: Path, out: Path, *extra: object) -> tuple[int, str, str]:
    return cli(capsys, "run", "-p", PROTOCOL, "-m", "bicubic", "--data", data, "--out", out, *extra)


def _same_as(out: Path, clean: Path) -> None:
    for name in FILES:
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name


def _fine(status: int, err: str, expected: int = 2) -> None:
    assert status == expected, err
    assert "Traceback" not in err


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, appends: int) -> None:
    """The next run stops (KeyboardInterrupt, as on Ctrl-C) after ``appends`` journal groups."""
    original = RecordAppender.append
    calls = {"n": 0}

    def append(self: RecordAppender, rows: list) -> None:  # type: ignore[type-arg]
        if calls["n"] >= appends:
            raise KeyboardInterrupt
        calls["n"] += 1
        original(self, rows)

    monkeypatch.setattr(RecordAppender, "append", append)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return make_set5(tmp_path / "data")


@pytest.fixture()
def clean(tmp_path: Path, data: Path, capsys) -> Path:
    out = tmp_path / "clean"
    assert _run(capsys, data, out)[0] == 0
    return out


@pytest.fixture()
def killed(tmp_path: Path, data: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run stopped after 2 of 5 images (records.csv still a journal)."""
    out = tmp_path / "killed"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        assert _run(capsys, data, out)[0] == 130
    return out


# --- 1. a lock that holds ---------------------------------------------------------------------------

GATED_PLUGIN = """
import os, time
from methods.bicubic import bicubic
from methods.registry import register

def gated_bicubic(scale=4, device="cpu"):
    method = bicubic(scale=scale)
    upsample = method.predict
    def predict(lr, ref=None, ref_lr=None):
        deadline = time.monotonic() + 300
        while not os.path.exists(os.environ["GATE"]) and time.monotonic() < deadline:
            time.sleep(0.05)  # holds the run mid-way until the test opens the gate
        return upsample(lr)
    method.predict = predict
    return method

register("gated_bicubic", gated_bicubic)
"""


def _gated(plugin: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "bench", "--plugin", str(plugin), "run", "-p", PROTOCOL, "-m", "gated_bicubic",
            "--data", str(data), "--out", str(out), "--threads", "1"]


def test_deleting_run_lock_mid_run_lets_no_second_writer_in(tmp_path: Path, data: Path) -> None:
    plugin, gate, out = tmp_path / "gated.py", tmp_path / "gate", tmp_path / "shared"
    plugin.write_text(GATED_PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GATE": str(gate)}
    first = subprocess.Popen(_gated(plugin, data, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 300
    while not ((out / "records.csv").is_file() and (out / rundir.LOCK_FILE).is_file()):
        assert time.monotonic() < deadline and first.poll() is None, first.stderr
        time.sleep(0.05)
    (out / rundir.LOCK_FILE).unlink()  # the hostile step, while the first writer is held mid-run
    open_gate = {**env, "GATE": str(plugin)}  # an existing path: were the second let in, it would not wait
    second = subprocess.run(_gated(plugin, data, out), env=open_gate, capture_output=True, text=True, timeout=300)
    gate.write_text("")
    first_err = first.communicate(timeout=300)[1]
    _fine(second.returncode, second.stderr)
    assert "being written by another refsr-bench process" in second.stderr
    _fine(first.returncode, first_err, 0)
    reference = tmp_path / "reference"
    subprocess.run(_gated(plugin, data, reference), env=env, check=True, capture_output=True, timeout=300)
    _same_as(out, reference)


def test_replaced_run_lock_file_does_not_release_the_lock(tmp_path: Path, data: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with rundir.RunLock(out):
        (out / rundir.LOCK_FILE).unlink()
        (out / rundir.LOCK_FILE).write_text("12345\n")
        status, _, err = _run(capsys, data, out)
    _fine(status, err)
    assert "being written by another" in err and not (out / "records.csv").exists()


def test_writer_whose_folder_was_replaced_stops_and_stays_resumable(
    tmp_path: Path, data: Path, clean: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, moved = tmp_path / "out", tmp_path / "moved"
    original = RecordAppender.append

    def append(self: RecordAppender, rows: list) -> None:  # type: ignore[type-arg]
        if not moved.exists():
            out.rename(moved)  # someone moves the folder away and starts over in its place
            out.mkdir()
        original(self, rows)

    monkeypatch.setattr(RecordAppender, "append", append)
    status, _, err = _run(capsys, data, out)
    _fine(status, err)
    assert "lost the lock" in err and sorted(os.listdir(out)) == []
    monkeypatch.setattr(RecordAppender, "append", original)
    shutil.rmtree(out)
    moved.rename(out)
    assert _run(capsys, data, out)[0] == 0
    _same_as(out, clean)


def test_finish_never_rewrites_a_file_another_writer_finished(tmp_path: Path, clean: Path) -> None:
    path = tmp_path / "records.csv"
    appender = RecordAppender(path, ["psnr_y"], "r1")
    shutil.copy(clean / "records.csv", path)  # another writer finished it meanwhile
    with pytest.raises(UserError, match="no longer this run's journal"):
        appender.finish()
    assert path.read_bytes() == (clean / "records.csv").read_bytes()


# --- 2. merges that cannot clobber ----------------------------------------------------------------


@pytest.fixture()
def shards(tmp_path: Path, data: Path, capsys) -> list[Path]:
    folders = [tmp_path / f"shard{i}" for i in range(2)]
    for index, folder in enumerate(folders):
        assert _run(capsys, data, folder, "--shard", f"{index}/2")[0] == 0
    return folders


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_merge_into_empty_folder_equals_the_unsharded_run_and_reruns_as_a_no_op(
    tmp_path: Path, shards: list[Path], clean: Path, capsys
) -> None:
    out = tmp_path / "merged"
    out.mkdir()
    assert cli(capsys, "merge", *shards, "--out", out)[0] == 0
    _same_as(out, clean)
    before = _snapshot(out)
    status, _, err = cli(capsys, "merge", *shards, "--out", out)
    _fine(status, err, 0)
    assert _snapshot(out) == before


@pytest.mark.parametrize("occupant", ["finished run", "user files", "stray file"])
def test_merge_into_an_occupied_folder_is_refused_and_writes_nothing(
    tmp_path: Path, shards: list[Path], capsys, occupant: str
) -> None:
    out = tmp_path / "occupied"
    if occupant == "finished run":  # a finished run of another dataset
        other = make_set5(tmp_path / "other", count=2, seed=7)
        assert _run(capsys, other, out)[0] == 0
    else:
        out.mkdir()
        names = ("records.csv", "run.json") if occupant == "user files" else ("notes.txt",)
        for name in names:
            (out / name).write_text(f"my own {name}\n")
    before = _snapshot(out)
    status, _, err = cli(capsys, "merge", *shards, "--out", out)
    _fine(status, err)
    assert "is not empty" in err and _snapshot(out) == before


def _rewrite_shard(shard: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Edit a finished shard's records.csv and (the hostile part) recompute its records.sha256 to match."""
    lines = (shard / "records.csv").read_text().splitlines(keepends=True)
    text = "".join(edit(lines))
    (shard / "records.csv").write_text(text)
    (shard / CHECKSUM_FILE).write_text(hashlib.sha256(text.encode()).hexdigest() + "\n")


@pytest.mark.parametrize("damage", ["edited value", "truncated", "row missing", "foreign row", "inputs edited"])
def test_merge_verifies_each_shard(tmp_path: Path, shards: list[Path], capsys, damage: str) -> None:
    shard = shards[1]
    if damage == "edited value":  # records.sha256 left as it was
        text = (shard / "records.csv").read_text()
        (shard / "records.csv").write_text(text.replace(text.splitlines()[1].rsplit(",", 1)[1], "99.000000", 1))
        expected = CHECKSUM_FILE
    elif damage == "truncated":
        (shard / "records.csv").write_bytes((shard / "records.csv").read_bytes()[:-40])
        expected = CHECKSUM_FILE
    elif damage == "row missing":
        _rewrite_shard(shard, lambda lines: lines[:-2])
        expected = "groups missing"
    elif damage == "foreign row":  # a group of shard 0's image, rewritten as if shard 1 had it
        image0 = (shards[0] / "run.json").read_text()
        first_image = json.loads(image0)["images"][0]
        _rewrite_shard(shard, lambda lines: [*lines, *(line.replace(",im1,", f",{first_image},")
                                                       for line in lines[1:] if ",im1," in line)])
        expected = "not assigned to this shard"
    else:
        (shard / rundir.INPUTS_FILE).write_text((shard / rundir.INPUTS_FILE).read_text().replace("im1", "imX"))
        expected = "does not match the run identity"
    status, _, err = cli(capsys, "merge", *shards, "--out", tmp_path / "merged")
    _fine(status, err)
    assert expected in err and not (tmp_path / "merged").exists()


# --- 3. partial is visible everywhere --------------------------------------------------------------


def test_report_marks_an_unfinished_run_partial(tmp_path: Path, killed: Path, capsys) -> None:
    from reports.collect import collect
    from reports.render import html_table, render_latex
    from reports.table_engine import ColumnSpec, TableSpec, build_table

    results = collect([killed])
    column = ColumnSpec(key="set5", group="Set5", label="PSNR-Y", source="quality", dataset="set5",
                        metric="psnr_y", higher_is_better=True, decimals=2)
    spec = TableSpec(id="t", title="t", caption="", rows=("bicubic",), columns=(column,), preset="sisr_std")
    model = build_table(spec, results, [])
    cell = model.rows[0].cells[0]
    assert cell.partial == "2/5 unfinished" and cell.count == 2
    assert r"\textsuperscript{2/5 unfinished}" in render_latex(model)
    assert html_table(model)["rows"][0]["cells"][0]["partial"] == "2/5 unfinished"
    status, _, err = cli(capsys, "report", "--results", killed, "--out", tmp_path / "report")
    _fine(status, err, 0)


def test_a_subset_mean_gets_no_delta_to_the_paper(tmp_path: Path, data: Path, capsys) -> None:
    from reports.collect import collect
    from reports.paper_values import PaperValue
    from reports.table_engine import Values, make_cell

    for extra in ("im3.png", "im4.png"):
        (data / "Set5" / extra).unlink()
    assert _run(capsys, data, tmp_path / "subset")[0] == 0
    mean = Values(collect([tmp_path / "subset"])).means[("set5", "sisr_std", "bicubic", "none", "psnr_y")]
    assert mean.partial == "3/5"
    paper = PaperValue("p", "t", "r", "bicubic", "set5", "-", "psnr", "30.00", "dB", "", "", "")
    assert make_cell(mean.value, paper, True, None, 3, "", mean.partial).delta is None
    assert make_cell(mean.value, paper, True, None, 5, "", "").delta is not None


def test_accept_refuses_an_unfinished_run(tmp_path: Path, killed: Path, capsys) -> None:
    golden = tmp_path / "golden.csv"
    status, _, err = cli(capsys, "accept", killed, "--golden", golden)
    _fine(status, err)
    assert "unfinished run" in err and not golden.exists()


# --- 4. the identity holds the code and the numeric environment -------------------------------------

CODE_PLUGIN = """
from methods.bicubic import bicubic
from methods.registry import register

GAIN = {gain}

def coded(scale=4, device="cpu"):
    method = bicubic(scale=scale)
    upsample = method.predict
    method.predict = lambda lr, ref=None, ref_lr=None: upsample(lr) * GAIN
    return method

register("coded_bicubic", coded)
"""


def test_a_plugin_code_change_between_kill_and_resume_is_refused(
    tmp_path: Path, data: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "coded.py"
    plugin.write_text(CODE_PLUGIN.format(gain="1.0"))
    argv = ("--plugin", plugin, "run", "-p", PROTOCOL, "-m", "coded_bicubic", "--data", data)
    assert cli(capsys, *argv, "--out", tmp_path / "fresh")[0] == 0
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        assert cli(capsys, *argv, "--out", tmp_path / "out")[0] == 130
    journal = (tmp_path / "out" / "records.csv").read_bytes()
    plugin.write_text(CODE_PLUGIN.format(gain="0.5"))
    status, _, err = cli(capsys, *argv, "--out", tmp_path / "out")
    _fine(status, err)
    assert "plugin files changed (coded.py edited)" in err
    assert "code of coded_bicubic changed (coded.py edited)" in err
    assert (tmp_path / "out" / "records.csv").read_bytes() == journal
    plugin.write_text(CODE_PLUGIN.format(gain="1.0"))
    assert cli(capsys, *argv, "--out", tmp_path / "out")[0] == 0
    _same_as(tmp_path / "out", tmp_path / "fresh")


def test_a_thread_count_change_between_kill_and_resume_is_refused(
    tmp_path: Path, data: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = torch.get_num_threads()
    try:
        assert _run(capsys, data, tmp_path / "fresh", "--threads", "1")[0] == 0
        with monkeypatch.context() as patch:
            _interrupt_after(patch, 2)
            assert _run(capsys, data, tmp_path / "out", "--threads", "1")[0] == 130
        journal = (tmp_path / "out" / "records.csv").read_bytes()
        status, _, err = _run(capsys, data, tmp_path / "out", "--threads", "2")
        _fine(status, err)
        assert "intra-op threads 1 -> 2" in err
        assert (tmp_path / "out" / "records.csv").read_bytes() == journal
        assert _run(capsys, data, tmp_path / "out", "--threads", "1")[0] == 0
        _same_as(tmp_path / "out", tmp_path / "fresh")
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("field", ["git commit", "git dirty", "torch version", "device model", "method source"])
def test_any_code_or_environment_difference_is_named(
    killed: Path, data: Path, capsys, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    run_json = json.loads((killed / "run.json").read_text())
    identity = run_json["identity"]
    if field.startswith("git"):
        state = dict(identity["git"])
        state["commit" if field == "git commit" else "dirty"] = "0" * 40 if field == "git commit" else "maybe"
        monkeypatch.setattr(rundir, "git_state", lambda: state)
        expected = f"suite code (git {field.split()[1]})"
    elif field == "method source":
        identity["methods"]["bicubic"]["source"] = {"methods/bicubic.py": "0" * 64}
        (killed / "run.json").write_text(json.dumps(run_json))
        expected = "code of bicubic changed (bicubic.py edited)"
    else:
        key = "torch" if field == "torch version" else "device_model"
        identity["numeric"][key] = "older"
        (killed / "run.json").write_text(json.dumps(run_json))
        expected = f"{field} 'older' -> "
    journal = (killed / "records.csv").read_bytes()
    status, _, err = _run(capsys, data, killed)
    _fine(status, err)
    assert expected in err and (killed / "records.csv").read_bytes() == journal


def test_no_git_is_unknown_never_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rundir, "CHECKOUT", tmp_path)
    assert rundir.git_state() == {"commit": "unknown", "dirty": None}
    (tmp_path / ".git").mkdir()  # a broken checkout: git fails, still no error
    assert rundir.git_state()["commit"] == "unknown"


# --- 5. hash what you score ------------------------------------------------------------------------


def test_a_file_replaced_mid_run_is_never_scored(
    data: Path, clean: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = data / "Set5" / "im3.png"
    original_bytes = target.read_bytes()
    original = RecordAppender.append

    def append(self: RecordAppender, rows: list) -> None:  # type: ignore[type-arg]
        original(self, rows)
        array = np.asarray(Image.open(target)).copy()
        array[0, 0, 0] ^= 1
        Image.fromarray(array).save(target)

    monkeypatch.setattr(RecordAppender, "append", append)
    out = tmp_path / "out"
    status, _, err = _run(capsys, data, out)
    _fine(status, err)
    assert "im3.png changed while the run was going" in err
    assert {r.image for r in read_records(out / "records.csv")} == {"im0", "im1", "im2"}
    monkeypatch.setattr(RecordAppender, "append", original)
    target.write_bytes(original_bytes)
    assert _run(capsys, data, out)[0] == 0
    _same_as(out, clean)


def test_pinned_read_decodes_the_bytes_it_hashed(tmp_path: Path) -> None:
    path = make_set5(tmp_path, count=1) / "Set5" / "im0.png"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pinned_sha256({str(path): digest}):
        assert read_image(path).shape == (36, 32, 3)
    with pinned_sha256({str(path): "0" * 64}), pytest.raises(UserError, match="changed while the run was going"):
        read_image(path)


# --- 6. every entry of a dataset folder is accounted for -------------------------------------------


def _hostile_entry(folder: Path, kind: str) -> None:
    if kind == "dangling symlink":
        (folder / "ghost.png").symlink_to(folder / "nowhere.png")
    elif kind == "folder":
        (folder / "sub.png").mkdir()
    elif kind == "fifo":
        os.mkfifo(folder / "pipe.png")
    elif kind == "newline":
        shutil.copy(folder / "im0.png", folder / "two\nlines.png")
    elif kind == "non-utf8":
        shutil.copy(folder / "im0.png", os.path.join(os.fsencode(folder), b"\xff\xfe.png"))
    elif kind in ("ALL", "MEAN"):
        shutil.copy(folder / "im0.png", folder / f"{kind}.png")


@pytest.mark.parametrize("kind, expected", [
    ("dangling symlink", "'ghost.png' (dangling symlink)"),
    ("folder", "'sub.png' (not a regular file)"),
    ("fifo", "'pipe.png' (not a regular file)"),
    ("newline", "'two\\nlines' holds a control character"),
    ("non-utf8", "'\\udcff\\udcfe' is not valid UTF-8"),
    ("ALL", "'ALL' is reserved"),
    ("MEAN", "'MEAN' is reserved"),
])
def test_hostile_dataset_entries_are_refused_up_front(
    tmp_path: Path, data: Path, capsys, kind: str, expected: str
) -> None:
    _hostile_entry(data / "Set5", kind)
    status, _, err = _run(capsys, data, tmp_path / "out")
    _fine(status, err)
    assert expected in err and not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_image_is_refused(tmp_path: Path, data: Path, capsys) -> None:
    (data / "Set5" / "im2.png").chmod(0)
    status, _, err = _run(capsys, data, tmp_path / "out")
    _fine(status, err)
    assert "'im2.png' (not readable)" in err


def test_names_with_separators_round_trip_through_the_records(tmp_path: Path, data: Path, capsys) -> None:
    odd = 'a,b "c" d;e'
    os.rename(data / "Set5" / "im4.png", data / "Set5" / f"{odd}.png")
    out = tmp_path / "out"
    assert _run(capsys, data, out)[0] == 0
    assert odd in {r.image for r in read_records(out / "records.csv")}
    with open(out / rundir.INPUTS_FILE, newline="") as handle:
        assert odd in {row[0] for row in csv.reader(handle)}
    before = (out / "records.csv").read_bytes()
    status, _, err = _run(capsys, data, out)  # resume of a finished run: nothing dropped as torn
    _fine(status, err, 0)
    assert (out / "records.csv").read_bytes() == before and "incomplete" not in err


# --- 7. every write failure is a message -----------------------------------------------------------

WRITE_POINTS = [  # (file name the failing write goes to, which write of that file fails)
    ("run.lock", 1), ("run.json.tmp", 1), ("inputs.csv.tmp", 1), ("records.csv.tmp", 1), ("records.csv", 3),
    ("records.sha256.tmp", 1), ("records.csv.tmp", 2), ("im2.png.tmp", 1),
]


@pytest.mark.parametrize("name, nth", WRITE_POINTS, ids=[f"{n}#{k}" for n, k in WRITE_POINTS])
def test_disk_full_at_every_write_point(
    tmp_path: Path, data: Path, clean: Path, capsys, monkeypatch: pytest.MonkeyPatch, name: str, nth: int
) -> None:
    original = records_module.write_bytes
    seen = {"n": 0}

    def full(handle: int, payload: bytes) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{handle}")) == name:
            seen["n"] += 1
            if seen["n"] == nth:
                original(handle, payload[: len(payload) // 2])  # a torn write, then the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(handle, payload)

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(records_module, "write_bytes", full)
        status, _, err = _run(capsys, data, out, "--save-images")
    _fine(status, err)
    messages = [line for line in err.replace("\r", "\n").splitlines() if "error" in line]  # tqdm shares stderr
    assert seen["n"] == nth and len(messages) == 1 and "No space left on device" in messages[0]
    assert not [p for p in out.rglob("*.tmp")]
    assert _run(capsys, data, out, "--save-images")[0] == 0  # space freed: the same command resumes
    _same_as(out, clean)


# --- 8. exact messages -----------------------------------------------------------------------------


def test_missing_inputs_csv_does_not_invent_changed_files(data: Path, clean: Path, capsys) -> None:
    (clean / rundir.INPUTS_FILE).unlink()
    array = np.asarray(Image.open(data / "Set5" / "im2.png")).copy()
    array[0, 0, 0] ^= 1
    Image.fromarray(array).save(data / "Set5" / "im2.png")
    status, _, err = _run(capsys, data, clean)
    _fine(status, err)
    assert "inputs.csv is missing or was edited, so which files changed cannot be named" in err
    assert "im0" not in err


TINY_PLUGIN = """
import torch
from methods.base import load_state_dict_strict, read_checkpoint
from methods.bicubic import bicubic
from methods.registry import register

def tiny(scale=4, device="cpu"):
    method = bicubic(scale=scale)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 3, 1))
    def load_weights(path):
        load_state_dict_strict(net, read_checkpoint(path), "tiny (tiny.pth)")
    method.load_weights = load_weights
    return method

register("tiny_net", tiny)
"""


def test_a_checkpoint_mismatch_lists_its_keys(tmp_path: Path, data: Path, capsys) -> None:
    plugin = tmp_path / "tiny.py"
    plugin.write_text(TINY_PLUGIN)
    checkpoint = tmp_path / "bad.pth"
    torch.save({"0.weight": torch.zeros(4, 3, 5, 5), "extra.bias": torch.zeros(3)}, checkpoint)
    status, _, err = cli(capsys, "--plugin", plugin, "run", "-p", PROTOCOL, "-m", "tiny_net", "--data", data,
                         "--weights", checkpoint, "--out", tmp_path / "out")
    _fine(status, err)
    assert "missing keys (3): 0.bias, 1.bias, 1.weight" in err
    assert "unexpected keys (1): extra.bias" in err
    assert "shape mismatches (1): 0.weight: checkpoint (4, 3, 5, 5) vs model (4, 3, 3, 3)" in err
    assert not (tmp_path / "out" / "records.csv").exists()


@pytest.mark.parametrize("copy", ["identical", "stale"])
def test_duplicate_rows_in_records_are_a_malformed_file(clean: Path, capsys, copy: str) -> None:
    lines = (clean / "records.csv").read_text().splitlines(keepends=True)
    duplicate = lines[3] if copy == "identical" else lines[3].rsplit(",", 1)[0] + ",1.000000\n"
    (clean / "records.csv").write_text("".join([*lines, duplicate]))
    status, out, err = cli(capsys, "gate", "--run", clean, "--allow-empty")
    _fine(status, err)
    key = "/".join(lines[3].split(",")[1:7])
    assert f"duplicate row for {key}" in err and "MEAN" not in out


def test_duplicate_golden_keys_are_a_malformed_file(tmp_path: Path, clean: Path, capsys) -> None:
    golden = tmp_path / "golden.csv"
    assert cli(capsys, "accept", clean, "--golden", golden)[0] == 0
    lines = golden.read_text().splitlines(keepends=True)
    golden.write_text("".join([*lines, lines[1]]))
    status, _, err = cli(capsys, "gate", "--run", clean, "--golden", golden)
    _fine(status, err)
    assert f"{golden}:{len(lines) + 1}: duplicate golden key" in err


# --- 9. no unverified "installed" ------------------------------------------------------------------


def _unpinned_weight():  # type: ignore[no-untyped-def]
    from methods.registry import cards

    return next((c, w) for c in cards() for w in c.weights if w.sha256 is None and w.layout is None)


@pytest.mark.parametrize("content", ["garbage", "wrong layout"])
def test_a_file_under_an_official_name_is_verified_before_anything_is_said(
    tmp_path: Path, capsys, content: str
) -> None:
    card, weight = _unpinned_weight()
    target = tmp_path / weight.file_name
    if content == "garbage":
        target.write_bytes(b"not a checkpoint at all")
    else:
        torch.save({"nothing": torch.zeros(1)}, target)
    before = target.read_bytes()
    status, out, err = cli(capsys, "weights", "list", "--json", "--weights", tmp_path)
    row = next(r for r in json.loads(out)["files"] if r["file"] == weight.file_name)
    expected = "invalid: not a PyTorch checkpoint" if content == "garbage" else "unverified"
    assert row["status"].startswith(expected) and not row["installed"]
    status, out, _ = cli(capsys, "list", "methods", card.name, "--json", "--weights", tmp_path)
    assert json.loads(out)[0]["weights"] != "installed"
    status, out, err = cli(capsys, "weights", "fetch", weight.file_name, "--weights", tmp_path)
    _fine(status, err)
    assert "is already there but is invalid" in err and "ok:" not in out
    assert target.read_bytes() == before and not (tmp_path / "sha256.json").exists()


def test_a_pinned_file_with_other_bytes_is_invalid(tmp_path: Path, capsys) -> None:
    from methods.registry import cards

    card, weight = next((c, w) for c in cards() for w in c.weights if w.sha256 is not None)
    torch.save({"x": torch.zeros(1)}, tmp_path / weight.file_name)
    status, out, _ = cli(capsys, "list", "methods", card.name, "--json", "--weights", tmp_path)
    assert json.loads(out)[0]["weights"] == "invalid: sha256 is not the official file's"

