"""Run a DVC command (`make repro`: `repro`, `make demo`: `exp run ...`) so that a second one started in the same
project while the first runs stops at once with one line, instead of DVC's several or a broken first run.

    python -m stages.dvc_run repro [dvc repro options]
    python -m stages.dvc_run exp run [dvc exp run options]

DVC allows one run per project: its repository lock and its per-output read/write lock (.dvc/tmp/rwlock) stop a
second `dvc repro` with a multi-line message, but a second workspace `dvc exp run` stashes and checks out the
workspace before it reaches them, which made the first experiment fail (DVC 3.67: "'NoneType' object is not
subscriptable"). So this holds a lock of its own (zc.lockfile, the library DVC's lock uses: released by the OS when
the process ends, never stale) for the whole command, looks for a bare `dvc` holding outputs in the rwlock, and runs
DVC in this process with its lock failure, should one still happen, condensed into the same one line. Every other
line of DVC's output is kept as it is. `--wait-for-lock` (DVC's own option) waits for the repository lock only, not
for the outputs a running stage holds, so it does not make two runs queue.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import psutil
import zc.lockfile

from rewardkit.errors import UserError, run_main

RUN_LOCK = "rewardkit-run.lock"
"""Our lock, in DVC's git-ignored .dvc/tmp beside DVC's own `lock` and `rwlock`."""
HOLDER = re.compile(r"\(PID (\d+)\): (.+)")


def busy(holder: str) -> UserError:
    """The one line for a project in which another DVC command runs (`holder`: "PID n: its command")."""
    return UserError(f"another dvc command is running in this project ({holder}) and DVC runs one at a time: wait "
                     "for it to end and rerun, or queue experiments (dvc exp run --queue, then dvc queue start)")


def describe(pid: int) -> str:
    try:
        return f"PID {pid}: {' '.join(psutil.Process(pid).cmdline())}"
    except psutil.Error:
        return f"PID {pid}"


@contextmanager
def run_lock(tmp_dir: Path):
    """Hold this project's run lock for the block, or raise `busy` naming the process that holds it."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / RUN_LOCK
    try:
        lock = zc.lockfile.LockFile(str(path))
    except zc.lockfile.LockError:
        pid = path.read_text(errors="replace").strip()
        raise busy(describe(int(pid)) if pid.isdigit() else "its PID unknown") from None
    try:
        yield
    finally:
        lock.close()


def rwlock_holders(tmp_dir: Path) -> list[str]:
    """The live processes other than this one that hold outputs in DVC's rwlock (a bare `dvc repro` mid-stage)."""
    try:
        table = json.loads((tmp_dir / "rwlock").read_text())
    except (OSError, ValueError):
        return []
    infos = [info for mode in ("write", "read") for entry in (table.get(mode) or {}).values()
             for info in (entry if isinstance(entry, list) else [entry])]
    pids = {int(info["pid"]): info["cmd"] for info in infos if int(info["pid"]) != os.getpid()}
    return [f"PID {pid}: {cmd}" for pid, cmd in sorted(pids.items()) if psutil.pid_exists(pid)]


class LockFailure(logging.Filter):
    """Drops DVC's log record of a lock failure (the LockError anywhere in its exception's cause chain), keeping
    what it says of the holder; every other record passes."""

    def __init__(self, tmp_dir: Path):
        super().__init__()
        self.tmp_dir, self.holder = tmp_dir, None

    def filter(self, record: logging.LogRecord) -> bool:
        from dvc.lock import LockError

        error = record.exc_info[1] if record.exc_info else None
        while error is not None and not isinstance(error, LockError):
            error = error.__cause__ or error.__context__
        if error is None:
            return True
        found = HOLDER.search(str(error))  # the rwlock's "(PID n): cmd"; the repository lock file holds a PID
        pid = (self.tmp_dir / "lock").read_text(errors="replace").strip() if not found else ""
        self.holder = (f"PID {found[1]}: {found[2]}" if found else describe(int(pid)) if pid.isdigit() else
                       "DVC's lock is held")
        return False


def run_dvc(argv: list[str]) -> int:
    """DVC's own entry point on `argv`, in this process, with a lock failure turned into `busy`."""
    import dvc.cli
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        tmp_dir = Path(Repo.find_root()) / ".dvc" / "tmp"
    except NotDvcRepoError:
        return dvc.cli.main(argv)  # DVC says so itself
    with run_lock(tmp_dir):
        if holders := rwlock_holders(tmp_dir):
            raise busy("; ".join(holders))
        condense = LockFailure(tmp_dir)
        handlers = logging.getLogger("dvc").handlers
        for handler in handlers:
            handler.addFilter(condense)
        sys.argv = ["dvc", *argv]  # what DVC records as the command holding its locks
        try:
            code = dvc.cli.main(argv)
        finally:
            for handler in handlers:
                handler.removeFilter(condense)
    if condense.holder is not None:
        raise busy(condense.holder)
    return code


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise UserError("usage: python -m stages.dvc_run <dvc command> [options], e.g. repro or exp run")
    code = run_dvc(argv)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    run_main(main)
