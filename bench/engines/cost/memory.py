"""Peak memory of one forward, in MiB.

GPU: ``torch.cuda.max_memory_allocated`` over one forward (reset before), absolute (weights and inputs
included) and as a delta over the allocation before the forward. CPU: peak RSS delta of one forward, measured
in a fresh subprocess (``python -m bench.engines.cost.memory``): build the method, reset the kernel's peak-RSS mark
(``echo 5 > /proc/self/clear_refs``), read ``VmRSS``, run the forward, read ``VmHWM``; the delta is the extra
resident memory the forward needed (weights and inputs excluded, output included). Where ``clear_refs``
cannot be written the probe falls back to ``ru_maxrss`` minus ``VmRSS`` (a lower bound) and says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.engines.cost.precision import REFERENCE, precision

ROOT = Path(__file__).resolve().parents[3]  # the checkout: bench/engines/cost/memory.py
MIB = 1024 * 1024


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


def peak_memory(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: str, precision_name: str,
                method: str, scale: int, lr_hw: tuple[int, int], ref_hw: tuple[int, int],
                plugins: Sequence[str] = ()) -> dict[str, Any]:
    """Peak memory of one forward in a precision, with ``how`` it was measured. GPU: ``gpu_peak_memory_mib``
    inside the precision's context. CPU: the peak-RSS probe of ``method`` in a fresh process, for the float32
    reference only (the probe cannot enter another precision's context); other precisions: no values."""
    if device.startswith("cuda"):
        with precision(precision_name).context(device):
            return {"how": "torch.cuda.max_memory_allocated over one forward, reset before",
                    **gpu_peak_memory_mib(module, inputs)}
    if precision_name != REFERENCE:
        return {"how": "not measured: the CPU probe runs float32 in a fresh process"}
    probe = cpu_peak_rss_delta(method, scale=scale, lr_hw=lr_hw, ref_hw=ref_hw, threads=torch.get_num_threads(),
                               plugins=plugins)
    return {**probe, "how": f"CPU peak RSS delta of one forward in a fresh process ({probe['how']}); "
                            "not a GPU number"}


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
        [sys.executable, "-m", "bench.engines.cost.memory", "--memory-probe", json.dumps(request)],
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


if __name__ == "__main__":  # the CPU memory probe runs here, in a fresh process
    parser = argparse.ArgumentParser(description="internal: CPU peak-RSS probe of one method forward")
    parser.add_argument("--memory-probe", required=True, help="JSON request")
    _memory_probe_main(parser.parse_args().memory_probe)
