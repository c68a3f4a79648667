"""Experiment tracking through dvclive, the logger that `dvc exp show`, `dvc plots`, the VS Code DVC extension and
DVC Studio read, so a running `dvc exp run` can be watched step by step.

A stage logs into one dvclive directory, laid out as dvclive lays it out:
    <dir>/metrics.json              the summary: the latest value of every per-step metric, "step", the final metrics
    <dir>/plots/metrics/<name>.tsv  one row a step ("step", value), appended as the stage goes
    <dir>/plots/custom/<name>.json  plots that are not one value a step (validation curve, histograms, calibration)
`Live(dir, dvcyaml=False, save_dvc_exp=False)`, the layout DVC documents for dvclive inside a pipeline stage:
dvc.yaml declares these files and draws the plots with titles and axis labels, so dvclive must not edit it, and
`dvc exp run` or `dvc repro` records the experiment, not dvclive. No report and no timestamp column, so the same
run gives the same bytes and `dvc.lock` does not churn.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from dvclive import Live

SYNC_SECONDS = 10.0
"""Seconds between full dvclive syncs (`Live.next_step`: DVC Studio's live update and VS Code's step signal). A
sync re-reads every metric's whole history, so syncing every step would cost O(steps²) over a long run; the summary
that `dvc exp show` reads is rewritten every step instead, which costs one small file write."""


def open_live(directory: Path) -> Live:
    """A dvclive run logging into `directory` (emptied of a previous run's files), leaving dvc.yaml alone."""
    return Live(str(directory), dvcyaml=False, save_dvc_exp=False, report=None)


def sorted_keys(obj: object) -> object:
    """`obj` with every dict's keys in sorted order: the summary's bytes do not depend on when a key first came."""
    if isinstance(obj, dict):
        return {k: sorted_keys(obj[k]) for k in sorted(obj)}
    return obj


class StageLog:
    """A stage's dvclive run with per-step metrics and a summary (see the module docstring). Create it only on the
    process that logs (rank 0 under DDP)."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.monotonic):
        self.live = open_live(directory)
        self.clock, self.synced = clock, clock()

    def log_step(self, step: int, plotted: dict[str, float], summary_only: dict[str, float] | None = None) -> None:
        """Values of one step: `plotted` ones get a row in their .tsv, `summary_only` ones only update the summary.
        The summary is rewritten at once; the full sync happens at most every SYNC_SECONDS."""
        self.live.step = step
        for name, value in plotted.items():
            self.live.log_metric(name, value)
        for name, value in (summary_only or {}).items():
            self.live.log_metric(name, value, plot=False)
        self.live.make_summary()
        if self.clock() - self.synced >= SYNC_SECONDS:
            self.live.next_step()  # advances live.step by one; the next log_step sets it again
            self.synced = self.clock()

    def log_plot(self, name: str, rows: list[dict], x: str, y: str | list[str]) -> None:
        """<dir>/plots/custom/<name>.json: the rows of a plot, rewritten whole (dvc.yaml gives its template)."""
        self.live.log_plot(name, rows, x=x, y=y)

    def finish(self, metrics: dict, step: int | None = None) -> None:
        """Add the final metrics to the summary (keys sorted), write it with `step` (the last one, if any) and end
        the dvclive run."""
        if step is not None:
            self.live.step = step
        self.live.summary = sorted_keys({**self.live.summary, **metrics})
        self.live.make_summary()  # before end(): end() takes its step from the summary on disk
        self.live.end()


def write_plots(directory: Path, plots: dict[str, tuple[list[dict], str, str | list[str]]]) -> None:
    """Plots of a stage that logs no metric through dvclive (evaluate): name -> (rows, x, y), each written to
    <dir>/plots/custom/<name>.json. The run is not ended: `Live.end()` would write an empty <dir>/metrics.json, an
    output dvc.yaml does not declare (the stage writes its own metrics file)."""
    live = open_live(directory)
    for name, (rows, x, y) in plots.items():
        live.log_plot(name, rows, x=x, y=y)
