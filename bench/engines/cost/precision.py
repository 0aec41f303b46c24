"""The precisions a cost measurement can time a network in: the one table ``PRECISIONS``.

A precision is a name, the suffix its quantities carry in ``cost.csv`` (``latency_ms_median`` + suffix) and a
context manager the timed forwards run inside. ``fp32`` (no suffix) is the reference every other precision's
output is compared with (PSNR of its output against the float32 output). Adding a precision is one entry
here: ``refsr-bench cost --precision`` and ``gpu-check --autocast`` take their choices from this table, and the
cost pipeline (``bench.engines.cost.pipeline``) times, probes memory and compares outputs for every entry the
same way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from protocols.core import UserError

REFERENCE = "fp32"
AUTOCAST_PREFIX = "autocast_"


@dataclass(frozen=True)
class Precision:
    """``context(device)`` wraps the timed forwards (and the GPU memory forward) of this precision."""

    name: str
    context: Callable[[str], AbstractContextManager[None]]

    @property
    def suffix(self) -> str:
        """Appended to a quantity name: ``""`` for the reference, else ``_<name>``."""
        return "" if self.name == REFERENCE else f"_{self.name}"


@contextlib.contextmanager
def _float32(device: str) -> Iterator[None]:
    yield


def _autocast(dtype: torch.dtype) -> Callable[[str], AbstractContextManager[None]]:
    def context(device: str) -> AbstractContextManager[None]:
        return torch.autocast(device_type=device.split(":")[0], dtype=dtype)

    return context


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision(REFERENCE, _float32),
        Precision("autocast_bf16", _autocast(torch.bfloat16)),
        Precision("autocast_fp16", _autocast(torch.float16)),
    )
}


def precision(name: str | None) -> Precision:
    """The entry of ``PRECISIONS`` called ``name`` (None: float32); a user error names the valid ones."""
    key = REFERENCE if name is None else name
    if key not in PRECISIONS:
        raise UserError(f"unknown precision {name!r}; valid: {', '.join(PRECISIONS)}")
    return PRECISIONS[key]


def autocast_choices() -> list[str]:
    """The short autocast dtype names (``bf16``, ``fp16`` ...) of the autocast entries, for ``--autocast``."""
    return [name.removeprefix(AUTOCAST_PREFIX) for name in PRECISIONS if name.startswith(AUTOCAST_PREFIX)]


def psnr_db(output: torch.Tensor, reference: torch.Tensor, peak: float) -> float:
    """PSNR (dB) of ``output`` against ``reference`` with the given peak; inf when they are equal."""
    mse = float(((output.double() - reference.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
