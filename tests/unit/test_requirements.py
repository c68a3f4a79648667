"""requirements.txt pins the whole runtime: `pip check` passes, every distribution in the dependency closure of its
requirements and every third-party distribution rewardkit/ and stages/ import is pinned with == at the installed
version (tests/pins.py walks the installed metadata; `python -m tests.pins` prints what is missing)."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests import pins


def test_pip_check_finds_no_broken_requirement():
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_requirement_is_one_exact_pin():
    reqs = pins.requirements()
    assert all(str(r.specifier).startswith("==") and len(r.specifier) == 1 for r in reqs), \
        [str(r) for r in reqs if not str(r.specifier).startswith("==")]
    twice = [name for name, n in Counter(canonicalize_name(r.name) for r in reqs).items() if n > 1]
    assert not twice, f"pinned more than once: {twice}"


def test_the_whole_closure_and_every_import_is_pinned():
    missing = pins.missing_pins()
    assert not missing, "not pinned in requirements.txt (paste these, from `python -m tests.pins`):\n" + \
        "\n".join(missing)
    imported = pins.imported_distributions()
    unknown = {name: where[:3] for name, where in imported.items() if name.startswith("?")}
    assert not unknown, f"imported but not installed: {unknown}"


def test_the_walk_follows_transitive_requirements_markers_and_extras(tmp_path):
    """The checker itself: a file pinning only fastapi misses what fastapi pulls in (pydantic-core through
    pydantic, anyio through starlette); imports are mapped to their distributions (yaml -> PyYAML)."""
    found = pins.closure([Requirement("fastapi")])
    assert {"fastapi", "pydantic", "pydantic-core", "starlette", "anyio", "typing-extensions"} <= set(found)
    assert "torch" not in found
    assert "pydantic-core" not in pins.closure([Requirement("fastapi; python_version < '3'")])  # marker false
    assert "aiohttp" in pins.closure([Requirement("fsspec[http]")])  # an extra brings its own requirements
    assert "aiohttp" not in pins.closure([Requirement("fsspec")])
    only = tmp_path / "requirements.txt"
    only.write_text("fastapi==0.165.0\n")
    missing = {line.split("==")[0] for line in pins.missing_pins(only)}
    assert {"pydantic-core", "starlette", "anyio", "torch", "pyyaml"} <= missing  # closure, then the imports
    assert "fastapi" not in missing
    imported = pins.imported_distributions()
    assert "rewardkit/serving/requests.py" in imported["pydantic"] and "pyyaml" in imported
