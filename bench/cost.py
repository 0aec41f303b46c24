"""Cost of a method: parameters, MACs in two conventions, latency, peak memory, reference-size sweep.

Conventions and rules: ``protocols.md`` §7 and ``bench/flop_handlers.py``. Units: MACs (one fused
multiply-add = 1), stored and printed as GMACs (G = 1e9); parameters as exact integers; times in ms.

* MACs come from ONE jit trace per (method, size) through fvcore's ``FlopCountAnalysis``; a combined
  operator table evaluates every requested convention on that trace, so the (possibly minutes-long)
  traced forward runs once. The trace prunes computations whose results are unused (the MASA counter
  did the same); the executed-but-dead work is therefore not in these counts.
* FLOPS-T = the convention's total. FLOPS-M = the multiply-accumulates of products (convolution, the
  matmul family, deformable convolution) inside the method's ``matching`` part (``MethodInfo.parts``),
  i.e. without the elementwise/normalisation work around them (MASA-SR's "bmm bucket of the matcher").
* Parameters: ``params`` = every parameter of the cost graph's module (shared tensors once);
  ``params_used`` = those that feed an operation of the pruned trace (e.g. the ×4 path of a multi-scale
  checkpoint); ``buffers`` counted separately; per part the parameters of the part's submodule.
* Latency: batch 1, ``eval()``, ``torch.inference_mode()``, fixed inputs already on the device (no data
  loading, no host-to-device copies). GPU: CUDA-event pairs per iteration after warm-up, cuDNN benchmark
  on, TF32 state recorded. CPU: ``time.perf_counter`` wall time with the torch thread count recorded.
* Peak memory. GPU: ``torch.cuda.max_memory_allocated`` over one forward (reset before), absolute
  (weights and inputs included) and as a delta over the allocation before the forward. CPU: peak RSS
  delta of one forward, measured in a fresh subprocess: build the method, reset the kernel's peak-RSS
  mark (``echo 5 > /proc/self/clear_refs``), read ``VmRSS``, run the forward, read ``VmHWM``; the delta is
  the extra resident memory the forward needed (weights and inputs excluded, output included). Where
  ``clear_refs`` cannot be written the probe falls back to ``ru_maxrss`` minus ``VmRSS`` (a lower bound)
  and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn import jit_analysis as _fvcore_jit

from bench.flop_handlers import CONVENTIONS, HANDLES_BY_CONVENTION, PRODUCT_BUCKETS, Handle
from protocols.core import UserError

ROOT = Path(__file__).resolve().parents[1]
GIGA = 1e9
MIB = 1024 * 1024

# --------------------------------------------------------------------------------------------------
# MACs


@dataclass(frozen=True)
class MacCount:
    """Counts of one convention on one trace. All counts are integers (MACs or convention units)."""

    convention: str
    total: int
    by_operator: dict[str, int]
    by_module: dict[str, int]
    by_module_and_operator: dict[str, dict[str, int]]
    unsupported_ops: dict[str, int]  # op kind -> number of trace nodes counted as 0 with a warning
    ops_seen: dict[str, tuple[int, int]]  # handled op kind -> (trace nodes, count it contributed)

    def module_total(self, path: str) -> int:
        return self.by_module.get(path, 0)

    def module_exclusive(self, path: str) -> int:
        """Count of operations run directly in ``path``'s own forward, not inside one of its submodules."""
        prefix = path + "." if path else ""
        children = [n for n in self.by_module if n.startswith(prefix) and n != path and "." not in n[len(prefix) :]]
        return self.module_total(path) - sum(self.module_total(c) for c in children)

    def module_products(self, path: str) -> int:
        """Multiply-accumulates of products (conv, matmul family, deformable conv) inside ``path``."""
        ops = self.by_module_and_operator.get(path, {})
        return sum(v for k, v in ops.items() if k in PRODUCT_BUCKETS)


@dataclass(frozen=True)
class TraceCost:
    """Everything one trace tells: counts per convention, modules the trace never reached, and which
    parameters feed an operation of the pruned graph (None if the graph could not be mapped)."""

    counts: dict[str, MacCount]
    uncalled_modules: tuple[str, ...]
    used_param_ids: frozenset[int] | None
    canonical_names: dict[str, str]


@dataclass
class _Tally:
    nodes: Counter[str] = field(default_factory=Counter)
    cost: Counter[str] = field(default_factory=Counter)
    unsupported: Counter[str] = field(default_factory=Counter)
    unhandled: Counter[str] = field(default_factory=Counter)


