"""Readers (and writers) for the ground-truth files of the matching-accuracy datasets.

- Middlebury ``.flo`` (MPI Sintel optical flow): little-endian; float32 magic 202021.25 (ASCII "PIEH"),
  int32 **width**, int32 **height**, then height*width*2 float32 values, row-major, interleaved (u, v)
  per pixel with u = horizontal (x) and v = vertical (y) displacement in pixels.
- ``.pfm`` (HCI 4D light-field disparity ``gt_disp_lowres.pfm``): three ASCII header lines ``Pf`` (one
  channel) or ``PF`` (three), ``<width> <height>``, ``<scale>`` whose sign gives the byte order
  (negative = little-endian), then float32 values with rows stored **bottom-to-top**.

Every malformed file raises ``protocols.core.UserError`` naming the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protocols.core import UserError

FLO_MAGIC = 202021.25
_FLO_HEADER_BYTES = 12
# Sintel frames are 1024 x 436; a sanity bound that still accepts any real flow field.
_MAX_SIDE_PX = 1 << 16


def read_flo(path: str | Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a Middlebury ``.flo`` file.

    Returns float32 (H, W, 2): ``[..., 0]`` = u (x displacement), ``[..., 1]`` = v (y displacement), in
    pixels. ``expected_hw`` (height, width), when given, is checked against the header; a header with
    width and height swapped (a common bug in writers) is reported as such.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"flow file not found: {path}")
    data = path.read_bytes()
    if len(data) < _FLO_HEADER_BYTES:
        raise UserError(f"{path}: truncated .flo file ({len(data)} bytes; the header alone needs 12)")
    magic = float(np.frombuffer(data, dtype="<f4", count=1)[0])
    if magic != FLO_MAGIC:
        raise UserError(f"{path}: bad .flo magic {magic!r}; expected {FLO_MAGIC} (bytes 'PIEH')")
    width, height = (int(v) for v in np.frombuffer(data, dtype="<i4", count=2, offset=4))
    if not (0 < width <= _MAX_SIDE_PX and 0 < height <= _MAX_SIDE_PX):
        raise UserError(f"{path}: implausible .flo size width={width} height={height}")
    expected_bytes = _FLO_HEADER_BYTES + 8 * width * height
    if len(data) != expected_bytes:
        kind = "truncated" if len(data) < expected_bytes else "oversized"
        raise UserError(
            f"{path}: {kind} .flo file: {len(data)} bytes, but width={width} height={height} needs {expected_bytes}"
        )
    if expected_hw is not None and (height, width) != tuple(expected_hw):
        hint = " (width and height swapped in the header?)" if (width, height) == tuple(expected_hw) else ""
        raise UserError(
            f"{path}: flow is {height}x{width} (HxW) but the frame is {expected_hw[0]}x{expected_hw[1]}{hint}"
        )
    values = np.frombuffer(data, dtype="<f4", offset=_FLO_HEADER_BYTES, count=2 * width * height)
    return values.reshape(height, width, 2).astype(np.float32)


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write float (H, W, 2) flow (u, v) as a Middlebury ``.flo`` file (little-endian)."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise UserError(f"flow must have shape (H, W, 2); got {flow.shape}")
    height, width = flow.shape[:2]
    header = np.array([FLO_MAGIC], dtype="<f4").tobytes() + np.array([width, height], dtype="<i4").tobytes()
    Path(path).write_bytes(header + np.ascontiguousarray(flow, dtype="<f4").tobytes())


def _read_header_line(data: bytes, start: int, path: Path, what: str) -> tuple[str, int]:
    end = data.find(b"\n", start)
    if end < 0 or end - start > 64:
        raise UserError(f"{path}: truncated or malformed .pfm header (reading the {what} line)")
    try:
        return data[start:end].decode("ascii").strip(), end + 1
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: the .pfm {what} line is not ASCII") from error


def read_pfm(path: str | Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a ``.pfm`` image: float32 (H, W) for ``Pf`` or (H, W, 3) for ``PF``, rows top-to-bottom."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"PFM file not found: {path}")
    data = path.read_bytes()
    kind, offset = _read_header_line(data, 0, path, "type")
    if kind not in ("Pf", "PF"):
        raise UserError(f"{path}: bad .pfm magic {kind[:8]!r}; expected 'Pf' (1 channel) or 'PF' (3 channels)")
    channels = 1 if kind == "Pf" else 3
    size_line, offset = _read_header_line(data, offset, path, "size")
    try:
        width, height = (int(v) for v in size_line.split())
    except ValueError as error:
        raise UserError(f"{path}: bad .pfm size line {size_line!r}; expected '<width> <height>'") from error
    if not (0 < width <= _MAX_SIDE_PX and 0 < height <= _MAX_SIDE_PX):
        raise UserError(f"{path}: implausible .pfm size width={width} height={height}")
    scale_line, offset = _read_header_line(data, offset, path, "scale")
    try:
        scale = float(scale_line)
    except ValueError as error:
        raise UserError(f"{path}: bad .pfm scale line {scale_line!r}; expected a non-zero number") from error
    if scale == 0:
        raise UserError(f"{path}: .pfm scale is 0; its sign must give the byte order (negative = little-endian)")
    count = width * height * channels
    if len(data) - offset != 4 * count:
        kind_word = "truncated" if len(data) - offset < 4 * count else "oversized"
        raise UserError(
            f"{path}: {kind_word} .pfm: {len(data) - offset} data bytes, but {width}x{height}x{channels} needs "
            f"{4 * count}"
        )
    if expected_hw is not None and (height, width) != tuple(expected_hw):
        raise UserError(f"{path}: .pfm is {height}x{width} (HxW); expected {expected_hw[0]}x{expected_hw[1]}")
    dtype = "<f4" if scale < 0 else ">f4"
    values = np.frombuffer(data, dtype=dtype, offset=offset, count=count).astype(np.float32)
    shape = (height, width) if channels == 1 else (height, width, 3)
    # Rows are stored bottom-to-top.
    return np.ascontiguousarray(values.reshape(shape)[::-1])


def write_pfm(path: str | Path, image: np.ndarray) -> None:
    """Write float (H, W) or (H, W, 3) as little-endian ``.pfm`` (rows bottom-to-top, scale -1)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        kind = b"Pf"
    elif image.ndim == 3 and image.shape[2] == 3:
        kind = b"PF"
    else:
        raise UserError(f"PFM image must have shape (H, W) or (H, W, 3); got {image.shape}")
    height, width = image.shape[:2]
    header = kind + b"\n" + f"{width} {height}\n".encode("ascii") + b"-1\n"
    Path(path).write_bytes(header + np.ascontiguousarray(image[::-1], dtype="<f4").tobytes())
