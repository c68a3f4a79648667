"""stages.dvc_run's pieces in process: DVC's lock failure is recognised anywhere in an error's cause chain and
condensed to its holder, other records pass; our run lock refuses a second holder with the one line; the rwlock
scan names only live processes other than this one (tests/e2e/test_concurrent_repro.py races real runs)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from dvc.exceptions import ReproductionError
from dvc.lock import FAILED_TO_LOCK_MESSAGE, LockError

from rewardkit.errors import UserError
from stages import dvc_run


def record_of(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        return logging.LogRecord("dvc.cli", logging.ERROR, __file__, 1, "", None, sys.exc_info())


def test_a_lock_failure_in_the_cause_chain_is_dropped_and_its_holder_kept(tmp_path):
    busy = LockError("'/p/a.txt' is busy, it is being blocked by:\n  (PID 4242): dvc repro -f\n\nIf there ...")
    try:
        raise ReproductionError("a") from busy
    except ReproductionError as e:
        chained = e
    condense = dvc_run.LockFailure(tmp_path)
    assert condense.filter(record_of(chained)) is False and condense.holder == "PID 4242: dvc repro -f"
    (tmp_path / "lock").write_text(f" {os.getpid()}\n")  # the repository lock names no holder: its file does
    assert condense.filter(record_of(LockError(FAILED_TO_LOCK_MESSAGE))) is False
    assert condense.holder.startswith(f"PID {os.getpid()}: ") and "python" in condense.holder
    other = dvc_run.LockFailure(tmp_path)
    assert other.filter(record_of(ReproductionError("train"))) is True and other.holder is None
    assert other.filter(logging.LogRecord("dvc", logging.INFO, __file__, 1, "Running stage", None, None)) is True


def test_the_run_lock_refuses_a_second_holder_in_one_line(tmp_path):
    hold = ("import sys, time, zc.lockfile; lock = zc.lockfile.LockFile(sys.argv[1]); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / dvc_run.RUN_LOCK)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError) as refused, dvc_run.run_lock(tmp_path):
            pass
        assert str(refused.value).startswith(f"another dvc command is running in this project (PID {holder.pid}: ")
        assert "\n" not in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
    with dvc_run.run_lock(tmp_path):  # released with its process
        pass


def test_the_rwlock_scan_names_live_other_processes_only(tmp_path):
    assert dvc_run.rwlock_holders(tmp_path) == []  # no rwlock yet
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    table = {"write": {"/p/a.txt": {"pid": int(dead.stdout), "cmd": "dvc repro"}},
             "read": {"/p/b.txt": [{"pid": os.getpid(), "cmd": "us"}, {"pid": os.getppid(), "cmd": "dvc exp run"}]}}
    (tmp_path / "rwlock").write_text(json.dumps(table))
    assert dvc_run.rwlock_holders(tmp_path) == [f"PID {os.getppid()}: dvc exp run"]
