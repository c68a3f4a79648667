"""Benchmarks: `python -m bench.<name>`; results are appended to bench/RESULTS.md."""
