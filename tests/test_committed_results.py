"""The committed results, golden files and report fixtures are in the one current format, which is the only one read.

They were rewritten from version 1 (``protocol``/``level`` columns, run.json ``protocol`` key, two spec fields since
removed) once, in the commit that says "Migrate once"; its message carries the row-by-row comparison of the old and
new files. Here: every committed file parses with the current strict readers, each quality run's stored protocol
sentence is what its stored spec renders now, and a version-1 header is refused naming the expected columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.results.gate import GOLDEN_COLUMNS, read_golden
from bench.results.records import COLUMNS, read_records, run_json_dataset
from protocols.core import UserError
from reports.table_engine import spec_from_run_json

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = [ROOT / "reports" / "results", ROOT / "tests" / "data" / "report_fixture"]
RECORDS = sorted(p for folder in COMMITTED for p in folder.rglob("records.csv"))
RUN_JSONS = sorted(p for folder in COMMITTED for p in folder.rglob("run.json"))
GOLDEN = sorted((ROOT / "reports" / "golden").glob("*.csv"))


def test_the_committed_files_are_found() -> None:
    assert len(RECORDS) >= 120 and len(RUN_JSONS) >= 120 and GOLDEN  # 122 / 126 / 1 when migrated


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_records_are_current(path: Path) -> None:
    assert path.read_text().split("\n", 1)[0] == ",".join(COLUMNS)
    records = read_records(path)
    assert records and all(r.dataset and r.reference for r in records)


def test_committed_golden_files_are_current() -> None:
    for path in GOLDEN:
        assert path.read_text().split("\n", 1)[0] == ",".join(GOLDEN_COLUMNS)
        assert read_golden([path])


def _runs(run_json: dict[str, object]) -> list[dict[str, object]]:
    runs = run_json.get("runs")
    return [run_json, *runs] if isinstance(runs, list) else [run_json]


@pytest.mark.parametrize("path", RUN_JSONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_run_json_is_current(path: Path) -> None:
    for run in _runs(json.loads(path.read_text())):
        assert "protocol" not in run
        spec_data = run.get("protocol_spec")
        if not isinstance(spec_data, dict) or spec_data.get("kind", "quality") != "quality":
            continue
        spec = spec_from_run_json(spec_data)
        assert spec is not None, "the stored spec no longer builds a ProtocolSpec"
        assert spec.sentence(run_json_dataset(run)) == run["protocol_sentence"]


def test_a_version_1_header_is_refused(tmp_path: Path) -> None:
    v1_records = tmp_path / "records.csv"
    v1_records.write_text("run_id,protocol,preset,method,level,image,metric,value\nr1,set5,sisr_std,bicubic,none,a,psnr_y,30\n")
    with pytest.raises(UserError, match=f"expected {','.join(COLUMNS)}"):
        read_records(v1_records)
    v1_golden = tmp_path / "golden.csv"
    v1_golden.write_text("method,protocol,preset,level,image,metric,expected,atol,rule,device,source_run\n")
    with pytest.raises(UserError, match="expected columns"):
        read_golden([v1_golden])
