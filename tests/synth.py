"""The fixtures' deterministic synthetic-weight rule (``../shared/fixtures/README.md``), numpy only.

The rule lives in ``bench.engines.checks.fixtures`` (``refsr-bench gpu-check`` uses it too);
re-exported here for the tests."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.engines.checks.fixtures import read_gains, read_layout, synthetic_state_dict, synthetic_value

__all__ = ["assert_layout_equal", "read_gains", "read_layout", "synthetic_state_dict", "synthetic_value"]


def assert_layout_equal(module: torch.nn.Module, layout: Path) -> None:
    """The module's state_dict has exactly the layout's keys, shapes and dtypes (order-insensitive)."""
    expected = {k: (s, d) for k, s, d in read_layout(layout)}
    got = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    assert not missing and not unexpected, f"missing {missing[:10]} unexpected {unexpected[:10]}"
    wrong = [(k, expected[k], got[k]) for k in expected if expected[k] != got[k]]
    assert not wrong, f"shape/dtype mismatches: {wrong[:10]}"
