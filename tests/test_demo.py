"""``refsr-bench demo``: the default (quick) form end to end, and its parts."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from bench.commands.demo import QUICK, DemoResult, StepTiming, summary
from bench.engines.cost.network import network_signature


def test_checkpoint_variants_share_one_cost_measurement() -> None:
    """masa_rec / masa_gan differ only in their checkpoint: one signature; a different network: another."""
    from methods.registry import create

    size = ((32, 32), (128, 128))
    rec, gan, ttsr = (network_signature(create(name, scale=4), *size) for name in ("masa_rec", "masa_gan", "ttsr_rec"))
    assert rec == gan and rec != ttsr
    assert network_signature(create("masa_rec", scale=4), (32, 32), (64, 64)) != rec  # input size matters


def test_summary_names_each_step_its_time_and_the_report(tmp_path: Path) -> None:
    result = DemoResult(index=tmp_path / "index.html", runs_dir=tmp_path / "runs", settings=QUICK,
                        steps=[StepTiming("quality", "3 methods", 4.25), StepTiming("cost", "19 networks", 75.0)],
                        cost_dir=tmp_path / "runs" / "cost_lr32_ref128")
    text = summary(result)
    assert text.splitlines()[0] == "demo (quick) finished in 1 min 19 s:"
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert lines["quality"].split() == ["quality", "4.2", "s", "3", "methods"]
    assert lines["cost"].split() == ["cost", "1", "min", "15", "s", "19", "networks"]
    assert f"report:  {tmp_path / 'index.html'}" in text and "--full" in text


@pytest.mark.slow
def test_default_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real default demo (quick form). Slow: ~1 min on an idle 2-core machine, several under load."""
    from bench.commands.cli import main
    from bench.commands.demo import survey_methods

    started = time.perf_counter()
    assert main(["demo", "--out", str(tmp_path)]) == 0
    wall_s = time.perf_counter() - started
    printed = capsys.readouterr().out
    steps = [line.split()[0] for line in printed.split("finished in", 1)[1].splitlines()[1:6]]
    assert steps == ["setup", "quality", "matching", "cost", "report"]
    assert f"report:  {tmp_path / 'index.html'}" in printed
    runs = tmp_path / "runs"
    found = survey_methods(None)
    # cost of every registered network, in a normal cost run folder the report collects
    with open(runs / "cost_lr32_ref128" / "cost.csv", newline="") as handle:
        cost = list(csv.DictReader(handle))
    assert {r["method"] for r in cost if r["quantity"] == "flops_t"} == {name for name, _ in found.networks}
    assert {r["lr_hw"] for r in cost} == {"32x32"} and (runs / "cost_lr32_ref128" / "run.json").is_file()
    # quality on both embedded sets, matching of every matcher on both
    for dataset in ("demo_stereo", "demo_homography"):
        with open(runs / f"quality_{dataset}" / "records.csv", newline="") as handle:
            assert {r["method"] for r in csv.DictReader(handle)} == set(found.sr)
        with open(runs / f"matching_{dataset}" / "records.csv", newline="") as handle:
            assert {r["method"] for r in csv.DictReader(handle)} == set(found.matchers)
    html = (tmp_path / "index.html").read_text()
    assert html.count('class="tile-name">HR (ground truth)') == 2  # one crop grid per embedded set
    assert html.count('src="visuals/match_') == 2 * len(found.matchers)
    assert all((tmp_path / "visuals").glob("*.png"))
    print(f"default demo wall time: {wall_s:.0f} s")
