"""The fixtures' deterministic synthetic-weight rule (``../shared/fixtures/README.md``), numpy only."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "long": torch.int64}


def read_layout(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    """Rows (key, shape, dtype) of a ``layout*.tsv``; the optional header line is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("key\t"):
            continue
        key, shape, dtype = line.split("\t")
        dims = tuple(int(d) for d in shape.split(",") if d.strip() != "")
        rows.append((key, dims, dtype))
    return rows


def read_gains(path: Path | None) -> dict[str, float]:
    if path is None or not path.is_file():
        return {}
    gains = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and not line.startswith("key\t") and not line.startswith("#"):
            try:
                gains[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return gains


def synthetic_value(key: str, shape: tuple[int, ...], gain: float = 1.0) -> np.ndarray:
    count = int(np.prod(shape)) if shape else 1
    phase = (zlib.crc32(key.encode("utf-8")) % 100000) / 100000 * 2 * np.pi
    b = np.sin(0.61803398875 * np.arange(count, dtype=np.float64) + phase)
    last = key.split(".")[-1]
    if key.endswith("running_var") or "std" in last:
        value = 0.5 + 0.25 * (b + 1)
    elif key.endswith("running_mean") or "mean" in last:
        value = 0.1 * b
    elif len(shape) >= 2:
        value = b / np.sqrt(np.prod(shape[1:]))
    elif len(shape) == 1 and key.endswith("weight"):
        value = 1 + 0.1 * b
    else:
        value = 0.05 * b
    value = value * gain
    return value.astype(np.float32).reshape(shape)


def synthetic_state_dict(
    layout: Path, overrides: Path | None = None, defaults: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """State dict built from a layout with the synthetic rule. Integer entries take ``defaults[key]``
    (the module's own default, e.g. ``num_batches_tracked``) or zero."""
    gains = read_gains(overrides)
    state: dict[str, torch.Tensor] = {}
    for key, shape, dtype in read_layout(layout):
        if dtype in ("int64", "long"):
            state[key] = (
                defaults[key].clone() if defaults and key in defaults else torch.zeros(shape, dtype=torch.int64)
            )
            continue
        state[key] = torch.from_numpy(synthetic_value(key, shape, gains.get(key, 1.0))).to(
            _DTYPES.get(dtype, torch.float32)
        )
    return state


def assert_layout_equal(module: torch.nn.Module, layout: Path) -> None:
    """The module's state_dict has exactly the layout's keys, shapes and dtypes (order-insensitive)."""
    expected = {k: (s, d) for k, s, d in read_layout(layout)}
    got = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    assert not missing and not unexpected, f"missing {missing[:10]} unexpected {unexpected[:10]}"
    wrong = [(k, expected[k], got[k]) for k in expected if expected[k] != got[k]]
    assert not wrong, f"shape/dtype mismatches: {wrong[:10]}"
