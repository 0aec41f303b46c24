"""pytest-benchmark suites (run explicitly: ``pytest bench/benchmarks``; see README.md)."""
