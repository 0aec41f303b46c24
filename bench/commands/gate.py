"""``refsr-bench gate --run DIR`` and ``refsr-bench accept DIR``: the verbs over ``bench.results.gate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.results.gate import GOLDEN_DIR, accept, format_table, gate, read_golden, verdicts_json
from bench.results.records import is_journal, read_records
from protocols.core import UserError


def _cmd_gate(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir} (pass a folder written by `refsr-bench run`)")
    if (run_dir / "records.csv").is_file() and is_journal(run_dir / "records.csv"):
        raise UserError(f"{run_dir} is not finished (records.csv is still a journal); rerun its command first")
    records = read_records(run_dir / "records.csv")
    if not records:
        raise UserError(f"no records in {run_dir / 'records.csv'}")
    paths = [Path(p) for p in args.golden] if args.golden else sorted(GOLDEN_DIR.glob("*.csv"))
    verdicts = gate(records, read_golden(paths), device=args.device or "")
    failed = [v for v in verdicts if v.verdict in ("FAIL", "MISSING", "EXTRA")]
    new = [v for v in verdicts if v.verdict == "new"]
    checked = [v for v in verdicts if v.verdict in ("pass", "FAIL", "MISSING")]
    status = 1 if failed or (not checked and not args.allow_empty) else 0
    if args.json:  # for scripts: every verdict (NaN -> null), same exit status
        print(verdicts_json(verdicts))
        return status
    print(format_table(verdicts))
    print(f"\n{len(checked)} golden keys checked: {len(failed)} failed/missing/extra; {len(new)} new keys (warning)")
    for v in failed:
        print(f"  {v.verdict}: {'/'.join(v.key)}" + (" (image not in the golden file)" if v.verdict == "EXTRA" else ""))
    if not checked:
        if args.allow_empty:
            print("warning: no golden keys apply to this run (--allow-empty)")
        else:
            print("FAIL: no golden keys apply to this run, so nothing was checked (accept it with `refsr-bench accept "
                  "DIR`, or pass --allow-empty)")
    return status


def _cmd_accept(args: argparse.Namespace) -> int:
    golden_file = Path(args.golden) if args.golden else GOLDEN_DIR / f"{Path(args.run).name}.csv"
    count = accept(Path(args.run), golden_file)
    print(f"wrote {count} golden rows to {golden_file}")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    gate_parser = subparsers.add_parser("gate", help="compare a run with golden values; exit 1 on drift")
    gate_parser.add_argument("--run", required=True, help="run folder holding records.csv")
    gate_parser.add_argument("--golden", action="append", help="golden CSV (default: reports/golden/*.csv)")
    gate_parser.add_argument("--device", help="device tag for latency rules")
    gate_parser.add_argument("--json", action="store_true", help="print the verdicts as JSON (for scripts)")
    gate_parser.add_argument("--allow-empty", action="store_true", help="exit 0 even when no golden key applies")
    gate_parser.set_defaults(handler=_cmd_gate)
    accept_parser = subparsers.add_parser("accept", help="write golden values from a run (explicit request only)")
    accept_parser.add_argument("run", help="run folder holding records.csv")
    accept_parser.add_argument("--golden", help="golden CSV to update (default: reports/golden/<run folder>.csv)")
    accept_parser.set_defaults(handler=_cmd_accept)