def _short_op_name(kind: str) -> str:
    return kind.split("::", 1)[1] if "::" in kind else kind


def _combined_handle(kind: str, conventions: Sequence[str], tallies: dict[str, _Tally]) -> Handle:
    """One fvcore handle evaluating every convention's rule for ``kind``; buckets are ``<convention>/<bucket>``."""

    def handle(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
        merged: Counter[str] = Counter()
        for convention in conventions:
            tally = tallies[convention]
            rule = HANDLES_BY_CONVENTION[convention].get(kind)
            if rule is None:
                tally.unhandled[kind] += 1
                continue
            result = rule(inputs, outputs)
            if result is None:
                tally.unsupported[kind] += 1
                continue
            buckets = result if isinstance(result, Counter) else Counter({_short_op_name(kind): result})
            tally.nodes[kind] += 1
            tally.cost[kind] += int(sum(buckets.values()))
            for bucket, value in buckets.items():
                merged[f"{convention}/{bucket}"] += int(value)
        return merged

    return handle


@contextlib.contextmanager
def _capture_trace_graph(sink: list[torch._C.Graph]) -> Iterator[None]:
    """Keep the graph fvcore traces (read-only) so parameter use can be read off it without tracing again.
    fvcore 0.1.5.post20221221 (pinned) calls this module-level function once per analysis."""
    original = _fvcore_jit._get_scoped_trace_graph

    def capturing(*args: Any, **kwargs: Any) -> torch._C.Graph:
        graph = original(*args, **kwargs)
        sink.append(graph)
        return graph

    _fvcore_jit._get_scoped_trace_graph = capturing
    try:
        yield
    finally:
        _fvcore_jit._get_scoped_trace_graph = original


def _unique_state_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """State tensors in ``state_dict`` order, each tensor once: the order in which the tracer appends them
    to the graph inputs after the example inputs."""
    seen: set[int] = set()
    tensors = []
    for tensor in module.state_dict(keep_vars=True).values():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            tensors.append(tensor)
    return tensors


def _used_parameter_ids(module: torch.nn.Module, n_inputs: int, graph: torch._C.Graph) -> frozenset[int] | None:
    graph_inputs = list(graph.inputs())
    state = _unique_state_tensors(module)
    if len(graph_inputs) != n_inputs + len(state):
        return None
    param_ids = {id(p) for p in module.parameters()}
    return frozenset(
        id(tensor)
        for tensor, value in zip(state, graph_inputs[n_inputs:], strict=True)
        if id(tensor) in param_ids and len(value.uses()) > 0
    )


def analyze_trace(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], conventions: Sequence[str] = CONVENTIONS
) -> TraceCost:
    """Trace ``module(*inputs)`` once with fvcore and count it in every requested convention."""
    unknown = [c for c in conventions if c not in HANDLES_BY_CONVENTION]
    if unknown:
        raise UserError(f"unknown counting convention(s) {unknown}; valid: {', '.join(CONVENTIONS)}")
    if not isinstance(inputs, tuple) or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise UserError("cost_graph must return its example inputs as a tuple of tensors (fvcore traces those)")
    tallies = {c: _Tally() for c in conventions}
    kinds = set().union(*(HANDLES_BY_CONVENTION[c] for c in conventions))
    analysis = FlopCountAnalysis(module, inputs)
    analysis.clear_op_handles()
    analysis.set_op_handle(**{kind: _combined_handle(kind, conventions, tallies) for kind in sorted(kinds)})
    analysis.unsupported_ops_warnings(False)  # surfaced in our own report instead of the log
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    graphs: list[torch._C.Graph] = []
    with torch.no_grad(), _capture_trace_graph(graphs):
        merged = analysis.by_module_and_operator()
    never_handled = dict(analysis.unsupported_ops())  # no rule in any requested convention
    uncalled = tuple(sorted(analysis.uncalled_modules()))
    used = _used_parameter_ids(module, len(inputs), graphs[0]) if graphs else None
    canonical = {name: analysis.canonical_module_name(name) for name, _ in module.named_modules(remove_duplicate=False)}

    counts: dict[str, MacCount] = {}
    for convention in conventions:
        prefix = convention + "/"
        per_module = {
            name: {k[len(prefix) :]: int(v) for k, v in ops.items() if k.startswith(prefix)}
            for name, ops in merged.items()
        }
        tally = tallies[convention]
        unsupported = Counter(never_handled)
        unsupported.update(tally.unsupported)
        for kind, nodes in tally.unhandled.items():
            if kind not in _fvcore_jit._IGNORED_OPS:
                unsupported[kind] += nodes
        by_operator = per_module.get("", {})
        counts[convention] = MacCount(
            convention=convention,
            total=sum(by_operator.values()),
            by_operator=dict(sorted(by_operator.items())),
            by_module={name: sum(ops.values()) for name, ops in per_module.items()},
            by_module_and_operator=per_module,
            unsupported_ops=dict(sorted(unsupported.items())),
            ops_seen={k: (tally.nodes[k], tally.cost[k]) for k in sorted(tally.nodes)},
        )
    return TraceCost(counts=counts, uncalled_modules=uncalled, used_param_ids=used, canonical_names=canonical)


