"""Dataset, metric and method cards: a plugin file adds a dataset, a metric or a method and every consumer sees
it (``list``, ``run``, ``dataset-job``, the report tables); Sintel and LF video are ordinary dataset cards, so
``run`` fills CC-Net Table 3 under ``ccnet2017``."""

from __future__ import annotations

import csv
import math
import statistics
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.commands.cli import main
from protocols.datasets import DATASETS, load_items
from protocols.metrics import METRICS
from protocols.spec import PRESETS
from reports.collect import collect
from reports.paper_values import load_paper_values
from reports.tables import PAPER_TABLES, Availability, TableModel, build_table, paper_table_spec

pytestmark = pytest.mark.usefixtures("one_thread")

# Every method and dataset counts as available: the tests look at which cells hold values, not at reasons.
EVERYTHING = Availability(lambda _: None, lambda _: None)


@pytest.fixture()
def registries() -> Iterator[None]:
    """Plugins register into the module-level registries; put them back afterwards."""
    from methods import registry as methods_registry

    saved = [(registry, dict(registry)) for registry in (DATASETS, METRICS, PRESETS, methods_registry._CARDS,
                                                          methods_registry._ALIASES,
                                                          methods_registry._PLUGIN_FACTORIES)]
    yield
    for registry, copy in saved:
        registry.clear()
        registry.update(copy)


def _smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3): a random coarse grid upsampled, so bicubic SR is neither perfect nor noise."""
    coarse = rng.integers(0, 256, (max(2, height // 6), max(2, width // 6), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))


def _records(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _psnr_rgb(sr: np.ndarray, hr: np.ndarray) -> float:
    mse = np.mean((sr.astype(np.float64) - hr.astype(np.float64)) ** 2)
    return float(10.0 * np.log10(255.0**2 / mse))


def _pil_bicubic_roundtrip(hr: np.ndarray, scale: int) -> np.ndarray:
    """Independent oracle of ``bicubic`` under a mod-crop + Pillow preset: Pillow down by ``scale``, then up."""
    height, width = hr.shape[:2]
    low = Image.fromarray(hr).resize((width // scale, height // scale), Image.Resampling.BICUBIC)
    return np.asarray(low.resize((width, height), Image.Resampling.BICUBIC))


# ------------------------------------------------------------------------------------------------
# a dataset and a metric from one plugin file each

DATASET_PLUGIN = '''
    """A user's dataset: TinyPairs/<name>_in.png with its reference <name>_ref.png."""
    from pathlib import Path

    from protocols.datasets import DatasetCard, DatasetItem, JobStep, register_dataset


    def discover(folder: Path) -> list[DatasetItem]:
        inputs = sorted(folder.glob("*_in.png"))
        return [DatasetItem(p.name[:-7], p, (("pair", p.with_name(p.name[:-7] + "_ref.png")),)) for p in inputs]


    register_dataset(DatasetCard(
        "tiny_pairs", "Tiny pairs", ("TinyPairs",), "TinyPairs/<name>_in.png and <name>_ref.png", discover,
        has_references=True, column_label="TinyPairs", job=(JobStep("refsr", methods=("bicubic", "nearest_up")),),
    ))
'''

METRIC_PLUGIN = '''
    """A user's metric, and a preset that reports it next to the suite's."""
    import dataclasses

    import numpy as np

    from protocols.metrics import MetricCard, register_metric
    from protocols.spec import PRESETS, register_preset


    def mse(sr: np.ndarray, hr: np.ndarray, *, crop_border: int) -> float:
        inner = slice(crop_border, -crop_border or None)
        return float(np.mean((sr[inner, inner] - hr[inner, inner]) ** 2))


    register_metric(MetricCard("mse_rgb", "MSE-RGB", mse, "rgb", higher_is_better=False, decimals=2))
    register_preset(dataclasses.replace(PRESETS["refsr"], name="refsr_mse", description="refsr plus MSE",
                                        metrics=("psnr_y", "psnr_rgb", "mse_rgb")))
