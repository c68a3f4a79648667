"""train.strategy=fsdp loads the base on rank 0 only (rewardkit.training.fsdp_load): one torchrun launch of 2 gloo
processes on CPU checks, for a tiny Llama (the loader adds a pad token: resized embeddings), a tiny Qwen2 with LoRA
and a scratch DeBERTa-v3 (the default base family, fast forward), each built by the train job's `prepare_model`:

- every rank's gathered full state dict equals a plain CPU load's, bit for bit, and so do its buffers, the
  non-persistent ones included (rotary `inv_freq`, DeBERTa's `position_ids`: never broadcast, built on the CPU);
- every module's settings (`extra_repr`: padding index, shapes) and the config equal the plain load's;
- two training steps give the losses of the every-rank-loads path, bit for bit.
About 20-40 s on 2 shared cores, mostly imports.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = {"llama": {}, "qwen2+lora": {"lora": {"r": 4, "alpha": 8}}, "scratch-deberta": {}}
pytestmark = pytest.mark.e2e


def run_case(case: str, base: Path, tokenizer_dir: Path, work: Path, ranks) -> dict:
    """This rank's findings for one case: {check: bool} plus the two paths' losses."""
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from rewardkit.config import ModelConfig, TrainConfig
    from rewardkit.encoding.tokenization import store_rows
    from rewardkit.training import fsdp, fsdp_load
    from rewardkit.training.job import TrainPaths, prepare_model
    from rewardkit.training.loop import optimize
    from tests.conftest import easy_rows

    device = torch.device("cpu")
    model_cfg = ModelConfig(name="scratch-tiny" if case == "scratch-deberta" else str(base))
    cfg = TrainConfig(max_length=64, batch_size=4, epochs=1, lr=1e-3, warmup_ratio=0.0, checkpoint_every=0,
                      device="cpu", nproc_per_node=ranks.world, strategy="fsdp", precision="fp32", max_steps=2,
                      **CASES[case])
    paths = TrainPaths(store=work / "store", tokenizer=tokenizer_dir, model_dir=work / "model", live=work / "live",
                       scratch=work / "scratch")

    built = []

    def build(empty: bool):  # a scratch base is written under its key: one directory per build
        built.append(empty)
        return prepare_model(paths, model_cfg, cfg, f"key-{case}-{len(built)}", ranks, empty)[:2]

    plain, tokenizer = build(empty=False)  # the reference: a plain CPU load, unsharded
    every = fsdp.shard(build(empty=False)[0], device, ranks, bf16=False)
    from_rank0 = fsdp_load.shard_from_rank0(build(empty=not ranks.is_main)[0], device, ranks, bf16=False)

    gathered = get_model_state_dict(from_rank0, options=StateDictOptions(full_state_dict=True))
    want = plain.state_dict()
    buffers, want_buffers = dict(from_rank0.named_buffers()), dict(plain.named_buffers())
    settings = {n: m.extra_repr() for n, m in from_rank0.named_modules()}
    found = {
        "state_dict_equal": gathered.keys() == want.keys() and all(torch.equal(gathered[k], want[k]) for k in want),
        "buffers_equal": buffers.keys() == want_buffers.keys() and all(
            b.device.type == "cpu" and torch.equal(b, want_buffers[n]) for n, b in buffers.items()),
        "non_persistent_buffers": sorted(set(want_buffers) - set(want)),
        "modules_equal": settings == {n: m.extra_repr() for n, m in plain.named_modules()},
        # the name differs for scratch bases, written once per build (under their own keys)
        "config_differs": sorted(k for k, v in plain.hf.config.to_dict().items() if k != "_name_or_path"
                                 and from_rank0.hf.config.to_dict().get(k) != v),
    }
    rows = easy_rows(16, seed=3)
    pairs = store_rows(rows, work / f"store-{ranks.rank}", tokenizer, plain.hf.config, cfg.max_length)
    for name, model in (("every", every), ("rank0", from_rank0)):
        curve = optimize(model, pairs, cfg, device, ranks, tokenizer.pad_token_id, work / f"ckpt-{name}-{ranks.rank}")
        found[f"{name}_losses"] = [r["loss"] for r in curve]
    return found


def worker(cases: Path, out: Path) -> None:
    """One rank (under torchrun): every case of `cases` (JSON {case: [base, tokenizer dir, work dir]})."""
    import torch

    from rewardkit.training import distributed

    ranks = distributed.setup(torch.device("cpu"))
    results = {case: run_case(case, *map(Path, dirs), ranks) for case, dirs in json.loads(cases.read_text()).items()}
    (out / f"rank-{ranks.rank}.json").write_text(json.dumps(results))
    distributed.cleanup(ranks)


@pytest.fixture(scope="module")
def results(tiny_base, tmp_path_factory) -> dict:
    """{rank: {case: findings}} of one 2-process torchrun launch."""
    from rewardkit.encoding.tokenizers import load_tokenizer
    from tests.unit.test_families import build

    root = tmp_path_factory.mktemp("rank0")
    cases = {}
    for case in CASES:
        base = tiny_base if case == "scratch-deberta" else build(case.split("+")[0], root / case / "base")
        tokenizer_dir = root / case / "tokenizer"  # what the tokenize stage saves: the loader's tokenizer
        load_tokenizer(str(base)).save_pretrained(str(tokenizer_dir))
        cases[case] = [str(base), str(tokenizer_dir), str(root / case)]
    (root / "cases.json").write_text(json.dumps(cases))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "tests.e2e.test_load_from_rank0", str(root / "cases.json"), str(root)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return {rank: json.loads((root / f"rank-{rank}.json").read_text()) for rank in (0, 1)}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("rank", [0, 1])
def test_every_rank_ends_with_the_plain_load(results, case, rank):
    found = results[rank][case]
    assert found["state_dict_equal"] and found["modules_equal"] and found["config_differs"] == []
    assert found["buffers_equal"]
    assert found["non_persistent_buffers"]  # the buffers the broadcast does not carry were there to check


@pytest.mark.parametrize("case", list(CASES))
def test_training_from_rank0_matches_every_rank_loading(results, case):
    losses = {rank: (results[rank][case]["every_losses"], results[rank][case]["rank0_losses"]) for rank in (0, 1)}
    every, from_rank0 = losses[0]
    assert len(every) == 2 and every[0] != every[1]  # two steps that trained
    assert from_rank0 == every  # bit for bit
    assert losses[1] == losses[0]


if __name__ == "__main__":
    worker(Path(sys.argv[1]), Path(sys.argv[2]))
