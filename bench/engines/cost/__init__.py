"""Cost measurement: parameters, MACs (fvcore trace with per-paper conventions), latency and peak memory of
every network at a list of sizes, precisions and devices, written as ``cost.csv``."""
