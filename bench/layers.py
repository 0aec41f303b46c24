"""The layers of RefSR-Bench, as data: every module of the four packages has one rank, and a module may import
only modules of its own rank or below (``tests/test_layers.py`` parses every module and checks this).

    0 protocols  data, degradations, reference policies, metrics, presets (``protocols.*``)
    1 methods    networks, their cards and weight files (``methods.*``, ``bench.weights``)
    2 results    torch-free results: records, run directory and identity, provenance, GPU facts, golden gate
    3 reports    tables, plots, visuals, the HTML/LaTeX report (``reports.*``)
    4 engines    evaluation: runner, torchrun, matching accuracy, cost measurement, port fixtures
    5 commands   the verbs (argparse lives only here), each a thin wrapper over a typed function below

Engines sit above reports so that a measurement may draw its own plot with the report's styles; reports
never import an engine (so rendering needs no network). A module is given the rank of the longest entry of
``LAYER_OF`` that is its name or a dotted prefix of it; a new ``bench`` module is a command until listed lower.
"""

from __future__ import annotations

LAYERS: tuple[str, ...] = ("protocols", "methods", "results", "reports", "engines", "commands")

LAYER_OF: dict[str, str] = {
    "protocols": "protocols",
    "methods": "methods",
    "methods.train_ccnet": "commands",  # `python -m methods.train_ccnet`: a training script with its argparse
    "bench.weights": "methods",  # weight files of methods: find, verify, load
    "bench.layers": "protocols",  # this table; imports nothing
    "bench.records": "results",
    "bench.rundir": "results",
    "bench.provenance": "results",
    "bench.gpu_specs": "results",
    "bench.gate": "results",  # golden files and the comparison of records with them (verbs: bench.gate_cli)
    "reports": "reports",
    "bench.runner": "engines",
    "bench.distributed": "engines",
    "bench.matching_accuracy": "engines",
    "bench.match_pictures": "engines",
    "bench.cost_csv": "results",  # the cost.csv row type and reader/writer (torch-free)
    "bench.cost": "engines",  # one method at one size: MACs, parameters, latency, memory
    "bench.cost_macs": "engines",
    "bench.cost_params": "engines",
    "bench.cost_latency": "engines",
    "bench.cost_memory": "engines",
    "bench.cost_run": "engines",  # measure_costs(CostConfig): every method, every size, torchrun
    "bench.flop_handlers": "engines",
    "bench.fixtures": "engines",
    "bench": "commands",  # cli, __main__, the *_cli verbs, audit, jobs, manifests, demo, gpu_check
}


def layer_of(module: str) -> str:
    """The layer of a dotted module name (longest matching entry of ``LAYER_OF``)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = LAYER_OF.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    raise KeyError(f"{module} is in no layer; add it to bench.layers.LAYER_OF")


def rank_of(module: str) -> int:
    """0 (protocols) .. 5 (commands)."""
    return LAYERS.index(layer_of(module))
