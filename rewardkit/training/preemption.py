"""Stop training cleanly on SIGTERM (pre-emption, `docker stop`, `kill`, the torchrun agent passing one on) or
SIGINT (Ctrl-C): the step under way is finished, a checkpoint is written and the run exits with one line and code
128 + the signal's number (143, 130), instead of losing the steps since the last periodic checkpoint.

    with StopOnSignal() as stop:
        for ...:
            ...one optimizer step...
            if signum := stop.agreed(ranks):  # every rank: all stop after the same step
                save a checkpoint, raise Stopped(signum, ...)

Ctrl-C twice stops at once (KeyboardInterrupt, no checkpoint); a repeated SIGTERM is ignored (the torchrun agent's
SIGKILL 30 s after its SIGTERM is the backstop).
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch

from rewardkit.errors import UserError
from rewardkit.training import distributed
from rewardkit.training.distributed import Ranks

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(UserError):
    """Training stopped by a signal after a checkpoint was written: one line, exit code 128 + the signal."""

    def __init__(self, signum: int, step: int, total: int, ckpt_dir: Path):
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}/{total}; its checkpoint is in "
                         f"{ckpt_dir}: rerun the train stage (dvc repro) to resume from it")


class StopOnSignal:
    """A context manager that turns SIGTERM and SIGINT into a request (`requested`, `signum`) the training loop
    honours at the end of a step; the previous handlers come back on exit. Off the main thread (where Python
    cannot install handlers) it does nothing."""

    def __init__(self, signals: tuple[int, ...] = SIGNALS):
        self.signals = signals
        self.signum = 0
        """The first signal received (0: none)."""
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum != 0

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        # no output here: the handler runs between two bytecodes of the main thread, maybe inside its own write
        # to stderr (a progress bar), and a nested write would fail
        if self.signum and signum == signal.SIGINT:  # Ctrl-C twice: no more waiting
            self._restore()
            signal.raise_signal(signum)
        # a repeated SIGTERM changes nothing: a kill of every process of the job (systemd, SLURM) reaches a
        # torchrun worker twice, directly and through the agent, and the checkpoint must still be written
        self.signum = self.signum or signum

    def agreed(self, ranks: Ranks) -> int:
        """The signal every rank stops for after this step (0: go on), from any rank's request (the highest
        number wins: SIGTERM over SIGINT). A collective: every rank calls it at the same point of each step."""
        if ranks.world == 1:
            return self.signum
        return self.from_counts(distributed.all_reduce_sum(self.request_counts(), ranks).tolist())

    def request_counts(self) -> torch.Tensor:
        """This rank's request as one count per signal (float64), to be summed over ranks; the training loop
        sums them with the step's loss figures, so agreeing costs no collective and no device read of its own."""
        return torch.tensor([float(self.signum == s) for s in self.signals], dtype=torch.float64)

    def from_counts(self, counts: list[float]) -> int:
        """The agreed signal from the summed `request_counts`: the highest number any rank asked for, 0 if none."""
        return max((s for s, count in zip(self.signals, counts) if count > 0), default=0)
