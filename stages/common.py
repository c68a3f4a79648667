"""Small pieces every stage uses: the user-facing error, the entry-point wrapper, atomic outputs, JSON files."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator


class UserError(Exception):
    """A problem the user can fix (bad input, bad params). Shown as one line on stderr, exit code 2."""


def run_main(main: Callable[[], None]) -> None:
    """Entry point of `python -m stages.<stage>`: expected errors become one clear line, never a traceback."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it over `path`, on failure remove it.

    A crash mid-write therefore never leaves a half-written file or directory for DVC to cache.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)) if is_dir else \
        path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if is_dir:
            if path.exists():
                old = path.with_name(f".{path.name}.{os.getpid()}.old")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if is_dir:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Write JSON atomically with sorted keys, so identical values give identical bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def round_floats(obj: object, digits: int = 6) -> object:
    """Round every float in a nested structure (metrics files stay readable and diff cleanly)."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, digits) for v in obj]
    return obj


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Rows of a JSONL file this pipeline wrote itself (validated upstream). A line that is not JSON means the
    file was damaged after it was written (a truncated copy, a bad merge): a UserError names it."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path} line {number} column {e.colno} is not valid JSON "
                                f"({e.msg.removesuffix(' at')}): the file is corrupt; restore it with "
                                f"`dvc checkout {path}`") from None
