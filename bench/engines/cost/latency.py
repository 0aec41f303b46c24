"""Forward latency: batch 1, ``eval()``, ``torch.inference_mode()``, fixed inputs already on the device (no data
loading, no host-to-device copies). GPU: CUDA-event pairs per iteration after warm-up, cuDNN benchmark on
(``cudnn_benchmark``). CPU: ``time.perf_counter`` wall time. Times in ms. ``timed_latency`` is the one timed
loop of the cost pipeline: warm-up, then the timed forwards in a precision, optionally capped by a time share.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.engines.cost.precision import precision
from protocols.core import UserError

GPU_PROTOCOL_MINIMUM = (10, 50)  # protocols.md section 7.7: warm-up and timed forwards on a GPU


@dataclass(frozen=True)
class LatencyConfig:
    warmup: int
    repeat: int


def default_latency_config(device: str) -> LatencyConfig:
    """Protocol minimum on GPU (§7.7: >= 10 warm-up, >= 50 timed); a short run on CPU."""
    return LatencyConfig(*GPU_PROTOCOL_MINIMUM) if device.startswith("cuda") else LatencyConfig(warmup=1, repeat=5)


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


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_latency(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: str, warmup: int, repeat: int,
                  cap_s: float | None = None, autocast: str | None = None) -> tuple[list[float], dict[str, Any]]:
    """``warmup`` untimed forwards, then ``repeat`` timed ones (``time_forward``), all in the precision named
    ``autocast`` (a ``bench.engines.cost.precision.PRECISIONS`` name; None: float32). With ``cap_s`` (a time
    share in seconds) at least one warm-up forward runs, warm-up stops early once it used a quarter of the
    share, and fewer forwards are timed when ``repeat`` would not fit (the counts run are returned and
    recorded: ``repeat_run``, ``capped_by_budget``)."""
    context = precision(autocast).context
    started = time.perf_counter()
    done, last_s = 0, 0.0
    with context(device), torch.inference_mode():
        while done < (max(1, warmup) if cap_s is not None else warmup):
            begin = time.perf_counter()
            module(*inputs)
            _synchronize(device)
            last_s = time.perf_counter() - begin
            done += 1
            if cap_s is not None and time.perf_counter() - started > cap_s / 4:  # slow: its first forwards warm up
                break
    runs = repeat if cap_s is None else min(repeat, max(1, int(cap_s / max(last_s, 1e-6))))
    with context(device):
        samples = time_forward(module, inputs, device, LatencyConfig(warmup=0, repeat=runs))
    minimum_warmup, minimum_repeat = GPU_PROTOCOL_MINIMUM
    return samples, {
        "clock": "CUDA events" if device.startswith("cuda") else "CPU wall time (time.perf_counter)",
        "warmup": warmup, "repeat": repeat, "warmup_run": done, "repeat_run": runs,
        "capped_by_budget": runs < repeat, "cap_s": None if cap_s is None else round(cap_s, 2),
        "below_gpu_protocol_minimum": device.startswith("cuda") and (done < minimum_warmup or runs < minimum_repeat),
        "samples_ms": [round(s, 4) for s in samples]}


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
