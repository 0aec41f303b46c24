"""What a run manifest records about the environment (so every number can be traced)."""

from __future__ import annotations

import contextlib
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def device_model(device: str) -> str:
    """The GPU's name, or ``CPU: <model name from /proc/cpuinfo>`` (what a latency was measured on)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "CPU: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU: " + (platform.processor() or platform.machine())


def environment(device: str = "cpu", *, timing: bool = False) -> dict[str, Any]:
    """Versions, git revision and device of a run manifest. ``timing``: also what timing depends on (cost
    runs): the device's model name as ``device_name``, torchvision/fvcore versions, platform, torch CPU
    threads, cuDNN benchmark and TF32 state, and on CUDA the driver version."""
    from importlib.metadata import version

    info: dict[str, Any] = {
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": version("pillow"),
        "scikit_image": version("scikit-image"),
        "device": device,
        "device_name": device_name(device),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }
    if timing:
        info.update(_timing_environment(device))
    return info


def _timing_environment(device: str) -> dict[str, Any]:
    import fvcore
    import torchvision

    info: dict[str, Any] = {
        "torchvision": torchvision.__version__,
        "fvcore": getattr(fvcore, "__version__", "unknown"),
        "platform": platform.platform(),
        "device_name": device_model(device),
        "torch_threads": torch.get_num_threads(),
        "cudnn_benchmark_during_timing": device.startswith("cuda"),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    if device.startswith("cuda"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout.strip()
    return info


def set_deterministic() -> dict[str, Any]:
    """Quality runs: deterministic cuDNN, TF32 off, fixed seed. Returns the flags for the manifest."""
    torch.manual_seed(0)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return {"seed": 0, "cudnn_deterministic": True, "cudnn_benchmark": False, "tf32": False}