# --------------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class ParamCount:
    total: int
    trainable: int
    buffers: int  # elements of registered buffers (running statistics, constants), not parameters
    used: int | None  # parameters feeding an operation of the pruned trace; None if unknown
    by_part: dict[str, int]


def _resolve_part(module: torch.nn.Module, role: str, path: str) -> torch.nn.Module:
    try:
        return module.get_submodule(path)
    except AttributeError as error:
        raise UserError(
            f"MethodInfo.parts[{role!r}] = {path!r} is not a submodule of the cost graph; "
            f"top-level submodules: {', '.join(n for n, _ in module.named_children())}"
        ) from error


def count_params(
    module: torch.nn.Module, parts: Mapping[str, str] | None = None, used_param_ids: frozenset[int] | None = None
) -> ParamCount:
    """Parameter counts of ``module`` (shared tensors counted once) and of each part's submodule."""
    params = list(module.parameters())  # nn.Module.parameters() already yields a shared tensor once
    by_part = {
        role: sum(p.numel() for p in _resolve_part(module, role, path).parameters())
        for role, path in sorted((parts or {}).items())
    }
    return ParamCount(
        total=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        buffers=sum(b.numel() for b in module.buffers()),
        used=None if used_param_ids is None else sum(p.numel() for p in params if id(p) in used_param_ids),
        by_part=by_part,
    )


# --------------------------------------------------------------------------------------------------
# latency


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
    """Per-iteration forward times in ms (raw samples). See the module docstring for the method."""
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


# --------------------------------------------------------------------------------------------------
# memory


