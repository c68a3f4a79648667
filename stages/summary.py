"""A short summary of the last pipeline run, at most 100 columns wide (`make metrics`; `make demo` ends with it).

    python -m stages.summary [--metrics metrics]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rewardkit.errors import run_main
from rewardkit.evaluation.summary import summary_lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stages.summary", description=__doc__.splitlines()[0])
    p.add_argument("--metrics", type=Path, default=Path("metrics"), help="the metrics directory")
    return p


def main(argv: list[str] | None = None) -> None:
    print("\n".join(summary_lines(parser().parse_args(argv).metrics)))


if __name__ == "__main__":
    run_main(main)
