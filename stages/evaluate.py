"""evaluate stage: pairwise accuracy (ties ½), loss, calibration, length-bias checks and breakdowns on the held-out
pairs and the extra evaluation sets; then the released model with its card."""
from __future__ import annotations

import argparse

from rewardkit.allocator import bound_malloc_arenas

bound_malloc_arenas()  # first, before torch starts a thread (rewardkit.allocator says why)

from rewardkit.cli import path_parser  # noqa: E402
from rewardkit.config import EvaluateConfig, TrainConfig, ValidateConfig, load  # noqa: E402
from rewardkit.errors import run_main  # noqa: E402
from rewardkit.evaluation.job import EvaluatePaths, evaluate_model  # noqa: E402

PATHS = {"store": "token store of the held-out pairs", "model": "trained reward model directory",
         "release": "directory to write the released model (the trained one and its model card) to",
         "scores": "JSONL of per-pair rewards to write", "metrics": "JSON of the evaluation metrics",
         "live": "dvclive directory of the plots (reward histogram, calibration curve, accuracy per group and per "
                 "length difference)",
         "extra_dir": "directory of the extra set files",
         "extra_out": "directory for the extra sets' validated rows, token stores and per-answer scores",
         "eval_rows": "JSONL of the held-out split's rows (texts for the report)",
         "report": "self-contained HTML report to write"}


def parser() -> argparse.ArgumentParser:
    return path_parser("python -m stages.evaluate", __doc__, PATHS)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    paths = EvaluatePaths(args.store, args.model, args.release, args.scores, args.metrics, args.live,
                          args.extra_dir, args.extra_out, args.eval_rows, args.report)
    evaluate_model(paths, load(EvaluateConfig), load(ValidateConfig),
                   use_margin=load(TrainConfig).use_margin)  # the loss's margin rule, as in training


if __name__ == "__main__":
    run_main(main)