def gpu_peak_memory_mib(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """Peak ``torch.cuda.max_memory_allocated`` over one forward: absolute and over the pre-forward level."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.inference_mode():
        module(*inputs)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {"peak_allocated_mib": peak / MIB, "peak_allocated_delta_mib": (peak - before) / MIB}


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise OSError(f"{field_name} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_forward_rss(run_forward: Any) -> dict[str, Any]:
    """Peak RSS delta (MiB) of ``run_forward()`` in THIS process; meant for a fresh subprocess."""
    gc.collect()
    reset = _reset_peak_rss()
    before_kib = _status_kib("VmRSS")
    run_forward()
    if reset:
        peak_kib, how = _status_kib("VmHWM"), "clear_refs=5 then VmHWM - VmRSS"
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        how = "ru_maxrss - VmRSS (no peak reset possible: lower bound)"
    return {"peak_rss_delta_mib": max(0, peak_kib - before_kib) / 1024, "rss_before_mib": before_kib / 1024, "how": how}


def cpu_peak_rss_delta(
    method: str,
    *,
    scale: int,
    lr_hw: tuple[int, int],
    ref_hw: tuple[int, int],
    threads: int,
    plugins: Sequence[str] = (),
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run the memory probe for one method/size in a fresh Python process and return its JSON report."""
    request = {
        "method": method,
        "scale": scale,
        "lr_hw": list(lr_hw),
        "ref_hw": list(ref_hw),
        "threads": threads,
        "plugins": [str(Path(p).resolve()) for p in plugins],
    }
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    completed = subprocess.run(
        [sys.executable, "-m", "bench.cost", "--memory-probe", json.dumps(request)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"memory probe for {method} failed (exit {completed.returncode}): {completed.stderr[-2000:]}"
        )
    return json.loads(lines[-1])


def _memory_probe_main(request_json: str) -> None:
    from methods import registry

    request = json.loads(request_json)
    torch.set_num_threads(int(request["threads"]))
    for plugin in request["plugins"]:
        registry.load_plugin(plugin)
    method = registry.create(request["method"], scale=int(request["scale"]), device="cpu")
    module, inputs = method.cost_graph(tuple(request["lr_hw"]), tuple(request["ref_hw"]))
    module.eval()

    def forward() -> None:
        with torch.inference_mode():
            module(*inputs)

    print(json.dumps(measure_forward_rss(forward)))


# --------------------------------------------------------------------------------------------------
# one method, one size -> rows


COLUMNS = ("method", "part", "quantity", "value", "unit", "lr_hw", "ref_hw", "device", "convention")
INTEGER_UNITS = frozenset({"params", "elements", "threads"})


@dataclass(frozen=True)
class CostRow:
    """One long-format row of ``cost.csv``. ``convention`` is ``-`` for convention-free quantities."""

    method: str
    part: str
    quantity: str
    value: float
    unit: str
    lr_hw: str
    ref_hw: str
    device: str
    convention: str = "-"

    def formatted(self) -> list[str]:
        value = str(int(round(self.value))) if self.unit in INTEGER_UNITS else f"{self.value:.6f}"
        return [
            self.method,
            self.part,
            self.quantity,
            value,
            self.unit,
            self.lr_hw,
            self.ref_hw,
            self.device,
            self.convention,
        ]


def hw_text(hw: tuple[int, int] | None) -> str:
    return "-" if hw is None else f"{hw[0]}x{hw[1]}"


def parse_hw(text: str) -> tuple[int, int]:
    """``128`` -> (128, 128); ``96x128`` -> (96, 128) (height x width)."""
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise UserError(f"bad size {text!r}; use N or HxW, e.g. 128 or 96x128") from error
    if len(dims) == 1:
        dims = (dims[0], dims[0])
    if len(dims) != 2 or min(dims) < 1:
        raise UserError(f"bad size {text!r}; use N or HxW with positive integers")
    return dims  # type: ignore[return-value]


@dataclass
class MethodCost:
    """Rows and the run-manifest entry of one method at one (LR, Ref) size."""

    rows: list[CostRow]
    manifest: dict[str, Any]


def _gmacs_row(base: dict[str, str], convention: str, part: str, quantity: str, macs: int) -> CostRow:
    return CostRow(part=part, quantity=quantity, value=macs / GIGA, unit="GMACs", convention=convention, **base)


def _mac_rows(trace: TraceCost, parts: Mapping[str, str], base: dict[str, str]) -> tuple[list[CostRow], dict[str, Any]]:
    """Rows: ``flops_t`` (total), ``macs`` per part and per operator bucket (``op:<bucket>``), ``flops_m``."""
    rows: list[CostRow] = []
    manifest: dict[str, Any] = {}
    for convention, count in trace.counts.items():
        rows.append(_gmacs_row(base, convention, "total", "flops_t", count.total))
        rows += [_gmacs_row(base, convention, f"op:{op}", "macs", v) for op, v in count.by_operator.items()]
        for role, path in sorted(parts.items()):
            canonical = trace.canonical_names.get(path, path)
            rows.append(_gmacs_row(base, convention, role, "macs", count.module_total(canonical)))
            if role == "matching":
                rows.append(_gmacs_row(base, convention, "matching", "flops_m", count.module_products(canonical)))
        manifest[convention] = {
            "unsupported_ops": count.unsupported_ops,
            "ops_seen": {k: {"nodes": n, "count": c} for k, (n, c) in count.ops_seen.items()},
            "gmacs_by_module": {
                name: round(value / GIGA, 6)
                for name, value in sorted(count.by_module.items())
                if name.count(".") < 2 and value > 0
            },
        }
    return rows, manifest


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "CPU: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU: " + (platform.processor() or platform.machine())


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
    """Cost of one built method at one size. ``method`` follows ``methods.base.Method``."""
    uses_ref = bool(method.info.needs_reference)
    base = {
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
        _resolve_part(module, role, path)

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
    mac_rows, mac_manifest = _mac_rows(trace, parts, base)
    rows += mac_rows

    manifest: dict[str, Any] = {
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
        "conventions": mac_manifest,
    }

    if latency is not None:
        with cudnn_benchmark(True) if device.startswith("cuda") else contextlib.nullcontext():
            samples = time_forward(module, inputs, device, latency)
        stats = summarize_ms(samples)
        rows += [CostRow(part="total", quantity=k, value=v, unit="ms", **base) for k, v in stats.items()]
        manifest["latency"] = {
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
            manifest["memory"] = {"how": "torch.cuda.max_memory_allocated over one forward, reset before", **peak}
        else:
            probe = cpu_peak_rss_delta(
                method_name, scale=scale, lr_hw=lr_hw, ref_hw=ref_hw, threads=torch.get_num_threads(), plugins=plugins
            )
            rows.append(
                CostRow(
                    part="total", quantity="peak_rss_delta_mib", value=probe["peak_rss_delta_mib"], unit="MiB", **base
                )
            )
            manifest["memory"] = probe
    if device == "cpu":
        rows.append(
            CostRow(part="total", quantity="torch_threads", value=torch.get_num_threads(), unit="threads", **base)
        )
    del module, inputs
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return MethodCost(rows=rows, manifest=manifest)


# --------------------------------------------------------------------------------------------------
# files


def _row_sort_key(row: CostRow) -> tuple[Any, ...]:
    def area(text: str) -> tuple[int, ...]:
        return tuple(int(v) for v in text.split("x")) if text != "-" else (0,)

    return (row.method, area(row.lr_hw), area(row.ref_hw), row.convention, row.quantity, row.part)


def write_cost_csv(path: str | Path, rows: Sequence[CostRow]) -> None:
    """Long format, fixed column order, rows sorted by method, size, convention, quantity, part; written
    atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(row.formatted() for row in sorted(rows, key=_row_sort_key))
    os.replace(tmp, path)


def environment(device: str) -> dict[str, Any]:
    """The run manifest's environment (``bench.provenance``) plus what timing depends on."""
    import fvcore
    import torchvision

    from bench.provenance import environment as base_environment

    info = base_environment(device)
    info.update(
        {
            "torchvision": torchvision.__version__,
            "fvcore": getattr(fvcore, "__version__", "unknown"),
            "platform": platform.platform(),
            "device_name": device_description(device),
            "torch_threads": torch.get_num_threads(),
            "cudnn_benchmark_during_timing": device.startswith("cuda"),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        }
    )
    if device.startswith("cuda"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout.strip()
    return info


def plot_sweep(rows: Sequence[CostRow], out_dir: str | Path, convention: str) -> list[Path]:
    """MACs (``convention``), latency median and peak memory against the reference side length.
    Writes ``sweep.png`` and ``sweep.svg`` (deterministic SVG ids, no timestamp)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reports.plots import legend_outside, method_styles

    out_dir = Path(out_dir)
    device = rows[0].device if rows else "-"
    clock = "CPU wall time" if device == "cpu" else "CUDA events"
    panels = [
        ("flops_t", f"FLOPS-T [GMACs, {convention}]", convention),
        ("latency_ms_median", f"latency median [ms, {clock}]", "-"),
        ("peak_allocated_mib", "GPU peak allocated [MiB]", "-"),
        ("peak_rss_delta_mib", "CPU peak RSS delta [MiB]", "-"),
    ]
    swept = [r for r in rows if r.part == "total" and r.ref_hw != "-"]  # SISR rows have no reference size
    present = [p for p in panels if any(r.quantity == p[0] and r.convention == p[2] for r in swept)]
    sides = sorted({int(r.ref_hw.split("x")[0]) for r in swept})
    styles = method_styles([r.method for r in swept])
    width_in = 4.2 * max(1, len(present))
    with plt.rc_context({"svg.hashsalt": "refsr-bench"}):
        fig, axes = plt.subplots(1, max(1, len(present)), figsize=(width_in, 3.4), squeeze=False)
        for axis, (quantity, label, conv) in zip(axes[0], present, strict=False):
            for method in sorted({r.method for r in swept}):
                points = sorted(
                    (int(r.ref_hw.split("x")[0]), r.value)
                    for r in swept
                    if r.method == method and r.quantity == quantity and r.convention == conv
                )
                if points:
                    colour, marker = styles[method]
                    axis.plot([p[0] for p in points], [p[1] for p in points], color=colour, marker=marker,
                              label=method)
            axis.set_xscale("log", base=2)
            axis.set_xticks(sides, [str(s) for s in sides])
            axis.minorticks_off()
            axis.set_yscale("log")
            axis.set_xlabel("reference side [px]")
            axis.set_ylabel(label)
            axis.grid(True, which="major", alpha=0.3)
        lr = rows[0].lr_hw if rows else "-"
        fig.suptitle(f"cost vs reference size (LR {lr}, device {device})", fontsize=9)
        legend_outside(fig, list(axes[0]), width_in)
        written = [out_dir / "sweep.png", out_dir / "sweep.svg"]
        fig.savefig(written[0], dpi=120, metadata={"Software": None})
        fig.savefig(written[1], metadata={"Date": None, "Creator": None})
        plt.close(fig)
    return written


if __name__ == "__main__":  # the CPU memory probe runs here, in a fresh process
    parser = argparse.ArgumentParser(description="internal: CPU peak-RSS probe of one method forward")
    parser.add_argument("--memory-probe", required=True, help="JSON request")
    _memory_probe_main(parser.parse_args().memory_probe)
