"""split stage: validated pairs into train and eval by prompt (no prompt on both sides)."""
from __future__ import annotations

import argparse

from rewardkit.cli import path_parser
from rewardkit.config import SplitConfig, load
from rewardkit.data.splitting import SplitOutputs, split_file
from rewardkit.errors import run_main

PATHS = {"input": "validated JSONL", "train": "JSONL of the training pairs", "eval": "JSONL of the held-out pairs",
         "metrics": "JSON of the counts"}


def parser() -> argparse.ArgumentParser:
    return path_parser("python -m stages.split", __doc__, PATHS)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    split_file(args.input, SplitOutputs(args.train, args.eval, args.metrics), load(SplitConfig))


if __name__ == "__main__":
    run_main(main)
