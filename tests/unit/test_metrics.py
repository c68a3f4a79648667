"""The Bradley–Terry loss, pairwise accuracy and ECE definitions, and the batch orders and padding."""
import numpy as np
import pytest
import torch

from rewardkit.evaluation.metrics import calibration, pairwise_accuracy
from rewardkit.modeling.batching import inference_batches, length_grouped_batches, pad, padded_width
from rewardkit.modeling.objective import bt_loss


def test_loss_and_accuracy_definitions():
    c, r = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])
    expected = -torch.nn.functional.logsigmoid(torch.tensor([1.0, 0.0, -1.0])).mean()
    assert torch.isclose(bt_loss(c, r), expected)
    assert torch.isclose(bt_loss(c, r, margin=torch.tensor([1.0, 0.0, 0.0])),
                         -torch.nn.functional.logsigmoid(torch.tensor([0.0, 0.0, -1.0])).mean())
    assert torch.isclose(bt_loss(c, r, center_coef=0.1), expected + 0.1 * torch.tensor([1.0, 0.0, 25.0]).mean())
    assert pairwise_accuracy(c, r) == pytest.approx((1 + 0.5 + 0) / 3)  # the tie counts one half


def test_ece_of_a_perfectly_calibrated_set_is_zero():
    # p = σ(d) = 0.75 for four pairs of which three are right: accuracy 0.75 = confidence
    d = float(np.log(3.0))
    chosen, rejected = torch.tensor([d, d, d, 0.0]), torch.tensor([0.0, 0.0, 0.0, d])
    ece, bins = calibration(chosen, rejected, bins=10)
    assert ece == pytest.approx(0.0, abs=1e-6)
    assert bins == [{"bin": 5, "confidence": pytest.approx(0.75), "accuracy": 0.75, "pairs": 4}]


def test_length_grouped_batches_cover_each_pair_once_and_depend_on_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(5, 500, size=1003)
    batches = length_grouped_batches(lengths, 16, seed=1, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1003))
    assert all(len(b) == 16 for b in batches[:-1] if len(b) != 1003 % 16)
    again = length_grouped_batches(lengths, 16, seed=1, epoch=0)
    assert all((a == b).all() for a, b in zip(batches, again))
    assert not all((a == b).all() for a, b in zip(batches, length_grouped_batches(lengths, 16, seed=1, epoch=1)))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.2 * np.ptp(lengths)  # grouped: far less padding than random batches


def test_pad_rounds_up_and_masks():
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0, multiple=4)
    assert ids.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]


def test_inference_batches_are_longest_first_within_the_cpu_token_budget(monkeypatch):
    from rewardkit.modeling import batching

    monkeypatch.setattr(batching, "CPU_BATCH_TOKENS", 96)
    lengths = np.random.default_rng(1).integers(3, 60, size=80)
    batches = inference_batches(lengths, 16, torch.device("cpu"))
    assert sorted(i for b in batches for i in b) == list(range(80))  # every sequence exactly once
    widths = [max(lengths[i] for i in b) for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest first
    assert all(len(b) <= 16 and len(b) * padded_width(w) <= 96 for b, w in zip(batches, widths))
    assert [len(b) for b in inference_batches(lengths, 16, torch.device("meta"))] == [16] * 5  # not cut off CPU
