"""train stage: fine-tune a Bradley–Terry reward model on the training split (torchrun/DDP when
train.nproc_per_node > 1)."""
from __future__ import annotations

import argparse
import sys

from rewardkit.allocator import bound_malloc_arenas

bound_malloc_arenas()  # first, before torch starts a thread (rewardkit.allocator says why)

from rewardkit.cli import path_parser  # noqa: E402
from rewardkit.config import ModelConfig, TrainConfig, load  # noqa: E402
from rewardkit.errors import run_main  # noqa: E402
from rewardkit.training.job import TrainPaths, train_stage  # noqa: E402

PATHS = {"store": "token store of the training pairs", "tokenizer": "the tokenizer the store was made with",
         "model": "directory to write the reward model to",
         "live": "dvclive directory: metrics.json (the training metrics), plots/metrics/*.tsv (epoch, loss, accuracy "
                 "and lr per step), plots/custom/validation.json (train.eval_every)",
         "scratch": "git-ignored directory for scratch bases and resumable checkpoints"}


def parser() -> argparse.ArgumentParser:
    return path_parser("python -m stages.train", __doc__, PATHS)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    paths = TrainPaths(args.store, args.tokenizer, args.model, args.live, args.scratch)
    code = train_stage(paths, load(ModelConfig), load(TrainConfig), "stages.train", argv)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    run_main(main)
