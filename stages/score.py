"""Score JSONL rows with a trained reward model, encoded exactly as in training.

    python -m stages.score --model models/reward_model --input in.jsonl --output out.jsonl \\
        [--batch-size 64] [--normalize] [--device auto] [--precision fp32]

`prompt` + `response` rows get "reward"; `prompt` + `chosen` + `rejected` rows get "reward_chosen",
"reward_rejected" and "preferred". Other fields pass through and rows keep their order. `--normalize` reports
(r - reward_mean) / reward_std with the training-set statistics in reward_model.json. A bad row stops the run,
before any scoring, with one line and exit code 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rewardkit.config import PRECISIONS
from rewardkit.errors import run_main
from rewardkit.scoring.jsonl import score_file


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stages.score", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/reward_model"), help="trained reward model directory")
    p.add_argument("--input", type=Path, required=True, help="JSONL with prompt+response or prompt+chosen+rejected")
    p.add_argument("--output", type=Path, required=True, help="JSONL to write: the input rows plus rewards")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass (default 64)")
    p.add_argument("--normalize", action="store_true", help="report (r - mean) / std of the training rewards")
    p.add_argument("--device", default="auto", help="auto (cuda when visible), cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="the model body's: auto (bf16 where the device has native bf16), fp32 or bf16")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    score_file(args.model, args.input, args.output, args.batch_size, args.normalize, args.device, args.precision)


if __name__ == "__main__":
    run_main(main)
