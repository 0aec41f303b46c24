"""What else the machine was doing while a latency was measured: the 1-minute load average, the cores this
process may run on, the CPU model.

A measurement is *under load* when the 1-minute load average (``os.getloadavg``; runnable plus
uninterruptible tasks, this process's own threads included) exceeded the number of cores the measurement could
use (``os.sched_getaffinity``, else ``os.cpu_count``) at the start or at the end of its timed part: some thread
then waited for a core, so the wall time is not the network's alone. The pipeline records both readings per
measurement, marks the rows (``under_load`` = 1 in ``cost.csv``), warns on stderr, and the report labels those
latencies apart (``bench.results.cost_csv.CostRow.device_label``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from bench.results.provenance import device_model


def load_average_1min() -> float | None:
    """``os.getloadavg()[0]``; None where the platform has no load average."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def usable_cores() -> int:
    """Cores this process may be scheduled on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class LoadReading:
    """The load average at the start and the end of a timed part (None: not available) and the usable cores."""

    before: float | None
    after: float | None
    cores: int

    @property
    def peak(self) -> float | None:
        known = [v for v in (self.before, self.after) if v is not None]
        return max(known) if known else None

    @property
    def under_load(self) -> bool:
        return self.peak is not None and self.peak > self.cores

    def run_json(self) -> dict[str, Any]:
        return {"load_avg_1min": [self.before, self.after], "cpu_cores_usable": self.cores,
                "under_load": self.under_load, "cpu_model": device_model("cpu").removeprefix("CPU: ")}


class LoadWatch:
    """``start()`` before a timed part, ``stop()`` after it: the ``LoadReading`` of that interval."""

    def __init__(self) -> None:
        self._before: float | None = None

    def start(self) -> None:
        self._before = load_average_1min()

    def stop(self) -> LoadReading:
        return LoadReading(self._before, load_average_1min(), usable_cores())


def warn_if_loaded(reading: LoadReading, what: str) -> None:
    """One stderr line when ``reading`` is under load."""
    if reading.under_load:
        print(f"warning: {what}: 1-min load average {reading.peak:.2f} exceeded the {reading.cores} usable "
              "core(s) during the measurement; its latency is marked under_load", file=sys.stderr, flush=True)
