"""Peak arithmetic rates of the GPUs the suite is measured on, for the float32 compute bound (no torch import).

Keyed by the device name ``torch.cuda.get_device_name()`` reports. Values are NVIDIA's published dense
(no structured sparsity) peak rates, in FLOP/s (1 multiply-add = 2 FLOP):

* H100 SXM5 and H100 PCIe, H100 NVL: NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100,
  "Technical Specifications"): FP32 67 / 51 / 60 TFLOPS; TF32 Tensor Core 989 / 756 / 835 TFLOPS *with
  sparsity*, i.e. 494.7 / 378 / 417.5 TFLOPS dense.
* H200 SXM and H200 NVL: NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200): FP32 67 /
  60 TFLOPS; TF32 Tensor Core 989 / 835 TFLOPS with sparsity, i.e. 494.7 / 417.5 dense.

The compute bound of a network is ``GMACs x 2 / peak``: the time the arithmetic alone needs at the peak rate,
a floor no implementation can beat. With TF32 off (``gpu-check`` turns it off) float32 convolutions and
matmuls run on the plain FP32 units, so the bound uses ``fp32_flops``; ``tf32_tensor_flops`` is kept beside it
for runs that allow TF32. An unknown device gets no bound ("unknown peak"), never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN_PEAK = "unknown peak"


@dataclass(frozen=True)
class GpuPeak:
    label: str  # the product as NVIDIA names it
    fp32_flops: float  # plain FP32 (CUDA cores), dense
    tf32_tensor_flops: float  # TF32 Tensor Core, dense (datasheet value with sparsity / 2)


TERA = 1e12
GPU_PEAKS: dict[str, GpuPeak] = {
    "NVIDIA H100 80GB HBM3": GpuPeak("H100 SXM5 80GB", 67 * TERA, 494.7 * TERA),
    "NVIDIA H100 PCIe": GpuPeak("H100 PCIe 80GB", 51 * TERA, 378 * TERA),
    "NVIDIA H100 NVL": GpuPeak("H100 NVL", 60 * TERA, 417.5 * TERA),
    "NVIDIA H200": GpuPeak("H200 SXM 141GB", 67 * TERA, 494.7 * TERA),
    "NVIDIA H200 NVL": GpuPeak("H200 NVL", 60 * TERA, 417.5 * TERA),
}


def gpu_peak(device_name: str) -> GpuPeak | None:
    """The peak table entry of a device name as torch reports it (surrounding spaces ignored), or None."""
    return GPU_PEAKS.get(device_name.strip())


def fp32_compute_bound_ms(gmacs: float, device_name: str) -> float | None:
    """``gmacs`` (1e9 multiply-adds) x 2 FLOP / the device's plain-FP32 peak, in ms; None for an unknown device."""
    peak = gpu_peak(device_name)
    if peak is None:
        return None
    return gmacs * 1e9 * 2 / peak.fp32_flops * 1e3
