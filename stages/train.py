"""train stage: fine-tune a Bradley–Terry reward model on the training split (torchrun/DDP when
train.nproc_per_node > 1)."""
from __future__ import annotations

import sys

from rewardkit.cli import parse_paths
from rewardkit.config import ModelConfig, TrainConfig, load
from rewardkit.errors import run_main
from rewardkit.training import TrainPaths, train_stage

PATHS = {"data": "JSONL of the training pairs", "model": "directory to write the reward model to",
         "metrics": "JSON of the training metrics", "curve": "CSV of loss, accuracy and lr per step",
         "scratch": "git-ignored directory for scratch bases and resumable checkpoints"}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_paths("python -m stages.train", __doc__, PATHS, argv)
    paths = TrainPaths(args.data, args.model, args.metrics, args.curve, args.scratch)
    code = train_stage(paths, load(ModelConfig), load(TrainConfig), "stages.train", argv)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    run_main(main)
