"""``refsr-bench data list | fetch DATASET [--from ARCHIVE_OR_FOLDER] | verify DATASET``: the verbs over
``bench.engines.data`` (source cards in ``protocols.sources``). ``verify`` exits 1 when a file differs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.engines.data.fetch import fetch_dataset, list_sources, require_root, verify_dataset
from protocols.datasets import data_root
from protocols.errors import UserError


def _list(args: argparse.Namespace) -> int:
    root = data_root(args.data)
    rows = list_sources(root)
    if args.json:
        print(json.dumps({"data_root": str(root) if root else None, "datasets": rows}, indent=2))
        return 0
    print(f"data root: {root or '(none: set REFSR_DATA or pass --data)'}")
    for row in rows:
        data = row["data"] if isinstance(row["data"], dict) else {}
        state = f"installed ({data.get('manifest', '?')} manifest)" if row["installed"] else "not installed"
        print(f"  {row['dataset']:11s} {state:32s} {row['expected_items'] or '?'} {row['counted']}; "
              f"licence: {row['license']}")
        links = row["links"] if isinstance(row["links"], list) else []
        for link in links:
            print(f"      {link['kind']:13s} {link['url']}  sha256={link['sha256']}")
        if not links:
            print(f"      no link: {row['origin']} (install a hand-downloaded copy with `data fetch NAME --from`)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    root = require_root(data_root(args.data))
    installed = fetch_dataset(args.dataset, root, Path(args.source) if args.source else None)
    print(f"ok: {args.dataset} installed at {installed.folder} ({installed.items} items, {installed.files} files, "
          "manifest written)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    verification = verify_dataset(args.dataset, require_root(data_root(args.data)))
    for line in verification.lines():
        print(line)
    against = "its manifest" + ("" if verification.canonical is None else " and the canonical manifest")
    if not verification.same:
        print(f"FAIL: {verification.folder} differs from {against} ({len(verification.lines())} differences)")
        return 1
    canonical = "" if verification.canonical is not None else " (no canonical manifest is known for this set)"
    print(f"ok: {verification.folder} matches {against}{canonical}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list(args)
    if not args.dataset:
        raise UserError(f"data {args.action} needs a dataset name, e.g. `refsr-bench data {args.action} cufed5`")
    if args.source and args.action != "fetch":
        raise UserError("--from belongs to `data fetch`")
    return _fetch(args) if args.action == "fetch" else _verify(args)


def add_subcommand(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("data", help="list, fetch (download, check, install) and verify the public test sets")
    parser.add_argument("action", choices=["list", "fetch", "verify"])
    parser.add_argument("dataset", nargs="?", help="dataset name (see `refsr-bench data list`)")
    parser.add_argument("--data", help="data root (default: $REFSR_DATA)")
    parser.add_argument("--from", dest="source", metavar="ARCHIVE_OR_FOLDER",
                        help="fetch: install this hand-downloaded archive or folder through the same checks")
    parser.add_argument("--json", action="store_true", help="list: print JSON for scripts")
    parser.set_defaults(handler=_cmd_data)
