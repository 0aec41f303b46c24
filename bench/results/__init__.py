"""results layer: what a run leaves behind — records and their journal, the run directory (identity,
lock, resume), provenance, the cost.csv format, GPU facts and the golden gate.
No network code: only ``rundir`` and ``provenance`` import torch, for device checks and versions."""
