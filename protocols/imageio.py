"""Reading benchmark images with the checks a researcher expects (clear errors, explicit bit depth).

The bit-depth rule the reader enforces: every file must hold 8 bits per sample (1-bit, palette, 8-bit
grey and 8-bit RGB/RGBA files are read as 8-bit). 16-bit greyscale files are rejected, or, under a preset
with ``high_bit_depth="to_8bit"``, scaled to 8 bit by round(v/257). 16-bit colour files (48/64-bit PNG or
TIFF) and 32-bit integer or float files are always rejected: Pillow can only read them truncated to 8 bits.

The size rule: a file with more than ``max_image_pixels()`` pixels (width x height; default 100 million,
set ``REFSR_MAX_PIXELS`` to change it) is rejected before it is decoded.

Hash what you score: ``read_image`` reads a file's bytes once and decodes those bytes; inside
``pinned_sha256(mapping)`` (a run pins the sha256 it recorded for each input) it first checks that those bytes
have the pinned sha256, so a file replaced while a run is going is refused, never scored from other bytes
than the ones its identity names.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from protocols.core import UserError

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
_HIGH_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_PINNED: dict[str, str] = {}  # absolute path -> sha256 the running run recorded (``pinned_sha256``)


def _key(path: Path) -> str:
    return os.path.abspath(path)


def read_file_bytes(path: str | Path) -> bytes:
    """All bytes of ``path``; a UserError naming it when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    return digest.hexdigest()


@contextlib.contextmanager
def pinned_sha256(mapping: Mapping[str, str]) -> Iterator[None]:
    """Within the block (``mapping``: file path -> sha256), ``read_image`` of a listed file refuses bytes whose
    sha256 is not the listed one."""
    previous = dict(_PINNED)
    _PINNED.update({_key(Path(k)): v for k, v in mapping.items()})
    try:
        yield
    finally:
        _PINNED.clear()
        _PINNED.update(previous)


def _checked_bytes(path: Path) -> bytes:
    data = read_file_bytes(path)
    expected = _PINNED.get(_key(path))
    if expected is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            raise UserError(
                f"{path} changed while the run was going (sha256 {expected[:12]}... when the run started, "
                f"{got[:12]}... now); nothing was scored from it. Restore it and rerun the same command, or start "
                "a fresh run with another --out"
            )
    return data


def max_image_pixels() -> int:
    """The pixel limit (width x height) per image file: ``REFSR_MAX_PIXELS`` or 100 million."""
    text = os.environ.get("REFSR_MAX_PIXELS", "")
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    if not text.isdigit() or int(text) <= 0:
        raise UserError(f"REFSR_MAX_PIXELS={text!r}: expected a positive integer number of pixels")
    return int(text)


def _open(path: Path, data: bytes | None = None) -> Image.Image:
    """Open (header only; from ``data`` when given, else the file) with Pillow's own decompression-bomb check
    replaced by ``max_image_pixels``."""
    limit = max_image_pixels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            buffer = None if data is None else io.BytesIO(data)
            if buffer is not None:
                buffer.name = str(path)  # Pillow names the file in its errors, not the buffer object
            image = Image.open(path if buffer is None else buffer)
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    width, height = image.size
    if width * height > limit:
        image.close()
        raise UserError(
            f"{path} is {width}x{height} = {width * height} pixels, over the limit of {limit}; "
            "downscale it or raise REFSR_MAX_PIXELS"
        )
    return image


def _sample_bits(image: Image.Image) -> str:
    """'16' when the file stores 16-bit samples that Pillow would decode truncated to 8 bit."""
    for tile in getattr(image, "tile", None) or []:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return "16"
    return "8"


def _is_grey16(image: Image.Image) -> bool:
    return image.mode in _HIGH_GREY_MODES or (image.mode == "I" and _sample_bits(image) == "16")


def _check_depth(image: Image.Image, path: Path, high_bit_depth: str) -> None:
    """Enforce the module's bit-depth rule from the header (before decoding)."""
    mode = image.mode
    if _is_grey16(image):
        if high_bit_depth != "to_8bit":
            raise UserError(
                f"{path} is a 16-bit image (mode {mode}); this preset expects 8-bit images. "
                "Convert it to 8 bit or use a preset with high_bit_depth='to_8bit'."
            )
        return
    wide = mode in ("I", "F") or mode.startswith(("I;32", "F;"))
    if wide or _sample_bits(image) == "16":
        kind = f"32-bit (mode {mode})" if wide else "16-bit colour"
        raise UserError(
            f"{path} is a {kind} image; only 8-bit files (and 16-bit greyscale under a to_8bit preset) "
            "are read. Convert it to 8 bit."
        )


def image_size(path: str | Path, high_bit_depth: str = "reject") -> tuple[int, int]:
    """(height, width) of an image file from its header, with the pixel-limit and bit-depth rules applied."""
    path = Path(path)
    try:
        with _open(path) as image:
            _check_depth(image, path, high_bit_depth)
            return image.size[1], image.size[0]
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(f"cannot read image {path}: {error} (corrupt or not an image file)") from error


def read_image(path: str | Path, *, grey: str = "replicate", high_bit_depth: str = "reject") -> np.ndarray:
    """Read an image file as uint8 under the bit-depth and size rules of the module docstring.

    Returns (H, W, 3) RGB uint8; a single-channel 8-bit file is replicated into R, G, B when
    ``grey="replicate"`` or returned as (H, W) uint8 when ``grey="keep"``. Alpha channels are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image file not found: {path}")
    data = _checked_bytes(path)  # read once: these bytes are hashed (when pinned) and decoded
    try:
        with _open(path, data) as image:
            mode = image.mode
            _check_depth(image, path, high_bit_depth)
            image.load()
            if _is_grey16(image):
                wide = np.asarray(image, dtype=np.float64)
                grey_array = np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
                return grey_array if grey == "keep" else np.repeat(grey_array[:, :, None], 3, axis=2)
            if grey == "keep" and mode in ("L", "1", "LA"):
                return np.asarray(image.convert("L"), dtype=np.uint8)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(f"cannot read image {path}: {error} (corrupt or not an image file)") from error


def levels_png_bytes(levels: np.ndarray) -> bytes:
    """(H, W, C) levels on [0, 255] (C = 3 RGB, or 1 grey) encoded as an 8-bit PNG, rounding half to even and
    clipping. Integer levels come back unchanged from ``read_image``."""
    array = np.clip(np.round(levels), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()
