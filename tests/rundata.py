"""Tiny synthetic datasets and an in-process CLI call for the run-directory tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.commands.cli import main


def make_set5(root: Path, count: int = 5, size: tuple[int, int] = (36, 32), seed: int = 0) -> Path:
    """``root/Set5/im0.png ...``: random 8-bit RGB images (H, W) = ``size``; returns ``root``."""
    folder = root / "Set5"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"im{index}.png")
    return root


def make_cufed5(root: Path, groups: int = 2) -> Path:
    """``root/CUFED5/NNN_0.png`` (HR 45x50, not a multiple of 4 or 32, so padded presets crop) and
    references 1..5 (level 1 larger than the HR, so C²-Matching's zero padding is exercised)."""
    folder = root / "CUFED5"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    sizes = {0: (45, 50), 1: (60, 56), 2: (40, 40), 3: (40, 40), 4: (40, 40), 5: (40, 40)}
    for group in range(groups):
        for level, (h, w) in sizes.items():
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{group:03d}_{level}.png")
    return root


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw_rows: bytes) -> bytes:
    """A PNG file written from its chunks (Pillow cannot write 16-bit RGB); ``raw_rows`` is the
    filtered scanline data (each row starts with filter byte 0)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw_rows))
        + chunk(b"IEND", b"")
    )


def rgb16_png(height: int, width: int) -> bytes:
    levels = (np.arange(height * width * 3).reshape(height, width, 3) * 613 % 65536).astype(">u2")
    return png_bytes(width, height, 16, 2, b"".join(b"\x00" + levels[row].tobytes() for row in range(height)))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``refsr-bench ARGV`` in-process; returns (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def gain_bicubic(*, scale: int = 4, device: str = "cpu"):  # type: ignore[no-untyped-def]
    """A user method with a checkpoint: Pillow bicubic times the checkpoint's ``gain`` tensor (default 1),
    so a changed weight file changes the numbers. Loaded with ``methods.base.read_checkpoint``."""
    import dataclasses

    import torch

    from methods.base import read_checkpoint
    from methods.bicubic import bicubic

    method = bicubic(scale=scale)
    method.info = dataclasses.replace(method.info, name="gain_bicubic")
    upsample = method.predict
    state = {"gain": torch.ones(1)}

    def predict(lr, ref=None, ref_lr=None):  # type: ignore[no-untyped-def]
        return upsample(lr) * state["gain"]

    def load_weights(path):  # type: ignore[no-untyped-def]
        state["gain"] = read_checkpoint(path)["gain"]

    method.predict = predict  # type: ignore[method-assign]
    method.load_weights = load_weights  # type: ignore[method-assign]
    return method


def register_gain_bicubic() -> None:
    from methods.registry import register

    register("gain_bicubic", gain_bicubic)
