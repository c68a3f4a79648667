"""The package's layers: every module imports, imports point only down the layers, and no module imports itself back
through others (function-level imports included, since they hide cycles too)."""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import rewardkit

PACKAGE = Path(rewardkit.__file__).parent
# the ground floor (the modules at the package root) is 0; a layer may import the ground floor, the layers below it
# and itself, never a layer beside or above it
RANKS = {"data": 1, "encoding": 2, "modeling": 3, "training": 4, "evaluation": 4, "scoring": 4, "serving": 5}


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(rewardkit.__path__, "rewardkit."))


def source(name: str) -> Path:
    path = PACKAGE.joinpath(*name.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports(name: str) -> set[str]:
    """The rewardkit modules `name` imports, anywhere in its file (`from rewardkit.x import y` counts x, and x.y
    when y is a module)."""
    known = set(modules())
    found = set()
    for node in ast.walk(ast.parse(source(name).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known and m != name}


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or parts[1] in RANKS else ""


def test_every_module_imports():
    for name in modules():
        importlib.import_module(name)


def violations(graph: dict[str, set[str]]) -> list[str]:
    """"a imports b" for each import of `graph` that points up or sideways (the root package is exempt: it is the
    public API on top of everything)."""
    wrong = []
    for name, others in graph.items():
        for other in sorted(others):
            mine, theirs = layer(name), layer(other)
            if name != "rewardkit" and theirs not in ("", mine) and RANKS[theirs] >= RANKS.get(mine, 0):
                wrong.append(f"{name} imports {other}")
    return wrong


def test_imports_point_down_the_layers():
    wrong = violations({m: imports(m) for m in modules()})
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_the_rule_catches_upward_sideways_and_ground_floor_imports():
    assert violations({"rewardkit.data.readers": {"rewardkit.modeling.objective"},  # up
                       "rewardkit.training.job": {"rewardkit.evaluation.metrics"},  # sideways
                       "rewardkit.io": {"rewardkit.data.lines"},  # the ground floor reaching up
                       "rewardkit.serving.server": {"rewardkit.scoring.scorer", "rewardkit.errors"}}) == [
        "rewardkit.data.readers imports rewardkit.modeling.objective",
        "rewardkit.training.job imports rewardkit.evaluation.metrics",
        "rewardkit.io imports rewardkit.data.lines"]


def test_no_import_cycles():
    graph = {m: imports(m) for m in modules()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for other in sorted(graph[m]):
            if state.get(other) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(other):] + [m, other]))
            if other not in state:
                visit(other, path + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_every_subpackage_says_what_it_holds_and_may_import():
    for name in RANKS:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "May import" in doc, f"rewardkit/{name}/__init__.py needs a docstring with 'May import'"
