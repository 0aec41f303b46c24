"""results layer: what a run leaves behind, torch-free — records and their journal, the run directory (identity,
lock, resume), provenance, the cost.csv format, GPU facts and the golden gate."""
