"""Discovery commands: readable one-line listings from the cards, JSON for scripts, ``--version``, a clear
"not a matcher" error, and a start-up that loads no torch for ``--help``, ``list`` and ``weights list``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.commands.cli import main
from bench.results.records import Record, write_records
from methods.cards import BUILTIN_CARDS

ROOT = Path(__file__).resolve().parents[1]


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_list_methods_one_line_each_with_aliases_task_scales_weights_paper(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "carn_m.pth").write_bytes(b"")
    status, out, _ = _out(capsys, "list", "methods", "--weights", str(tmp_path))
    assert status == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line and not line.startswith("weights:")}
    assert set(lines) >= {card.name for card in BUILTIN_CARDS}  # plus plugins other tests registered
    assert lines["masa_rec"].split()[1:5] == ["masa", "refsr", "4", "fetchable"] and "CVPR 2021" in lines["masa_rec"]
    # an empty file under the official name is not "installed" (issue 21): it is named invalid, with its reason
    assert lines["carn_m"].split()[1:5] == ["-", "sisr", "2,3,4", "invalid"] and "ECCV 2018" in lines["carn_m"]
    assert "carn_m: weights invalid: empty (0 bytes)" in out
    assert lines["zncc"].split()[2] == "matcher" and lines["crossnet"].split()[4] == "none"
    assert lines["bicubic"].split()[3] == "2,3,4,8+"


def test_list_json_for_scripts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, out, _ = _out(capsys, "list", "methods", "ttsr*", "--json", "--weights", str(tmp_path))
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["ttsr_gan", "ttsr_rec"] and rows[1]["aliases"] == ["ttsr"]
    assert rows[0]["weights"] == "fetchable" and rows[0]["task"] == "refsr"
    _, out, _ = _out(capsys, "list", "methods", "ttsr", "--json")  # an alias matches its method
    assert [r["name"] for r in json.loads(out)] == ["ttsr_rec"]
    _, out, _ = _out(capsys, "list", "protocols", "--json")
    listed = json.loads(out)
    kinds = {d["name"]: d["kind"] for d in listed["datasets"]}
    assert kinds["sintel"] == kinds["lf_hci"] == "matching" and kinds["cufed5"] == "quality"
    assert {"refsr", "masa2021", "ccnet2017", "sisr_std"} <= {p["name"] for p in listed["presets"]}


def test_list_protocols_shows_matching_datasets_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    from protocols.spec import PRESETS

    _, out, _ = _out(capsys, "list", "protocols")
    names = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert {"sintel", "lf_hci", "cufed5", "urban100"} <= set(names)
    assert set(PRESETS) <= set(names) and len(names) == len(set(names))


def test_weights_list_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, out, _ = _out(capsys, "weights", "list", "--json", "--weights", str(tmp_path))
    listed = json.loads(out)
    assert listed["folder"] == str(tmp_path)
    carn = next(r for r in listed["files"] if r["method"] == "carn_m")
    assert carn["sha256_pinned"] and carn["source"] == "https" and carn["url"].startswith("https://github.com/")
    assert {r["source"] for r in listed["files"] if r["method"] == "masa_rec"} == {"gdrive_folder"}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("refsr-bench ")


def test_match_rejects_a_method_that_is_not_a_matcher(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _out(capsys, "match", "-m", "carn_m", "-d", "demo_stereo")
    assert status == 2 and "carn_m is not a matcher" in err and "zncc" in err and "masa_rec" in err


def test_gate_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write_records(run / "records.csv", [Record("r1", "set5", "sisr_std", "bicubic", "-", "MEAN", "psnr_y", 30.0)])
    golden = tmp_path / "golden.csv"
    golden.write_text("method,dataset,preset,reference,image,metric,expected,atol,rule,device,source_run\n"
                      "bicubic,set5,sisr_std,-,MEAN,psnr_y,31.0,0.005,two_sided,,r0\n")
    status, out, _ = _out(capsys, "gate", "--run", str(run), "--golden", str(golden), "--json")
    (row,) = json.loads(out)
    assert status == 1 and row["verdict"] == "FAIL" and row["expected"] == 31.0 and row["got"] == 30.0


@pytest.mark.parametrize("argv", [["--help"], ["list", "methods"], ["list", "protocols"], ["weights", "list"]])
def test_discovery_commands_start_light(argv: list[str]) -> None:
    """No torch import and < 150 MB peak RSS (issue 13; VmHWM, which -- unlike ru_maxrss -- does not carry the
    pytest parent's peak over the exec); the < 1 s limit is measured, not asserted: this 2-core box is shared."""
    code = (
        "import sys\n"
        "from bench.commands.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]\n"
        "print('peak_rss_kib', hwm, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""},
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    peak_kib = int(result.stderr.split("peak_rss_kib")[1].split()[0])
    assert peak_kib < 150 * 1024


def test_demo_offline_methods_read_cards_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.commands import demo
    from methods import registry

    def no_build(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("offline_methods must not build a network")

    monkeypatch.setattr(registry, "create", no_build)
    (tmp_path / "carn_m.pth").write_bytes(b"")  # present but empty: not installed (issue 21), so not offered
    sr, matchers = demo.offline_methods(str(tmp_path))
    sr = [name for name in sr if name in registry._BUILTIN_NAMES]  # other tests in this process register plugins
    assert sr == ["bicubic"]  # the interpolation baseline; no verified trained weights (the file is empty)
    assert matchers == ["dense_sift", "dense_sift_blurry", "patchmatch", "zncc", "zncc_blurry"]


def test_audit_presets_come_from_the_card(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.commands import audit
    from protocols.spec import PRESETS

    monkeypatch.setattr(audit, "create", lambda *a, **k: pytest.fail("audit must not build a network"), raising=False)
    names = {spec.name for spec in audit.applicable_presets("carn_m", "set14")}
    metric_variants = {"c2matching2021_official"}  # c2matching2021 plus metrics: the same protocol, not rerun
    assert names == {n for n, spec in PRESETS.items() if spec.scale in (2, 3, 4)} - metric_variants  # carn_m: x2-x4
    assert "ccnet2017" not in names  # x8
