"""requirements.txt against the installed environment: the dependency closure of its requirements, walked through
the installed distributions' metadata (importlib.metadata, markers evaluated here, extras followed), and the
third-party distributions rewardkit/ and stages/ import. tests/unit/test_requirements.py checks every one is
pinned with ==; after adding a requirement, install it and run

    python -m tests.pins

to print the pin lines still missing (at the installed versions), to paste into requirements.txt.
"""
from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_PACKAGES = ("rewardkit", "stages")


def requirements(path: Path = REPO_ROOT / "requirements.txt") -> list[Requirement]:
    """The requirement lines of `path` (comments and blank lines skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [Requirement(line) for line in lines if line]


def _applies(req: Requirement, extras: set[str]) -> bool:
    """Whether `req` (a line of some distribution's Requires-Dist) is needed here, with these extras asked for."""
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""})


def closure(roots: list[Requirement]) -> dict[str, str]:
    """{canonical name: installed version} of `roots` and everything they need, transitively, in this
    environment; a needed distribution that is not installed raises PackageNotFoundError."""
    wanted: dict[str, set[str]] = {}
    stack = [r for r in roots if _applies(r, set())]
    while stack:
        req = stack.pop()
        name, extras = canonicalize_name(req.name), set(req.extras)
        if name in wanted and extras <= wanted[name]:
            continue
        wanted[name] = wanted.get(name, set()) | extras
        for line in metadata.distribution(name).requires or []:
            sub = Requirement(line)
            if _applies(sub, wanted[name]):
                sub.marker = None
                stack.append(sub)
    return {name: metadata.version(name) for name in sorted(wanted)}


def imported_distributions(roots: tuple[str, ...] = LOCAL_PACKAGES) -> dict[str, list[str]]:
    """{canonical distribution name: modules importing it} for every third-party import under `roots` (absolute
    imports, function-level ones included); a module that no installed distribution provides maps to "?name"."""
    providers = metadata.packages_distributions()
    found: dict[str, list[str]] = {}
    for root in roots:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in LOCAL_PACKAGES:
                        continue
                    for dist in providers.get(top, [f"?{top}"]):
                        found.setdefault(canonicalize_name(dist), []).append(str(path.relative_to(REPO_ROOT)))
    return found


def missing_pins(path: Path = REPO_ROOT / "requirements.txt") -> list[str]:
    """`name==version` lines for every distribution of the closure (and every imported one) that `path` does not
    pin with == at its installed version."""
    reqs = requirements(path)
    pins = {canonicalize_name(r.name): r.specifier for r in reqs if str(r.specifier).startswith("==")}
    needed = closure(reqs)
    for dist in imported_distributions():
        if not dist.startswith("?"):
            needed.setdefault(dist, metadata.version(dist))
    return [f"{name}=={version}" for name, version in sorted(needed.items())
            if name not in pins or not pins[name].contains(version, prereleases=True)]


if __name__ == "__main__":
    print("\n".join(missing_pins()) or "every distribution of the closure is pinned")
