"""``refsr-bench gpu-check``: one call that checks every port on a device and measures every network's cost there.

    refsr-bench gpu-check --device cuda --sizes paper --out $OUT   # GPU machine: bench/commands/gpu_check.sh
    refsr-bench gpu-check --device cpu --sizes tiny --iterations 3     # the same steps on CPU, tiny sizes (tests)

Steps, in this order (each one's wall time is recorded in run.json):

1. Environment: GPU name, driver, torch / CUDA / cuDNN / torchvision versions, TF32 flags. TF32 is turned
   OFF (``torch.backends.cuda.matmul.allow_tf32 = False``, ``torch.backends.cudnn.allow_tf32 = False``) so
   float32 means float32 everywhere below.
2. Fixtures: every port with an official fixture (``bench.engines.checks.fixtures.PORT_FIXTURES``) runs the fixture
   inputs on
   the device in float32; max |Δ| against ``outputs.npz`` is compared with the tolerance the fixture README
   justifies (``PortFixture.atol`` / ``atol_why``). Those tolerances come from the float32-vs-float64 spread
   of the official code (1e-6 .. 1e-5) with margin; a GPU's float32 kernels (other summation orders, cuDNN
   algorithm choice, no TF32) differ from the CPU by the same order, so the same tolerance is expected to
   hold; a discrete matching step could flip only at near-ties, which the READMEs rule out at 1e-5.
   With ``--autocast`` the same fixture inputs also run under autocast; PSNR of that output against the
   float32 output (peak = the output's nominal range: 1 for [0, 1], 2 for [-1, 1]) is recorded.
3. Deformable convolution: every ``torchvision.ops.deform_conv2d`` call of C²-Matching (its fixture) and of
   SSEN (synthetic weights, no official fixture exists: the C² fixture's LR/Ref images are used) is recorded
   on the CPU and replayed on the device; max |Δ| device vs CPU per call.
4. Cost of every registered network (or ``-m``) at LR 128² / Ref 512² and on the CUFED5 stitched shape
   (LR 125×83, Ref 2560×512) — ``--sizes tiny`` uses LR 16² / Ref 64² and LR 15×11 / Ref 160×48:
   parameters and MACs (``bench.engines.cost.measure.measure_method_size``: one fvcore trace), latency (warm-up, then
   ``--iterations`` timed forwards: CUDA events on GPU, ``time.perf_counter`` on CPU; median, p10/p90), peak
   memory (GPU: ``torch.cuda.max_memory_allocated`` over one forward; CPU: the in-process peak-RSS delta,
   labelled as such), in float32 and, with ``--autocast``, under autocast (quantities suffixed
   ``_autocast_bf16`` / ``_autocast_fp16``). Networks with the same architecture and input shapes (GAN/rec
   twins) are measured once and recorded under both names (``same_network_as`` in run.json).

Budget (H100, ``--sizes paper``; the plan is under 8 minutes): Python and torch imports ~10 s before the clock
starts; then ``--budget-s`` (default 400 s) for everything: environment ~2 s; fixtures ~60 s (the synthetic
weights are ~80 M numbers made with numpy, six small forwards); deformable convolution ~15 s; building every
method once on the CPU to find the networks ~10 s; cost: the rest (~310 s), shared evenly among the remaining
(architecture, shape) cells (11 architectures x 2 shapes: ~14 s each, of which 60 % timed loops, the rest
trace, warm-up, memory and the autocast PSNR). When 50 timed iterations do not fit a cell's share (SRNTT at
the stitched shape, seconds per forward) fewer are run and the cell says ``below_protocol_minimum``; cells
reached after the budget is spent are recorded as skipped, and the cell in flight may overrun by one cell
(~20 s), so the whole call ends by ~7.5 minutes. Nothing is estimated: a number in the output was measured.

Writes ``OUT/<run-name>/cost.csv`` (``bench.results.cost_csv`` format; ``reports`` reads it), ``checks.csv`` (same
columns: fixture and deformable-convolution max |Δ|, autocast PSNR), ``run.json`` and ``summary.md`` (the
table a session pastes into its note). ``OUT`` defaults to ``$OUT`` when set. Commit the folder under
``reports/results/cost/``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from bench.engines.checks.fixtures import PORT_FIXTURES, run_port_fixture
from bench.engines.cost.flop_handlers import CONVENTIONS
from bench.engines.cost.latency import LatencyConfig, cudnn_benchmark, summarize_ms, time_forward
from bench.engines.cost.measure import measure_method_size
from bench.engines.cost.memory import cpu_peak_rss_delta, gpu_peak_memory_mib
from bench.results.cost_csv import CostRow, hw_text, write_cost_csv
from bench.results.gpu_specs import UNKNOWN_PEAK, fp32_compute_bound_ms
from bench.results.provenance import environment
from protocols.core import UserError

ROOT = Path(__file__).resolve().parents[2]
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Nominal output range of each fixture port (its README's forward contract): the PSNR peak.
OUTPUT_RANGE = {"c2_matching_rec": 1.0, "carn_m": 1.0, "crossnet": 1.0, "masa_rec": 2.0, "srntt": 2.0,
                "ttsr_rec": 2.0}


@dataclass(frozen=True)
class Shape:
    name: str
    lr_hw: tuple[int, int]
    ref_hw: tuple[int, int]


SIZES: dict[str, tuple[Shape, ...]] = {
    "paper": (Shape("masa_table2", (128, 128), (512, 512)), Shape("cufed5_stitched", (125, 83), (2560, 512))),
    # the same two settings shrunk 8x (LR) and 8x / 16x (Ref; MASA's window needs that much), odd LR sides kept
    "tiny": (Shape("masa_table2_tiny", (16, 16), (64, 64)), Shape("cufed5_stitched_tiny", (15, 11), (160, 48))),
}


# --------------------------------------------------------------------------------------------------
# small helpers


def shared_folder(explicit: str | None) -> Path | None:
    """``--shared``, else ``$REFSR_SHARED``, else ``../shared`` beside the checkout (the tests' rule)."""
    for candidate in (explicit, os.environ.get("REFSR_SHARED"), str(ROOT.parent / "shared")):
        if candidate and (Path(candidate) / "fixtures").is_dir():
            return Path(candidate)
    return None


def run_name(device_name: str) -> str:
    """Folder name of a run: ``gpu-check-<device>-pt<torch major.minor>``, lower case, [a-z0-9-]."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower().removeprefix("cpu:")).strip("-")
    torch_version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    return f"gpu-check-{slug}-pt{torch_version}"


def psnr_db(output: torch.Tensor, reference: torch.Tensor, peak: float) -> float:
    """PSNR (dB) of ``output`` against ``reference`` with the given peak; inf when they are equal."""
    mse = float(((output.double() - reference.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextlib.contextmanager
def precision(device: str, autocast: str | None) -> Iterator[None]:
    """float32 (``autocast`` None) or ``torch.autocast`` with bf16/fp16 on the device's type."""
    if autocast is None:
        yield
        return
    with torch.autocast(device_type=device.split(":")[0], dtype=AUTOCAST_DTYPES[autocast]):
        yield


def tf32_off() -> dict[str, bool]:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return {"tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}


def device_environment(device: str) -> dict[str, Any]:
    """``bench.results.provenance.environment`` (timing form) plus nvidia-smi and the CUDA/cuDNN build of torch."""
    info = environment(device, timing=True)
    info["torch_cuda_build"] = torch.version.cuda
    if device.startswith("cuda"):
        info["cudnn_version"] = torch.backends.cudnn.version()
        properties = torch.cuda.get_device_properties(torch.device(device))
        info["gpu_memory_mib"] = round(properties.total_memory / 2**20)
        info["gpu_multiprocessors"] = properties.multi_processor_count
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    return info


# --------------------------------------------------------------------------------------------------
# step 2: fixtures


def check_fixtures(shared: Path, device: str, autocast: str | None, log: Callable[[str], None],
                   methods: Sequence[str] | None = None) -> tuple[list[CostRow], list[dict[str, Any]]]:
    """Every port's fixture on ``device`` (only the ports among ``methods`` when given)."""
    rows: list[CostRow] = []
    entries: list[dict[str, Any]] = []
    for port in PORT_FIXTURES:
        if methods is not None and port.method not in methods:
            continue
        entry: dict[str, Any] = {"method": port.method, "fixture": port.folder, "atol": port.atol,
                                 "atol_why": port.atol_why}
        entries.append(entry)
        started = time.perf_counter()
        try:
            forward = port.build(shared / "fixtures" / port.folder, device)
            outcome = run_port_fixture(port, shared, device, forward)
        except Exception as error:  # one broken port must not hide the others' results
            entry["error"] = f"{type(error).__name__}: {error}"
            log(f"fixture {port.method}: FAILED {entry['error']}")
            continue
        lr_hw = hw_text(_lr_of(outcome.inputs))
        base: dict[str, Any] = {"method": port.method, "part": "fixture", "lr_hw": lr_hw, "ref_hw": "-",
                "device": device.split(":")[0]}
        rows.append(CostRow(quantity="fixture_max_abs_diff", value=outcome.max_abs_diff, unit="abs", **base))
        rows.append(CostRow(quantity="fixture_atol", value=port.atol, unit="abs", **base))
        entry.update(max_abs_diff=outcome.max_abs_diff, passed=outcome.passed)
        if autocast is not None:
            try:
                with precision(device, autocast), torch.inference_mode():
                    low = forward({k: v.to(device) for k, v in outcome.inputs.items()}).float().cpu()
            except Exception as error:  # e.g. an operator without a kernel for that dtype on this device
                entry[f"autocast_{autocast}_error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            else:
                value = psnr_db(low, outcome.output, OUTPUT_RANGE.get(port.method, 1.0))
                rows.append(CostRow(quantity=f"psnr_autocast_{autocast}_vs_fp32_db", value=value, unit="dB", **base))
                entry[f"psnr_autocast_{autocast}_vs_fp32_db"] = value
                entry["psnr_peak"] = OUTPUT_RANGE.get(port.method, 1.0)
        entry["seconds"] = round(time.perf_counter() - started, 2)
        log(f"fixture {port.method}: max |Δ| {outcome.max_abs_diff:.3g} (tolerance {port.atol:g}: "
            f"{'ok' if outcome.passed else 'EXCEEDED'})")
        del forward
        _free(device)
    return rows, entries


def _lr_of(inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
    smallest = min(inputs.values(), key=lambda t: t.numel() if t.dim() == 4 else 1 << 62)
    return int(smallest.shape[-2]), int(smallest.shape[-1])


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------
# step 3: deformable convolution, device vs CPU


@contextlib.contextmanager
def recording_deform_conv2d(calls: list[tuple[tuple[Any, ...], dict[str, Any], torch.Tensor]]) -> Iterator[None]:
    """Replace the ``deform_conv2d`` the C² and SSEN modules imported by a recorder of (args, kwargs, output)."""
    import methods.c2_matching as c2_module
    import methods.ssen as ssen_module

    originals = {module: module.deform_conv2d for module in (c2_module, ssen_module)}

    def make(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def record(*args: Any, **kwargs: Any) -> torch.Tensor:
            output = original(*args, **kwargs)
            calls.append((tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args),
                          {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()},
                          output.detach().clone()))
            return output

        return record

    for module, original in originals.items():
        module.deform_conv2d = make(original)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in originals.items():
            module.deform_conv2d = original  # type: ignore[attr-defined]


def _synthetic_for(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The fixtures' synthetic rule applied to ``module``'s own state_dict keys and shapes (plain rule, no gains)."""
    from bench.engines.checks.fixtures import synthetic_value

    return {key: torch.from_numpy(synthetic_value(key, tuple(value.shape))) if value.is_floating_point()
            else value.clone() for key, value in module.state_dict().items()}


def check_deform_conv(shared: Path, device: str, log: Callable[[str], None]
                      ) -> tuple[list[CostRow], list[dict[str, Any]]]:
    """Record every deform_conv2d call of C² (fixture) and SSEN (synthetic weights) on the CPU; replay each on
    ``device`` with torchvision's kernel there; max |Δ| per call (float32, TF32 off)."""
    from torchvision.ops import deform_conv2d

    from bench.engines.checks.fixtures import load_npz
    from methods.registry import create

    port = next(p for p in PORT_FIXTURES if p.uses_deform_conv)
    folder = shared / "fixtures" / port.folder
    inputs = load_npz(folder / "inputs.npz")
    runs: list[tuple[str, Callable[[], Any]]] = []
    c2_forward = port.build(folder, "cpu")
    runs.append((port.method, lambda: c2_forward(inputs)))
    ssen = create("ssen", scale=4, device="cpu")
    ssen.module.load_state_dict(_synthetic_for(ssen.module), strict=True)
    runs.append(("ssen", lambda: ssen.predict(inputs["img_in_lq"], inputs["img_ref"])))

    rows: list[CostRow] = []
    entries: list[dict[str, Any]] = []
    for method, run in runs:
        calls: list[tuple[tuple[Any, ...], dict[str, Any], torch.Tensor]] = []
        with recording_deform_conv2d(calls), torch.inference_mode():
            run()
        diffs = []
        for args, kwargs, cpu_output in calls:
            moved_args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)
            moved_kwargs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
            with torch.inference_mode():
                on_device = deform_conv2d(*moved_args, **moved_kwargs).float().cpu()
            diffs.append(float((on_device - cpu_output).abs().max()))
        base: dict[str, Any] = {"method": method, "part": "deform_conv2d",
                                "lr_hw": hw_text(_lr_of({"lr": inputs["img_in_lq"]})),
                                "ref_hw": hw_text(_lr_of({"ref": inputs["img_ref"]})), "device": device.split(":")[0]}
        if diffs:
            rows.append(CostRow(quantity="deform_conv2d_max_abs_diff_vs_cpu", value=max(diffs), unit="abs", **base))
        rows.append(CostRow(quantity="deform_conv2d_calls", value=len(diffs), unit="elements", **base))
        entries.append({"method": method, "calls": len(diffs), "max_abs_diff_per_call": diffs,
                        "weights": "fixture synthetic (official layout + gains)" if method == port.method
                        else "synthetic rule on the port's own state_dict (no official SSEN fixture)"})
        log(f"deform_conv2d {method}: {len(diffs)} calls, max |Δ| {device} vs cpu "
            f"{max(diffs) if diffs else float('nan'):.3g}")
    return rows, entries


# --------------------------------------------------------------------------------------------------
# step 4: cost of every network


@dataclass
class Budget:
    """Wall-clock budget of the cost step: each remaining cell gets an even share of what is left."""

    deadline: float

    def left_s(self) -> float:
        return self.deadline - time.perf_counter()

    def share_s(self, cells_left: int) -> float:
        return max(0.0, self.left_s()) / max(1, cells_left)


def _network_signature(method: Any, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[Any, ...]:
    state = tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())
    return (type(module).__name__, state, tuple(tuple(t.shape) for t in inputs), bool(method.info.needs_reference))


def timed_latency(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: str, warmup: int, repeat: int,
                  cap_s: float, autocast: str | None) -> tuple[list[float], dict[str, Any]]:
    """Warm up (at least one forward), then ``repeat`` timed forwards via
    ``bench.engines.cost.latency.time_forward``; fewer
    when ``repeat`` forwards would exceed ``cap_s`` (the count actually run is returned and recorded)."""
    started = time.perf_counter()
    done = 0
    with precision(device, autocast), torch.inference_mode():
        while done < max(1, warmup):
            begin = time.perf_counter()
            module(*inputs)
            synchronize(device)
            last_s = time.perf_counter() - begin
            done += 1
            if time.perf_counter() - started > cap_s / 4:  # a slow network: its first forwards are the warm-up
                break
    fits = max(1, int(cap_s / max(last_s, 1e-6)))
    runs = min(repeat, fits)
    with precision(device, autocast):
        samples = time_forward(module, inputs, device, LatencyConfig(warmup=0, repeat=runs))
    return samples, {"warmup_run": done, "repeat_requested": repeat, "repeat_run": runs,
                     "capped_by_budget": runs < repeat, "cap_s": round(cap_s, 2),
                     "clock": "CUDA events" if device.startswith("cuda") else "CPU wall time (time.perf_counter)",
                     "samples_ms": [round(s, 4) for s in samples]}


def peak_memory(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: str, autocast: str | None,
                method: str, lr_hw: tuple[int, int], ref_hw: tuple[int, int]) -> tuple[dict[str, float], str]:
    """GPU: ``torch.cuda.max_memory_allocated`` over one forward (under ``autocast`` if given). CPU, float32:
    ``bench.engines.cost.memory``'s peak-RSS-delta probe in a fresh process; CPU autocast: not measured (empty)."""
    if device.startswith("cuda"):
        with precision(device, autocast):
            return gpu_peak_memory_mib(module, inputs), "torch.cuda.max_memory_allocated over one forward"
    if autocast is not None:
        return {}, "not measured: the CPU probe runs float32 in a fresh process"
    probe = cpu_peak_rss_delta(method, scale=4, lr_hw=lr_hw, ref_hw=ref_hw, threads=torch.get_num_threads())
    return ({"peak_rss_delta_mib": probe["peak_rss_delta_mib"]},
            f"CPU peak RSS delta of one forward in a fresh process ({probe['how']}); not a GPU number")


def autocast_psnr(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: str, autocast: str
                  ) -> tuple[float, float]:
    """PSNR (dB) of the autocast output against the float32 output on the cost-graph inputs; peak = the float32
    output's dynamic range (these networks have no fixture)."""
    with torch.inference_mode():
        reference = module(*inputs)
        with precision(device, autocast):
            low = module(*inputs)
    reference = (reference[0] if isinstance(reference, tuple) else reference).float().cpu()
    low = (low[0] if isinstance(low, tuple) else low).float().cpu()
    peak = float(reference.max() - reference.min()) or 1.0
    return psnr_db(low, reference, peak), peak


def _rows(base: dict[str, Any], values: dict[str, float], unit: str, suffix: str) -> list[CostRow]:
    return [CostRow(part="total", quantity=k + suffix, value=v, unit=unit, **base) for k, v in values.items()]


def measure_networks(names: Sequence[str], shapes: Sequence[Shape], device: str, warmup: int, repeat: int,
                     autocast: str | None, budget: Budget, log: Callable[[str], None]
                     ) -> tuple[list[CostRow], dict[str, Any]]:
    from tqdm import tqdm

    from methods.registry import create

    rows: list[CostRow] = []
    run_json: dict[str, Any] = {}
    measured: dict[tuple[Any, ...], str] = {}
    networks, architectures = plan_networks(names, run_json)
    # shape-major: the MASA Table 2 size of every network before any stitched-reference cell
    cells = [(name, shape) for shape in shapes for name in networks]
    to_measure = architectures * len(shapes)  # cells that will run a network (twins are copied, not timed)
    progress = tqdm(cells, desc="cost", unit="cell", mininterval=2.0, file=sys.stderr)
    for name, shape in progress:
        progress.set_postfix_str(f"{name} {shape.name}")
        entry: dict[str, Any] = {"shape": shape.name, "lr_hw": list(shape.lr_hw), "ref_hw": list(shape.ref_hw)}
        run_json.setdefault(name, []).append(entry)
        if budget.left_s() <= 0:
            entry["skipped"] = "budget spent before this cell (rerun with -m for the rest)"
            continue
        started = time.perf_counter()
        try:
            method = create(name, scale=4, device=device)
            if not hasattr(method, "cost_graph"):
                entry["skipped"] = "no cost_graph (not a network)"
                continue
            lr_run = shape.lr_hw
            try:
                module, inputs = method.cost_graph(lr_run, shape.ref_hw)
            except UserError as error:  # e.g. MASA's 8x8 blocks: measure the padded LR its predict() runs
                lr_run = (-(-shape.lr_hw[0] // 8) * 8, -(-shape.lr_hw[1] // 8) * 8)
                if lr_run == shape.lr_hw:
                    raise
                module, inputs = method.cost_graph(lr_run, shape.ref_hw)
                entry["measured_lr_hw"] = list(lr_run)
                entry["padding_why"] = f"{error} -> measured at LR {hw_text(lr_run)}, as predict() pads"
            module = module.to(device).eval()
            inputs = tuple(t.to(device) for t in inputs)
            if sum(p.numel() for p in module.parameters()) == 0:
                entry["skipped"] = "no parameters (not a network)"
                continue
            signature = (shape.name, *_network_signature(method, module, inputs))
            if signature in measured:
                twin = measured[signature]
                entry["same_network_as"] = twin
                rows += [replace(r, method=name) for r in rows
                         if r.method == twin and r.lr_hw == hw_text(shape.lr_hw)]
                log(f"{name} {shape.name}: same network and inputs as {twin}; its rows recorded for {name}")
                continue
            cost = measure_method_size(name, method, scale=4, lr_hw=lr_run, ref_hw=shape.ref_hw, device=device,
                                       conventions=CONVENTIONS, latency=None, memory=False)
            nominal = hw_text(shape.lr_hw)  # rows name the requested LR size, run.json the padded one
            base: dict[str, Any] = {"method": name, "lr_hw": nominal, "ref_hw": cost.rows[0].ref_hw,
                                    "device": device.split(":")[0]}
            cell_rows = [replace(r, lr_hw=nominal) for r in cost.rows]
            entry["macs"] = {k: v for k, v in cost.run_json.items() if k in ("params_exact", "trace_seconds",
                                                                              "input_shapes", "uncalled_modules")}
            precisions: list[str | None] = [None] + ([autocast] if autocast else [])
            cap_s = budget.share_s(to_measure) / len(precisions) * 0.6  # the rest: trace, warm-up, memory
            to_measure = max(1, to_measure - 1)
            for mode in precisions:
                suffix = "" if mode is None else f"_autocast_{mode}"
                label = "fp32" if mode is None else mode
                try:
                    with cudnn_benchmark(device.startswith("cuda")):
                        samples, timing = timed_latency(module, inputs, device, warmup, repeat, cap_s, mode)
                        peak, how = peak_memory(module, inputs, device, mode, name, lr_run, shape.ref_hw)
                except Exception as error:  # out of memory, or no kernel for the autocast dtype on this device
                    entry[label] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
                    if mode is None:
                        entry["error"] = f"float32: {entry[label]['error']}"
                    _free(device)
                    continue
                timing["below_protocol_minimum"] = device.startswith("cuda") and (timing["repeat_run"] < 50)
                entry[label] = {"latency": timing, "memory": {"how": how, **peak}}
                cell_rows += _rows(base, summarize_ms(samples), "ms", suffix)
                cell_rows += _rows(base, peak, "MiB", suffix)
                if mode is not None:
                    try:
                        value, psnr_peak = autocast_psnr(module, inputs, device, mode)
                    except Exception as error:  # recorded; the timings above stay
                        entry[label]["psnr_error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
                        continue
                    cell_rows.append(CostRow(part="total", quantity=f"psnr{suffix}_vs_fp32_db", value=value,
                                             unit="dB", **base))
                    entry[label]["psnr_vs_fp32_db"] = {"value": value, "peak": psnr_peak,
                                                       "inputs": "cost-graph inputs (seeded random images)"}
            rows += cell_rows
            measured[signature] = name
            entry["seconds"] = round(time.perf_counter() - started, 2)
        except torch.cuda.OutOfMemoryError as error:
            entry["error"] = f"out of memory: {str(error).splitlines()[0]}"
        except (UserError, NotImplementedError) as error:
            entry["skipped"] = str(error)
        except Exception as error:  # one network must not lose the others' results
            entry["error"] = f"{type(error).__name__}: {error}"
            log(f"{name} {shape.name}: FAILED {entry['error']}")
        finally:
            _free(device)
    progress.close()
    return rows, run_json


def plan_networks(names: Sequence[str], run_json: dict[str, Any]) -> tuple[list[str], int]:
    """The names that are networks (a cost graph and parameters; built once on the CPU to find out) and the
    number of distinct architectures among them (GAN/rec twins count once), for the budget. Others are
    recorded in ``run_json`` as skipped."""
    from methods.registry import create

    networks: list[str] = []
    architectures: set[Any] = set()
    for name in names:
        try:
            method = create(name, scale=4, device="cpu")
        except UserError as error:
            run_json[name] = [{"skipped": f"factory: {error}"}]
            continue
        module = getattr(method, "module", None)
        has_params = not isinstance(module, torch.nn.Module) or any(p.numel() for p in module.parameters())
        if not hasattr(method, "cost_graph") or not has_params:
            run_json[name] = [{"skipped": "not a network (no cost graph or no parameters)"}]
            continue
        networks.append(name)
        architectures.add((type(module).__name__, tuple((k, tuple(v.shape)) for k, v in module.state_dict().items()))
                          if isinstance(module, torch.nn.Module) else name)
    return networks, max(1, len(architectures))


def registered_networks() -> list[str]:
    """Every registry name (classical methods and matchers are filtered out when measured)."""
    from methods.registry import list_methods

    return list_methods()


# --------------------------------------------------------------------------------------------------
# summary


def summary_table(cost_rows: Sequence[CostRow], check_rows: Sequence[CostRow], device_name: str, shape: Shape,
                  autocast: str | None) -> list[str]:
    """Markdown lines: method, fp32 / autocast latency (ms), peak MiB, float32 compute bound (ms), fixture max |Δ|."""
    lr, ref = hw_text(shape.lr_hw), hw_text(shape.ref_hw)

    def value(method: str, quantity: str, convention: str = "-") -> float | None:
        for row in cost_rows:
            if (row.method, row.quantity, row.part, row.convention, row.lr_hw) == (method, quantity, "total",
                                                                                  convention, lr):
                return row.value
        return None

    fixture = {r.method: r.value for r in check_rows if r.quantity == "fixture_max_abs_diff"}
    memory = "peak_allocated_mib" if any(r.quantity == "peak_allocated_mib" for r in cost_rows) else \
        "peak_rss_delta_mib"
    low = f"{autocast} latency ms" if autocast else "autocast latency ms"
    header = f"| method | fp32 latency ms | {low} | peak MiB ({memory}) | compute bound ms | fixture max abs diff |"
    lines = [f"Device: {device_name}; LR {lr}, Ref {ref}; float32 with TF32 off; latency = median.", "", header,
             "|---|---|---|---|---|---|"]

    def text(v: float | None, digits: int = 2) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    for method in sorted({r.method for r in cost_rows if r.lr_hw == lr}):
        gmacs = value(method, "flops_t", "macs")
        bound = fp32_compute_bound_ms(gmacs, device_name) if gmacs is not None else None
        bound_text = text(bound, 3) if bound is not None else (UNKNOWN_PEAK if gmacs is not None else "-")
        autocast_value = value(method, f"latency_ms_median_autocast_{autocast}") if autocast else None
        diff = fixture.get(method)
        lines.append(f"| {method} | {text(value(method, 'latency_ms_median'))} | {text(autocast_value)} | "
                     f"{text(value(method, memory), 1)} | {bound_text} | {'-' if diff is None else f'{diff:.2e}'} |")
    return lines


# --------------------------------------------------------------------------------------------------
# the verb


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "gpu-check", help="fixture equality, deform-conv check and cost of every network on one device",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu-check",
                        help="output folder; the run goes to OUT/<run-name>/ (default $OUT, else runs/gpu-check)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="device to check (default cuda)")
    parser.add_argument("--sizes", default="paper", choices=sorted(SIZES), help="paper (default) or tiny (tests)")
    parser.add_argument("-m", "--methods", nargs="+", default=None, metavar="METHOD",
                        help="registry names or patterns (default: every registered network); also limits the "
                             "fixture step to these ports (the deformable-convolution step always runs)")
    parser.add_argument("--iterations", type=int, default=None, help="timed forwards (default 50 cuda, 5 cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up forwards (default 10 cuda, 1 cpu)")
    parser.add_argument("--autocast", default="bf16", choices=["bf16", "fp16", "none"],
                        help="also measure under autocast with this dtype (default bf16; none = float32 only)")
    parser.add_argument("--budget-s", type=float, default=400.0,
                        help="wall-clock budget of the whole check in seconds (default 400)")
    parser.add_argument("--shared", default=None, help="folder holding fixtures/ (default $REFSR_SHARED, ../shared)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.set_defaults(handler=run_gpu_check)


def run_gpu_check(args: argparse.Namespace) -> int:
    """Handler of ``refsr-bench gpu-check``; returns the exit code (1 if a port failed or exceeded its tolerance)."""
    started = time.perf_counter()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but torch.cuda.is_available() is False; on a CPU use --device cpu")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    shared = shared_folder(args.shared)
    if shared is None:
        raise UserError("fixtures not found: pass --shared DIR or set REFSR_SHARED to the folder holding fixtures/ "
                        "(bench/commands/gpu_check.sh prepare copies it into .gpu_carry/shared)")
    device = args.device
    on_gpu = device == "cuda"
    repeat = args.iterations if args.iterations is not None else (50 if on_gpu else 5)
    warmup = args.warmup if args.warmup is not None else (10 if on_gpu else 1)
    if repeat < 1 or warmup < 0:
        raise UserError(f"--iterations must be >= 1 and --warmup >= 0; got {repeat}, {warmup}")
    autocast = None if args.autocast == "none" else args.autocast
    from methods import registry

    names = registry.resolve(list(args.methods)) if args.methods else registered_networks()
    flags = tf32_off()
    env = device_environment(device)
    sent_sha = shared.parent / "git_sha"  # by `gpu_check.sh prepare` (the device copy has no .git)
    if env.get("git_sha") in (None, "unknown") and sent_sha.is_file():
        env["git_sha"] = sent_sha.read_text().strip() + " (recorded by gpu_check.sh prepare)"
    out = Path(args.out) / run_name(str(env["device_name"]))
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(message: str) -> None:
        lines.append(message)
        print(message, flush=True)

    log(f"device {env['device_name']} | driver {env.get('driver', '-')} | torch {env['torch']} | CUDA "
        f"{env.get('cuda')} | cuDNN {env.get('cudnn')} | torchvision {env['torchvision']} | TF32 {flags}")
    steps: dict[str, float] = {}
    check_rows: list[CostRow] = []
    clock = time.perf_counter()
    fixture_rows, fixtures = check_fixtures(shared, device, autocast, log, names if args.methods else None)
    check_rows += fixture_rows
    steps["fixtures_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    try:
        deform_rows, deform = check_deform_conv(shared, device, log)
    except Exception as error:  # recorded; the cost step still runs
        deform_rows, deform = [], [{"error": f"{type(error).__name__}: {error}"}]
        log(f"deform_conv2d check FAILED: {deform[0]['error']}")
    check_rows += deform_rows
    steps["deform_conv_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    budget = Budget(deadline=started + args.budget_s)
    cost_rows, networks = measure_networks(names, SIZES[args.sizes], device, warmup, repeat, autocast, budget, log)
    steps["cost_s"] = round(time.perf_counter() - clock, 2)
    steps["total_s"] = round(time.perf_counter() - started, 2)

    write_cost_csv(out / "cost.csv", cost_rows)
    write_cost_csv(out / "checks.csv", check_rows)
    summary = []
    for shape in SIZES[args.sizes]:
        summary += summary_table(cost_rows, check_rows, str(env["device_name"]), shape, autocast) + [""]
    run_json = {
        "command": ["refsr-bench", *sys.argv[1:]] if sys.argv else [],
        "environment": env,
        "settings": {"sizes": args.sizes, "shapes": [s.__dict__ for s in SIZES[args.sizes]], "warmup": warmup,
                     "repeat": repeat, "autocast": autocast, "budget_s": args.budget_s, **flags,
                     "latency_excludes": "data loading and host-to-device copies (inputs live on the device)"},
        "steps_seconds": steps,
        "fixtures": fixtures,
        "deform_conv2d": deform,
        "methods": networks,
        "log": lines,
    }
    (out / "run.json").write_text(json.dumps(run_json, indent=1, sort_keys=True, default=str) + "\n")
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    print(f"wrote {out}/cost.csv, checks.csv, run.json, summary.md in {steps['total_s']:.0f} s; commit the folder as "
          f"reports/results/cost/{out.name}/", flush=True)
    failed = [f["method"] for f in fixtures if "error" in f or not f.get("passed", False)]
    failed += [m for m, entries in networks.items() for e in entries if "error" in e]
    if failed:
        print(f"error: failed or over tolerance: {', '.join(sorted(set(failed)))} (details in run.json)",
              file=sys.stderr)
        return 1
    return 0

