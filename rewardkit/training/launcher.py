"""Single-node DDP from one command: `train.nproc_per_node > 1` makes the train stage run torchrun's agent inside
itself (`--standalone`: the rendezvous store takes a free port from the OS, so concurrent runs do not collide), so
`dvc repro` stays the one command. For several nodes, run torchrun yourself with its rendezvous flags
(docs/distributed.md); a process started by torchrun is never relaunched.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import threading

import torch

from rewardkit.errors import ERROR_PREFIX, UserError

ERROR = ERROR_PREFIX.encode()


def relaunch_under_torchrun(nproc: int, module: str, argv: list[str], device: torch.device) -> int:
    """Run `python -m module *argv` on `nproc` local workers under torchrun's agent; returns the exit code for sys.exit.

    The agent runs in this process; workers write straight to its stderr, through `ErrorsOnce`: the same
    `error: ...` line from every rank is shown once. When a worker fails the agent stops the others (SIGTERM,
    SIGKILL after 30 s); its report (log lines, a traceback of the agent) is replaced by one line naming the rank
    that failed first, left out when that worker said why itself.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if device.type == "cuda" and torch.cuda.device_count() < nproc:
        raise UserError(f"train.nproc_per_node={nproc} but only {torch.cuda.device_count()} GPU(s) are visible: "
                        "one process per GPU")
    # torchrun would give each worker 1 thread (with a warning); share what one process would have used instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, torch.get_num_threads() // nproc)))
    # --log-dir /dev/null: workers write to our stderr, so torchrun needs no per-run log directories
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", f"--log-dir={os.devnull}", "-m", module, *argv])
    logging.disable(logging.ERROR)  # the agent's log lines: the summary below replaces them
    with ErrorsOnce() as errors:
        try:
            run(args)
        except ChildFailedError as e:
            rank, failure = root_failure(e)
            code = failure.exitcode
            if code < 0:
                how = f"was killed by {failure.signal_name()}"
                if code == -signal.SIGKILL:
                    how += " (the kernel's out-of-memory killer sends it: see `dmesg`)"
            else:
                how = f"exited with code {code}" + (" (see its traceback above)" if code == 1 else "")
            # 2: a UserError; 128 + n: a worker that stopped on a signal after a checkpoint: each said why
            errors.summary(f"training process of rank {rank} (pid {failure.pid}) {how}; the others were stopped",
                           unless_explained=code == 2 or code > 128)
            return code if code > 0 else 128 - code
        except SignalException as e:  # Ctrl-C or a kill of this process: the agent has passed the signal on to
            # the workers (SIGKILL after 30 s); in the training loop they finish the step, checkpoint, and say so
            errors.summary("interrupted" if e.sigval == signal.SIGINT else f"stopped by {e.sigval.name}",
                           unless_explained=True)
            return 128 + e.sigval
        finally:
            logging.disable(logging.NOTSET)
    return 0


def root_failure(e) -> tuple[int, object]:
    """(global rank, ProcessFailure) of the worker whose failure started it all.

    Blame goes first to a worker killed by a signal (the OOM killer, a segfault), then to one that crashed, then
    to one that reported an error (exit code 2: a UserError, such as losing contact with a dead rank), last to
    those the agent itself stopped with SIGTERM. (`get_first_failure` orders by whole seconds, which tie.)
    """
    def blame(item):
        rank, failure = item
        code = failure.exitcode
        order = 3 if code == -signal.SIGTERM else 0 if code < 0 else 2 if code == 2 else 1
        return order, failure.timestamp, rank

    return min(e.failures.items(), key=blame)


class ErrorsOnce:
    """Route this process's stderr (fd 2, inherited by the workers) through a thread that copies it to the real
    stderr as it comes, progress bars included, but drops a repeat of an `error: ...` line.

    Every rank meets the same bad input and prints the same line; the user should read it once. The launcher's
    own summary line comes last, after every worker's output.
    """

    def __init__(self) -> None:
        self.real: int | None = None  # the fd the output goes to
        self.seen: set[bytes] = set()  # error lines shown, without their line end
        self.pending = b""  # the end of the input that may still become the start of an error line
        self.line = "start"  # where the output stands: at a line "start", in a "bar" (after \r), in "text"
        self.summary_line = b""
        self.unless_explained = False

    def __enter__(self) -> ErrorsOnce:
        sys.stderr.flush()
        self.real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self.thread = threading.Thread(target=self._copy, args=(read_end,), daemon=True)
        self.thread.start()
        return self

    def summary(self, message: str, unless_explained: bool = False) -> None:
        """`error: message`, printed at the end; with unless_explained, only if no worker printed an error."""
        self.summary_line = f"error: {message}\n".encode()
        self.unless_explained = unless_explained

    def __exit__(self, *exc) -> None:
        sys.stderr.flush()
        os.dup2(self.real, 2)  # closes our write end: the copy ends once the workers' copies are closed too
        self.thread.join(timeout=10)
        if not self.thread.is_alive():  # else a leftover grandchild still holds the pipe: leave the fd to it
            os.close(self.real)
        line = self.summary_line
        if line and line.rstrip() not in self.seen and not (self.unless_explained and self.seen):
            self.real = 2
            self._write(line if self.line == "start" else b"\n" + line)

    def feed(self, chunk: bytes) -> None:
        """Pass on what can be passed of `chunk`: whole pieces, and a partial one that cannot be an error line.
        An empty chunk (the end of the input) passes on the rest."""
        if not chunk:
            self._write(self.pending)
            self.pending = b""
            return
        # pieces end at a newline or at tqdm's carriage return, or stop where an error line starts
        *pieces, self.pending = re.split(rb"(?<=[\r\n])|(?=" + ERROR + rb")", self.pending + chunk)
        for piece in pieces:
            self._write(piece)
        if not self.pending.startswith(ERROR):  # a bar drawn so far goes on now, but not what may begin "error: "
            keep = next((k for k in range(len(ERROR) - 1, 0, -1) if self.pending.endswith(ERROR[:k])), 0)
            self._write(self.pending[:len(self.pending) - keep])
            self.pending = self.pending[len(self.pending) - keep:]

    def _copy(self, read_end: int) -> None:
        while chunk := os.read(read_end, 1 << 16):
            self.feed(chunk)
        self.feed(b"")
        os.close(read_end)

    def _write(self, piece: bytes) -> None:
        if piece.startswith(ERROR) and self.line != "text":
            if piece.rstrip() in self.seen:
                return
            self.seen.add(piece.rstrip())
            if self.line == "bar":  # rank 0's error right after its progress bar: on a line of its own
                piece = b"\n" + piece
        if piece.endswith(b"\n"):
            self.line = "start"
        elif piece.endswith(b"\r"):
            self.line = "bar"
        elif piece and self.line == "start":
            self.line = "text"
        try:
            while piece:
                piece = piece[os.write(self.real, piece):]
        except OSError:  # nobody reads our stderr any more: keep draining, or the workers would block on it
            pass