'''


METHOD_PLUGIN = '''
    """A user's method: nearest-neighbour upsampling (no reference, no checkpoint)."""
    import torch

    from methods.base import info_from_card
    from methods.cards import MethodCard
    from methods.registry import register

    CARD = MethodCard(name="nearest_up", factory="refsr_plugin_nearest_up:nearest_up", task="sisr", scales=(2, 4),
                      inputs=("lr",), title="Nearest-neighbour upsampling", venue="-", year=0, official_repo=None,
                      license="MIT", trained=False)


    class NearestUp:
        def __init__(self, scale: int) -> None:
            self.info = info_from_card(CARD, scale=scale)
            self.module = torch.nn.Identity()
            self.weights_loaded = True

        def predict(self, lr, ref=None, ref_lr=None):
            scale = self.info.scale
            return lr.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)

        def load_weights(self, path):
            raise ValueError("nearest_up has no weights")

        def cost_graph(self, lr_hw, ref_hw):
            return self.module, (torch.zeros(1, 3, *lr_hw),)


    def nearest_up(scale: int = 4, device: str = "cpu") -> NearestUp:
        return NearestUp(scale)


    register(CARD, nearest_up)
'''


def _write_tiny_pairs(root: Path) -> None:
    rng = np.random.default_rng(3)
    folder = root / "TinyPairs"
    folder.mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(_smooth_image(rng, 40, 36)).save(folder / f"{name}_in.png")
        Image.fromarray(_smooth_image(rng, 40, 36)).save(folder / f"{name}_ref.png")


def test_plugin_dataset_metric_and_method_reach_every_consumer(
    tmp_path: Path, registries: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import reports.page

    dataset_plugin, metric_plugin = tmp_path / "tiny_pairs.py", tmp_path / "mse_metric.py"
    method_plugin = tmp_path / "nearest_up.py"
    dataset_plugin.write_text(textwrap.dedent(DATASET_PLUGIN))
    metric_plugin.write_text(textwrap.dedent(METRIC_PLUGIN))
    method_plugin.write_text(textwrap.dedent(METHOD_PLUGIN))
    data, out = tmp_path / "data", tmp_path / "out"
    _write_tiny_pairs(data)
    plugins = ["--plugin", str(dataset_plugin), "--plugin", str(metric_plugin), "--plugin", str(method_plugin)]

    # list
    assert main([*plugins, "list", "protocols"]) == 0
    listing = capsys.readouterr().out
    assert "tiny_pairs" in listing and "TinyPairs/<name>_in.png" in listing
    assert "mse_rgb" in listing and "MSE-RGB" in listing and "refsr_mse" in listing
    assert main([*plugins, "list", "methods"]) == 0
    assert any(line.split()[:4] == ["nearest_up", "-", "sisr", "2,4"] for line in capsys.readouterr().out.splitlines())

    # run: the plugin metric is scored on the same planes as PSNR-RGB (an independent relation between them)
    assert main([*plugins, "run", "-p", "tiny_pairs:refsr_mse", "-m", "bicubic", "nearest_up", "--data", str(data),
                 "--out", str(out / "run_mse")]) == 0
    rows = _records(out / "run_mse" / "records.csv")
    assert {r["image"] for r in rows} == {"a", "b"} and {r["reference"] for r in rows} == {"pair"}
    by_image = {(r["image"], r["metric"]): float(r["value"]) for r in rows if r["method"] == "bicubic"}
    # the plugin method against an independent oracle: Pillow bicubic LR (the preset's degradation), np.repeat up
    crop = PRESETS["refsr_mse"].crop_border
    for image in ("a", "b"):
        hr = np.asarray(Image.open(data / "TinyPairs" / f"{image}_in.png").convert("RGB"))
        low = np.asarray(Image.fromarray(hr).resize((hr.shape[1] // 4, hr.shape[0] // 4), Image.Resampling.BICUBIC))
        sr = np.repeat(np.repeat(low, 4, axis=0), 4, axis=1)
        inner = (slice(crop, -crop or None),) * 2
        got = next(float(r["value"]) for r in rows
                   if (r["method"], r["image"], r["metric"]) == ("nearest_up", image, "psnr_rgb"))
        assert got == pytest.approx(_psnr_rgb(sr[inner], hr[inner]), abs=1e-6)  # 6 decimals in records.csv
    for image in ("a", "b"):
        mse = by_image[(image, "mse_rgb")]
        assert mse > 0
        # same crop, same quantised levels: PSNR = 10 log10(255² / MSE); records.csv keeps 6 decimals
        # (bench.results.records.format_value), so each side is within 5e-7 of the computed value
        assert by_image[(image, "psnr_rgb")] == pytest.approx(10 * math.log10(255.0**2 / mse), abs=1e-6)

    # dataset-job (what `tox -e tiny_pairs` would run): the card's steps, the gate, the report
    monkeypatch.setattr(reports.page, "suite_availability", lambda data=None, weights=None: EVERYTHING)
    assert main([*plugins, "dataset-job", "tiny_pairs", "--data", str(data), "--out", str(out / "job")]) == 0
    job_rows = _records(out / "job" / "tiny_pairs_refsr" / "default" / "records.csv")
    assert {(r["preset"], r["method"], r["metric"]) for r in job_rows} == {
        ("refsr", method, metric) for method in ("bicubic", "nearest_up") for metric in ("psnr_y", "ssim_y")}
    fair = (out / "job" / "report" / "tables" / "fair_quality.tex").read_text()
    assert "TinyPairs" in fair  # the card's column label heads the dataset's columns
    assert "nearest" in fair  # the plugin method has its row

    # the report tables: the audit table (refsr vs refsr_mse on the plugin dataset) shows the plugin metric
    reports.page.render_report([out / "run_mse", out / "job"], out / "report", availability=EVERYTHING)
    audit = (out / "report" / "tables" / "audit_bicubic_tiny_pairs.tex").read_text()
    assert "MSE-RGB" in audit and "TinyPairs" in audit
    expected_mse = statistics.mean(by_image[(image, "mse_rgb")] for image in ("a", "b"))
    assert f"{expected_mse:.3f}" in audit  # audit tables print one decimal more than the card's 2


def test_cards_are_consistent_and_light() -> None:
    """Every job step names a preset that exists; matching steps sit on matching cards; the cards import no torch."""
    import subprocess
    import sys

    for card in DATASETS.values():
        for step in card.job:
            assert step.preset in PRESETS, (card.name, step.preset)
        assert all(step.kind == "quality" or card.kind == "matching" for step in card.job)
    assert {name for name, card in DATASETS.items() if card.kind == "matching"} == {
        "sintel", "lf_hci", "demo_stereo", "demo_homography"}
    code = ("import sys; import protocols.datasets, protocols.metrics, protocols.spec; "
            "print('torch' in sys.modules, 'skimage' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------------------------
# CC-Net Table 3 from `run`


def _ccnet_table(table_id: str, results_dirs: list[Path]) -> TableModel:
    paper_values = load_paper_values()
    definition = next(d for d in PAPER_TABLES if d.id == table_id)
    return build_table(paper_table_spec(definition, paper_values), collect(results_dirs), paper_values, EVERYTHING)


def _table3_cell(results_dir: Path, method: str, dataset: str) -> tuple[float | None, str | None]:
    model = _ccnet_table("ccnet_t3", [results_dir])
    column = [c.dataset for c in model.spec.columns].index(dataset)
    cell = next(row for row in model.rows if row.key == method).cells[column]
    return cell.ours, cell.paper_text


def test_run_fills_ccnet_table3_sintel(shared: Path, tmp_path: Path) -> None:
    data = shared / "data"
    items = load_items("sintel", data)
    clean = data / "MPI-Sintel_subset" / "training" / "clean"
    expected = [(scene.name, k) for scene in sorted(clean.iterdir()) for k in range(1, 5)
                if (scene / f"frame_{k:04d}.png").is_file() and (scene / f"frame_{k + 1:04d}.png").is_file()]
    assert [item.name for item in items] == [f"{scene}/frame_{k:04d}" for scene, k in expected]
    for item, (scene, k) in zip(items, expected, strict=True):  # input = frame t, reference = frame t+1
        assert item.hr == clean / scene / f"frame_{k:04d}.png"
        assert dict(item.refs)["pair"] == clean / scene / f"frame_{k + 1:04d}.png"

    out = tmp_path / "sintel"
    assert main(["run", "-p", "sintel:ccnet2017", "-m", "bicubic", "--data", str(data), "--out", str(out)]) == 0
    rows = _records(out / "records.csv")
    assert {(r["dataset"], r["preset"], r["reference"], r["metric"]) for r in rows} == {
        ("sintel", "ccnet2017", "pair", "psnr_rgb")}
    first = next(r for r in rows if r["image"] == items[0].name)
    hr = np.asarray(Image.open(items[0].hr).convert("RGB"))
    hr = hr[: hr.shape[0] // 8 * 8, : hr.shape[1] // 8 * 8]
    # records.csv keeps 6 decimals (records.format_value: within 5e-7); ccnet2017 keeps SR levels unrounded,
    # and k/255 in float32 times 255 differs from k by float32 rounding only, far below that.
    assert float(first["value"]) == pytest.approx(_psnr_rgb(_pil_bicubic_roundtrip(hr, 8), hr), abs=1e-6)

    ours, paper = _table3_cell(out, "bicubic", "sintel")
    assert ours == pytest.approx(statistics.mean(float(r["value"]) for r in rows)) and paper == "30.59"
    # beside the committed Sintel matching run (also preset ccnet2017), each table states its own protocol
    matching_run = Path(__file__).resolve().parents[1] / "reports" / "results" / "matching" / "sintel"
    table3 = _ccnet_table("ccnet_t3", [matching_run, out])  # each listed after the run of the other kind
    table2 = _ccnet_table("ccnet_t2", [out, matching_run])
    assert table3.sentences[0].startswith("Sintel") and "Preset ccnet2017: ×8" in table3.sentences[0]
    assert "Matching accuracy" in table2.sentences[0]


def _write_lf_video(path: Path) -> np.ndarray:
    """A CrossNet-layout HDF5 file: /img_HR uint8 (N=2, 8, 8, 3, 32, 48)."""
    import h5py

    rng = np.random.default_rng(5)
    hr = np.stack([np.stack([np.stack([_smooth_image(rng, 32, 48).transpose(2, 0, 1) for _ in range(8)])
                             for _ in range(8)]) for _ in range(2)])
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as handle:
        handle["img_HR"] = hr
    return hr


def test_run_fills_ccnet_table3_lf_video(tmp_path: Path) -> None:
    hr = _write_lf_video(tmp_path / "data" / "LF_video" / "test.h5")
    items = load_items("lf_video", tmp_path / "data")
    assert [item.name for item in items] == ["test/0000", "test/0001"]
    np.testing.assert_array_equal(items[1].hr, hr[1, 3, 3].transpose(1, 2, 0))  # input view (3, 3)
    np.testing.assert_array_equal(dict(items[1].refs)["pair"], hr[1, 0, 0].transpose(1, 2, 0))  # reference (0, 0)

    out = tmp_path / "lf"
    assert main(["run", "-p", "lf_video:ccnet2017", "-m", "bicubic", "--data", str(tmp_path / "data"),
                 "--out", str(out)]) == 0
    rows = _records(out / "records.csv")
    values = {r["image"]: float(r["value"]) for r in rows if r["metric"] == "psnr_rgb"}
    for index, name in enumerate(("test/0000", "test/0001")):
        view = np.ascontiguousarray(hr[index, 3, 3].transpose(1, 2, 0))
        assert values[name] == pytest.approx(_psnr_rgb(_pil_bicubic_roundtrip(view, 8), view), abs=1e-6)

    ours, paper = _table3_cell(out, "bicubic", "lf_video")
    assert ours == pytest.approx(statistics.mean(values.values())) and paper == "30.32"
