"""``refsr-bench manifest DATASET``: fix the references the papers drew at random (Sun80 scene matches,
Manga109 other-image policy) in a committed CSV, with the seed and the sha256 of every file.

Rule (protocols.md §5.2): one draw of ``numpy.random.default_rng((seed, crc32(image name)))`` over the
candidate file names of each image, sorted; an image's choice depends only on its name, not on which other
images are present. The CSV lands in ``protocols/manifests/<dataset>.csv``,
which the ``manifest`` reference policy reads.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from methods.base import sha256_of
from protocols.core import UserError
from protocols.datasets import load_items
from protocols.pipeline import MANIFEST_DIR, seeded_choice

MANIFEST_COLUMNS = ("image", "reference", "seed", "hr_sha256", "reference_sha256", "candidates")


def write_manifest(dataset: str, data: str | None, seed: int, out: Path) -> int:
    items = load_items(dataset, data)
    rows = []
    for item in items:
        candidates = [c for c in item.candidates if isinstance(c, Path)]
        if not candidates:
            raise UserError(f"{dataset}/{item.name}: no candidate references found; cannot draw one")
        chosen = seeded_choice(item.name, candidates, seed)
        assert isinstance(item.hr, Path)
        rows.append(
            {
                "image": item.name,
                "reference": chosen.name,
                "seed": seed,
                "hr_sha256": sha256_of(item.hr),
                "reference_sha256": sha256_of(chosen),
                "candidates": len(candidates),
            }
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: str(r["image"])))
    return len(rows)


def _cmd_manifest(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else MANIFEST_DIR / f"{args.dataset}.csv"
    count = write_manifest(args.dataset, args.data, args.seed, out)
    print(f"wrote {out} ({count} images, seed {args.seed})")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("manifest", help="draw and commit the random references (Sun80, Manga109)")
    parser.add_argument("dataset", choices=["sun80", "manga109"])
    parser.add_argument("--data", help="dataset root (default: $REFSR_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output CSV (default: protocols/manifests/<dataset>.csv)")
    parser.set_defaults(handler=_cmd_manifest)
