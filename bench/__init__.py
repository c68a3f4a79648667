"""Benchmarks: `python -m bench` (reward-model training speed vs TRL and the original loop, bench/__main__.py) and
`python -m bench.<name>` (data_scale; profile); results are appended to bench/RESULTS.md."""
