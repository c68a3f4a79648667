"""Building blocks of `rewardkit.modeling.fast.deberta`: relative-position gather indices (cached), the attention chunk
plan, and two autograd functions that keep less for backward than their plain torch equivalents. The chunk plan
and the feed-forward also serve `rewardkit.modeling.fast.bert` (BERT-family layers have the same module layout). Each
layer of a fast forward runs through `layer_step`, so FSDP2 and activation checkpointing see it as the layer's forward;
projections replaced by other modules (peft's LoRA layers) are called, not read (`plain_linear`)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rewardkit.modeling.devices import to_device

_INDICES: dict[tuple, tuple[int, tuple[list[int], list[int]], torch.Tensor, torch.Tensor]] = {}
_INDICES_LOCK = threading.Lock()  # the CPU scoring threads share the cache


def relative_indices(att, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(c2p index, p2c index, lo, hi) for `width` tokens: (width, width) gather indices into the position buckets
    [lo, hi) that this width reaches (as transformers builds them: relative_pos, clamp(±rel + span))."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

    span = att.pos_ebd_size
    key = (att.position_buckets, att.max_relative_positions, span, str(device))
    with _INDICES_LOCK:
        if key not in _INDICES or _INDICES[key][0] < width:  # built once for the longest width seen (>= 512)
            size = max(width, 512, _INDICES[key][0] if key in _INDICES else 0)
            probe = torch.empty(size, 0)
            rel = build_relative_position(probe, probe, bucket_size=att.position_buckets,
                                          max_position=att.max_relative_positions)[0]  # (size, size)
            c2p = torch.clamp(rel + span, 0, 2 * span - 1)
            # the index depends on i - j only, so a width's index is the top-left block and its extremes are its
            # corners: kept as Python ints (first row, first column), so a forward reads no tensor on the host
            corners = (c2p[0].tolist(), c2p[:, 0].tolist())
            _INDICES[key] = (size, corners, c2p.to(device), torch.clamp(-rel + span, 0, 2 * span - 1).to(device))
        _, (first_row, first_column), c2p, p2c = _INDICES[key]
    lo, hi = first_row[width - 1], first_column[width - 1] + 1
    return c2p[:width, :width] - lo, p2c[:width, :width] - lo, lo, hi


class GatherLast(torch.autograd.Function):
    """torch.gather(x, -1, index) whose backward keeps only the index: torch.gather's saves x itself, and x here
    is the full (heads x count, width, P) position-score tensor, the largest tensor a layer saves. A 16-bit x (bf16
    under autocast) is gathered as int16: the same bits, without the fp32 round trip torch's CPU gather makes of
    a bf16 tensor (a full-size cast of the input and of the result: most of a tiny-dims bf16 step's extra time)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.x_shape = x.shape
        if x.dtype in (torch.bfloat16, torch.float16):
            return torch.gather(x.view(torch.int16), -1, index).view(x.dtype)
        return torch.gather(x, -1, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.x_shape).scatter_add_(-1, index, grad), None


class GeluLinear(torch.autograd.Function):
    """linear(gelu(a)) that saves only a: gelu(a), (N, 4H), is recomputed in backward (one elementwise pass)
    instead of being kept. Casts follow the inputs (bf16 under autocast)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, weight, bias)
        return F.linear(F.gelu(a), weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, weight, bias = ctx.saved_tensors
        grad2d, act2d = grad.reshape(-1, grad.shape[-1]), F.gelu(a).reshape(-1, a.shape[-1]).to(grad.dtype)
        grad_a = torch.ops.aten.gelu_backward(grad @ weight.to(grad.dtype), a)
        grad_bias = None if bias is None else grad2d.sum(0).to(bias.dtype)
        return grad_a, (grad2d.t() @ act2d).to(weight.dtype), grad_bias


def feed_forward(layer, attended: torch.Tensor) -> torch.Tensor:
    """DebertaV2Intermediate + DebertaV2Output: LayerNorm(dense2(gelu(dense1(x))) + x)."""
    from transformers.activations import GELUActivation

    inter, out = layer.intermediate, layer.output
    act = inter.intermediate_act_fn
    if not (isinstance(act, GELUActivation) and act.act is F.gelu) or not plain_linear(out.dense):
        return out(inter(attended), attended)  # another activation, or LoRA on dense2: the modules as they are
    hidden = GeluLinear.apply(inter.dense(attended), out.dense.weight, out.dense.bias)
    return out.LayerNorm(out.dropout(hidden) + attended)


LAYER_STEP = "rewardkit_layer_step"
"""The method name under which `rewardkit.training.fsdp` registers `run_step` on each sharded layer."""


def layer_step(layer: nn.Module, step, *args):
    """`step(layer, *args)`, one layer of a fast forward, run as that layer's forward: a layer sharded by FSDP2 has
    `run_step` registered as a forward method under LAYER_STEP, so its weights are gathered around the step (and its
    gradients reduced after the step's backward), as they would be around `layer.forward`."""
    method = layer.__dict__.get(LAYER_STEP)
    return method(step, *args) if method is not None else run_step(layer, step, *args)


def run_step(layer: nn.Module, step, *args):
    """`step(layer, *args)`, recomputed in backward instead of keeping its activations when the layer checkpoints
    (transformers' per-layer `gradient_checkpointing` flag and checkpoint function, set by
    `activation_checkpointing_enable`), in training, as transformers' own layer forward does."""
    if getattr(layer, "gradient_checkpointing", False) and layer.training and torch.is_grad_enabled():
        checkpointed = getattr(layer, "_gradient_checkpointing_func", None) or partial(checkpoint, use_reentrant=False)
        return checkpointed(step, layer, *args)
    return step(layer, *args)


def plain_linear(*modules: nn.Module) -> bool:
    """Whether each module is exactly `nn.Linear`, whose weights a fast forward may read and fuse into one matmul;
    any other (a peft LoRA layer wrapping it) is called as a module, so what it adds is not skipped."""
    return all(type(m) is nn.Linear for m in modules)


@dataclass
class Chunk:
    """`count` sequences whose attention is computed together, padded to `width`; tokens [start, end) packed."""

    start: int
    end: int
    count: int
    width: int
    rows: torch.Tensor | None  # positions of the tokens in the (count x width) layout; None: no padding
    key_pad: torch.Tensor | None  # (heads x count, 1, width), True on padding keys
    firsts: torch.Tensor  # (count,) packed offsets of each sequence's first token, relative to `start`
    relative: tuple | None = None  # relative_indices(att, width, device), shared by all layers


def plan(lengths: list[int], heads: int, max_scores: int | None,
         device: torch.device) -> tuple[list[int], list[Chunk]]:
    """Sequence order (longest first) and chunks: a sequence joins the current chunk when it is at least 7/8 of
    the chunk's width and the chunk's score tensor stays within `max_scores` elements (None: one chunk).
    `lengths` are host ints and the index tensors are built on the host and copied without a stream sync."""
    order = sorted(range(len(lengths)), key=lambda s: -lengths[s])
    groups: list[list[int]] = []
    for s in order:
        width = lengths[groups[-1][0]] if groups else 0
        if groups and (max_scores is None or (8 * lengths[s] >= 7 * width and
                                              (len(groups[-1]) + 1) * heads * width ** 2 <= max_scores)):
            groups[-1].append(s)
        else:
            groups.append([s])
    chunks, start = [], 0
    for group in groups:
        width, sizes = lengths[group[0]], [lengths[s] for s in group]
        rows = key_pad = None
        if any(n != width for n in sizes):
            rows = to_device(torch.cat([torch.arange(n) + i * width for i, n in enumerate(sizes)]), device)
            pad = torch.arange(width) >= torch.tensor(sizes).unsqueeze(1)  # (count, width)
            key_pad = to_device(pad.unsqueeze(0).expand(heads, -1, -1).reshape(heads * len(group), 1, width), device)
        firsts = to_device(torch.tensor([0, *sizes[:-1]]).cumsum(0), device)
        chunks.append(Chunk(start, start + sum(sizes), len(group), width, rows, key_pad, firsts))
        start += sum(sizes)
    return order, chunks
