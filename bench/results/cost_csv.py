"""The ``cost.csv`` format: one row type, the column list, read and write. Torch-free, so reports read cost
runs without importing torch or fvcore.

Long format, one measured quantity per row: ``method, part, quantity, value, unit, lr_hw, ref_hw, device,
convention``. ``value`` is written as an exact integer for counts (units in ``INTEGER_UNITS``) and with six
decimals otherwise (GMACs, ms, MiB ...). Sizes are ``HxW`` (``-`` where the method takes no reference);
``convention`` is ``-`` for convention-free quantities.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.core import UserError

COLUMNS = ("method", "part", "quantity", "value", "unit", "lr_hw", "ref_hw", "device", "convention")
INTEGER_UNITS = frozenset({"params", "elements", "threads"})
UNDER_LOAD = ", under load"  # appended to the device label of a measurement its run.json marks under_load


@dataclass(frozen=True)
class CostRow:
    """One row of a ``cost.csv``: ``value`` in ``unit`` (GMACs, params, ms, MiB ...). The last four fields are
    not columns: where a row was read from (``read_cost_csv``), the run's device name and torch CPU threads
    (its run.json ``environment``) and whether its measurement ran under load (its run.json ``measured_on``,
    ``loaded_measurements``); they say which latencies may be compared."""

    method: str
    part: str
    quantity: str
    value: float
    unit: str
    lr_hw: str
    ref_hw: str
    device: str
    convention: str = "-"
    run: str = ""  # label of the run folder it came from
    device_name: str = ""  # the run's environment.device_name, e.g. "NVIDIA H100 80GB HBM3"
    threads: int = 0  # the run's environment.torch_threads; 0 = not recorded
    under_load: bool = False  # the 1-min load average exceeded the usable cores while it was measured

    def formatted(self) -> list[str]:
        """The row's cells as written (see the module docstring for the number format)."""
        value = str(int(round(self.value))) if self.unit in INTEGER_UNITS else f"{self.value:.6f}"
        return [self.method, self.part, self.quantity, value, self.unit, self.lr_hw, self.ref_hw, self.device,
                self.convention]

    @property
    def device_label(self) -> str:
        """The measurement's device as a table states it: the GPU's name, or the CPU's name and thread count,
        followed by ``UNDER_LOAD`` for a measurement made under load. Latency is only ever compared among rows
        with the same label. Runs written before the load was recorded carry no load mark."""
        loaded = UNDER_LOAD if self.under_load else ""
        if self.device.startswith("cuda"):
            return (self.device_name or "GPU (name not recorded)") + loaded
        name = self.device_name or f"{self.device.upper()} (name not recorded)"
        if self.device != "cpu":
            return name + loaded
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}" if self.threads else "threads not recorded"
        return f"{name}, {threads}{loaded}"


def hw_text(hw: tuple[int, int] | None) -> str:
    """(96, 128) -> ``96x128``; None -> ``-``."""
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


def _row_sort_key(row: CostRow) -> tuple[Any, ...]:
    def area(text: str) -> tuple[int, ...]:
        return tuple(int(v) for v in text.split("x")) if text != "-" else (0,)

    return (row.method, area(row.lr_hw), area(row.ref_hw), row.convention, row.quantity, row.part)


def write_cost_csv(path: str | Path, rows: Sequence[CostRow]) -> None:
    """Fixed column order, rows sorted by method, size, convention, quantity, part; written atomically
    (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(row.formatted() for row in sorted(rows, key=_row_sort_key))
    os.replace(tmp, path)


def loaded_measurements(run_json: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(method, lr_hw, ref_hw) cells of every measurement a cost run.json marks ``measured_on.under_load``.
    ``methods.<name>`` is ``{"sizes": [entry, ...]}`` (``refsr-bench cost``, the demo) or ``[entry, ...]``
    (``gpu-check``); an entry's ``lr_hw`` / ``ref_hw`` are the requested sizes (``ref_hw`` null: ``-``)."""
    found: set[tuple[str, str, str]] = set()
    methods = run_json.get("methods")
    for name, value in (methods.items() if isinstance(methods, dict) else ()):
        entries = value.get("sizes", []) if isinstance(value, dict) else value
        for entry in entries if isinstance(entries, list) else ():
            measured = entry.get("measured_on") if isinstance(entry, dict) else None
            if isinstance(measured, dict) and measured.get("under_load") is True:
                ref = entry.get("ref_hw")
                found.add((name, hw_text(tuple(entry["lr_hw"])), hw_text(tuple(ref)) if ref else "-"))
    return found


def read_cost_csv(path: Path, run_label: str, device_name: str = "", threads: int = 0,
                  loaded: Collection[tuple[str, str, str]] = ()) -> list[CostRow]:
    """The rows of one cost.csv (rows with a wrong cell count or a non-numeric value are skipped);
    ``device_name`` / ``threads`` come from the run's run.json, ``loaded`` from ``loaded_measurements``."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header != COLUMNS:
            raise UserError(f"{path}: columns {','.join(header)}; expected {','.join(COLUMNS)}")
        rows = []
        for cells in reader:
            if len(cells) != len(COLUMNS):
                continue
            try:
                value = float(cells[3])
            except ValueError:
                continue
            rows.append(CostRow(cells[0], cells[1], cells[2], value, cells[4], cells[5], cells[6], cells[7], cells[8],
                                run_label, device_name, threads, (cells[0], cells[5], cells[6]) in loaded))
    return rows
