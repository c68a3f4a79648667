"""train.strategy=fsdp in this process (a one-rank gloo group: FSDP2 still turns every parameter into a DTensor
shard that only a unit's registered forward gathers): the fast forwards run through the sharded layers with the
rewards and gradients of the plain model, LoRA and activation checkpointing included; the gathered copy is the
plain model; bad settings stop with one line. Two processes for real: tests/e2e/test_sharded_training.py."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from rewardkit.config import LoraSettings, TrainConfig
from rewardkit.errors import UserError
from rewardkit.modeling.fast.ops import LAYER_STEP
from rewardkit.modeling.model import RewardModel
from rewardkit.training import fsdp, lora
from rewardkit.training.distributed import Ranks
from rewardkit.training.job import skeleton
from rewardkit.training.memory import enable_activation_checkpointing
from tests.unit import test_fast_bert, test_fast_deberta
from tests.unit.test_memory import rewards_grads_and_saved_bytes


@pytest.fixture
def one_rank(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield Ranks()
    dist.destroy_process_group()


def build(name: str, lora_r: int = 0, checkpointing: bool = False) -> RewardModel:
    hf = test_fast_deberta.tiny_model() if name == "deberta" else test_fast_bert.tiny_model()
    model = RewardModel(hf, "cls").train()
    if lora_r:
        lora.apply_lora(model, LoraSettings(r=lora_r))
        torch.manual_seed(1)
        for key, param in model.named_parameters():
            if "lora_B" in key:
                param.data.normal_(0, 0.1)  # peft starts B at zero: the adapters would change nothing
    if checkpointing:
        enable_activation_checkpointing(model)
    return model


def full(grads: dict) -> dict:
    return {k: g.full_tensor() if isinstance(g, DTensor) else g for k, g in grads.items()}


CASES = [("deberta", 0, False), ("bert", 0, False), ("deberta", 4, False), ("deberta", 0, True),
         ("deberta", 4, True)]


@pytest.mark.parametrize("name,lora_r,checkpointing", CASES,
                         ids=[f"{n}-lora{r}-ckpt{int(c)}" for n, r, c in CASES])
def test_the_fast_forward_runs_through_the_sharded_layers(one_rank, name, lora_r, checkpointing):
    model = build(name, lora_r, checkpointing)
    plain = copy.deepcopy(model)
    inputs = (test_fast_deberta.batch if name == "deberta" else test_fast_bert.batch)()
    want, want_grads, _ = rewards_grads_and_saved_bytes(plain, inputs)

    fsdp.shard(model, torch.device("cpu"), one_rank, bf16=False)
    blocks = fsdp.transformer_blocks(model.hf)
    assert len(blocks) == 2 and all(fsdp.is_sharded(b) and LAYER_STEP in vars(b) for b in blocks)
    # between forwards every weight is a shard: a fast forward reading one outside its unit's gathering would fail
    assert all(isinstance(p, DTensor) for p in model.parameters())
    assert model.fast or model.fast_bert
    got, got_grads, _ = rewards_grads_and_saved_bytes(model, inputs)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    got_grads = full(got_grads)
    assert got_grads.keys() == want_grads.keys()
    # float noise only: FSDP sums a weight's gradient over its uses in another order (the relative-position
    # embeddings, read by every layer, differ in the 6th digit)
    atol = 1e-6 * max(grad.abs().max().item() for grad in want_grads.values())
    for key, grad in want_grads.items():
        torch.testing.assert_close(got_grads[key], grad, rtol=1e-5, atol=atol, msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize("lora_r", [0, 4])
def test_the_gathered_copy_is_the_plain_model(one_rank, lora_r):
    model = build("deberta", lora_r)
    plain = copy.deepcopy(model).eval()
    fsdp.shard(model, torch.device("cpu"), one_rank, bf16=False)
    cfg = TrainConfig(lora={"r": lora_r})
    gathered, adapted = fsdp.gather_plain(model, one_rank, lambda: skeleton(model, cfg))
    assert not fsdp.is_sharded(gathered) and (adapted is not None) == bool(lora_r)
    assert gathered.state_dict().keys() == plain.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(gathered.state_dict()[key], value), key
    for key, buffer in plain.named_buffers():  # non-persistent ones too (position ids)
        assert torch.equal(dict(gathered.named_buffers())[key], buffer), key
    with torch.no_grad():
        torch.testing.assert_close(gathered.eval()(*test_fast_deberta.batch()), plain(*test_fast_deberta.batch()),
                                   rtol=0, atol=0)


def test_fsdp_on_one_process_stops_before_any_work():
    with pytest.raises(UserError, match=r"^train.strategy=fsdp shards the model over several processes but this run "
                                        r"has one: set train.nproc_per_node to 2 or more .*use train.strategy=ddp$"):
        fsdp.check_world("fsdp", 1)
    fsdp.check_world("fsdp", 2)
    fsdp.check_world("ddp", 1)


@pytest.mark.parametrize("params,problem", [
    ({"strategy": "zero3"}, "train.strategy: must be one of ddp, fsdp, got 'zero3'"),
])
def test_bad_strategy_settings_stop_with_one_line_naming_the_key(params, problem):
    with pytest.raises(UserError) as raised:
        TrainConfig(**params)
    assert problem in str(raised.value) and "\n" not in str(raised.value)


def test_the_run_key_of_fsdp_leaves_the_process_count_out_so_its_checkpoints_reshard():
    from rewardkit.config import ModelConfig
    from rewardkit.training.run_key import run_key

    def key(**train):
        return run_key("data", ModelConfig(name="scratch-tiny"), TrainConfig(**train))

    assert key(strategy="fsdp", nproc_per_node=2) == key(strategy="fsdp", nproc_per_node=4)
    assert key(strategy="ddp", nproc_per_node=2) != key(strategy="ddp", nproc_per_node=4)  # DDP's do not
    assert key(strategy="fsdp", nproc_per_node=2) != key(strategy="ddp", nproc_per_node=2)


def test_a_sharded_model_scores_in_the_calling_thread_in_order(one_rank, monkeypatch):
    """CPU scoring runs batches on a thread pool; a sharded model's forwards all-gather from every rank, which must
    issue them in one order: they run one after another in the caller's thread, with the plain model's rewards."""
    import threading

    from rewardkit.modeling.inference import score_sequences

    model = build("deberta").eval()
    plain = copy.deepcopy(model)
    fsdp.shard(model, torch.device("cpu"), one_rank, bf16=False)
    threads = []
    model.register_forward_pre_hook(lambda *_: threads.append(threading.current_thread()))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # what would make a pool of 2 scoring threads
    sequences = [[1, *range(5, 5 + n), 2] for n in (3, 9, 17, 30, 6, 12)]
    got = score_sequences(model, sequences, 0, 2, torch.device("cpu"))
    want = score_sequences(plain, sequences, 0, 2, torch.device("cpu"))
    assert len(threads) == 3 and set(threads) == {threading.current_thread()}
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
