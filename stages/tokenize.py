"""tokenize stage: the train and eval splits tokenized once into memory-mapped token stores, with the tokenizer
they were made with (a scratch base's is trained here, on the training split)."""
from __future__ import annotations

import argparse

from rewardkit.cli import path_parser
from rewardkit.config import ModelConfig, TrainConfig, load
from rewardkit.encoding.tokenization import TokenizePaths, tokenize_splits
from rewardkit.errors import run_main

PATHS = {"train": "JSONL of the training pairs", "eval": "JSONL of the held-out pairs",
         "train_store": "token store directory of the training pairs",
         "eval_store": "token store directory of the held-out pairs",
         "tokenizer": "directory to save the tokenizer the stores were made with"}


def parser() -> argparse.ArgumentParser:
    return path_parser("python -m stages.tokenize", __doc__, PATHS)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    paths = TokenizePaths(args.train, args.eval, args.train_store, args.eval_store, args.tokenizer)
    tokenize_splits(paths, load(ModelConfig), load(TrainConfig))


if __name__ == "__main__":
    run_main(main)
