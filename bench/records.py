"""Per-image records: the one file format every run writes and every report reads.

``records.csv`` columns, in this order: ``run_id,protocol,preset,method,level,image,metric,value``;
values with 6 decimals (``inf`` for identical images); rows sorted by (protocol, preset, method, level,
image, metric) when a run finishes. While a run is going, rows are appended one image at a time, so an
interrupted run can resume: incomplete trailing groups are dropped and recomputed.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from pathlib import Path

COLUMNS = ("run_id", "protocol", "preset", "method", "level", "image", "metric", "value")


@dataclass(frozen=True, order=True)
class Record:
    run_id: str
    protocol: str
    preset: str
    method: str
    level: str
    image: str
    metric: str
    value: float

    def sort_key(self) -> tuple[str, ...]:
        return (self.protocol, self.preset, self.method, self.level, self.image, self.metric)

    def group(self) -> tuple[str, str, str, str, str]:
        """The unit of work: one image of one method under one protocol/preset/level."""
        return (self.protocol, self.preset, self.method, self.level, self.image)


def format_value(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "nan"
    return f"{value:.6f}"


def _row(record: Record) -> list[str]:
    return [*[str(v) for v in astuple(record)[:-1]], format_value(record.value)]


def read_records(path: str | Path) -> list[Record]:
    """Read a records.csv; a torn last line (interrupted write) is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return []
        if tuple(header) != COLUMNS:
            raise ValueError(f"{path}: unexpected header {header}; expected {','.join(COLUMNS)}")
        for row in reader:
            if len(row) != len(COLUMNS):
                continue
            try:
                value = float(row[-1])
            except ValueError:
                continue
            records.append(Record(*row[:-1], value))  # type: ignore[arg-type, call-arg]
    return records


def write_records(path: str | Path, records: Iterable[Record]) -> None:
    """Write records sorted in the fixed order, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=Record.sort_key)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(_row(r) for r in ordered)
    os.replace(tmp, path)


class RecordAppender:
    """Append one image's records at a time (flushed and fsynced) so a killed run loses at most one group.

    ``expected_metrics`` is the metric set every complete group has; on open, groups missing any of them
    (a torn write) are dropped and the file is rewritten clean.
    """

    def __init__(self, path: str | Path, expected_metrics: Iterable[str]) -> None:
        self.path = Path(path)
        self.expected = frozenset(expected_metrics)
        existing = read_records(self.path)
        by_group: dict[tuple[str, ...], list[Record]] = {}
        for record in existing:
            by_group.setdefault(record.group(), []).append(record)
        complete = {g: rs for g, rs in by_group.items() if {r.metric for r in rs} >= self.expected}
        self.done: set[tuple[str, ...]] = set(complete)
        write_records(self.path, [r for rs in complete.values() for r in rs])

    def append(self, records: list[Record]) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows(_row(r) for r in records)
            handle.flush()
            os.fsync(handle.fileno())
        self.done.update(r.group() for r in records)

    def finish(self) -> list[Record]:
        records = read_records(self.path)
        write_records(self.path, records)
        return records
