"""The bad-input corpus (issue 14): every case is built here, run in-process through ``bench.commands.cli.main``,
and must end in exit status 2 with a one/two-line message naming the problem, no traceback, and nothing
written (or changed) under the output folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rundata import cli, make_cufed5, make_set5, png_bytes, register_gain_bicubic, rgb16_png

from bench.commands.cli import main
from bench.results.rundir import RunLock

Build = Callable[[Path, pytest.MonkeyPatch], list[str]]


@dataclass(frozen=True)
class Case:
    name: str
    build: Build  # makes the inputs under a fresh root and returns the argv; the output folder is root/"out"
    message: str  # a fragment the error must contain


def _run(root: Path, *extra: str, protocol: str = "set5:sisr_std", method: str = "bicubic") -> list[str]:
    return ["run", "-p", protocol, "-m", method, "--data", str(root / "data"), "--out", str(root / "out"), *extra]


def _set5(root: Path, **kwargs: object) -> Path:
    return make_set5(root / "data", **kwargs)  # type: ignore[arg-type]


def _opt(*extra: str) -> Build:
    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        _set5(root)
        return _run(root, *extra)

    return build


def _argv(*argv: str) -> Build:
    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        _set5(root)
        (root / "empty" / "Set5").mkdir(parents=True)
        (root / "empty" / "Set5" / "notes.txt").write_text("not an image")
        return [a.replace("ROOT", str(root)) for a in argv]

    return build


def _image_file(name: str, write: Callable[[Path], None], *extra: str) -> Build:
    """Set5 of 2 good images plus ``name`` written by ``write``."""

    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        folder = _set5(root, count=2) / "Set5"
        write(folder / name)
        return _run(root, *extra)

    return build


def _save(array: np.ndarray, mode: str | None = None) -> Callable[[Path], None]:
    return lambda path: Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _env_case(variable: str, value: str) -> Build:
    def build(root: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        _set5(root)
        monkeypatch.setenv(variable, value)
        return _run(root)

    return build


def _wrsr(change: Callable[[Path], None]) -> Build:
    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        folder = root / "data" / "WR-SR"
        (folder / "input").mkdir(parents=True)
        (folder / "ref").mkdir()
        rng = np.random.default_rng(0)
        for index in (1, 2):
            hr, ref = (rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((36, 44), (40, 40)))
            Image.fromarray(hr).save(folder / "input" / f"00{index}.png")
            Image.fromarray(ref).save(folder / "ref" / f"00{index}_ref.png")
        (folder / "WR-SR_pairs.txt").write_text("001.png 001_ref.png\n002.png 002_ref.png\n")
        change(folder)
        return _run(root, protocol="wrsr")

    return build


def _cufed5(change: Callable[[Path], None]) -> Build:
    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        change(make_cufed5(root / "data") / "CUFED5")
        return _run(root, protocol="cufed5")

    return build


def _flickr(change: Callable[[Path], None]) -> Build:
    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        folder = root / "data" / "Flickr1024" / "Test"
        folder.mkdir(parents=True)
        for side in "LR":
            Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(folder / f"0001_{side}.png")
        change(folder)
        return _run(root, protocol="flickr1024")

    return build


def _plugin(source: str | None) -> Build:
    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        _set5(root)
        path = root / "plugin.py"
        if source is not None:
            path.write_text(source)
        return ["--plugin", str(path), *_run(root)]

    return build


def _checkpoint(write: Callable[[Path], None]) -> Build:
    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        _set5(root)
        register_gain_bicubic()
        path = root / "gain.pth"
        write(path)
        return _run(root, "--weights", str(path), method="gain_bicubic")

    return build


def _torch_save(value: object) -> Callable[[Path], None]:
    return lambda path: torch.save(value, path)


def _truncated_checkpoint(path: Path) -> None:
    torch.save({"gain": torch.ones(1)}, path)
    path.write_bytes(path.read_bytes()[:120])


def _finished(root: Path, *extra: str) -> None:
    """A finished bicubic run in root/out (the folder a refused resume must leave untouched)."""
    if not (root / "data").exists():
        _set5(root)
    assert main(_run(root, *extra)) == 0


def _resume(change: Callable[[Path], list[str]]) -> Build:
    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        _finished(root)
        return change(root)

    return build


def _changed_hr(root: Path) -> list[str]:
    path = root / "data" / "Set5" / "im1.png"
    array = np.asarray(Image.open(path)).copy()
    array[3, 3, 1] ^= 4
    Image.fromarray(array).save(path)
    return _run(root)


def _moved_data(root: Path) -> list[str]:
    shutil.copytree(root / "data", root / "data2")
    return [a.replace(str(root / "data"), str(root / "data2")) for a in _run(root)]


def _old_schema(root: Path) -> list[str]:
    (root / "out" / "run.json").write_text(json.dumps({"run_id": "0123abcd", "protocol": "set5"}))
    return _run(root)


def _bad_json(root: Path) -> list[str]:
    (root / "out" / "run.json").write_text("{not json")
    return _run(root)


def _records_without_manifest(root: Path) -> list[str]:
    (root / "out" / "run.json").unlink()
    return _run(root)


_LOCKS: list[RunLock] = []


def _locked(root: Path) -> list[str]:
    _LOCKS.append(RunLock(root / "out").acquire())
    return _run(root)


def _gate(change: Callable[[Path], list[str]]) -> Build:
    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        _finished(root)
        assert main(["accept", str(root / "out"), "--golden", str(root / "golden.csv")]) == 0
        return change(root)

    return build


def _edit(relative: str, old: str, new: str, argv: list[str]) -> Callable[[Path], list[str]]:
    def change(root: Path) -> list[str]:
        path = root / relative
        path.write_text(path.read_text().replace(old, new, 1))
        return [a.replace("ROOT", str(root)) for a in argv]

    return change


GATE = ["gate", "--run", "ROOT/out", "--golden", "ROOT/golden.csv"]


def _unfinished(root: Path) -> list[str]:
    text = (root / "out" / "records.csv").read_text().splitlines()
    (root / "out" / "records.csv").write_text("\n".join([text[0], "#journal", *text[1:3]]) + "\n")
    return [a.replace("ROOT", str(root)) for a in GATE]


def _binary_records(root: Path) -> list[str]:
    (root / "out" / "records.csv").write_bytes(b"\xff\xfe\x00")
    return [a.replace("ROOT", str(root)) for a in GATE]


def _merge(change: Callable[[Path], list[str]]) -> Build:
    """Shards 0/3, 1/3, 2/3 of one run in root/s0..s2; ``change`` returns the merge argv (out: root/out)."""

    def build(root: Path, _: pytest.MonkeyPatch) -> list[str]:
        _set5(root)
        for index in range(3):
            argv = _run(root, "--shard", f"{index}/3")
            argv[argv.index("--out") + 1] = str(root / f"s{index}")
            assert main(argv) == 0
        return change(root)

    return build


def _merge_argv(*dirs: str) -> Callable[[Path], list[str]]:
    return lambda root: ["merge", *(str(root / d) for d in dirs), "--out", str(root / "out")]


def _other_run_shard(root: Path) -> list[str]:
    argv = _run(root, "--shard", "1/3", protocol="set5:refsr")
    argv[argv.index("--out") + 1] = str(root / "other")
    assert main(argv) == 0
    return _merge_argv("s0", "other", "s2")(root)


def _other_split(root: Path) -> list[str]:
    argv = _run(root, "--shard", "1/2")
    argv[argv.index("--out") + 1] = str(root / "half")
    assert main(argv) == 0
    return _merge_argv("s0", "half")(root)


def _merge_unfinished(root: Path) -> list[str]:
    text = (root / "s1" / "records.csv").read_text().splitlines()
    (root / "s1" / "records.csv").write_text("\n".join([text[0], "#journal"]) + "\n")
    return _merge_argv("s0", "s1", "s2")(root)


def _merge_no_manifest(root: Path) -> list[str]:
    (root / "s1" / "run.json").unlink()
    return _merge_argv("s0", "s1", "s2")(root)


def _merge_bad_value(root: Path) -> list[str]:
    path = root / "s2" / "records.csv"
    path.write_text(path.read_text().replace(",psnr_y,1", ",psnr_y,?1", 1))
    return _merge_argv("s0", "s1", "s2")(root)


def _merge_into_file(root: Path) -> list[str]:
    (root / "out").write_text("a file")
    return _merge_argv("s0", "s1", "s2")(root)


GREY16 = png_bytes(32, 32, 16, 0, b"".join(b"\x00" + bytes(64) for _ in range(32)))
RGBA16 = png_bytes(32, 32, 16, 6, b"".join(b"\x00" + bytes(256) for _ in range(32)))
HUGE = png_bytes(20000, 20000, 8, 2, b"\x00" * 10)
CORRUPT = b"\x89PNG\r\n\x1a\n not really a png"
RANDOM_IMAGE = np.random.default_rng(1).integers(0, 256, (36, 32, 3), dtype=np.uint8)

CASES = [
    # options, validated before anything is written
    Case("level_word", _opt("--level", "banana"), "--level 'banana'"),
    Case("level_six", _opt("--level", "6"), "--level '6'"),
    Case("level_draws_zero", _opt("--level", "draws:0"), "--level 'draws:0'"),
    Case("level_draw_word", _opt("--level", "draw:x"), "--level 'draw:x'"),
    Case("level_on_dataset_without_levels", _opt("--level", "3"), "no reference level 3"),
    Case("stitch_on_dataset_without_levels", _opt("--level", "stitch5_masa"), "needs references 1-5"),
    Case("level_list_with_bad_part", _opt("--level", "1,9"), "--level '9'"),
    Case("ref_policy_unknown", _opt("--ref-policy", "banana"), "unknown reference policy 'banana'"),
    Case("ref_policy_pair_without_pairs", _opt("--ref-policy", "pair"), "provides no reference"),
    Case("ref_policy_manifest_without_matches", _opt("--ref-policy", "manifest"), "no reference images found"),
    Case("device_banana", _opt("--device", "banana"), "--device 'banana' is not a device"),
    Case("device_cuda_without_gpu", _opt("--device", "cuda"), "no CUDA GPU"),
    Case("device_cuda_index_without_gpu", _opt("--device", "cuda:7"), "no CUDA GPU"),
    Case("device_mps", _opt("--device", "mps"), "cpu or cuda"),
    Case("device_empty", _opt("--device", ""), "is not a device"),
    Case("shard_beyond_images", _opt("--shard", "7/10"), "selects no image"),
    Case("shard_index_too_large", _opt("--shard", "3/2"), "need 0 <= i < n"),
    Case("shard_words", _opt("--shard", "a/b"), "--shard must look like i/n"),
    Case("shard_negative", _opt("--shard=-1/2"), "need 0 <= i < n"),
    Case("shard_one_number", _opt("--shard", "1"), "--shard must look like i/n"),
    Case("shard_zero_count", _opt("--shard", "0/0"), "need 0 <= i < n"),
    Case("out_is_a_file", _argv("run", "-p", "set5:sisr_std", "-m", "bicubic", "--data", "ROOT/data",
                                "--out", "ROOT/data/Set5/im0.png"), "is a file"),
    Case("out_under_a_file", _argv("run", "-p", "set5:sisr_std", "-m", "bicubic", "--data", "ROOT/data",
                                   "--out", "ROOT/data/Set5/im0.png/out"), "is a file"),
    Case("out_under_proc", _argv("run", "-p", "set5:sisr_std", "-m", "bicubic", "--data", "ROOT/data",
                                 "--out", "/proc/refsr_bench_test/out"), "not writable"),
    Case("out_under_proc_self", _argv("run", "-p", "set5:sisr_std", "-m", "bicubic", "--data", "ROOT/data",
                                      "--out", "/proc/self/refsr_out"), "not writable"),
    Case("out_under_sys", _argv("run", "-p", "set5:sisr_std", "-m", "bicubic", "--data", "ROOT/data",
                                "--out", "/sys/refsr_bench_test"), "not writable"),
    Case("unknown_dataset", _argv("run", "-p", "set6", "-m", "bicubic", "--out", "ROOT/out"), "unknown dataset"),
    Case("unknown_preset", _argv("run", "-p", "set5:nope", "-m", "bicubic", "--out", "ROOT/out"), "unknown preset"),
    Case("unknown_method", _opt("-m", "no_such_method"), "unknown method 'no_such_method'"),
    Case("method_pattern_matching_nothing", _opt("-m", "zzz*"), "zzz*"),
    Case("reference_method_without_reference",
         _opt("-m", "masa_rec", "--ref-policy", "none", "--allow-random-weights"), "needs a reference"),
    # data folders
    Case("data_root_missing", _argv("run", "-p", "set5", "-m", "bicubic", "--data", "ROOT/nowhere",
                                    "--out", "ROOT/out"), "not found under"),
    Case("data_root_is_a_file", _argv("run", "-p", "set5", "-m", "bicubic", "--data", "ROOT/data/Set5/im0.png",
                                      "--out", "ROOT/out"), "not found under"),
    Case("dataset_folder_empty", _argv("run", "-p", "set5", "-m", "bicubic", "--data", "ROOT/empty",
                                       "--out", "ROOT/out"), "no images in"),
    Case("same_stem_png_jpg", _image_file("im0.jpg", _save(RANDOM_IMAGE)), "im0.jpg and im0.png"),
    Case("same_stem_png_bmp", _image_file("im1.bmp", _save(RANDOM_IMAGE)), "im1.bmp and im1.png"),
    Case("same_stem_upper_suffix", _image_file("im1.PNG", _save(RANDOM_IMAGE)), "im1.PNG and im1.png"),
    Case("image_2x2", _image_file("tiny.png", _save(np.zeros((2, 2, 3), np.uint8))), "image is 2x2 px"),
    Case("image_3x3", _image_file("tiny.png", _save(np.zeros((3, 3, 3), np.uint8))), "image is 3x3 px"),
    Case("image_6x6_after_border_crop", _image_file("small.png", _save(np.zeros((6, 6, 3), np.uint8))),
         "image is 6x6 px"),
    Case("image_12x12_ssim_window", _image_file("small.png", _save(np.zeros((12, 12, 3), np.uint8))),
         "image is 12x12 px"),
    Case("image_thin", _image_file("thin.png", _save(np.zeros((4, 300, 3), np.uint8))), "image is 300x4 px"),
    Case("image_20000x20000", _image_file("huge.png", _bytes(HUGE)), "20000x20000"),
    Case("pixel_limit_configured", _env_case("REFSR_MAX_PIXELS", "100"), "over the limit of 100"),
    Case("pixel_limit_not_a_number", _env_case("REFSR_MAX_PIXELS", "lots"), "REFSR_MAX_PIXELS='lots'"),
    Case("png_16bit_rgb", _image_file("deep.png", _bytes(rgb16_png(32, 32))), "16-bit colour"),
    Case("png_16bit_rgba", _image_file("deep.png", _bytes(RGBA16)), "16-bit colour"),
    Case("png_16bit_grey", _image_file("deep.png", _bytes(GREY16)), "16-bit image"),
    Case("tiff_float", _image_file("float.tif", _save(np.zeros((32, 32), np.float32), "F")), "32-bit (mode F)"),
    Case("tiff_int32", _image_file("int.tif", _save(np.zeros((32, 32), np.int32), "I")), "32-bit (mode I)"),
    Case("png_corrupt", _image_file("bad.png", _bytes(CORRUPT)), "corrupt"),
    Case("png_zero_bytes", _image_file("empty.png", _bytes(b"")), "corrupt"),
    Case("png_that_is_text", _image_file("text.png", _bytes(b"hello, world\n")), "corrupt"),
    Case("jpeg_that_is_text", _image_file("text.jpg", _bytes(b"\xff\xd8 no jpeg")), "corrupt"),
    # dataset layouts
    Case("wrsr_without_pairs_file", _wrsr(lambda f: (f / "WR-SR_pairs.txt").unlink()), "WR-SR_pairs.txt"),
    Case("wrsr_bad_pairs_line", _wrsr(lambda f: (f / "WR-SR_pairs.txt").write_text("001.png\n")), "bad line"),
    Case("wrsr_missing_reference", _wrsr(lambda f: (f / "ref" / "002_ref.png").unlink()), "002_ref.png"),
    Case("wrsr_missing_input", _wrsr(lambda f: (f / "input" / "001.png").unlink()), "001.png"),
    Case("cufed5_stray_file", _cufed5(lambda f: _save(RANDOM_IMAGE)(f / "extra.png")), "extra.png"),
    Case("cufed5_incomplete_group", _cufed5(lambda f: (f / "001_4.png").unlink()), "001_4.png"),
    Case("cufed5_empty", _cufed5(lambda f: [p.unlink() for p in f.iterdir()]), "no NNN_k.png"),
    Case("flickr_missing_right", _flickr(lambda f: (f / "0001_R.png").unlink()), "0001_R.png"),
    Case("flickr_no_left", _flickr(lambda f: (f / "0001_L.png").unlink()), "NNNN_L.png"),
    # plugins
    Case("plugin_missing", _plugin(None), "plugin file not found"),
    Case("plugin_syntax_error", _plugin("def broken(:\n    pass\n"), "syntax error at line 1"),
    Case("plugin_import_error", _plugin("import no_such_module_xyz\n"), "No module named 'no_such_module_xyz'"),
    Case("plugin_raises", _plugin("raise RuntimeError('boom')\n"), "RuntimeError: boom"),
    Case("plugin_shadows_builtin", _plugin("from methods.registry import register\nregister('bicubic', print)\n"),
         "taken by a built-in"),
    # checkpoints
    Case("checkpoint_zero_bytes", _checkpoint(_bytes(b"")), "empty (0 bytes)"),
    Case("checkpoint_garbage", _checkpoint(_bytes(bytes(range(256)) * 4)), "not a PyTorch checkpoint"),
    Case("checkpoint_text", _checkpoint(_bytes(b"<html>404 not found</html>")), "not a PyTorch checkpoint"),
    Case("checkpoint_list_of_tensors", _checkpoint(_torch_save([torch.zeros(4, 4)] * 300)), "state_dict"),
    Case("checkpoint_wrong_keys", _checkpoint(_torch_save({"other": torch.ones(1)})), "does not fit this method"),
    Case("checkpoint_truncated", _checkpoint(_truncated_checkpoint), "cannot read checkpoint"),
    Case("official_weights_missing", _opt("-m", "carn_m", "--weights", "/nonexistent/weights"), "weights fetch"),
    # resuming into a folder of another configuration
    Case("resume_changed_hr_file", _resume(_changed_hr), "input files changed: im1.png"),
    Case("resume_other_data_root", _resume(_moved_data), "data folder"),
    Case("resume_other_preset", _resume(lambda r: _run(r, protocol="set5:refsr")), "preset spec differs"),
    Case("resume_other_shard", _resume(lambda r: _run(r, "--shard", "0/2")), "shard 0/1 -> 0/2"),
    Case("resume_old_schema", _resume(_old_schema), "schema"),
    Case("resume_bad_run_json", _resume(_bad_json), "not valid JSON"),
    Case("resume_records_without_manifest", _resume(_records_without_manifest), "without run.json"),
    Case("resume_while_locked", _resume(_locked), "being written by another refsr-bench process"),
    # malformed records and golden files
    Case("gate_records_bad_header", _gate(_edit("out/records.csv", "run_id,", "runid,", GATE)), "unexpected header"),
    Case("gate_records_bad_value", _gate(_edit("out/records.csv", ",psnr_y,1", ",psnr_y,x1", GATE)), "not a number"),
    Case("gate_records_short_row", _gate(_edit("out/records.csv", ",psnr_y,", ",", GATE)), "expected 8 columns"),
    Case("gate_records_binary", _gate(_binary_records), "not a text records file"),
    Case("gate_unfinished_run", _gate(_unfinished), "not finished"),
    Case("gate_golden_bad_header", _gate(_edit("golden.csv", "method,", "methods,", GATE)), "expected columns"),
    Case("gate_golden_bad_expected", _gate(_edit("golden.csv", ",psnr_y,1", ",psnr_y,x", GATE)), "expected 'x"),
    Case("gate_golden_bad_atol", _gate(_edit("golden.csv", ",0.005,", ",tight,", GATE)), "atol 'tight'"),
    Case("gate_golden_unknown_rule", _gate(_edit("golden.csv", ",two_sided,", ",twosided,", GATE)),
         "unknown rule 'twosided'"),
    Case("gate_golden_short_row", _gate(_edit("golden.csv", ",two_sided,,", ",two_sided", GATE)), "columns"),
    Case("gate_golden_missing", _gate(lambda r: [a.replace("ROOT", str(r)).replace("golden.csv", "no.csv")
                                                 for a in GATE]), "golden file not found"),
    Case("gate_run_without_records", _gate(lambda r: ["gate", "--run", str(r / "data")]), "no records"),
    Case("accept_run_without_records", _gate(lambda r: ["accept", str(r / "data"), "--golden", str(r / "g.csv")]),
         "no records"),
    # merges
    Case("merge_missing_shard", _merge(_merge_argv("s0", "s2")), "missing shard(s) 1/3"),
    Case("merge_repeated_shard", _merge(_merge_argv("s0", "s1", "s1", "s2")), "1/3 given more than once"),
    Case("merge_different_runs", _merge(_other_run_shard), "different runs"),
    Case("merge_different_splits", _merge(_other_split), "different splits"),
    Case("merge_unfinished_shard", _merge(_merge_unfinished), "not finished"),
    Case("merge_folder_without_manifest", _merge(_merge_no_manifest), "no run.json"),
    Case("merge_into_a_shard", _merge(lambda r: ["merge", *(str(r / f"s{i}") for i in range(3)), "--out",
                                                 str(r / "s0")]), "is one of the shards"),
    Case("merge_shard_bad_value", _merge(_merge_bad_value), "does not match its records.sha256"),
    Case("merge_into_a_file", _merge(_merge_into_file), "is a file"),
    # other verbs
    Case("weights_fetch_without_name", _argv("weights", "fetch", "--weights", "ROOT/w"), "needs a method"),
    Case("weights_fetch_unknown", _argv("weights", "fetch", "nope", "--weights", "ROOT/w"), "nope"),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        return {"<file>": folder.read_bytes()} if folder.is_file() else {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "run.lock"}


def test_the_corpus_has_at_least_80_distinct_cases() -> None:
    assert len({case.name for case in CASES}) == len(CASES) >= 80


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv("REFSR_DATA", raising=False)
    monkeypatch.delenv("REFSR_MAX_PIXELS", raising=False)
    argv = case.build(tmp_path, monkeypatch)
    capsys.readouterr()
    out = tmp_path / "out"
    before = _snapshot(out)
    try:
        status, stdout, stderr = cli(capsys, *argv)
    finally:
        while _LOCKS:
            _LOCKS.pop().release()
    assert status == 2, (stdout, stderr)
    assert "Traceback" not in stdout + stderr
    assert case.message in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) <= 2 and all(len(line) <= 600 for line in lines), stderr
    assert _snapshot(out) == before, "a refused command must not write or change its output folder"
