"""Readers of the matching ground truth: Middlebury .flo and PFM, checked against hand-built bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from protocols.core import UserError
from protocols.flow_io import read_flo, read_pfm, write_flo, write_pfm

SINTEL_HW = (436, 1024)


def _flo_bytes(width: int, height: int, values: np.ndarray, magic: float = 202021.25) -> bytes:
    """A .flo file written with struct, independently of protocols.flow_io."""
    header = struct.pack("<f", magic) + struct.pack("<ii", width, height)
    return header + struct.pack(f"<{values.size}f", *values.ravel().tolist())


def test_sintel_flo_files_have_the_documented_shape(shared: Path) -> None:
    flow_files = sorted((shared / "data/MPI-Sintel_subset/training/flow").glob("*/*.flo"))
    assert len(flow_files) == 8
    for path in flow_files:
        flow = read_flo(path, expected_hw=SINTEL_HW)
        assert flow.shape == (436, 1024, 2) and flow.dtype == np.float32
        assert path.stat().st_size == 12 + 8 * 436 * 1024 == 3_571_724
        # Independent decoding of pixel (row 200, col 300): offset 12 + 4 * 2 * (200 * 1024 + 300).
        raw = path.read_bytes()
        u, v = struct.unpack_from("<ff", raw, 12 + 8 * (200 * 1024 + 300))
        assert flow[200, 300, 0] == np.float32(u) and flow[200, 300, 1] == np.float32(v)


def test_written_flow_reads_back_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    flow = rng.normal(scale=20.0, size=(5, 7, 2)).astype(np.float32)
    path = tmp_path / "f.flo"
    write_flo(path, flow)
    assert path.read_bytes() == _flo_bytes(7, 5, flow)  # byte-exact layout: width first, (u, v) interleaved
    np.testing.assert_array_equal(read_flo(path), flow)


def test_flo_with_width_and_height_swapped_is_rejected(tmp_path: Path) -> None:
    flow = np.arange(3 * 5 * 2, dtype=np.float32).reshape(3, 5, 2)  # H = 3, W = 5
    path = tmp_path / "swapped.flo"
    path.write_bytes(_flo_bytes(3, 5, flow))  # header says width 3, height 5: same byte count
    with pytest.raises(UserError, match="swapped"):
        read_flo(path, expected_hw=(3, 5))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_flo_bytes(2, 2, np.zeros(8, np.float32), magic=1.0), "magic"),
        (_flo_bytes(2, 2, np.zeros(8, np.float32))[:-4], "truncated"),
        (_flo_bytes(2, 2, np.zeros(8, np.float32)) + b"\0" * 8, "oversized"),
        (b"PIEH", "truncated"),
        (struct.pack("<f", 202021.25) + struct.pack("<ii", -1, 4), "implausible"),
    ],
)
def test_bad_flo_files_raise_user_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.flo"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_flo(path)


def test_missing_flo_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        read_flo(tmp_path / "nope.flo")


def test_hci_pfm_reads_with_rows_flipped(shared: Path) -> None:
    path = shared / "data/LF_HCI4D/additional/antinous/gt_disp_lowres.pfm"
    disparity = read_pfm(path, expected_hw=(512, 512))
    raw = path.read_bytes()
    assert raw[:14] == b"Pf\n512 512\n-1\n" and len(raw) == 14 + 512 * 512 * 4
    stored = np.frombuffer(raw, dtype="<f4", offset=14).reshape(512, 512)
    np.testing.assert_array_equal(disparity, stored[::-1])  # first stored row = bottom image row
    assert disparity.dtype == np.float32 and np.isfinite(disparity).all()
    assert -4.0 < float(disparity.min()) < float(disparity.max()) < 4.0  # HCI disparities are a few px


def test_pfm_big_endian_three_channels_and_roundtrip(tmp_path: Path) -> None:
    image = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    path = tmp_path / "big.pfm"
    body = image[::-1].astype(">f4").tobytes()  # positive scale = big-endian, bottom row first
    path.write_bytes(b"PF\n3 2\n1.0\n" + body)
    np.testing.assert_array_equal(read_pfm(path), image)
    write_pfm(tmp_path / "little.pfm", image)
    np.testing.assert_array_equal(read_pfm(tmp_path / "little.pfm"), image)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"P6\n2 2\n-1\n" + b"\0" * 16, "magic"),
        (b"Pf\n2 two\n-1\n" + b"\0" * 16, "size line"),
        (b"Pf\n2 2\n0\n" + b"\0" * 16, "scale is 0"),
        (b"Pf\n2 2\n-1\n" + b"\0" * 12, "truncated"),
        (b"Pf\n2 2", "truncated or malformed"),
    ],
)
def test_bad_pfm_files_raise_user_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pfm"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_pfm(path)


def test_pfm_wrong_size_is_rejected(tmp_path: Path) -> None:
    write_pfm(tmp_path / "d.pfm", np.zeros((4, 6), np.float32))
    with pytest.raises(UserError, match="expected 6x4"):
        read_pfm(tmp_path / "d.pfm", expected_hw=(6, 4))
