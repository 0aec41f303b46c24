"""The committed protocol audit (bicubic and CARN-M on Set5, Set14, Urban100(25), WR-SR): complete, consistent
with its own per-image records, reproducible from the data, and rendered."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.commands.audit import applicable_presets, audit, audit_table
from bench.commands.cli import main
from bench.results.records import read_records
from reports.page import render_report

AUDIT_DIR = Path(__file__).resolve().parents[1] / "reports" / "results" / "audit"
IMAGES_PER_DATASET = {"set5": 5, "set14": 14, "urban100": 25, "wrsr": 80}
COMMITTED = [(method, dataset) for method in ("bicubic", "carn_m") for dataset in IMAGES_PER_DATASET]


@pytest.mark.parametrize(("method", "dataset"), COMMITTED)
def test_committed_audit_is_complete_and_matches_its_records(method: str, dataset: str) -> None:
    folder = AUDIT_DIR / f"{method}_{dataset}"
    committed = pd.read_csv(folder / "audit.csv", index_col="preset")
    assert set(committed.index) == {spec.name for spec in applicable_presets(method, dataset)}
    records = [r for path in sorted(folder.glob("*/records.csv")) for r in read_records(path)]
    for preset, group in pd.DataFrame([r.__dict__ for r in records]).groupby("preset"):
        assert all(group.groupby("metric")["image"].nunique() == IMAGES_PER_DATASET[dataset]), preset
    recomputed = audit_table(records)
    pd.testing.assert_frame_equal(committed, recomputed[committed.columns], check_names=False, rtol=0, atol=6e-7)


def test_committed_bicubic_set5_audit_reproduces(shared: Path, tmp_path: Path) -> None:
    presets = ["refsr", "sisr_std", "srntt_port", "masa2021_prefix"]
    fresh = audit("bicubic", "set5", tmp_path, str(shared / "data"), None, presets)
    committed = pd.read_csv(AUDIT_DIR / "bicubic_set5" / "audit.csv", index_col="preset").loc[presets]
    pd.testing.assert_frame_equal(
        fresh.loc[presets], committed[fresh.columns], check_names=False, rtol=0, atol=1e-6
    )


def test_committed_audit_renders(tmp_path: Path) -> None:
    render_report([AUDIT_DIR], tmp_path)
    for method, dataset in COMMITTED:
        table = (tmp_path / "tables" / f"audit_{method}_{dataset}.tex").read_text()
        assert "refsr" in table and "srntt\\_port" in table
    html = (tmp_path / "index.html").read_text()
    assert "Protocol audit: carn_m on WR-SR" in html
    # each audit section names its own runs as the source of its protocol sentences (issue 15: carn_m on Set14
    # listed results/audit/bicubic_set14/...)
    for method, dataset in COMMITTED:
        section = html.split(f'<section id="audit_{method}_{dataset}">', 1)[1].split("</section>", 1)[0]
        assert f"audit/{method}_{dataset}/" in section
        others = {m for m, _ in COMMITTED} - {method}
        assert not any(f"audit/{other}_{dataset}/" in section for other in others), (method, dataset)


def test_audit_terminal_table_has_no_nan() -> None:
    """The table `audit` prints: one line per preset, only the metrics it computed, Δ against refsr."""
    import pandas as pd

    from bench.commands.audit import format_audit_table

    table = pd.read_csv(AUDIT_DIR / "carn_m_set14" / "audit.csv", index_col=0)
    assert table.isna().any().any()  # the wide table has gaps (presets compute different metrics)
    text = format_audit_table(table)
    assert "nan" not in text.lower()
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert set(lines) == set(table.index) and text.splitlines()[1].startswith("refsr ")
    delta = table.loc["sisr_std", "psnr_y"] - table.loc["refsr", "psnr_y"]
    assert f"psnr_y {table.loc['sisr_std', 'psnr_y']:.4f} ({delta:+.4f})" in lines["sisr_std"]
    assert "psnr_rgb" in lines["mmagic_ttsr"] and "(" not in lines["mmagic_ttsr"]  # refsr has no RGB metric


def test_audit_names_unknown_and_inapplicable_presets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["audit", "-m", "carn_m", "-d", "set5", "--data", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main([*base, "--presets", "refsr", "nosuch"]) == 2
    assert "unknown preset 'nosuch'; valid: " in capsys.readouterr().err
    assert main([*base, "--presets", "refsr", "ccnet2017"]) == 2  # x8 only; carn_m here is x4
    assert "ccnet2017 do not apply to carn_m on set5" in capsys.readouterr().err
