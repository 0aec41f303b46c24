"""The layers of RefSR-Bench are folders: a module's layer is the folder it lives in, and a module may import only
modules of its own layer or below (``tests/test_layers.py`` parses every module, function-level imports included).

    0 protocols/         data, degradations, reference policies, metrics, presets
    1 methods/           networks, their cards and weight files
    2 bench/results/     results: records, run directory and identity, provenance, golden gate, bundles
    3 reports/           tables, plots, visuals, the HTML/LaTeX report
    4 bench/engines/     evaluation: run engine, torchrun, matching accuracy, cost measurement, port checks
    5 bench/commands/    the verbs (argparse lives only here), each a thin wrapper over a typed function below

Engines sit above reports so that a measurement may draw its own plot with the report's styles; reports never
import an engine (so rendering needs no network). ``bench/__init__.py`` and this file import nothing of the suite;
``python -m bench`` (``bench/__main__.py``) is a command.
"""

from __future__ import annotations

LAYERS: tuple[str, ...] = ("protocols", "methods", "results", "reports", "engines", "commands")

FOLDER_LAYER: dict[str, str] = {
    "protocols": "protocols",
    "methods": "methods",
    "bench.results": "results",
    "reports": "reports",
    "bench.engines": "engines",
    "bench.commands": "commands",
    "bench.__main__": "commands",
    "bench": "protocols",  # bench/__init__.py and bench/layers.py: import nothing of the suite
}


def layer_of(module: str) -> str:
    """The layer of a dotted module name: that of the deepest folder in ``FOLDER_LAYER`` that contains it."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = FOLDER_LAYER.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    raise KeyError(f"{module} is in no layer folder ({', '.join(FOLDER_LAYER)})")


def rank_of(module: str) -> int:
    """0 (protocols) .. 5 (commands)."""
    return LAYERS.index(layer_of(module))
