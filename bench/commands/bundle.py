"""``refsr-bench bundle RUN_DIR --out NAME.refsr.tar [--with-images]`` and ``refsr-bench verify BUNDLE``.

``bundle`` packs a finished run folder into one deterministic file (``bench.results.bundle``); ``verify`` checks
a bundle on this machine (``bench.engines.verify``), prints a verdict table, writes ``verification.json`` and
``verification.md`` and exits 0 only when every check passes (1: a check failed, named; 2: a user error).
"""

from __future__ import annotations

import argparse
from pathlib import Path

VERIFY_HELP = """checks (--checks, default all): integrity (member sha256, records.sha256, run_id from the identity,
bundle.json means), inputs (local dataset files against inputs.csv), weights (local weight files' sha256),
rescoring (saved images scored again, exact), recomputation (a seeded sample of groups run again: exact when the
numeric environment matches the bundle's, else within the documented tolerance)."""


def _cmd_bundle(args: argparse.Namespace) -> int:
    from bench.results.bundle import SUFFIX, write_bundle
    from protocols.errors import UserError

    out = Path(args.out)
    if not out.name.endswith(SUFFIX):
        raise UserError(f"--out {out}: a bundle's name ends in {SUFFIX} (e.g. {out.stem}{SUFFIX})")
    members = write_bundle(Path(args.run_dir), out, with_images=args.with_images)
    print(f"wrote {out} ({len(members)} members, {out.stat().st_size} bytes)")
    return 0


def _parse_checks(text: str) -> tuple[str, ...]:
    from bench.engines.verify import CHECKS
    from protocols.errors import UserError

    chosen = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in chosen if c not in CHECKS]
    if unknown or not chosen:
        raise UserError(f"--checks {text!r}: unknown check {', '.join(unknown) or '(none)'}; "
                        f"valid: {', '.join(CHECKS)}")
    return chosen


def _cmd_verify(args: argparse.Namespace) -> int:
    from bench.engines.verify import DEFAULT_SAMPLE, VerifyOptions, verify
    from bench.engines.verify_report import default_out_dir, verdict_lines, write_verification
    from bench.results.bundle import UnsafeBundle, read_bundle
    from protocols.errors import UserError

    if args.sample is not None and args.sample < 1:
        raise UserError(f"--sample {args.sample}: give at least 1 group, or --all")
    bundle_path = Path(args.bundle)
    try:
        bundle = read_bundle(bundle_path)
    except UnsafeBundle as refusal:
        print(f"integrity       fail    {bundle_path} refused: {refusal}")
        print(f"FAIL integrity: {refusal}\nverdict: FAIL")
        return 1
    sample = None if args.all else (args.sample or DEFAULT_SAMPLE)
    options = VerifyOptions(data_root=args.data, weights=tuple(args.weights) if args.weights else None,
                            sample=sample, seed=args.seed, device=args.device, checks=_parse_checks(args.checks))
    verification = verify(bundle, options)
    for line in verdict_lines(verification):
        print(line)
    out_dir = Path(args.out) if args.out else default_out_dir(bundle_path)
    json_path, md_path = write_verification(verification, bundle, out_dir)
    print(f"wrote {json_path} and {md_path}")
    return 0 if verification.passed else 1


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bundle = subparsers.add_parser("bundle", help="pack a finished run folder into one checkable .refsr.tar",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bundle.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (records.csv, run.json, inputs.csv)")
    bundle.add_argument("--out", required=True, metavar="NAME.refsr.tar", help="the bundle file to write")
    bundle.add_argument("--with-images", action="store_true",
                        help="include the scored SR images (the run must have used --save-images)")
    bundle.set_defaults(handler=_cmd_bundle)

    verify = subparsers.add_parser("verify", help="check a result bundle here; exit 0 only when every check passes",
                                   description=__doc__ + "\n" + VERIFY_HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("bundle", metavar="BUNDLE", help="a .refsr.tar written by `refsr-bench bundle`")
    verify.add_argument("--data", help="dataset root (default: $REFSR_DATA)")
    verify.add_argument("--weights", action="append",
                        help="weights folder (default: $REFSR_WEIGHTS) or METHOD=FILE (repeatable), as for `run`")
    amount = verify.add_mutually_exclusive_group()
    amount.add_argument("--sample", type=int, metavar="K", help="recompute K seeded groups (default 3)")
    amount.add_argument("--all", action="store_true", help="recompute every group")
    verify.add_argument("--seed", type=int, default=0, help="seed of the recomputed sample (default 0)")
    verify.add_argument("--device", default="cpu", help="cpu or cuda[:N] for the recomputation")
    verify.add_argument("--checks", default="integrity,inputs,weights,rescoring,recomputation",
                        help="comma-separated checks to run (default: all)")
    verify.add_argument("--out", metavar="DIR",
                        help="where verification.json/.md go (default: NAME.verification/ beside the bundle)")
    verify.set_defaults(handler=_cmd_verify)
