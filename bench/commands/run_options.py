"""The run options as users type them: ``-p DATASET[:PRESET]``, ``--shard i/n`` and ``--level``."""

from __future__ import annotations

import re

from bench.engines.run.outputs import OutputsSource, resolve_template
from protocols.core import UserError
from protocols.datasets import get_dataset
from protocols.spec import get_preset


def parse_protocol(text: str) -> tuple[str, str]:
    """``DATASET[:PRESET]`` -> (dataset, preset); the preset defaults to the suite's ``refsr``."""
    dataset, _, preset = text.partition(":")
    get_dataset(dataset)
    preset = preset or "refsr"
    get_preset(preset)
    return dataset, preset


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError as error:
        raise UserError(f"--shard must look like i/n (e.g. 0/4); got {text!r}") from error
    if not 0 <= index < count:
        raise UserError(f"--shard {text}: need 0 <= i < n")
    return index, count


def level_policies(levels: str | None) -> tuple[str, ...]:
    """The reference policies ``--level`` selects: CUFED5 levels 1..5, a comma list, ``all`` (= 1..5) or a
    stitching recipe name; for datasets with random references, ``draws:K`` (= draw:0 .. draw:K-1, one seeded
    reference choice per draw)."""
    if not levels:
        return ()
    if levels == "all":
        return tuple(f"level:{k}" for k in "12345")
    policies: list[str] = []
    for part in levels.split(","):
        part = part.strip()
        if part in "12345" and len(part) == 1:
            policies.append(f"level:{part}")
        elif part.startswith(("stitch5_", "level:")) or (part.startswith("draw:") and part[5:].isdigit()):
            policies.append(part)
        elif part.startswith("draws:") and part[6:].isdigit() and int(part[6:]) > 0:
            policies += [f"draw:{k}" for k in range(int(part[6:]))]
        else:
            raise UserError(
                f"--level {part!r}: use 1..5, all, stitch5_masa / stitch5_zero500_topleft, draws:K or draw:SEED"
            )
    return tuple(policies)


def parse_outputs(outputs: list[str], formats: list[str], patterns: list[str]) -> tuple[OutputsSource, ...]:
    """``--outputs NAME=DIR`` (repeatable) with ``--outputs-format`` / ``--outputs-pattern``, each given once
    (for every --outputs) or once per --outputs in the same order."""
    if (formats or patterns) and not outputs:
        raise UserError("--outputs-format / --outputs-pattern need --outputs NAME=DIR")
    if formats and patterns:
        raise UserError("give --outputs-format or --outputs-pattern, not both")
    options = formats or patterns
    if len(options) not in (0, 1, len(outputs)):
        raise UserError(f"{len(outputs)} --outputs but {len(options)} --outputs-format/--outputs-pattern: give one "
                        "for all, or one per --outputs")
    sources = []
    for position, text in enumerate(outputs):
        name, sep, folder = text.partition("=")
        if not sep or not folder or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
            raise UserError(f"--outputs {text!r}: expected NAME=DIR with NAME of letters, digits, _ . + -")
        option = options[position if len(options) > 1 else 0] if options else None
        template, label = resolve_template(None if patterns else option, option if patterns else None)
        sources.append(OutputsSource(name, folder, template, label))
    return tuple(sources)
