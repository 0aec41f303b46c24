"""reports/paper_values.csv against an independent transcription of shared/docs/paper_tables.md.

The row labels and column headers below were typed from paper_tables.md for this test (not copied from the
CSV); every table rebuilt from the long format must have exactly these rows and columns, and a few values
per table are spot-checked. The last test reads paper_tables.md itself (when ../shared is present) and
checks that every number printed in a table cell appears in the CSV.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reports.paper_values import PAPER_COLUMNS, PAPER_VALUES_CSV, load_paper_values, rebuild, table_ids

VALUES = load_paper_values()
LEVELS = ("XH", "H", "M", "L", "XL")
PS = ("psnr", "ssim")


def cols(datasets: list[tuple[str, str]], metrics: tuple[str, ...] = PS) -> list[tuple[str, str, str]]:
    return [(d, s, m) for d, s in datasets for m in metrics]


# table id -> (row labels as printed, columns as (dataset, split_or_level, metric))
EXPECTED: dict[str, tuple[list[str], list[tuple[str, str, str]]]] = {
    "MASA T1": (
        ["SRCNN", "MDSR", "RDN", "RCAN", "HAN", "SRGAN", "ENet", "ESRGAN", "CrossNet", "SRNTT", "SRNTT-rec", "TTSR",
         "TTSR-rec", "MASA", "MASA-rec"],
        cols([("cufed5", "stitch5"), ("sun80", "random_ref"), ("urban100", "self_lr")]),
    ),
    "MASA T2": (
        ["CrossNet", "SRNTT", "TTSR", "MASA"],
        [("-", "lr128_ref512", m) for m in ("flops_m_g", "flops_t_g", "params_m", "runtime_ms")],
    ),
    "MASA T3": (["baseline", "AdaIN", "SPADE", "SAM (ours)"],
                cols([("cufed5", "stitch5")]) + [("-", "-", "params_m")]),
    "MASA T4": (["Model 1", "Model 2", "Model 3", "Model 4"],
                [("-", "-", "ref_branch"), ("-", "-", "lr_branch")] + cols([("cufed5", "stitch5")])
                + [("-", "-", "params_m")]),
    "SSEN T1": (["Bicubic", "SRCCNN", "LapSRN", "MDSR", "SRGAN", "ENet", "Baseline", "Landmark", "CrossNet", "SRNTT",
                 "SRNTT-ℓ2", "Ours"], cols([("cufed5", "XH")])),
    "SSEN T2": (["Bicubic", "SRCCNN", "VDSR", "LapSRN", "MemNet", "EDSR", "RDN", "RCAN", "Baseline", "Ours"],
                cols([("urban100", "test"), ("set5", "test"), ("set14", "test"), ("b100", "test")])),
    "SSEN T3": (["SRNTT", "SRNTT-ℓ2", "Baseline", "Ours", "Ours (GAN+)"], cols([("cufed5", lv) for lv in LEVELS])),
    "SSEN T4": (["Baseline", "No layers", "1 layer", "2 layers", "3 layers", "4 layers", "w/o NB", "w NB"],
                cols([("cufed5", lv) for lv in LEVELS])),
    "E2ENT² T1": (["Bicubic", "DRCN", "EnhanceNet", "SRGAN", "Ours-SISR", "Landmark", "SRNTT", "E2ENT²-MSE (ours)",
                   "E2ENT² (ours)"], cols([("cufed5", "unstated"), ("sun80", "unstated")])),
    "E2ENT² T2": (["SteroSR", "PASSRnet", "SRGAN", "SRNTT", "E2ENT² (ours)"], cols([("flickr1024", "test")])),
    "E2ENT² T3": (["Feature-VGG", "Feature-preSISR", "E2ENT² (ours)"],
                  cols([("cufed5", "unstated")], ("psnr", "ssim", "feature_distance"))),
    "E2ENT² T4": (["(1, 0, 0)", "(0, 1, 0)", "(0, 0, 1)", "(0.25, 0.25, 0.5)"], cols([("cufed5", "unstated")])),
    "C² poster": (
        ["SRCNN [6]", "EDSR [17]", "RCAN [36]", "SRGAN [15]", "ENet [23]", "ESRGAN [30]", "RankSRGAN [35]",
         "CrossNet [40]", "SRNTT", "SRNTT-rec [39]", "TTSR", "TTSR-rec [34]", "SSEN", "SSEN-rec [26]", "E2ENT²",
         "E2ENT²-rec [32]", "CIMR", "CIMR-rec [33]", "C²-Matching", "C²-Matching-rec"],
        cols([("cufed5", "XH"), ("sun80", "random_ref"), ("urban100", "self_lr"), ("manga109", "random_ref"),
              ("wrsr", "pair")]),
    ),
    "CC-Net T1": (["conv1 + BN", "conv2 + BN", "conv3 + BN", "conv4 + BN", "conv5 + BN", "conv6 + BN", "fc"],
                  [("-", "-", m) for m in ("kernel_px", "channels", "dilation", "receptive_field_px")]),
    "CC-Net T2": (["denseSIFT", "ZNCC", "denseSIFT_blurry", "ZNCC_blurry", "PatchMatch", "CC-Net (ours)"],
                  [("sintel", "val85", f"match_acc_le_{t}px") for t in (0, 1, 2, 4, 5, 6)]),
    "CC-Net T3": (["bicubic", "SRCNN", "VDSR", "SRResNet", "SRResNet + NN", "SRResNet + NN + sliding", "PatchMatch",
                   "RefSR (CC-Net + SS-Net, ours)"], [("sintel", "test552", "psnr"), ("lf_video", "test268", "psnr")]),
}

# cells printed "–" (not reported): (table, row label, dataset)
NOT_REPORTED = {
    ("MASA T2", "CrossNet", "flops_m_g"),
    ("E2ENT² T1", "DRCN", "sun80"), ("E2ENT² T1", "Landmark", "sun80"),
    ("C² poster", "CrossNet [40]", "wrsr"),
    *{("C² poster", r, d) for r in ("SSEN", "SSEN-rec [26]") for d in ("sun80", "urban100", "manga109", "wrsr")},
    *{("C² poster", r, d) for r in ("E2ENT²", "E2ENT²-rec [32]") for d in ("urban100", "manga109", "wrsr")},
    *{("C² poster", r, d) for r in ("CIMR", "CIMR-rec [33]") for d in ("manga109", "wrsr")},
}

# (table, row label, dataset, split, metric) -> printed value (as the doc prints it, normalised to a float)
SPOT = {
    ("MASA T1", "MASA-rec", "cufed5", "stitch5", "psnr"): 27.54,
    ("MASA T1", "TTSR-rec", "sun80", "random_ref", "ssim"): 0.814,
    ("MASA T1", "ESRGAN", "urban100", "self_lr", "psnr"): 23.25,
    ("MASA T2", "SRNTT", "-", "lr128_ref512", "flops_m_g"): 6005.78,
    ("MASA T2", "SRNTT", "-", "lr128_ref512", "runtime_ms"): 4161.6,
    ("MASA T2", "MASA", "-", "lr128_ref512", "params_m"): 4.03,
    ("MASA T3", "SPADE", "cufed5", "stitch5", "psnr"): 24.46,
    ("MASA T3", "SAM (ours)", "-", "-", "params_m"): 4.03,
    ("MASA T4", "Model 2", "-", "-", "ref_branch"): 0,
    ("MASA T4", "Model 3", "-", "-", "ref_branch"): 1,
    ("MASA T4", "Model 1", "cufed5", "stitch5", "ssim"): 0.809,
    ("SSEN T1", "SRNTT-ℓ2", "cufed5", "XH", "ssim"): 0.764,
    ("SSEN T1", "Landmark", "cufed5", "XH", "psnr"): 24.91,
    ("SSEN T2", "VDSR", "b100", "test", "ssim"): 0.072,
    ("SSEN T2", "Ours", "set5", "test", "psnr"): 32.48,
    ("SSEN T3", "Baseline", "cufed5", "XL", "psnr"): 26.36,
    ("SSEN T3", "Ours (GAN+)", "cufed5", "M", "ssim"): 0.730,
    ("SSEN T4", "4 layers", "cufed5", "XH", "psnr"): 26.70,
    ("SSEN T4", "Baseline", "cufed5", "H", "ssim"): 0.779,
    ("E2ENT² T1", "E2ENT²-MSE (ours)", "sun80", "unstated", "psnr"): 28.50,
    ("E2ENT² T2", "PASSRnet", "flickr1024", "test", "ssim"): 0.600,
    ("E2ENT² T3", "Feature-VGG", "cufed5", "unstated", "feature_distance"): 106.77,
    ("E2ENT² T4", "(0, 1, 0)", "cufed5", "unstated", "ssim"): 0.672,
    ("C² poster", "C²-Matching-rec", "cufed5", "XH", "ssim"): 0.841,
    ("C² poster", "CrossNet [40]", "manga109", "random_ref", "psnr"): 23.36,
    ("C² poster", "RankSRGAN [35]", "wrsr", "pair", "ssim"): 0.722,
    ("CC-Net T1", "conv6 + BN", "-", "-", "dilation"): 16,
    ("CC-Net T1", "fc", "-", "-", "channels"): 256,
    ("CC-Net T2", "denseSIFT", "sintel", "val85", "match_acc_le_5px"): 7.65,
    ("CC-Net T2", "CC-Net (ours)", "sintel", "val85", "match_acc_le_0px"): 43.6,
    ("CC-Net T3", "PatchMatch", "lf_video", "test268", "psnr"): 37.96,
    ("CC-Net T3", "bicubic", "sintel", "test552", "psnr"): 30.59,
}


def test_columns_and_table_set() -> None:
    assert PAPER_COLUMNS == ("paper", "table", "row_label", "method_id", "dataset", "split_or_level", "metric",
                             "value", "unit", "preset", "copied_from", "notes")
    assert set(table_ids(VALUES)) == set(EXPECTED)


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_table_has_exactly_the_printed_rows_and_columns(table: str) -> None:
    labels, columns = EXPECTED[table]
    grid = rebuild(VALUES, table)
    assert list(grid.row_labels) == labels
    assert list(grid.columns) == columns
    for label in labels:
        for column in columns:
            missing = (table, label, column[0]) in NOT_REPORTED or (table, label, column[2]) in NOT_REPORTED
            assert ((label, column) in grid.cells) != missing, (table, label, column)


def test_spot_values() -> None:
    index = {(v.table, v.row_label, v.dataset, v.split_or_level, v.metric): v for v in VALUES}
    for key, expected in SPOT.items():
        assert key in index, key
        assert index[key].value == pytest.approx(expected, abs=1e-12), key


def test_printed_precision_is_kept() -> None:
    index = {(v.table, v.row_label, v.dataset, v.metric): v.value_text for v in VALUES}
    assert index[("MASA T1", "MASA-rec", "cufed5", "ssim")] == "0.814"
    assert index[("MASA T1", "SRNTT-rec", "urban100", "psnr")] == "25.50"  # trailing zero printed
    assert index[("C² poster", "C²-Matching", "cufed5", "ssim")] == "0.805"  # printed ".805"
    assert index[("MASA T2", "TTSR", "-", "flops_t_g")] == "1044.28"  # printed "1,044.28"
    assert index[("CC-Net T2", "denseSIFT", "sintel", "match_acc_le_6px")] == "8.92"
    assert index[("CC-Net T2", "ZNCC", "sintel", "match_acc_le_1px")] == "45.4"


def test_typos_and_merged_cells_are_flagged() -> None:
    def notes(table: str, label: str, dataset: str, metric: str, split: str | None = None) -> str:
        hits = [v.notes for v in VALUES
                if (v.table, v.row_label, v.dataset, v.metric) == (table, label, dataset, metric)
                and (split is None or v.split_or_level == split)]
        assert len(hits) == 1, (table, label, dataset, metric, split)
        return hits[0]

    assert "[sic]" in notes("SSEN T2", "VDSR", "b100", "ssim")
    assert "[sic]" not in notes("SSEN T2", "VDSR", "b100", "psnr")
    assert "[sic]" in notes("SSEN T1", "SRNTT-ℓ2", "cufed5", "ssim")
    assert "[sic]" in notes("SSEN T1", "SRCCNN", "cufed5", "psnr")
    assert "[sic]" in notes("E2ENT² T2", "SteroSR", "flickr1024", "psnr")
    for table in ("SSEN T3", "SSEN T4"):
        merged = [v for v in VALUES if v.table == table and v.row_label == "Baseline"]
        assert sorted({v.split_or_level for v in merged}) == sorted(LEVELS)
        assert all("merged cell" in v.notes for v in merged)
        assert {v.value_text for v in merged} == {"26.36", "0.779"}


def test_method_ids_follow_the_registry() -> None:
    from methods.cards import BUILTIN_CARDS

    builtin = {card.name for card in BUILTIN_CARDS}

    ids = {(v.table, v.row_label): v.method_id for v in VALUES}
    expected = {
        ("MASA T1", "MASA-rec"): "masa_rec", ("MASA T1", "MASA"): "masa_gan", ("MASA T1", "TTSR"): "ttsr_gan",
        ("MASA T1", "TTSR-rec"): "ttsr_rec", ("MASA T1", "SRNTT-rec"): "srntt_rec", ("MASA T1", "CrossNet"): "crossnet",
        ("SSEN T1", "Ours"): "ssen", ("SSEN T1", "Baseline"): "ssen_baseline", ("SSEN T2", "Ours"): "ssen_self",
        ("SSEN T1", "Bicubic"): "bicubic", ("E2ENT² T1", "E2ENT² (ours)"): "e2ent2",
        ("C² poster", "C²-Matching-rec"): "c2_matching_rec", ("C² poster", "C²-Matching"): "c2_matching_gan",
        ("CC-Net T2", "ZNCC_blurry"): "zncc_blurry", ("CC-Net T2", "denseSIFT"): "dense_sift",
        ("CC-Net T2", "PatchMatch"): "patchmatch", ("CC-Net T2", "CC-Net (ours)"): "refsr_net",
        ("CC-Net T3", "bicubic"): "bicubic", ("MASA T1", "RCAN"): "rcan", ("SSEN T2", "EDSR"): "edsr",
    }
    for key, method_id in expected.items():
        assert ids[key] == method_id, key
    # every id is either registered or one of these readable ids of methods the suite does not have
    readable = {"srcnn", "mdsr", "rdn", "rcan", "han", "srgan", "enet", "esrgan", "lapsrn", "landmark", "vdsr",
                "memnet", "edsr", "drcn", "stereosr", "passrnet", "ranksrgan", "cimr", "cimr_rec", "srresnet",
                "srresnet_nn", "srresnet_nn_sliding", "ssen_gan", "ssen_rcan_baseline", "ssen_dcn0", "ssen_dcn1",
                "ssen_dcn2", "ssen_dcn4", "ssen_no_nb", "e2ent2_mse", "e2ent2_sisr", "e2ent2_feat_vgg",
                "e2ent2_feat_presisr", "e2ent2_alpha_1_0_0", "e2ent2_alpha_0_1_0", "e2ent2_alpha_0_0_1",
                "masa_sam_baseline", "masa_sam_adain", "masa_sam_spade", "masa_dram_model1", "masa_dram_model2",
                "masa_dram_model3"}
    assert {v.method_id for v in VALUES} - builtin == readable
    assert not readable & builtin


def test_every_number_of_the_transcription_is_in_the_csv(shared: Path) -> None:
    """Independent of the literals above: parse the Markdown tables of paper_tables.md and check that every
    number printed in a value cell occurs among the CSV values of that table's section."""
    text = (shared / "docs" / "paper_tables.md").read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.M)
    by_table: dict[str, list[float]] = {}
    for v in VALUES:
        by_table.setdefault(v.table, []).append(v.value)
    heading_to_table = {
        "MASA Table 1": "MASA T1", "MASA Table 2": "MASA T2", "MASA Table 3": "MASA T3", "MASA Table 4": "MASA T4",
        "SSEN Table 1": "SSEN T1", "SSEN Table 2": "SSEN T2", "SSEN Table 3": "SSEN T3", "SSEN Table 4": "SSEN T4",
        "E2ENT² Table 1": "E2ENT² T1", "E2ENT² Table 2": "E2ENT² T2", "E2ENT² Table 3": "E2ENT² T3",
        "E2ENT² Table 4": "E2ENT² T4", "C² poster main table": "C² poster", "CC-Net Table 1": "CC-Net T1",
        "CC-Net Table 2": "CC-Net T2", "CC-Net Table 3": "CC-Net T3",
    }
    checked = 0
    for section in sections:
        table = next((t for h, t in heading_to_table.items() if section.startswith(h)), None)
        if table is None:
            continue
        lines = section.splitlines()
        for index, line in enumerate(lines):
            if not line.startswith("|") or set(line) <= set("|-: "):
                continue
            if index + 1 < len(lines) and set(lines[index + 1]) <= set("|-: ") and "-" in lines[index + 1]:
                continue  # a header row (E2ENT² T4 prints its weights there)
            cells = [c.strip() for c in line.strip("|").split("|")]
            for cell in cells[1:]:
                cell = re.sub(r"\[[^\]]*\]", "", cell)  # citation indices and [sic] notes
                cell = re.sub(r"\(all levels\)", "", cell)
                for token in re.findall(r"(?<![\w(])(\d[\d,]*\.\d+|\.\d+|\d+(?=%|M\b))", cell):
                    number = float(token.replace(",", ""))
                    assert any(abs(number - v) < 1e-9 for v in by_table[table]), (table, token, line)
                    checked += 1
    assert checked > 500


def test_csv_file_is_utf8_with_fixed_header() -> None:
    first = Path(PAPER_VALUES_CSV).read_text(encoding="utf-8").splitlines()[0]
    assert first == ",".join(PAPER_COLUMNS)
