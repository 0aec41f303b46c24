"""Reading benchmark images with the checks a researcher expects (clear errors, explicit bit depth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from protocols.core import UserError


def read_image(path: str | Path, *, grey: str = "replicate", high_bit_depth: str = "reject") -> np.ndarray:
    """Read an image file as uint8.

    Returns (H, W, 3) RGB uint8; a single-channel 8-bit file is replicated into R, G, B when
    ``grey="replicate"`` or returned as (H, W) uint8 when ``grey="keep"``. 16-bit files are rejected
    (``high_bit_depth="reject"``, the RefSR/SISR tables are 8-bit) or scaled to 8 bit by round(v/257)
    (``"to_8bit"``). Alpha channels are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                if high_bit_depth != "to_8bit":
                    raise UserError(
                        f"{path} is a 16-bit image (mode {mode}); this preset expects 8-bit images. "
                        "Convert it to 8 bit or use a preset with high_bit_depth='to_8bit'."
                    )
                wide = np.asarray(image, dtype=np.float64)
                grey_array = np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
                return grey_array if grey == "keep" else np.repeat(grey_array[:, :, None], 3, axis=2)
            if grey == "keep" and mode in ("L", "1", "LA"):
                return np.asarray(image.convert("L"), dtype=np.uint8)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(f"cannot read image {path}: {error} (corrupt or not an image file)") from error
