"""validate stage: every row of the data.path files kept or rejected with its file, row number and reason."""
from __future__ import annotations

import argparse

from rewardkit.cli import path_parser
from rewardkit.config import DataConfig, ValidateConfig, load
from rewardkit.data.readers import data_files
from rewardkit.data.validation import ValidateOutputs, validate_files
from rewardkit.errors import run_main

PATHS = {"validated": "JSONL of the kept lines", "rejects": "JSONL of one record per rejected line",
         "metrics": "JSON of the counts"}


def parser() -> argparse.ArgumentParser:
    return path_parser("python -m stages.validate", __doc__, PATHS)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    data, cfg = load(DataConfig), load(ValidateConfig)
    files = data_files(data.path, data.dir)
    validate_files(files, ValidateOutputs(args.validated, args.rejects, args.metrics), cfg)


if __name__ == "__main__":
    run_main(main)
