"""Precision: bf16 autocast on the CPU (and the CPU proxy for CUDA's) for the fast DeBERTa forward and
transformers' generic forward: finite losses, fp32 master weights that move, an fp32 score head, bf16 rewards close
to fp32 ones; and how `auto` is decided on each kind of device."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rewardkit.config import EvaluateConfig, TrainConfig
from rewardkit.encoding.families import input_template
from rewardkit.encoding.templates import encode_both_answers
from rewardkit.encoding.tokenization import store_rows
from rewardkit.errors import UserError
from rewardkit.modeling import devices, inference
from rewardkit.modeling.batching import pad_batch
from rewardkit.modeling.model import RewardModel, load_base
from rewardkit.modeling.scratch import build_scratch
from rewardkit.serving.config import ServeConfig
from rewardkit.training import loop as optimization
from rewardkit.training.distributed import Ranks
from tests.conftest import easy_rows, tiny_config

ROWS = easy_rows(32)
TEXTS = [t for r in ROWS for t in (r["prompt"], r["chosen"], r["rejected"])]
# a large init scale, so rewards differ between sequences and the bf16/fp32 comparison means something
BERT = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            type_vocab_size=2, initializer_range=0.3)


@pytest.fixture(scope="module", params=["deberta-v3-fast", "bert-generic"])
def base(request, tmp_path_factory) -> Path:
    sizes = tiny_config(initializer_range=0.3) if request.param.startswith("deberta") else BERT
    return build_scratch(sizes, TEXTS, 400, tmp_path_factory.mktemp(request.param) / "base", 0)


def test_training_steps_under_bf16_autocast(base, tmp_path):
    model, tokenizer = load_base(str(base), "cls", seed=0)
    assert model.fast == ("deberta" in base.parent.name)
    pairs = store_rows(ROWS, tmp_path / "store", tokenizer, model.hf.config, 64)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads: list[torch.dtype] = []
    for p in model.parameters():
        p.register_hook(lambda g: grads.append(g.dtype) or g)
    pooled = []
    model.hf.classifier.register_forward_hook(lambda module, args, out: pooled.append(args[0].dtype))
    cfg = TrainConfig(max_length=64, batch_size=8, epochs=1, lr=1e-3, warmup_ratio=0.0, checkpoint_every=0,
                      device="cpu", precision="bf16")
    with tempfile.TemporaryDirectory() as ckpt:
        curve = optimization.optimize(model, pairs, cfg, torch.device("cpu"), Ranks(), tokenizer.pad_token_id,
                                      Path(ckpt))
    assert len(curve) == 4 and all(math.isfinite(r["loss"]) for r in curve)
    assert set(pooled) == {torch.bfloat16}  # train.precision=bf16: the body ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert set(grads) == {torch.float32}  # autocast casts back: gradients land in fp32 too
    still = {name for name, p in model.named_parameters() if torch.equal(p, before[name])}
    # BT loss sees r+ - r-: the head's bias gets zero gradient up to rounding (as in fp32), every other weight moves
    assert still <= {"hf.classifier.bias"}


def test_bf16_rewards_are_close_to_fp32(base):
    model, tokenizer = load_base(str(base), "cls", seed=0)
    enc = encode_both_answers(tokenizer, ROWS[:8], 64, input_template(model.hf.config, tokenizer))
    inputs = pad_batch(enc.ids, tokenizer.pad_token_id, segments=enc.segments)
    model.eval()
    with torch.inference_mode():
        fp32 = model(*inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(*inputs).float()
    assert fp32.std() > 0.01
    torch.testing.assert_close(bf16, fp32, atol=0.05 * fp32.abs().max().item(), rtol=0.05)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-forward", "transformers-forward"])
def test_rewards_under_bf16_autocast_are_an_fp32_head_on_the_pooled_state(base, fast):
    """#23: the body may run in bf16, the score head does not: each reward is the fp32 head applied to the pooled
    hidden state the body produced, so rewards carry fp32's 24 mantissa bits, not bf16's 8."""
    model, tokenizer = load_base(str(base), "cls", seed=0)
    model = RewardModel(model.hf, "cls", fast=fast).eval()
    enc = encode_both_answers(tokenizer, ROWS[:8], 64, input_template(model.hf.config, tokenizer))
    inputs = pad_batch(enc.ids, tokenizer.pad_token_id, segments=enc.segments)
    head = model.hf.classifier
    seen = []
    handle = head.register_forward_hook(lambda module, args, out: seen.append((args[0], out)))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        rewards = model(*inputs)
    handle.remove()
    (pooled, out), = seen
    assert pooled.dtype == torch.bfloat16  # the body did run under bf16 autocast
    assert rewards.dtype == out.dtype == torch.float32
    torch.testing.assert_close(out, F.linear(pooled.float(), head.weight, head.bias), rtol=0, atol=0)
    assert sorted(rewards.tolist()) == sorted(out[:, 0].tolist())  # the fast forwards return input order
    assert not torch.equal(rewards, rewards.bfloat16().float())  # not all on the bf16 grid


def test_score_sequences_in_bf16_returns_fp32_rewards_off_the_bf16_grid_close_to_fp32(base):
    model, tokenizer = load_base(str(base), "cls", seed=0)
    enc = encode_both_answers(tokenizer, ROWS[:8], 64, input_template(model.hf.config, tokenizer))
    rewards = {precision: inference.score_sequences(model.eval(), enc.ids, tokenizer.pad_token_id, 4,
                                                    torch.device("cpu"), segments=enc.segments, precision=precision)
               for precision in ("fp32", "bf16")}
    bf16, fp32 = rewards["bf16"], rewards["fp32"]
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, bf16.bfloat16().float())
    assert not torch.equal(bf16, fp32)  # the precision is honoured
    torch.testing.assert_close(bf16, fp32, atol=0.05 * fp32.abs().max().item(), rtol=0.05)


@pytest.mark.parametrize("capability, native", [((6, 0), False), ((7, 0), False), ((7, 5), False), ((8, 0), True),
                                                ((8, 9), True), ((9, 0), True)])
def test_cuda_bf16_autocast_is_decided_by_compute_capability(monkeypatch, capability, native):
    """#23: V100 (7.0) and T4 (7.5) only emulate bf16, though torch.cuda.is_bf16_supported() says True there."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(devices.torch, "autocast", lambda device_type, **kwargs: (device_type, kwargs))
    cuda = torch.device("cuda")
    assert devices.native_bf16(cuda) is native
    assert devices.resolve_precision("auto", cuda) == ("bf16" if native else "fp32")
    assert devices.autocast(cuda, "auto") == ("cuda", {"dtype": torch.bfloat16} if native else {"enabled": False})
    assert devices.resolve_precision("bf16", cuda) == "bf16" and devices.resolve_precision("fp32", cuda) == "fp32"


