"""What the train stage logs through dvclive (`rewardkit.tracking`) while it runs, on rank 0 only.

Each optimizer step: `epoch`, `loss`, `accuracy` (of that step's batch) and `lr` get a row in
<dir>/plots/metrics/<name>.tsv and their latest value in <dir>/metrics.json with "step", so `dvc exp show` shows a
running experiment's step, loss and learning rate. The validation slice (train.eval_every) is scored every few
steps only, or never: its points go to the custom plot <dir>/plots/custom/validation.json, which exists from the
start (empty without validation), so `dvc plots show` always finds it; the latest `val_loss` and `val_accuracy` are
in the summary too. When training resumes from a checkpoint, the steps it restores are logged again first, so the
files equal those of a run that was never interrupted.
"""
from __future__ import annotations

from pathlib import Path

from rewardkit.io import round_floats
from rewardkit.tracking import StageLog

STEP_FIELDS = ("epoch", "loss", "accuracy", "lr")
VALIDATION_FIELDS = ("val_loss", "val_accuracy")
VALIDATION_PLOT = "validation"


class CurveLog:
    def __init__(self, directory: Path):
        self.log = StageLog(directory)
        self.validation: list[dict] = []
        self._write_validation()

    def on_step(self, record: dict) -> None:
        """One step's curve record (the training loop's `on_step`)."""
        record = round_floats(record, 8)
        validated = {k: record[k] for k in VALIDATION_FIELDS if k in record}
        self.log.log_step(record["step"], {k: record[k] for k in STEP_FIELDS}, validated)
        if validated:
            self.validation.append({"step": record["step"], **validated})
            self._write_validation()

    def on_resume(self, curve: list[dict]) -> None:
        """The records of the steps a checkpoint restored, logged as they were the first time."""
        for record in curve:
            self.on_step(record)

    def finish(self, metrics: dict, steps: int) -> None:
        self.log.finish(metrics, step=steps)

    def _write_validation(self) -> None:
        self.log.log_plot(VALIDATION_PLOT, self.validation, x="step", y=list(VALIDATION_FIELDS))
