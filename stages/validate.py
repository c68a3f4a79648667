"""validate stage: every line of data.path kept byte-exact or rejected with its line number and reason."""
from __future__ import annotations

from pathlib import Path

from rewardkit.cli import parse_paths
from rewardkit.config import DataConfig, ValidateConfig, load
from rewardkit.errors import run_main
from rewardkit.validation import ValidateOutputs, validate_file

PATHS = {"validated": "JSONL of the kept lines", "rejects": "JSONL of one record per rejected line",
         "metrics": "JSON of the counts"}


def main(argv: list[str] | None = None) -> None:
    args = parse_paths("python -m stages.validate", __doc__, PATHS, argv)
    data, cfg = load(DataConfig), load(ValidateConfig)
    validate_file(Path(data.path), ValidateOutputs(args.validated, args.rejects, args.metrics), cfg)


if __name__ == "__main__":
    run_main(main)
