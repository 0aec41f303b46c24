"""Cost of one network graph at one (LR, Ref) size as ``cost.csv`` rows plus its run.json entry.

Conventions and rules: ``protocols.md`` §7 and ``bench/engines/cost/flop_handlers.py``. Units: MACs (one fused
multiply-add = 1), stored and printed as GMACs (G = 1e9); parameters as exact integers; times in ms.
The pieces: MACs from one fvcore trace (``bench.engines.cost.macs``), parameters (``bench.engines.cost.params``),
latency (``bench.engines.cost.latency``), peak memory (``bench.engines.cost.memory``), each in every requested
precision (``bench.engines.cost.precision``), the machine's load during the timed part
(``bench.engines.cost.load``); the row type and file format (``bench.results.cost_csv``). Many methods, sizes,
precisions and devices: ``bench.engines.cost.pipeline.measure_cost``.

* FLOPS-T = the convention's total. FLOPS-M = the multiply-accumulates of products (convolution, the
  matmul family, deformable convolution) inside the method's ``matching`` part (``MethodInfo.parts``),
  i.e. without the elementwise/normalisation work around them (MASA-SR's "bmm bucket of the matcher").
* Rows: ``params``, ``params_trainable``, ``buffers``, ``params_used`` and ``params`` per part; per convention
  ``flops_t``, ``macs`` per part and per operator bucket (``op:<bucket>``), ``flops_m``; latency statistics
  (``latency_ms_*``), peak memory (``peak_allocated_*mib`` on GPU, ``peak_rss_delta_mib`` on CPU), each with the
  precision's suffix (none for float32), ``psnr<suffix>_vs_fp32_db`` for the other precisions; on CPU
  ``torch_threads``.
* run.json ``measured_on`` of a timed graph: the device, the wall-clock interval of the timed part, the 1-min
  load average at its start and end, the usable cores, the CPU model and ``under_load`` (the load exceeded the
  cores: ``bench.engines.cost.load``). The load stays out of ``cost.csv`` so that two runs of one command
  write the same rows apart from the timings.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench.engines.cost.latency import LatencyConfig, cudnn_benchmark, summarize_ms, timed_latency
from bench.engines.cost.load import LoadReading, LoadWatch
from bench.engines.cost.macs import TraceCost, analyze_trace
from bench.engines.cost.memory import peak_memory
from bench.engines.cost.params import count_params, resolve_part
from bench.engines.cost.precision import REFERENCE, precision, psnr_db
from bench.results.cost_csv import CostRow

GIGA = 1e9


@dataclass(frozen=True)
class Timing:
    """What is timed of a graph: ``latency`` None = no timing; ``memory``: the peak-memory forward; each of
    ``precisions`` (``PRECISIONS`` names, float32 first); ``cap_s``: time share per precision (None: the full
    ``latency.repeat``); ``plugins``: user method files for the CPU memory probe's fresh process."""

    latency: LatencyConfig | None = None
    memory: bool = False
    precisions: tuple[str, ...] = (REFERENCE,)
    cap_s: float | None = None
    plugins: tuple[str, ...] = ()

    @property
    def timed(self) -> bool:
        return self.latency is not None or self.memory


@dataclass
class MethodCost:
    """Rows and the run.json entry of one graph at one size; ``failed``: why its float32 timing raised."""

    rows: list[CostRow]
    run_json: dict[str, Any]
    failed: str | None = None
    load: LoadReading | None = field(default=None)


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


def count_graph(method_name: str, method: Any, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...],
                sizes: tuple[tuple[int, int], tuple[int, int]], base: dict[str, Any], conventions: Sequence[str]
                ) -> MethodCost:
    """Parameters and MACs of ``module`` (already on its device, eval) on ``inputs``, the cost graph at
    ``sizes`` = (LR, Ref) as measured: one fvcore trace. ``method`` follows ``methods.base.Method``; ``base``:
    the rows' method / lr_hw / ref_hw / device cells."""
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
    rows += [CostRow(part=role, quantity="params", value=n, unit="params", **base)
             for role, n in params.by_part.items()]
    mac_rows, mac_run_json = _mac_rows(trace, parts, base)
    run_json: dict[str, Any] = {
        "method": method_name,
        "lr_hw": list(sizes[0]),
        "ref_hw": list(sizes[1]) if method.info.needs_reference else None,
        "scale": method.info.scale,
        "variant": method.info.variant,
        "weights_loaded": bool(getattr(method, "weights_loaded", False)),
        "parts": parts,
        "input_shapes": [list(t.shape) for t in inputs],
        "trace_seconds": round(trace_s, 3),
        "uncalled_modules": list(trace.uncalled_modules),
        "params_exact": asdict(params),
        "conventions": mac_run_json,
    }
    return MethodCost(rows + mac_rows, run_json)


