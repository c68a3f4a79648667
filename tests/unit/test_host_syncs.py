"""The training loop reads the device once per optimizer step, proxied on CPU.

On CUDA every read of a device value on the host (`.item()`, `bool()`, `.tolist()`, `.cpu()`, `torch.equal`, an
output sized by data such as `nonzero`) waits for all queued work: the GPU idles while the host prepares the next
micro-batch, and pinned memory with non-blocking copies buys nothing. On a CPU nothing stalls, but the same reads
can be counted: Python-level reads by patching `torch.Tensor`, aten-level ones (what `.item()`, `bool()`,
`int()`, `torch.equal` and data-sized outputs dispatch to) with a dispatch mode. Counted between two optimizer
steps, the steady state of a run: the step's one read (loss sum, correct pairs, gradient norm) and nothing else.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rewardkit.config import TrainConfig
from rewardkit.encoding.tokenization import store_rows
from rewardkit.modeling.batching import pad_batch
from rewardkit.modeling.model import load_base
from rewardkit.modeling.scratch import build_scratch
from rewardkit.training import loop as optimization
from rewardkit.training.distributed import Ranks
from tests.conftest import easy_rows, tiny_config

ROWS = easy_rows(48)
TEXTS = [t for r in ROWS for t in (r["prompt"], r["chosen"], r["rejected"])]
BERT = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            type_vocab_size=2)
aten = torch.ops.aten
# aten ops that hand a value to the host, or size their output by the data (a sync on CUDA)
READING_OPS = {aten._local_scalar_dense.default, aten.equal.default, aten.nonzero.default,
               aten.masked_select.default, aten._unique2.default, aten.unique_consecutive.default}
PYTHON_READS = ("cpu", "tolist", "numpy", "__array__")


class CountReads(TorchDispatchMode):
    """Counts reads of tensor values by the host, with where each came from (for the failure message)."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.reads: list[str] = []
        for name in PYTHON_READS:
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counted(name, real))

    def _counted(self, name: str, real):
        def read(tensor, *args, **kwargs):
            self.reads.append(f"Tensor.{name}")
            return real(tensor, *args, **kwargs)
        return read

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in READING_OPS or (func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is None):
            self.reads.append(str(func))
        return func(*args, **kwargs)


@pytest.fixture(scope="module", params=["deberta-cls", "deberta-mean", "bert-cls"])
def base(request, tmp_path_factory) -> tuple[Path, str]:
    family, pooling = request.param.split("-")
    sizes = tiny_config() if family == "deberta" else BERT
    return build_scratch(sizes, TEXTS, 400, tmp_path_factory.mktemp(request.param) / "base", 0), pooling


def reads_per_step(base: Path, pooling: str, monkeypatch, tmp_path: Path, **train) -> tuple[list[list[str]], list]:
    """Train 4 steps of 2 micro-batches; the reads between consecutive optimizer steps, and the curve."""
    model, tokenizer = load_base(str(base), pooling, seed=0)
    assert model.fast or model.fast_bert  # the packed forwards are what this is about
    pairs = store_rows(ROWS, tmp_path / "store", tokenizer, model.hf.config, 64)
    # the relative-position index cache is built once per process (host tensors read then): warm it
    sequences, _ = pairs.sequences(list(range(4)))
    model(*pad_batch(sequences, tokenizer.pad_token_id))
    cfg = TrainConfig(**{"max_length": 64, "batch_size": 8, "grad_accum_steps": 2, "max_steps": 4, "lr": 1e-3,
                         "warmup_ratio": 0.0, "checkpoint_every": 0, "device": "cpu", **train})
    counter, marks = CountReads(monkeypatch), []
    with tempfile.TemporaryDirectory() as ckpt, counter:
        curve = optimization.optimize(model, pairs, cfg, torch.device("cpu"), Ranks(), tokenizer.pad_token_id,
                                      Path(ckpt), on_step=lambda record: marks.append(len(counter.reads)))
    return [counter.reads[a:b] for a, b in zip(marks, marks[1:])], curve


def test_one_device_read_per_optimizer_step(base, monkeypatch, tmp_path):
    between, curve = reads_per_step(*base, monkeypatch, tmp_path)
    assert len(between) == 3
    assert all(reads == ["Tensor.tolist"] for reads in between), between
    assert all(math.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 and r["lr"] > 0 for r in curve)


def test_the_count_sees_reads_inside_the_step(base, monkeypatch, tmp_path):
    """The counter is not blind: a forward that checks its mask (no lengths from the host) is caught."""
    real = optimization.accumulate_gradients

    def without_lengths(ddp, forward, *args, **kwargs):
        return real(ddp, lambda *inputs, lengths=None: forward(*inputs), *args, **kwargs)

    monkeypatch.setattr(optimization, "accumulate_gradients", without_lengths)
    between, _ = reads_per_step(*base, monkeypatch, tmp_path)
    # per micro-step: the right-padding check (all(), equal) and the lengths (tolist); per step: the stats
    assert all(len(reads) == 1 + 2 * 3 for reads in between), between


def test_lengths_from_the_host_give_the_same_rewards(base):
    model, tokenizer = load_base(str(base[0]), base[1], seed=0)
    pairs = store_rows(ROWS[:6], Path(tempfile.mkdtemp()) / "store", tokenizer, model.hf.config, 64)
    sequences, _ = pairs.sequences(list(range(6)))
    inputs = pad_batch(sequences, tokenizer.pad_token_id)
    assert torch.equal(model(*inputs, lengths=[len(s) for s in sequences]), model(*inputs))


def test_several_ranks_agree_on_a_stop_within_the_one_read(base, monkeypatch, tmp_path):
    """With more than one rank the stop requests ride in the step's all-reduce: still one read per step (a
    one-process gloo group stands in for the job; `Ranks` says two, so the multi-rank branches run)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'process_group'}", rank=0, world_size=1)
    try:
        real = optimization.optimize

        def two_ranks(model, pairs, cfg, device, ranks, *args, **kwargs):
            return real(model, pairs, cfg, device, Ranks(rank=0, world=2), *args, **kwargs)

        monkeypatch.setattr(optimization, "optimize", two_ranks)
        between, curve = reads_per_step(*base, monkeypatch, tmp_path)
    finally:
        dist.destroy_process_group()
    assert len(between) == 3 and all(reads == ["Tensor.tolist"] for reads in between), between
    assert all(math.isfinite(r["loss"]) for r in curve)
