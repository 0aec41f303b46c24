"""What ``refsr-bench gpu-check`` does that is specific to a device: the environment (TF32 off), every port's
fixture on the device, the replay of deformable-convolution calls, and its cost step -- the one cost pipeline
(``bench.engines.cost.pipeline.measure_cost``) over the paper's two settings with the check's budget --
plus the summary table. The verb (``bench.commands.gpu_check``) parses the command line and writes the files.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from bench.engines.checks.fixtures import PORT_FIXTURES, run_port_fixture
from bench.engines.cost.flop_handlers import CONVENTIONS
from bench.engines.cost.latency import LatencyConfig
from bench.engines.cost.pipeline import Budget, Cell, CostRequest, Shape, measure_cost
from bench.engines.cost.precision import AUTOCAST_PREFIX, REFERENCE, precision, psnr_db
from bench.results.cost_csv import CostRow, hw_text
from bench.results.gpu_specs import UNKNOWN_PEAK, fp32_compute_bound_ms
from bench.results.provenance import environment

ROOT = Path(__file__).resolve().parents[3]  # the checkout: bench/engines/checks/gpu.py
# Nominal output range of each fixture port (its README's forward contract): the PSNR peak.
OUTPUT_RANGE = {"c2_matching_rec": 1.0, "carn_m": 1.0, "crossnet": 1.0, "masa_rec": 2.0, "srntt": 2.0,
                "ttsr_rec": 2.0}
SIZES: dict[str, tuple[Shape, ...]] = {
    "paper": (Shape("masa_table2", (128, 128), (512, 512)), Shape("cufed5_stitched", (125, 83), (2560, 512))),
    # the same two settings shrunk 8x (LR) and 8x / 16x (Ref; MASA's window needs that much), odd LR sides kept
    "tiny": (Shape("masa_table2_tiny", (16, 16), (64, 64)), Shape("cufed5_stitched_tiny", (15, 11), (160, 48))),
}


# --------------------------------------------------------------------------------------------------
# environment


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
# fixtures on the device


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
            low_precision = precision(AUTOCAST_PREFIX + autocast)
            try:
                with low_precision.context(device), torch.inference_mode():
                    low = forward({k: v.to(device) for k, v in outcome.inputs.items()}).float().cpu()
            except Exception as error:  # e.g. an operator without a kernel for that dtype on this device
                entry[f"{low_precision.name}_error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            else:
                value = psnr_db(low, outcome.output, OUTPUT_RANGE.get(port.method, 1.0))
                quantity = f"psnr{low_precision.suffix}_vs_fp32_db"
                rows.append(CostRow(quantity=quantity, value=value, unit="dB", **base))
                entry[quantity] = value
                entry["psnr_peak"] = OUTPUT_RANGE.get(port.method, 1.0)
        entry["seconds"] = round(time.perf_counter() - started, 2)
        log(f"fixture {port.method}: max |Δ| {outcome.max_abs_diff:.3g} (tolerance {port.atol:g}: "
            f"{'ok' if outcome.passed else 'EXCEEDED'})")
        del forward
        _free(device)
    return rows, entries


# --------------------------------------------------------------------------------------------------
# deformable convolution, device vs CPU


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


def _lr_of(inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
    smallest = min(inputs.values(), key=lambda t: t.numel() if t.dim() == 4 else 1 << 62)
    return int(smallest.shape[-2]), int(smallest.shape[-1])


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------
# cost of every network: the one pipeline


def _gpu_entry(cell: Cell) -> dict[str, Any]:
    """A cell's run.json entry with its float32 latency and memory grouped under ``fp32`` (the other precisions
    are already under their names, e.g. ``autocast_bf16``)."""
    entry = dict(cell.entry)
    if "latency" in entry or "memory" in entry:
        entry[REFERENCE] = {key: entry.pop(key) for key in ("latency", "memory") if key in entry}
    return entry


def measure_networks(names: Sequence[str], shapes: Sequence[Shape], device: str, warmup: int, repeat: int,
                     autocast: str | None, budget: Budget, log: Callable[[str], None]
                     ) -> tuple[list[CostRow], dict[str, Any]]:
    """The cost step: every name whose card says it has learned parameters (the others are recorded as
    skipped), at ``shapes`` on ``device``, float32 and (``autocast``: ``bf16`` / ``fp16``) under autocast, both
    MAC conventions, latency and memory, twins measured once; within ``budget``. Returns the rows and run.json
    ``methods`` (per method, one entry per shape)."""
    from methods.registry import card

    run_json: dict[str, Any] = {}
    networks = []
    for name in names:
        if card(name).trained:
            networks.append(name)
        else:
            run_json[name] = [{"skipped": "not a network (no learned parameters)"}]
    precisions = (REFERENCE,) + ((AUTOCAST_PREFIX + autocast,) if autocast else ())
    request = CostRequest(methods=tuple((name, 4) for name in networks), shapes=tuple(shapes), devices=(device,),
                          precisions=precisions, conventions=CONVENTIONS, latency=LatencyConfig(warmup, repeat),
                          memory=True, share_networks=True, budget=budget)

    def report(cell: Cell) -> None:
        if cell.outcome == "shared":
            log(f"{cell.method} {cell.shape.name}: same network and inputs as {cell.entry['same_network_as']}; "
                f"its rows recorded for {cell.method}")
        elif cell.outcome == "failed":
            log(f"{cell.method} {cell.shape.name}: FAILED {cell.entry['error']}")

    cells = measure_cost(request, report)
    for cell in cells:
        run_json.setdefault(cell.method, []).append(_gpu_entry(cell))
    return [row for cell in cells for row in cell.rows], run_json


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
