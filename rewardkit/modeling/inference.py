"""Forward-only scoring of encoded sequences in length-sorted batches: evaluation, the training-set pass, scoring.

On CPU the batches run on `torch.get_num_threads()` Python threads with one intra-op thread each, longest first:
whole small batches in parallel beat one batch's small matmuls split over cores. With fewer batches than threads
(a lone best-of-n group is one packed batch) each worker gets the spare cores as intra-op threads instead of
leaving them idle. torch's CPU kernels split rows, not sums, over threads, so rewards stay bit-identical whatever
the number of cores (tests/unit/test_scorer.py checks both cases). On CUDA, and for a model sharded with FSDP
(whose forwards all-gather weights: every rank must issue them in the same order), they run one after another.
`precision` (fp32, bf16 or auto: rewardkit.modeling.devices) is the body's; the score head and rewards are fp32.
After each CPU batch the process's freed heap is kept within a bound (rewardkit.allocator.HeapBound, one for the
process, so a server's many small calls count together): batches of ever new widths would otherwise grow it.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
from torch.distributed.fsdp import FSDPModule

from rewardkit.allocator import HeapBound
from rewardkit.modeling.batching import CPU_BATCH_TOKENS, inference_batches, pad_batch
from rewardkit.modeling.devices import autocast
from rewardkit.modeling.packing import pack_batch, packed_batches

Model = Callable[..., torch.Tensor]  # (input_ids, attention_mask[, token_type_ids]) -> (N,) rewards
HEAP = HeapBound()


def no_grad(model: Model):
    """inference_mode, or for a model sharded with FSDP no_grad: FSDP2's all-gather copies into buffers it keeps
    across forwards, which inference tensors cannot be."""
    return torch.no_grad() if isinstance(model, FSDPModule) else torch.inference_mode()


def _score_batch(model: Model, sequences: list[list[int]], segments: list[int] | None, batch: np.ndarray,
                 pad_id: int, device: torch.device, precision: str) -> torch.Tensor:
    # both are thread-local: entered in the thread that scores
    with no_grad(model), autocast(device, precision):
        padded = pad_batch([sequences[i] for i in batch], pad_id,
                           segments=None if segments is None else [segments[i] for i in batch])
        return model(*padded.to(device)).float().cpu()


def _score_packed(model: Model, sequences: list[list[int]], groups: list[list[int]], pad_id: int,
                  device: torch.device, precision: str) -> torch.Tensor:
    with no_grad(model), autocast(device, precision):
        return model(*pack_batch(sequences, groups, pad_id).to(device)).float().cpu()


def score_sequences(model: Model, sequences: list[list[int]], pad_id: int, batch_size: int,
                    device: torch.device, progress=None, segments: list[int] | None = None,
                    groups: list[list[int]] | None = None, precision: str = "fp32") -> torch.Tensor:
    """Rewards (float32, on CPU) of encoded sequences, in input order; `segments`: where each response starts,
    for models with token types; `progress` (a tqdm bar) counts sequences. A model that shares prefixes (a causal
    decoder) computes the common prefix of each of `groups` (lists of indices: a pair, a prompt's candidates;
    default: found from the tokens) once."""
    rewards = torch.empty(len(sequences), dtype=torch.float32)
    if getattr(model, "share_prefix", False) and sequences:
        max_tokens = CPU_BATCH_TOKENS if device.type == "cpu" else batch_size * max(map(len, sequences))
        plans = packed_batches(sequences, groups, batch_size, max_tokens)
        batches = [np.array([m for g in plan for m in g]) for plan in plans]
        work = {id(b): plan for b, plan in zip(batches, plans)}

        def score(batch: np.ndarray) -> torch.Tensor:
            return _score_packed(model, sequences, work[id(batch)], pad_id, device, precision)
    else:
        batches = inference_batches([len(s) for s in sequences], batch_size, device)

        def score(batch: np.ndarray) -> torch.Tensor:
            return _score_batch(model, sequences, segments, batch, pad_id, device, precision)

    if device.type != "cpu" or isinstance(model, FSDPModule):  # sharded: every rank's gathers in one order
        _collect(rewards, batches, map(score, batches), progress)
        return rewards
    threads = torch.get_num_threads()
    workers = max(1, min(threads, len(batches)))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="score", initializer=torch.set_num_threads,
                              initargs=(max(1, threads // workers),))
    try:  # set_num_threads is per thread (OpenMP's and MKL's settings are thread-local): the caller's is kept
        results = pool.map(score, batches)
        _collect(rewards, batches, results, progress, HEAP)
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C or an error the queued batches are dropped, not run
    return rewards


def _collect(rewards: torch.Tensor, batches: list[np.ndarray], results, progress,
             heap: HeapBound | None = None) -> None:
    for batch, out in zip(batches, results):
        rewards[torch.from_numpy(batch)] = out
        if progress is not None:
            progress.update(len(batch))
        if heap is not None:
            heap.check()
