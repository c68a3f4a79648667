"""File outputs written atomically (a crash never leaves a half-written file for DVC), JSON/JSONL helpers."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from rewardkit.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it over `path`, on failure remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)) if is_dir else \
        path.with_name(f".{path.name}.{os.getpid()}.tmp")
    open_outputs = _open_outputs()
    open_outputs.append(path)
    try:
        yield tmp
        if is_dir and path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        if is_dir:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # never created; a read-only file system says EROFS even so
                tmp.unlink()
        if isinstance(e, OSError):
            e.filename = output_name(e.filename, tmp, path, open_outputs)
        raise
    finally:
        open_outputs.remove(path)


_local = threading.local()


def _open_outputs() -> list[Path]:
    """The outputs this thread is writing through atomic_path right now."""
    if not hasattr(_local, "outputs"):
        _local.outputs = []
    return _local.outputs


def output_name(filename: str | bytes | None, tmp: Path, path: Path, open_outputs: list[Path]) -> str:
    """The output an OSError concerns, as the user knows it. An error without a file name (a write that found the
    disk full) names `path`, or its directory when other outputs are being written at the same time (which of
    them failed is not known); one naming the temporary file names `path`, one inside a temporary directory the
    file inside `path`; any other keeps its name (a parent directory that could not be created)."""
    if filename is None:
        return str(path) if len(open_outputs) == 1 else str(path.parent)
    name = Path(os.fsdecode(filename))
    if name == tmp:
        return str(path)
    if tmp in name.parents:
        return str(path / name.relative_to(tmp))
    return str(name)


OS_ERROR_IN_MESSAGE = re.compile(r"os error (\d+)\)")


@contextlib.contextmanager
def native_os_errors(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a failed write of native code as the OSError it is, naming `path`.

    torch.save's zip writer reports the OSError of the Python file it writes to as a RuntimeError ("unexpected
    pos"), safetensors and tokenizers (Rust) as their own exceptions ("... (os error 28)"): a full disk would
    otherwise be a traceback instead of the one line `errors.run_main` gives it.
    """
    try:
        yield
    except OSError:
        raise
    except Exception as e:
        code = e.__context__.errno if isinstance(e.__context__, OSError) else None
        if code is None and (found := OS_ERROR_IN_MESSAGE.search(str(e))):
            code = int(found.group(1))
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from e


def round_floats(obj: object, digits: int = 6) -> object:
    """Round every float in a nested structure (metrics files stay readable and diff cleanly)."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, digits) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Write JSON atomically with sorted keys, so identical values give identical bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def directory_sha256(directory: str | os.PathLike) -> str:
    """sha256 over the names and bytes of a directory's files (not its subdirectories), in name order."""
    h = hashlib.sha256()
    for file in sorted(p for p in Path(directory).iterdir() if p.is_file()):
        h.update(file.name.encode() + b"\0" + file_sha256(file).encode())
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
