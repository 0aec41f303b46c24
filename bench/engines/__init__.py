"""engines layer: the work that produces results — the run engine (plan, evaluate, execute), cost measurement,
matching accuracy and port checks; each takes a typed config and returns typed results (no argparse here)."""
