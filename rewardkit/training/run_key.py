"""The key of a training run: what computes its result, so a checkpoint is resumed only by the same computation.

It hashes the training data, the `model` and `train` params that change the result, the source of the rewardkit
modules the train stage runs and the versions of the packages that change its numerics. Params that only change
what is measured or saved are left out: train.checkpoint_every, train.stats_pairs (the pass after training) and
train.eval_every beyond on/off (validation scores in eval mode and draws no random numbers; with it on, the pairs
carved out by train.validation_fraction are not trained on, so that fraction counts then, and only then).
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path

NOT_IN_KEY = {"checkpoint_every", "stats_pairs", "eval_every", "validation_fraction"}  # see numeric_params
CODE_ROOT = "rewardkit.training.job"  # the train stage's library code: it and every rewardkit module it imports
NUMERIC_PACKAGES = ("torch", "transformers", "tokenizers", "sentencepiece", "numpy")


def run_key(data_sha256: str, *configs) -> str:
    fields = {cfg.section: numeric_params(cfg) for cfg in configs}
    blob = json.dumps({"data": data_sha256, "code": code_fingerprint(), "packages": package_versions(), **fields},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def numeric_params(cfg) -> dict:
    """The fields of a params section that change the trained weights: all but NOT_IN_KEY, plus, for `train`, the
    training pairs the validation slice takes away (None when train.eval_every is off)."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_KEY}
    if cfg.section == "train":
        fields["validation_slice"] = cfg.validation_fraction if cfg.eval_every else None
        if cfg.strategy == "fsdp":  # its sharded checkpoints reshard: resumable with another process count
            fields.pop("nproc_per_node")
    return fields


def code_files(root: str = CODE_ROOT, package_dir: Path | None = None) -> list[Path]:
    """The files of `root` and of every module of its package it imports, transitively (at module level or in
    functions), with the __init__.py of every package on the way: the code whose change can change a training result."""
    package = root.split(".")[0]
    package_dir = package_dir or source_dir(package)

    def module_file(name: str) -> Path | None:
        parts = name.split(".")
        if parts[0] != package:
            return None
        path = package_dir.joinpath(*parts[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        return path if path.is_file() else None

    seen, todo = {package_dir / "__init__.py"}, [module_file(root)]
    while todo:
        path = todo.pop()
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += [parent / "__init__.py" for parent in path.parents if package_dir in parent.parents]
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.Import):
                todo += [module_file(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                todo += [module_file(node.module), *(module_file(f"{node.module}.{a.name}") for a in node.names)]
    return sorted(seen)


def source_dir(package: str) -> Path:
    """Where the imported `package` is (a copy of the project put first on PYTHONPATH is fingerprinted as such)."""
    return Path(sys.modules[package].__file__).parent


def code_fingerprint(root: str = CODE_ROOT, package_dir: Path | None = None) -> str:
    """sha256 over the names (relative to the package, so a copy elsewhere gives the same) and bytes of
    `code_files`: any edit to them changes it."""
    package_dir = package_dir or source_dir(root.split(".")[0])
    h = hashlib.sha256()
    for path in code_files(root, package_dir):
        data = path.read_bytes()
        h.update(f"{path.relative_to(package_dir).as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of the installed packages whose upgrade can change the numbers (kernels, tokenization, RNG)."""
    versions = {}
    for name in NUMERIC_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