def _precision_psnr(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: str, name: str
                    ) -> tuple[float, float]:
    """PSNR (dB) of the output in precision ``name`` against the float32 output on the cost-graph inputs; peak =
    the float32 output's dynamic range (cost graphs have seeded random inputs, no fixture)."""
    with torch.inference_mode():
        reference = module(*inputs)
        with precision(name).context(device):
            low = module(*inputs)
    reference = (reference[0] if isinstance(reference, tuple) else reference).float().cpu()
    low = (low[0] if isinstance(low, tuple) else low).float().cpu()
    peak = float(reference.max() - reference.min()) or 1.0
    return psnr_db(low, reference, peak), peak


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def _time_precision(cost: MethodCost, name: str, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...],
                    base: dict[str, Any], device: str, timing: Timing, probe: dict[str, Any]) -> None:
    """Latency, memory and (not float32) the PSNR against float32 of one precision, into ``cost``."""
    suffix = precision(name).suffix
    entry: dict[str, Any] = cost.run_json if name == REFERENCE else cost.run_json.setdefault(name, {})
    try:
        with cudnn_benchmark(True) if device.startswith("cuda") else contextlib.nullcontext():
            if timing.latency is not None:
                samples, entry["latency"] = timed_latency(module, inputs, device, timing.latency.warmup,
                                                          timing.latency.repeat, timing.cap_s, name)
                cost.rows += [CostRow(part="total", quantity=k + suffix, value=v, unit="ms", **base)
                              for k, v in summarize_ms(samples).items()]
            if timing.memory:
                entry["memory"] = peak_memory(module, inputs, device, name, **probe)
                cost.rows += [CostRow(part="total", quantity=k + suffix, value=v, unit="MiB", **base)
                              for k, v in entry["memory"].items() if k.endswith("_mib") and k != "rss_before_mib"]
    except Exception as error:  # out of memory, or no kernel for this precision on this device: recorded
        entry["error"] = _first_line(error)
        if name == REFERENCE:
            cost.failed = f"{name}: {entry['error']}"
        return
    if name != REFERENCE:
        try:
            value, peak = _precision_psnr(module, inputs, device, name)
        except Exception as error:  # recorded; the timings above stay
            entry["psnr_error"] = _first_line(error)
            return
        cost.rows.append(CostRow(part="total", quantity=f"psnr{suffix}_vs_fp32_db", value=value, unit="dB", **base))
        entry["psnr_vs_fp32_db"] = {"value": value, "peak": peak, "inputs": "cost-graph inputs (seeded random images)"}


def time_graph(cost: MethodCost, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], base: dict[str, Any],
               device: str, timing: Timing, probe: dict[str, Any]) -> None:
    """Every precision of ``timing`` on ``module``, then ``measured_on``: the device, the wall-clock interval
    (Unix seconds) of the timed part and the machine's load during it (None where nothing was timed).
    ``probe``: method / scale / lr_hw / ref_hw / plugins for the CPU memory probe."""
    watch = LoadWatch()
    timed_from = time.time()
    watch.start()
    if timing.timed:
        for name in timing.precisions:
            _time_precision(cost, name, module, inputs, base, device, timing, probe)
    cost.run_json["measured_on"] = {"device": device, "timed_unix_s": None}
    if timing.timed:
        cost.load = watch.stop()
        cost.run_json["measured_on"].update(timed_unix_s=[round(timed_from, 6), round(time.time(), 6)],
                                            **cost.load.run_json())
    if device == "cpu":
        cost.rows.append(CostRow(part="total", quantity="torch_threads", value=torch.get_num_threads(),
                                 unit="threads", **base))
