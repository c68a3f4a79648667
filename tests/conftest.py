"""Shared fixtures: small JSONL files, a throw-away git+DVC copy of the project, and stage/DVC runners.

- `write_jsonl(rows, name="data.jsonl")` writes rows (dicts/lists/numbers are JSON-encoded, str and bytes are
  written as the line itself) or a whole file given as bytes, under tmp_path; returns the path.
- `repo_copy` is a committed git repository in tmp_path/"repo" holding the project's files (tracked plus
  untracked-but-not-ignored, as `git ls-files -co --exclude-standard` lists them).
- `run_dvc(repo, *args)` runs this venv's `dvc` in `repo`; `run_stage(cwd, "validate")` runs
  `python -m stages.validate` in `cwd` with the project importable. Both return the CompletedProcess (text
  output captured, never raising on a non-zero exit).
- `git(repo, *args)` runs git with a fixed identity (check=True).
- `write_params(dir, {"split": {"eval_fraction": 0.2}})` writes dir/params.yaml: the project's params.yaml with
  the given sections updated key by key.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
if str(REPO_ROOT) not in sys.path:  # tests import `stages` whatever directory pytest was started from
    sys.path.insert(0, str(REPO_ROOT))


def _env(extra_pythonpath: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if extra_pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_pythonpath), os.environ.get("PYTHONPATH")]))
    return env


def _run_dvc(repo: str | os.PathLike, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "dvc"), *args], cwd=repo, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _run_stage(cwd: str | os.PathLike, module: str, *args: str, timeout: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m stages.<module>` in `cwd`; the project is put on PYTHONPATH so cwd can be any directory."""
    module = module if "." in module else f"stages.{module}"
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**_env(REPO_ROOT), **(env or {})})


def _line(row: object) -> bytes:
    if isinstance(row, bytes):
        return row
    if isinstance(row, str):
        return row.encode("utf-8")
    return json.dumps(row, ensure_ascii=False).encode("utf-8")


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    def write(rows: Iterable[object] | bytes, name: str | os.PathLike = "data.jsonl") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rows if isinstance(rows, bytes) else b"".join(_line(r) + b"\n" for r in rows))
        return path
    return write


def _write_params(directory: str | os.PathLike, sections: dict[str, dict]) -> Path:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    for section, values in sections.items():
        params[section] = {**(params.get(section) or {}), **values}
    path = Path(directory) / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


# The helpers below are session-scoped so module-scoped fixtures can use them too.
@pytest.fixture(scope="session")
def write_params() -> Callable[..., Path]:
    return _write_params


@pytest.fixture(scope="session")
def run_dvc() -> Callable[..., subprocess.CompletedProcess]:
    return _run_dvc


@pytest.fixture(scope="session")
def run_stage() -> Callable[..., subprocess.CompletedProcess]:
    return _run_stage


def _git(repo: str | os.PathLike, *args: str) -> subprocess.CompletedProcess:
    """git in `repo` with a fixed identity, so commits work on machines without a git config."""
    return subprocess.run(["git", "-c", "user.email=tests@example.invalid", "-c", "user.name=tests", *args],
                          cwd=repo, capture_output=True, text=True, check=True)


@pytest.fixture(scope="session")
def git() -> Callable[..., subprocess.CompletedProcess]:
    return _git


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A committed git repository with the project's files, where `dvc repro` can run without touching ours."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    repo = tmp_path / "repo"
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():  # deleted-but-tracked files are listed too
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    _git(repo.parent, "init", "-q", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "copy of the project for a test")
    return repo
