"""The user-facing error and the entry-point wrapper: expected problems become one line on stderr, never a
traceback."""
from __future__ import annotations

import sys
from typing import Callable

ERROR_PREFIX = "error: "
"""How the one line of an expected error starts (the torchrun launcher recognises it to show it once)."""


class UserError(Exception):
    """A problem the user can fix (bad input, bad params, a full disk). Shown as one line, exit code 2."""


def run_main(main: Callable[[], None]) -> None:
    """Run an entry point: a UserError becomes `error: <message>` and exit code 2, Ctrl-C exit code 130."""
    try:
        main()
    except UserError as e:
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{ERROR_PREFIX}interrupted", file=sys.stderr)
        sys.exit(130)
