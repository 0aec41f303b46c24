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
import json
import math
import os
from collections.abc import Callable, Iterable
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
    first_line: dict[tuple[str, ...], int] = {}
    reader = csv.reader(io.StringIO("\n".join(lines[1:])))
    for row in reader:
        if not row:
            continue
        number = reader.line_num + 1
        record = _parse_row(row, f"{path}:{number}")
        key = record.sort_key()
        if key in first_line:
            raise UserError(f"{path}:{number}: duplicate row for {'/'.join(key)} (first on line {first_line[key]}); "
                            "a records file holds one row per image and metric -- rerun the run to rewrite it")
        first_line[key] = number
        records.append(record)
    return records


def write_error(path: Path, error: OSError) -> UserError:
    """The one-line message of a failed write (disk full, read-only, quota ...): the folder is left resumable."""
    reason = error.strerror or str(error)
    return UserError(f"cannot write {path}: {reason}; free space (or fix the folder) and rerun the same command to "
                     "resume from the records already written")


def write_bytes(handle: int, data: bytes) -> None:
    """Write all of ``data`` to the open descriptor ``handle``: every file the run engine writes goes through here
    (tests inject disk-full failures at this one point)."""
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view):]


def write_file(path: Path, data: bytes | str, *, append: bool = False) -> None:
    """Write (or append) ``data`` durably (fsync). An OSError becomes a ``write_error``; a failed plain write
    removes what it left (appends leave a torn tail, which the journal reader drops)."""
    raw = data.encode() if isinstance(data, str) else data
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    try:
        handle = os.open(path, flags, 0o666)
    except OSError as error:
        raise write_error(path, error) from None
    try:
        write_bytes(handle, raw)
        os.fsync(handle)
    except OSError as error:
        os.close(handle)
        if not append:
            path.unlink(missing_ok=True)
        raise write_error(path, error) from None
    os.close(handle)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` by ``data`` through ``path.tmp`` and a rename; on failure no ``.tmp`` is left and
    ``path`` keeps its old content."""
    tmp = path.with_name(path.name + ".tmp")
    write_file(tmp, data)
    try:
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise write_error(path, error) from None



def records_text(records: Iterable[Record]) -> str:
    """The fixed final format: header and rows sorted by (dataset, preset, method, reference, image, metric)."""
    return ",".join(COLUMNS) + "\n" + _rows_text(sorted(records, key=Record.sort_key))


def write_records(path: str | Path, records: Iterable[Record]) -> None:
    """Write records sorted in the fixed order, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, records_text(records))


def read_run_json(run_dir: Path, rerun: str) -> dict[str, Any]:
    """The run.json of ``run_dir`` as a JSON object; a UserError (ending with ``rerun``, what to do) when the folder
    has none or it is not a JSON object."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no run.json); {rerun}")
    try:
        run_json = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is not valid JSON; {rerun}") from None
    if not isinstance(run_json, dict):
        raise UserError(f"{path} is not a JSON object; {rerun}")
    return run_json


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

    def __init__(self, path: str | Path, expected_metrics: Iterable[str], run_id: str,
                 guard: Callable[[], None] | None = None) -> None:
        self.path = Path(path)
        self.guard = guard  # called before every write (the run lock's check that this writer still owns the folder)
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
        self._check()
        write_atomic(self.path, text)

    def _check(self) -> None:
        if self.guard is not None:
            self.guard()

    def append(self, records: list[Record]) -> None:
        self._check()
        write_file(self.path, _group_text(records), append=True)
        self.done.update(r.group() for r in records)

    def finish(self) -> list[Record]:
        """Rewrite the journal as the final sorted file (checksum recorded first) and return its records. A file
        that is no longer this writer's journal (finished by another writer) is never rewritten."""
        self._check()
        if not self.path.is_file() or not is_journal(self.path):
            raise UserError(f"{self.path} is no longer this run's journal (another writer finished or replaced it); "
                            "nothing was rewritten")
        records = [r for group in read_journal(self.path)[0] for r in group]
        text = records_text(records)
        write_atomic(self.path.with_name(CHECKSUM_FILE), hashlib.sha256(text.encode()).hexdigest() + "\n")
        self._check()
        write_atomic(self.path, text)
        return read_records(self.path)
