"""pytest-benchmark suites (run explicitly: ``pytest benchmarks``; see README.md)."""
