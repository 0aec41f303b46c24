"""``predict`` wall time of every registered method at one small fixed size (pytest-benchmark).

    pytest benchmarks/test_bench_predict.py --benchmark-autosave
    pytest benchmarks/test_bench_predict.py --benchmark-compare --benchmark-compare-fail=median:25%

Inputs: LR 16x16 and a Ref at HR size (16 * scale), float32 RGB in [0, 1] from a seeded generator, on the
CPU, random (untrained) weights: timing only, never quality. Torch threads default to 1 (steadier on
shared machines; set REFSR_BENCH_THREADS to change) and are stored with each result in ``extra_info``,
so only runs with the same thread count are compared. Matcher-only methods (``predict`` raises
UserError) are skipped. The workflow is described in ``benchmarks/README.md``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from methods import registry
from protocols.core import UserError

LR_SIDE_PX = 16
ROUNDS = int(os.environ.get("REFSR_BENCH_ROUNDS", "5"))
THREADS = int(os.environ.get("REFSR_BENCH_THREADS", "1"))


def _create(name: str) -> Any:
    return registry.create(name, scale=registry.card(name).default_scale, device="cpu")  # x8-only: RefSR-Net


@pytest.mark.parametrize("name", registry.list_methods())
def test_predict(benchmark: Any, name: str) -> None:
    torch.set_num_threads(THREADS)
    method = _create(name)
    scale = method.info.scale
    generator = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, LR_SIDE_PX, LR_SIDE_PX, generator=generator)
    ref = torch.rand(1, 3, LR_SIDE_PX * scale, LR_SIDE_PX * scale, generator=generator)
    args = (lr, ref) if method.info.needs_reference else (lr,)
    try:
        sr = method.predict(*args)  # also the first warm-up call
    except UserError as error:
        pytest.skip(f"{name}: {error}")
    assert sr.shape == (1, 3, LR_SIDE_PX * scale, LR_SIDE_PX * scale)
    benchmark.extra_info.update(
        {"method": name, "scale": scale, "lr_hw": [LR_SIDE_PX] * 2, "ref_hw": list(ref.shape[-2:]),
         "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "device": "cpu"}
    )  # fmt: skip
    benchmark.pedantic(method.predict, args=args, rounds=ROUNDS, warmup_rounds=1, iterations=1)
