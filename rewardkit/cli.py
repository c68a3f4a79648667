"""Command lines of the stage entry points: each takes the files it reads and writes as `--name PATH` options,
so dvc.yaml's `cmd` is the one place that names the pipeline's files."""
from __future__ import annotations

import argparse
from pathlib import Path


def path_parser(prog: str, doc: str, paths: dict[str, str]) -> argparse.ArgumentParser:
    """A parser of required `--<name> PATH` options, one per entry of `paths` ({name: help}); underscores in a name
    are dashes on the command line. The first line of `doc` is the description."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.strip().splitlines()[0])
    for name, text in paths.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=Path, required=True, help=text)
    return parser