@pytest.mark.parametrize("avx512_bf16, amx, precision", [(True, False, "bf16"), (False, True, "bf16"),
                                                         (True, True, "bf16"), (False, False, "fp32")])
def test_auto_on_the_cpu_is_bf16_where_torch_reports_native_bf16(monkeypatch, avx512_bf16, amx, precision):
    """#24: AVX512-BF16 or AMX tiles (torch.cpu's checks) -> bf16; AVX512 alone only emulates bf16 -> fp32."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    cpu = torch.device("cpu")
    assert devices.resolve_precision("auto", cpu) == precision
    with devices.autocast(cpu, "auto"):
        assert torch.is_autocast_enabled("cpu") is (precision == "bf16")
    with torch.autocast("cpu", dtype=torch.bfloat16), devices.autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")  # fp32 holds even inside an outer autocast


def test_cpu_bf16_features_are_torch_cpus_own_checks_and_false_where_torch_lacks_one(monkeypatch):
    """#24: the bench prints each check by name (AMX vs AVX512-BF16 machines differ); a torch without a check
    (private API) reads as False, not an AttributeError."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert devices.cpu_bf16_features() == {"avx512_bf16": True, "amx_tile": False}
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert devices.cpu_bf16_features() == {"avx512_bf16": False, "amx_tile": False}
    assert devices.resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_an_unknown_precision_is_one_user_error():
    with pytest.raises(UserError, match="unknown precision 'fp16': use one of auto, fp32, bf16"):
        devices.resolve_precision("fp16", torch.device("cpu"))
    for section, config in (("train", TrainConfig), ("evaluate", EvaluateConfig)):
        with pytest.raises(UserError, match=f"{section}.precision: must be one of auto, fp32, bf16, got 'fp16'"):
            config(precision="fp16")
    with pytest.raises(UserError, match="--precision must be auto or fp32 or bf16"):
        ServeConfig(model=Path("m"), precision="fp16")


def test_evaluation_in_bf16_is_within_a_hundredth_of_a_reward_std_of_fp32(trained_model, tmp_path):
    """#24's tolerance: the evaluate stage's scoring (`score_store`) of a trained tiny model in bf16 puts every
    reward within 1e-2 of its fp32 value, measured in standard deviations of the fp32 rewards; and bf16 is
    really used (the rewards differ)."""
    from rewardkit.evaluation.job import score_store

    model, tokenizer = load_base(str(trained_model / "models" / "reward_model"), "cls", seed=0)
    store = store_rows(easy_rows(48, seed=3), tmp_path / "store", tokenizer, model.hf.config, 64,
                       keep_identical=True)
    rewards = {precision: torch.cat(score_store(model.eval(), tokenizer, store, 8, torch.device("cpu"),
                                                progress=False, precision=precision))
               for precision in ("fp32", "bf16")}
    fp32, bf16 = rewards["fp32"], rewards["bf16"]
    assert fp32.std() > 0 and not torch.equal(bf16, fp32)
    assert ((bf16 - fp32).abs().max() / fp32.std()).item() <= 1e-2
