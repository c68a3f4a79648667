"""The one error line reaches stderr in one write, so the ranks of a torchrun job cannot split each other's line."""
from __future__ import annotations

import io
import sys

import colorama
import pytest

from rewardkit.errors import UserError, run_main


class Writes(io.StringIO):
    """A text stream that records each write it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.mark.parametrize("problem, line, code", [
    (UserError("line 5 is bad"), "error: line 5 is bad\n", 2),
    (OSError(28, "No space left on device", "/data/out.json"),
     "error: no space left on device writing /data/out.json: free some space (df -h /data) and rerun\n", 2),
    (KeyboardInterrupt(), "error: interrupted\n", 130)])
def test_the_error_line_is_one_write_through_a_wrapper_that_flushes_each_write(monkeypatch, problem, line, code):
    # `import dvc` wraps sys.stderr in colorama's stream wrapper, which passes on and flushes each write at once:
    # print() would hand it the text and the line end as two writes
    recorded = Writes()
    monkeypatch.setattr(sys, "stderr", colorama.ansitowin32.AnsiToWin32(recorded, strip=False, convert=False).stream)

    def main():
        raise problem

    with pytest.raises(SystemExit) as stopped:
        run_main(main)
    assert stopped.value.code == code
    assert recorded.writes == [line]
