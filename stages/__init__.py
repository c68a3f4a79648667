"""Pipeline stages: each module has a `main(cfg)` and runs as `python -m stages.<name>`."""
