"""The user-facing error and the entry-point wrapper: expected problems become one line on stderr, never a
traceback."""
from __future__ import annotations

import errno
import os
import sys
from typing import Callable

ERROR_PREFIX = "error: "
"""How the one line of an expected error starts (the torchrun launcher recognises it to show it once)."""


class UserError(Exception):
    """A problem the user can fix (bad input, bad params, a full disk). Shown as one line, exit code 2."""

    exit_code: int = 2
    """What the process exits with (a training run stopped by a signal exits 128 + its number)."""


# errno -> (what happened, what to do); `{dir}` is the directory of the file named by the error
FILE_SYSTEM_ERRORS = {
    errno.ENOSPC: ("no space left on device writing", "free some space (df -h {dir}) and rerun"),
    errno.EDQUOT: ("disk quota exceeded writing", "free some space or ask for a larger quota (quota -s) and rerun"),
    errno.EROFS: ("read-only file system:", "write to a writable file system, or remount {dir} read-write, "
                                            "and rerun"),
    errno.EACCES: ("permission denied:", "check who owns {dir} and its files (ls -l {dir}) and rerun as a user "
                                         "who may read and write them"),
    errno.EPERM: ("operation not permitted:", "check who owns {dir} and its files (ls -l {dir}) and rerun as a "
                                              "user who may read and write them"),
}


def file_system_error(error: OSError) -> str | None:
    """The one line for an OSError the user can fix (full disk, quota, read-only, permissions); None for others,
    which are bugs and keep their traceback."""
    if error.errno not in FILE_SYSTEM_ERRORS:
        return None
    if error.filename is None and error.errno in (errno.EACCES, errno.EPERM):
        return None  # not a file: a socket bound to a privileged port, a signal to another user's process
    what, fix = FILE_SYSTEM_ERRORS[error.errno]
    path = os.fsdecode(error.filename) if error.filename is not None else "a file"
    directory = "." if error.filename is None else path if os.path.isdir(path) else os.path.dirname(path) or "."
    shown = os.path.join(path, "") if error.filename is not None and os.path.isdir(path) else path
    return f"{what} {shown}: {fix.format(dir=directory)}"


def say_error(message: str) -> None:
    """`error: message` on stderr in one write: the ranks of a torchrun job share one stderr, and print() writes the
    text and the line end separately, which reach the file apart wherever sys.stderr flushes each write (colorama's
    wrapper, installed by `import dvc`, does); another rank's line could land between them."""
    sys.stderr.write(f"{ERROR_PREFIX}{message}\n")
    sys.stderr.flush()


def run_main(main: Callable[[], None]) -> None:
    """Run an entry point: a UserError becomes `error: <message>` and its exit code (2), a full disk, a read-only
    file system or a permission problem the same, Ctrl-C exit code 130."""
    try:
        main()
    except UserError as e:
        say_error(str(e))
        sys.exit(e.exit_code)
    except OSError as e:
        message = file_system_error(e)
        if message is None:
            raise
        say_error(message)
        sys.exit(2)
    except KeyboardInterrupt:
        say_error("interrupted")
        sys.exit(130)
