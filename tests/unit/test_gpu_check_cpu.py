"""bench/gpu_check.py on the CPU (`--device cpu --quick`, in this process): every row passes (TRL's may only say
"skipped: TRL not installed"), and with each comparison deliberately broken (a perturbation monkeypatched into
what the check compares) every judged row FAILs, so none of the checks can only pass."""
from __future__ import annotations

import json

import pytest
import torch

from bench import gpu_check, workloads
from bench.gpucheck import ddp, speed
from rewardkit.modeling.fast import deberta as fast_deberta
from rewardkit.training import checkpoint, fsdp, loop

JUDGED = ["bf16 vs fp32 training", "fast vs transformers forward, fp32", "fast vs transformers forward, bf16",
          "kill -9 / SIGTERM and resume", "DDP, 2 processes vs 1", "fsdp + LoRA r=8 + checkpointing, fp32"]


def run_check(out, monkeypatch) -> tuple[int, dict[str, dict]]:
    code = gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)])
    rows = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    table = (out / "gpu_check.md").read_text(encoding="utf-8")
    assert all(f"| {r['check']} | {r['status']} |" in table for r in rows)
    return code, {r["check"]: r for r in rows}


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(workloads, "OUT", tmp_path_factory.mktemp("bench"))
        yield patch


def test_every_check_passes_on_the_cpu(bench_out, tmp_path, monkeypatch, capsys):
    code, rows = run_check(tmp_path, monkeypatch)
    assert code == 0, rows
    assert "device: CPU" in capsys.readouterr().out
    trl = rows.pop("TRL RewardTrainer (speed)")["status"]
    assert trl in ("pass", "skipped: TRL not installed")
    assert all(r["status"] == "pass" for r in rows.values()), rows
    assert set(JUDGED) <= set(rows)
    assert rows["DDP, 2 processes vs 1"]["data"]["backend"] == "gloo"
    resumed = rows["kill -9 / SIGTERM and resume"]["data"]["gaps"]
    assert set(resumed) == {"SIGKILL", "SIGTERM"} and all(g == [0.0, 0.0] for g in resumed.values())


def break_every_comparison(monkeypatch) -> None:
    """One perturbation per check, each in the code path the check compares."""
    fast_rewards, loss, save, gather = fast_deberta.rewards, loop.bt_loss_per_pair, checkpoint.save, fsdp.gather_plain
    monkeypatch.setattr(fast_deberta, "rewards", lambda *a, **k: fast_rewards(*a, **k) + 0.1)
    monkeypatch.setattr(loop, "bt_loss_per_pair",  # bf16 training computes another loss (rewards come out fp32)
                        lambda c, r, *a, **k: loss(c, r, *a, **k) + 0.1 * (cfg_precision[0] == "bf16"))
    cfg_precision = ["fp32"]
    autocast = loop.autocast
    monkeypatch.setattr(loop, "autocast", lambda device, p: cfg_precision.__setitem__(0, p) or autocast(device, p))

    def save_fresh_optimizer(directory, *, optimizer, **state):  # a checkpoint that loses Adam's moments
        fresh = torch.optim.AdamW([{"params": group["params"]} for group in optimizer.param_groups], lr=1e-4)
        save(directory, optimizer=fresh, **state)
    monkeypatch.setattr(checkpoint, "save", save_fresh_optimizer)
    train = ddp.train
    monkeypatch.setattr(ddp, "train", lambda *a, **k: train(*a, **k, center_rewards_coef=0.5))

    def gather_perturbed(*args, **kwargs):
        plain, adapted = gather(*args, **kwargs)
        with torch.no_grad():  # every weight: the last parameter may be one the forward does not use (peft's
            for p in plain.parameters():  # modules_to_save keeps the original head beside the trained copy)
                p.add_(0.05)
        return plain, adapted
    monkeypatch.setattr(fsdp, "gather_plain", gather_perturbed)
    find_spec = speed.importlib.util.find_spec
    monkeypatch.setattr(speed.importlib.util, "find_spec",
                        lambda name, *a: None if name == "trl" else find_spec(name, *a))


def test_each_check_fails_when_its_comparison_is_broken(bench_out, tmp_path, monkeypatch):
    break_every_comparison(monkeypatch)
    code, rows = run_check(tmp_path, monkeypatch)
    assert code == 1
    assert {name: rows[name]["status"] for name in JUDGED} == dict.fromkeys(JUDGED, "FAIL"), rows
    assert rows["TRL RewardTrainer (speed)"]["status"] == "skipped: TRL not installed"
    assert rows["ours train (speed)"]["status"] == "pass"
