"""Per-image records: the one file format every run writes and every report reads.

``records.csv`` columns, in this order: ``run_id,dataset,preset,method,reference,image,metric,value``
(``dataset``: the dataset name; ``preset``: the preset (``ProtocolSpec``) name; ``reference``: the reference
policy, e.g. ``none``, ``self_lr``, ``level:3``, ``draw:0``, ``stitch5_masa``, a Sintel pass or ``pair``);
values with 6 decimals (``inf`` for identical images); rows sorted by (dataset, preset, method, reference,
image, metric) when a run finishes.

One format: a file with another header is refused naming the expected columns (the committed results were
rewritten to this header once, in the commit that dropped the version-1 reader). ``run.json`` carries ``schema``
(``RUN_JSON_SCHEMA``) and names its dataset ``dataset``.

While a run is going, ``records.csv`` is a journal: after the header comes the line ``#journal``, then
one group (one image of one method under one reference policy) at a time, each group's rows followed by an end line
``#end,<row count>,<sha256 of the group's rows, 16 hex digits>``. A group without a valid end line (a
killed write, a torn value such as ``0.583608`` cut to ``0.58``) is dropped and recomputed on resume. When
the run finishes the file is rewritten (atomically) in the fixed sorted format above, and the sha256 of
that final file is kept in ``records.sha256`` so a later resume can tell an intact finished file from one
changed afterwards.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from protocols.core import UserError

COLUMNS = ("run_id", "dataset", "preset", "method", "reference", "image", "metric", "value")
RUN_JSON_SCHEMA = 3  # run.json format
# appended to the method name of records made with --allow-random-weights; reports never render them
RANDOM_WEIGHTS_TAG = "[random-weights]"
JOURNAL_LINE = "#journal"
END_PREFIX = "#end,"
CHECKSUM_FILE = "records.sha256"


@dataclass(frozen=True, order=True)
class Record:
    run_id: str
    dataset: str
    preset: str
    method: str
    reference: str  # the reference policy (``none``, ``self_lr``, ``level:3``, ``draw:0``, a Sintel pass ...)
    image: str
    metric: str
    value: float

    def sort_key(self) -> tuple[str, ...]:
        return (self.dataset, self.preset, self.method, self.reference, self.image, self.metric)

    def group(self) -> tuple[str, str, str, str, str]:
        """The unit of work: one image of one method under one dataset/preset/reference policy."""
        return (self.dataset, self.preset, self.method, self.reference, self.image)


def run_json_dataset(run_json: dict[str, Any]) -> str:
    """The dataset a run.json describes ("" for a cost run, which has none)."""
    return str(run_json.get("dataset", ""))


def format_value(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "nan"
    return f"{value:.6f}"


def _row(record: Record) -> list[str]:
    return [*[str(v) for v in astuple(record)[:-1]], format_value(record.value)]


def _rows_text(records: Iterable[Record]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(_row(r) for r in records)
    return buffer.getvalue()


def _group_text(records: list[Record]) -> str:
    """One journal group: its rows and the end line carrying their count and checksum."""
    rows = _rows_text(records)
    return f"{rows}{END_PREFIX}{len(records)},{hashlib.sha256(rows.encode()).hexdigest()[:16]}\n"


def _parse_row(row: list[str], where: str) -> Record:
    if len(row) != len(COLUMNS):
        raise UserError(f"{where}: expected {len(COLUMNS)} columns ({','.join(COLUMNS)}), got {len(row)}")
    try:
        value = float(row[-1])
    except ValueError:
        raise UserError(f"{where}: value {row[-1]!r} is not a number") from None
    return Record(*row[:-1], value)  # type: ignore[arg-type, call-arg]


def _split_lines(path: Path) -> list[str]:
    try:
        return path.read_text().split("\n")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text records file; delete it or point to another run folder") from None


def _check_header(path: Path, header: str) -> None:
    """Accept the current header only."""
    if tuple(next(csv.reader([header]), [])) != COLUMNS:
        raise UserError(f"{path}: unexpected header {header[:80]!r}; expected {','.join(COLUMNS)}")


def read_journal(path: Path) -> tuple[list[list[Record]], int]:
    """Complete, checksum-verified groups of an in-progress ``records.csv`` and the number of dropped
    (torn) groups. Everything after the last valid end line is discarded."""
    lines = _split_lines(path)
    _check_header(path, lines[0])
    groups: list[list[Record]] = []
    dropped = 0
    pending: list[str] = []
    for line in lines[2:]:
        if not line.startswith(END_PREFIX):
            if line:
                pending.append(line)
            continue
        rows_text = "".join(f"{p}\n" for p in pending)
        pending = []
        count, _, digest = line[len(END_PREFIX) :].partition(",")
        if (
            not count.isdigit()
            or int(count) == 0
            or hashlib.sha256(rows_text.encode()).hexdigest()[:16] != digest
            or len(rows_text.splitlines()) != int(count)
        ):
            dropped += 1
            continue
        try:
            groups.append([_parse_row(row, str(path)) for row in csv.reader(io.StringIO(rows_text))])
        except UserError:
            dropped += 1
    return groups, dropped + (1 if pending else 0)


def is_journal(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.readline()
        return handle.readline().rstrip(b"\n") == JOURNAL_LINE.encode()


def read_records(path: str | Path) -> list[Record]:
    """Read a records.csv. A finished file must parse completely (a bad header or value is a UserError
    naming the line); a run still in progress yields only its complete, verified groups."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return []
    if is_journal(path):
        return [r for group in read_journal(path)[0] for r in group]
    lines = _split_lines(path)
    _check_header(path, lines[0])
    records = []
    for number, row in enumerate(csv.reader(lines[1:]), start=2):
        if row:
            records.append(_parse_row(row, f"{path}:{number}"))
    return records


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def records_text(records: Iterable[Record]) -> str:
    """The fixed final format: header and rows sorted by (dataset, preset, method, reference, image, metric)."""
    return ",".join(COLUMNS) + "\n" + _rows_text(sorted(records, key=Record.sort_key))


