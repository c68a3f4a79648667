"""The several-machines block of docs/distributed.md runs as written: taken from the page, its one line marked
"per machine" set to one node of two processes with a local rendezvous (on CPU: gloo), every other line run by
bash unchanged in a committed copy of the project, down to its `dvc commit -f train` and `dvc repro`."""
from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess

import pytest

from tests.conftest import (
    REPO_ROOT,
    SMALL_PIPELINE,
    easy_rows,
    git,
    run_dvc,
    stage_args,
    subprocess_env,
    write_jsonl,
    write_params,
)

PAGE = REPO_ROOT / "docs" / "distributed.md"
PER_MACHINE = {"NNODES", "GPUS_PER_NODE", "RDZV_ENDPOINT"}


def multinode_block() -> str:
    """The page's bash block that starts torchrun with a rendezvous (exactly one)."""
    found = [body for body in re.findall(r"^```bash\n(.*?)^```", PAGE.read_text(encoding="utf-8"), re.M | re.S)
             if "--rdzv-endpoint" in body]
    assert len(found) == 1, f"{PAGE.name}: {len(found)} bash blocks with a torchrun rendezvous"
    return found[0]


def for_this_machine(block: str, values: dict[str, str]) -> str:
    """`block` with its one line marked "per machine" replaced by assignments of `values`; nothing else changes."""
    marked = [line for line in block.splitlines() if re.search(r"#.*per machine", line)]
    assert len(marked) == 1, f"{PAGE.name}: {len(marked)} lines marked 'per machine'"
    assigned = dict(word.split("=", 1) for word in shlex.split(marked[0], comments=True))
    assert set(assigned) == PER_MACHINE == set(values), assigned
    return block.replace(marked[0], " ".join(f"{k}={shlex.quote(v)}" for k, v in values.items()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_block_passes_dvc_yamls_train_arguments():
    joined = multinode_block().replace("\\\n", " ")
    torchrun = next(line for line in joined.splitlines() if line.startswith("torchrun "))
    words = shlex.split(torchrun, comments=True)
    assert words[words.index("-m") + 1:] == ["stages.train", *stage_args("train")]


@pytest.mark.e2e
def test_the_multinode_block_runs_verbatim_on_one_node(repo_copy):
    write_jsonl(repo_copy / "dataset/small.jsonl", easy_rows(120))
    write_params(repo_copy, SMALL_PIPELINE)  # 16 pairs a step: 8 on each of the 2 processes
    git(repo_copy, "add", "-A")
    git(repo_copy, "commit", "-qm", "small data")
    script = for_this_machine(multinode_block(), {"NNODES": "1", "GPUS_PER_NODE": "2",
                                                  "RDZV_ENDPOINT": f"127.0.0.1:{free_port()}"})
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=repo_copy, capture_output=True, text=True,
                          timeout=600, env=subprocess_env(OMP_NUM_THREADS="1"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "on cpu x2" in output  # torchrun's two workers trained together
    stages = re.findall(r"Running stage '(\w+)'", proc.stdout)
    assert stages == ["validate", "split", "tokenize", "evaluate"]  # dvc repro did not retrain
    lock = run_dvc(repo_copy, "status", "--json")
    assert lock.returncode == 0 and json.loads(lock.stdout) == {}, lock.stdout  # everything recorded, up to date
    metrics = json.loads((repo_copy / "metrics" / "eval.json").read_text(encoding="utf-8"))
    assert metrics["pairs"] > 0 and 0 <= metrics["accuracy"] <= 1
    assert not list(repo_copy.glob(".scratch/train/*/step-*"))  # the run finished: no checkpoint left
