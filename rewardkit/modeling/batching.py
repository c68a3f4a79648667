"""Batch orders and padding. A training micro-batch is one tensor: rows [0, b) chosen, [b, 2b) rejected."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from rewardkit.modeling.devices import to_device

# On CPU an inference batch holds at most this many (padded) tokens, so a small model's activations stay in cache
# (bench/RESULTS.md, 2026-11-24 evening: the batch-size sweep behind this value).
CPU_BATCH_TOKENS = 8192


def length_grouped_batches(lengths: list[int] | np.ndarray, batch_size: int, seed: int, epoch: int,
                           mega: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar lengths, reproducible from (seed, epoch).

    As in transformers' LengthGroupedSampler: shuffle, cut into mega-batches of `mega` batches, sort each by
    length (longest first) and cut it into batches, then shuffle the batch order. Padding waste stays small while
    every epoch still sees a different order. The last batch may be smaller; no pair is dropped.
    """
    rng = np.random.default_rng([seed, epoch])
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * mega):
        chunk = order[start:start + batch_size * mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: list[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Inference batches: longest first, so padding is minimal and an out-of-memory shows up at once."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def inference_batches(lengths: list[int] | np.ndarray, batch_size: int, device: torch.device) -> list[np.ndarray]:
    """`sorted_batches`; on CPU each batch is cut further to at most CPU_BATCH_TOKENS padded tokens (a sequence
    longer than that is a batch of its own)."""
    batches = sorted_batches(lengths, batch_size)
    if device.type != "cpu":
        return batches
    out = []
    for batch in batches:
        start = 0
        while start < len(batch):  # sorted longest first: the first sequence of a piece sets its width
            n = max(1, min(len(batch) - start, CPU_BATCH_TOKENS // padded_width(int(lengths[batch[start]]))))
            out.append(batch[start:start + n])
            start += n
    return out


def padded_width(length: int, multiple: int = 8) -> int:
    """`length` rounded up to a multiple of `multiple` (tensor-core and vector friendly widths)."""
    return -(-length // multiple) * multiple


class Batch(NamedTuple):
    """A padded batch, in the order RewardModel.forward takes it: (N, T) each; token_type_ids None when unused."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        """On `device`; from pinned host memory on CUDA, so the copies overlap with compute."""
        return Batch(*(t if t is None else to_device(t, device) for t in self))


def pad_batch(sequences: list[list[int]], pad_id: int, multiple: int = 8,
              segments: list[int] | None = None) -> Batch:
    """Right-pad to the longest sequence rounded up to `multiple`. With `segments` (where each sequence's
    response starts) the token_type_ids are 1 from there to the sequence's end, 0 elsewhere (padding included)."""
    width = padded_width(max(len(s) for s in sequences), multiple)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    types = None if segments is None else torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
        if types is not None:
            types[i, segments[i]:len(s)] = 1
    return Batch(ids, mask, types)


def pad(sequences: list[list[int]], pad_id: int, multiple: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence rounded up to `multiple`: (input_ids, attention_mask), both (N, T)."""
    batch = pad_batch(sequences, pad_id, multiple)
    return batch.input_ids, batch.attention_mask