def write_records(path: str | Path, records: Iterable[Record]) -> None:
    """Write records sorted in the fixed order, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, records_text(records))


def finished_file_is_intact(path: Path) -> bool:
    """True when a finished records.csv still has the sha256 recorded when the run finished."""
    checksum = path.with_name(CHECKSUM_FILE)
    if not checksum.is_file():
        return False
    return hashlib.sha256(path.read_bytes()).hexdigest() == checksum.read_text().strip()


class RecordAppender:
    """Append one group (one image of one method under one reference policy) at a time, with an end line, flushed and
    fsynced, so a killed run loses at most the group being written and a torn group is never kept.

    ``expected_metrics`` is the metric set every complete group has. ``run_id`` replaces the id of kept
    rows (a run extended by a method or reference policy gets the id of the extended configuration).
    """

    def __init__(self, path: str | Path, expected_metrics: Iterable[str], run_id: str) -> None:
        self.path = Path(path)
        self.expected = frozenset(expected_metrics)
        self.run_id = run_id
        self.dropped = 0
        groups: list[list[Record]] = []
        if self.path.is_file() and self.path.stat().st_size > 0:
            if is_journal(self.path):
                groups, self.dropped = read_journal(self.path)
            elif finished_file_is_intact(self.path):
                by_group: dict[tuple[str, ...], list[Record]] = {}
                for record in read_records(self.path):
                    by_group.setdefault(record.group(), []).append(record)
                groups = list(by_group.values())
            else:
                print(f"warning: {self.path} changed after its run finished; recomputing every record")
        complete: dict[tuple[str, ...], list[Record]] = {}
        for group in groups:
            if {r.metric for r in group} >= self.expected and len({r.group() for r in group}) == 1:
                complete[group[0].group()] = [
                    Record(run_id, *astuple(r)[1:]) for r in group  # type: ignore[arg-type]
                ]
        self.done: set[tuple[str, ...]] = set(complete)
        text = ",".join(COLUMNS) + f"\n{JOURNAL_LINE}\n"
        text += "".join(_group_text(sorted(rs, key=Record.sort_key)) for _, rs in sorted(complete.items()))
        _write_atomic(self.path, text)

    def append(self, records: list[Record]) -> None:
        with open(self.path, "a", newline="") as handle:
            handle.write(_group_text(records))
            handle.flush()
            os.fsync(handle.fileno())
        self.done.update(r.group() for r in records)

    def finish(self) -> list[Record]:
        """Rewrite the journal as the final sorted file (checksum recorded first) and return its records."""
        records = [r for group in read_journal(self.path)[0] for r in group]
        text = records_text(records)
        _write_atomic(self.path.with_name(CHECKSUM_FILE), hashlib.sha256(text.encode()).hexdigest() + "\n")
        _write_atomic(self.path, text)
        return read_records(self.path)
