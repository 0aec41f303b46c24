"""Forward latency: batch 1, ``eval()``, ``torch.inference_mode()``, fixed inputs already on the device (no data
loading, no host-to-device copies). GPU: CUDA-event pairs per iteration after warm-up, cuDNN benchmark on
(``cudnn_benchmark``). CPU: ``time.perf_counter`` wall time. Times in ms.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from protocols.core import UserError


@dataclass(frozen=True)
class LatencyConfig:
    warmup: int
    repeat: int


def default_latency_config(device: str) -> LatencyConfig:
    """Protocol minimum on GPU (§7.7: >= 10 warm-up, >= 50 timed); a short run on CPU."""
    return LatencyConfig(warmup=10, repeat=50) if device.startswith("cuda") else LatencyConfig(warmup=1, repeat=5)


def summarize_ms(samples_ms: Sequence[float]) -> dict[str, float]:
    """Median, IQR and percentiles (numpy's linear interpolation) of per-iteration times in ms."""
    values = np.asarray(samples_ms, dtype=np.float64)
    p10, p25, p50, p75, p90 = np.percentile(values, [10, 25, 50, 75, 90])
    return {
        "latency_ms_median": float(p50),
        "latency_ms_iqr": float(p75 - p25),
        "latency_ms_p10": float(p10),
        "latency_ms_p25": float(p25),
        "latency_ms_p75": float(p75),
        "latency_ms_p90": float(p90),
        "latency_ms_mean": float(values.mean()),
        "latency_ms_min": float(values.min()),
    }


def time_forward(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: str, config: LatencyConfig
) -> list[float]:
    """Per-iteration forward times in ms (raw samples). See the module docstring."""
    if config.warmup < 0 or config.repeat < 1:
        raise UserError(f"latency needs warmup >= 0 and repeat >= 1; got {config}")
    with torch.inference_mode():
        if device.startswith("cuda"):
            for _ in range(config.warmup):
                module(*inputs)
            torch.cuda.synchronize()
            pairs = [
                (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                for _ in range(config.repeat)
            ]
            for start, end in pairs:
                start.record()
                module(*inputs)
                end.record()
            torch.cuda.synchronize()
            return [start.elapsed_time(end) for start, end in pairs]
        for _ in range(config.warmup):
            module(*inputs)
        samples = []
        for _ in range(config.repeat):
            begin = time.perf_counter()
            module(*inputs)
            samples.append((time.perf_counter() - begin) * 1e3)
        return samples


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
