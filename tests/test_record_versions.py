"""Format versions: version-1 records.csv / golden files (``protocol``, ``level`` columns) and schema-2 run.json
files (``protocol`` key) -- the committed results -- read to the same values as their current rewrite, and a
schema-2 run folder resumes into what a fresh run writes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from rundata import cli, make_set5

from bench.results.gate import GOLDEN_COLUMNS, accept, read_golden
from bench.results.records import (
    CHECKSUM_FILE,
    COLUMNS,
    V1_COLUMNS,
    Record,
    RecordAppender,
    read_journal,
    read_records,
    records_text,
    run_json_dataset,
    write_records,
)
from reports.collect import collect

ROOT = Path(__file__).resolve().parents[1]
V1_RECORDS = ROOT / "reports" / "results" / "audit" / "bicubic_set14" / "refsr"  # committed, version 1
V1_GOLDEN = ROOT / "reports" / "golden" / "urban100.csv"  # committed, version 1


def _with_header(text: str, header: tuple[str, ...]) -> str:
    return ",".join(header) + "\n" + text.split("\n", 1)[1]


def test_committed_v1_records_read_as_their_v2_rewrite(tmp_path: Path) -> None:
    v1_text = (V1_RECORDS / "records.csv").read_text()
    assert v1_text.startswith(",".join(V1_COLUMNS) + "\n")  # the committed file really is version 1
    v1 = read_records(V1_RECORDS / "records.csv")
    assert len(v1) == 28 and {(r.dataset, r.preset, r.reference) for r in v1} == {("set14", "refsr", "self_lr")}
    v2_path = tmp_path / "records.csv"
    v2_path.write_text(_with_header(v1_text, COLUMNS))
    assert read_records(v2_path) == v1
    # writing always uses the version-2 header; rows, formatting and order are the version-1 file's
    assert records_text(v1) == _with_header(v1_text, COLUMNS)
    write_records(tmp_path / "rewritten.csv", v1)
    assert (tmp_path / "rewritten.csv").read_text() == _with_header(v1_text, COLUMNS)


def test_v1_journal_reads_as_v2(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    appender = RecordAppender(path, ["psnr_y"], "r1")
    group = [Record("r1", "set5", "sisr_std", "bicubic", "none", "im1", "psnr_y", 30.5)]
    appender.append(group)
    v2_groups = read_journal(path)
    path.write_text(_with_header(path.read_text(), V1_COLUMNS))
    assert read_journal(path) == v2_groups == ([group], 0)


def test_committed_v1_golden_reads_as_its_v2_rewrite(tmp_path: Path) -> None:
    v1_text = V1_GOLDEN.read_text()
    assert v1_text.startswith("method,protocol,preset,level,")
    v2_path = tmp_path / "urban100.csv"
    v2_path.write_text(_with_header(v1_text, GOLDEN_COLUMNS))
    v1 = read_golden([V1_GOLDEN])
    assert len(v1) > 100 and read_golden([v2_path]) == v1
    # accept into a copy of the v1 file: the new header, the other (dataset, preset) rows kept unchanged
    run = tmp_path / "run"
    write_records(run / "records.csv", [Record("r9", "set5", "sisr_std", "bicubic", "none", "im1", "psnr_y", 30.5)])
    target = tmp_path / "accepted.csv"
    shutil.copy(V1_GOLDEN, target)
    assert accept(run, target) == 2  # the image row and its MEAN
    assert target.read_text().startswith(",".join(GOLDEN_COLUMNS) + "\n")
    rows = read_golden([target])
    assert [r for r in rows if r.key[1] != "set5"] == v1
    assert {r.key for r in rows if r.key[1] == "set5"} == {
        ("bicubic", "set5", "sisr_std", "none", image, "psnr_y") for image in ("im1", "MEAN")}


def test_schema_2_run_json_is_read_by_the_report() -> None:
    run_json = json.loads((V1_RECORDS / "run.json").read_text())
    assert "dataset" not in run_json and run_json_dataset(run_json) == "set14"
    assert run_json_dataset({"dataset": "set5", "schema": 3}) == "set5"
    results = collect([V1_RECORDS])
    assert [run.dataset for run in results.runs] == ["set14"]
    assert {r.dataset for r in results.records} == {"set14"}


def _as_schema_2(folder: Path) -> None:
    """Make a finished run folder what the previous version wrote: schema 2, "protocol", the v1 records header."""
    run_json = json.loads((folder / "run.json").read_text())
    run_json["schema"] = run_json["identity"]["schema"] = 2
    run_json["protocol"] = run_json.pop("dataset")
    (folder / "run.json").write_text(json.dumps(run_json, indent=2) + "\n")
    v1_text = _with_header((folder / "records.csv").read_text(), V1_COLUMNS)
    (folder / "records.csv").write_text(v1_text)
    (folder / CHECKSUM_FILE).write_text(hashlib.sha256(v1_text.encode()).hexdigest() + "\n")


def test_schema_2_run_folder_resumes_like_a_fresh_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_set5(tmp_path / "data")
    args = ("run", "-p", "set5:sisr_std", "-m", "bicubic", "--data", data)
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    assert cli(capsys, *args, "--out", fresh)[0] == 0
    shutil.copytree(fresh, old)
    _as_schema_2(old)
    code, out, err = cli(capsys, *args, "--out", old)
    assert code == 0 and "recomputing" not in out + err  # the v1 file was kept, not recomputed
    assert (old / "records.csv").read_bytes() == (fresh / "records.csv").read_bytes()
    resumed = json.loads((old / "run.json").read_text())
    assert resumed["schema"] == 3 and resumed["dataset"] == "set5" and "protocol" not in resumed
    assert resumed["run_id"] == json.loads((fresh / "run.json").read_text())["run_id"]


def test_schema_2_shards_merge_like_current_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_set5(tmp_path / "data")
    args = ("run", "-p", "set5:sisr_std", "-m", "bicubic", "--data", data)
    assert cli(capsys, *args, "--out", tmp_path / "fresh")[0] == 0
    shards = [tmp_path / f"shard{i}" for i in range(2)]
    for i, shard in enumerate(shards):
        assert cli(capsys, *args, "--shard", f"{i}/2", "--out", shard)[0] == 0
        _as_schema_2(shard)
    assert cli(capsys, "merge", *shards, "--out", tmp_path / "merged")[0] == 0
    assert (tmp_path / "merged" / "records.csv").read_bytes() == (tmp_path / "fresh" / "records.csv").read_bytes()
    merged = json.loads((tmp_path / "merged" / "run.json").read_text())
    assert merged["schema"] == 3 and [run_json_dataset(r) for r in merged["runs"]] == ["set5", "set5"]
