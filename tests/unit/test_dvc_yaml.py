"""dvc.yaml lists exactly the code each stage runs, and declares params key by key."""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT

PROJECT_PACKAGES = ("rewardkit", "stages")


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (a package's __init__.py), or None outside the project."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    path = REPO_ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_modules(path: Path) -> set[str]:
    """Every project module `path` imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {n for n in names if module_file(n) is not None and module_file(n).is_file()}


def code_closure(entry: str) -> set[str]:
    """The project files `python -m <entry>` can execute: its module, what it imports transitively, and the
    __init__.py of every package on the way (Python runs those on import)."""
    seen, todo = set(), [entry]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts)):  # parent packages run their __init__ first
            init = module_file(".".join(parts[:k]))
            if init is not None and init.is_file() and init.relative_to(REPO_ROOT).as_posix() not in seen:
                todo.append(".".join(parts[:k]))  # and what that __init__ imports
        path = module_file(name)
        rel = path.relative_to(REPO_ROOT).as_posix()
        if rel in seen and name != entry:
            continue
        seen.add(rel)
        todo.extend(imported_modules(path) - {entry})
    return seen


def stages() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_each_stage_lists_exactly_the_code_it_imports():
    for name, stage in stages().items():
        entry = stage["cmd"].split()[2]  # python -m <entry> ...
        code_deps = {d for d in stage["deps"] if d.endswith(".py")}
        expected = code_closure(entry)
        assert code_deps == expected, (f"dvc.yaml stage {name!r}: missing {sorted(expected - code_deps)}, "
                                       f"not imported {sorted(code_deps - expected)}")


def test_params_are_declared_key_by_key_and_checkpoint_every_reruns_nothing():
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    declared = [p for stage in stages().values() for p in stage.get("params", [])]
    assert all(isinstance(p, str) and "." in p for p in declared), declared  # no whole sections
    for dotted in declared:
        section, key = dotted.split(".")
        assert key in params[section], f"{dotted} is declared in dvc.yaml but missing from params.yaml"
    everything = {f"{s}.{k}" for s, values in params.items() for k in values}
    assert everything - set(declared) == {"train.checkpoint_every"}
