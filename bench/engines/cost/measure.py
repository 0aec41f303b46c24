"""Cost of one method at one (LR, Ref) size as ``cost.csv`` rows plus its run-run_json entry.

Conventions and rules: ``protocols.md`` §7 and ``bench/engines/cost/flop_handlers.py``. Units: MACs (one fused
multiply-add = 1), stored and printed as GMACs (G = 1e9); parameters as exact integers; times in ms.
The pieces: MACs from one fvcore trace (``bench.engines.cost.macs``), parameters (``bench.engines.cost.params``),
latency
(``bench.engines.cost.latency``), peak memory (``bench.engines.cost.memory``); the row type and file format
(``bench.results.cost_csv``). Many methods and sizes, one run folder: ``bench.engines.cost.pipeline.measure_costs``.

* FLOPS-T = the convention's total. FLOPS-M = the multiply-accumulates of products (convolution, the
  matmul family, deformable convolution) inside the method's ``matching`` part (``MethodInfo.parts``),
  i.e. without the elementwise/normalisation work around them (MASA-SR's "bmm bucket of the matcher").
* Rows: ``params``, ``params_trainable``, ``buffers``, ``params_used`` and ``params`` per part; per convention
  ``flops_t``, ``macs`` per part and per operator bucket (``op:<bucket>``), ``flops_m``; latency statistics
  (``latency_ms_*``), peak memory (``peak_allocated_*mib`` on GPU, ``peak_rss_delta_mib`` on CPU) and on CPU
  ``torch_threads``.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bench.engines.cost.latency import LatencyConfig, cudnn_benchmark, summarize_ms, time_forward
from bench.engines.cost.macs import TraceCost, analyze_trace
from bench.engines.cost.memory import cpu_peak_rss_delta, gpu_peak_memory_mib
from bench.engines.cost.params import count_params, resolve_part
from bench.results.cost_csv import CostRow, hw_text

GIGA = 1e9


@dataclass
class MethodCost:
    """Rows and the run-run_json entry of one method at one (LR, Ref) size."""

    rows: list[CostRow]
    run_json: dict[str, Any]


def _gmacs_row(base: dict[str, Any], convention: str, part: str, quantity: str, macs: int) -> CostRow:
    return CostRow(part=part, quantity=quantity, value=macs / GIGA, unit="GMACs", convention=convention, **base)


def _mac_rows(trace: TraceCost, parts: Mapping[str, str], base: dict[str, Any]) -> tuple[list[CostRow], dict[str, Any]]:
    """Rows: ``flops_t`` (total), ``macs`` per part and per operator bucket (``op:<bucket>``), ``flops_m``."""
    rows: list[CostRow] = []
    run_json: dict[str, Any] = {}
    for convention, count in trace.counts.items():
        rows.append(_gmacs_row(base, convention, "total", "flops_t", count.total))
        rows += [_gmacs_row(base, convention, f"op:{op}", "macs", v) for op, v in count.by_operator.items()]
        for role, path in sorted(parts.items()):
            canonical = trace.canonical_names.get(path, path)
            rows.append(_gmacs_row(base, convention, role, "macs", count.module_total(canonical)))
            if role == "matching":
                rows.append(_gmacs_row(base, convention, "matching", "flops_m", count.module_products(canonical)))
        run_json[convention] = {
            "unsupported_ops": count.unsupported_ops,
            "ops_seen": {k: {"nodes": n, "count": c} for k, (n, c) in count.ops_seen.items()},
            "gmacs_by_module": {
                name: round(value / GIGA, 6)
                for name, value in sorted(count.by_module.items())
                if name.count(".") < 2 and value > 0
            },
        }
    return rows, run_json


def measure_method_size(
    method_name: str,
    method: Any,
    *,
    scale: int,
    lr_hw: tuple[int, int],
    ref_hw: tuple[int, int],
    device: str,
    conventions: Sequence[str],
    latency: LatencyConfig | None,
    memory: bool,
    plugins: Sequence[str] = (),
) -> MethodCost:
    """Cost of one built method at one size. ``method`` follows ``methods.base.Method``. The run_json's
    ``measured_on`` names the device and the wall-clock interval (Unix seconds) of the latency and memory
    measurements (None when neither ran)."""
    uses_ref = bool(method.info.needs_reference)
    base: dict[str, Any] = {
        "method": method_name,
        "lr_hw": hw_text(lr_hw),
        "ref_hw": hw_text(ref_hw if uses_ref else None),
        "device": device.split(":")[0],
    }
    module, inputs = method.cost_graph(lr_hw, ref_hw)
    module = module.to(device).eval()
    inputs = tuple(t.to(device) for t in inputs)
    parts = dict(method.info.parts)
    for role, path in parts.items():
        resolve_part(module, role, path)

    started = time.perf_counter()
    trace = analyze_trace(module, inputs, conventions)
    trace_s = time.perf_counter() - started
    params = count_params(module, parts, trace.used_param_ids)

    rows = [
        CostRow(part="total", quantity="params", value=params.total, unit="params", **base),
        CostRow(part="total", quantity="params_trainable", value=params.trainable, unit="params", **base),
        CostRow(part="total", quantity="buffers", value=params.buffers, unit="elements", **base),
    ]
    if params.used is not None:
        rows.append(CostRow(part="total", quantity="params_used", value=params.used, unit="params", **base))
    rows += [
        CostRow(part=role, quantity="params", value=n, unit="params", **base) for role, n in params.by_part.items()
    ]
    mac_rows, mac_run_json = _mac_rows(trace, parts, base)
    rows += mac_rows

    run_json: dict[str, Any] = {
        "method": method_name,
        "lr_hw": list(lr_hw),
        "ref_hw": list(ref_hw) if uses_ref else None,
        "scale": scale,
        "variant": method.info.variant,
        "weights_loaded": bool(getattr(method, "weights_loaded", False)),
        "parts": parts,
        "input_shapes": [list(t.shape) for t in inputs],
        "trace_seconds": round(trace_s, 3),
        "uncalled_modules": list(trace.uncalled_modules),
        "params_exact": asdict(params),
        "conventions": mac_run_json,
    }

    timed_from = time.time()
    if latency is not None:
        with cudnn_benchmark(True) if device.startswith("cuda") else contextlib.nullcontext():
            samples = time_forward(module, inputs, device, latency)
        stats = summarize_ms(samples)
        rows += [CostRow(part="total", quantity=k, value=v, unit="ms", **base) for k, v in stats.items()]
        run_json["latency"] = {
            "clock": "CUDA events" if device.startswith("cuda") else "CPU wall time (time.perf_counter)",
            "warmup": latency.warmup,
            "repeat": latency.repeat,
            "below_gpu_protocol_minimum": device.startswith("cuda") and (latency.warmup < 10 or latency.repeat < 50),
            "samples_ms": [round(s, 4) for s in samples],
        }
    if memory:
        if device.startswith("cuda"):
            peak = gpu_peak_memory_mib(module, inputs)
            rows += [CostRow(part="total", quantity=k, value=v, unit="MiB", **base) for k, v in peak.items()]
            run_json["memory"] = {"how": "torch.cuda.max_memory_allocated over one forward, reset before", **peak}
        else:
            probe = cpu_peak_rss_delta(
                method_name, scale=scale, lr_hw=lr_hw, ref_hw=ref_hw, threads=torch.get_num_threads(), plugins=plugins
            )
            rows.append(
                CostRow(
                    part="total", quantity="peak_rss_delta_mib", value=probe["peak_rss_delta_mib"], unit="MiB", **base
                )
            )
            run_json["memory"] = probe
    run_json["measured_on"] = {
        "device": device,
        "timed_unix_s": [round(timed_from, 6), round(time.time(), 6)] if latency is not None or memory else None,
    }
    if device == "cpu":
        rows.append(
            CostRow(part="total", quantity="torch_threads", value=torch.get_num_threads(), unit="threads", **base)
        )
    del module, inputs
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return MethodCost(rows=rows, run_json=run_json)
