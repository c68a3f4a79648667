"""evaluate stage: pairwise accuracy (ties ½), loss, calibration and length-bias checks on the held-out pairs."""
from __future__ import annotations

from rewardkit.cli import parse_paths
from rewardkit.config import EvaluateConfig, load
from rewardkit.errors import run_main
from rewardkit.evaluation import EvaluatePaths, evaluate_model

PATHS = {"pairs": "JSONL of the held-out pairs", "model": "trained reward model directory",
         "scores": "JSONL of per-pair rewards to write", "metrics": "JSON of the evaluation metrics",
         "histogram": "CSV of the reward histogram", "calibration": "CSV of the calibration curve"}


def main(argv: list[str] | None = None) -> None:
    args = parse_paths("python -m stages.evaluate", __doc__, PATHS, argv)
    paths = EvaluatePaths(args.pairs, args.model, args.scores, args.metrics, args.histogram, args.calibration)
    evaluate_model(paths, load(EvaluateConfig))


if __name__ == "__main__":
    run_main(main)
