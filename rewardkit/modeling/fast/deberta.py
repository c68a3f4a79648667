"""A faster forward for DeBERTa-v3 reward models, on the very same `DebertaV2ForSequenceClassification` weights.

Why: on a CPU every FLOP counts. transformers' eager DeBERTa runs the token-wise layers (projections, FFN,
LayerNorm: most of the FLOPs) on padding too, and its disentangled attention makes about ten full passes over
each (batch x heads, T, T) score tensor. Here:
- the token-wise layers see only the real tokens: hidden states are packed (N real tokens, H) and scattered into
  a padded (heads, sequences x width, head_dim) layout only around attention;
- on CPU, attention runs over chunks of sequences of similar length whose score tensors stay cache-sized; on
  CUDA the batch is one chunk;
- q, k, v come from one matmul, with the 1/sqrt(d x scale_factor) score scale folded into the query weights, so
  no full-size division; content->position scores are gathered first and q.kᵀ is accumulated into them
  (`baddbmm`); position->content is added in place, the key-padding mask is applied in place;
- relative-position indices are built once, and only the position buckets a chunk's width can reach are
  multiplied (fewer for short sequences);
- with a cls head, the last layer is computed for each sequence's first token only (the only output the head
  reads): its keys and values still come from every token, but its queries, attention rows, output projection
  and feed-forward shrink to one token per sequence;
- two autograd functions (`rewardkit.modeling.fast.ops`) keep less for backward: the gathers keep their index, not the
  score tensor they read, and the feed-forward keeps gelu's input, not also its output (recomputed).
Measured speed and memory against transformers' forward: bench/RESULTS.md.
The math is transformers' DebertaV2 forward (tests/unit/test_fast_deberta.py checks rewards and gradients against
it). Outputs at padding positions are not computed (nothing reads them). Inputs must be right-padded (`pad()` is).
Configs it does not cover (absolute position input, token types, the conv layer, embedding projection) use
transformers' forward. Each layer runs through `ops.layer_step` (sharded layers' weights are gathered around it by
FSDP2; with activation checkpointing it is recomputed in backward); projections wrapped by LoRA are called as modules.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rewardkit.modeling.devices import to_device
from rewardkit.modeling.fast.ops import (
    Chunk,
    GatherLast,
    feed_forward,
    layer_step,
    plain_linear,
    plan,
    relative_indices,
)


def supports(hf_model: nn.Module) -> bool:
    """True when `hf_model` is a DeBERTa-v2/v3 sequence classifier this forward reproduces exactly."""
    config = getattr(hf_model, "config", None)
    if config is None or getattr(config, "model_type", None) != "deberta-v2" or not hasattr(hf_model, "deberta"):
        return False
    pos_att_type = set(config.pos_att_type or [])
    return (config.relative_attention and not config.position_biased_input and config.type_vocab_size == 0
            and getattr(config, "conv_kernel_size", 0) == 0 and getattr(hf_model.deberta, "z_steps", 0) <= 1
            and getattr(config, "embedding_size", config.hidden_size) == config.hidden_size
            and pos_att_type <= {"c2p", "p2c"} and not getattr(config, "output_hidden_states", False))


def right_padded(attention_mask: torch.Tensor) -> bool:
    """True when every row is ones then zeros, starting with a real token (what `batching.pad` produces). It reads
    the device: callers that padded the rows themselves pass their lengths instead (`rewards(..., lengths)`)."""
    lengths = attention_mask.sum(1, keepdim=True)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return bool((lengths > 0).all()) and torch.equal(attention_mask.bool(), positions < lengths)


def scaled_query(att, scale: float):
    """The query projection with the 1/scale of the scores folded in: (query(t) for any t, q weight, q bias), the
    weight and bias pre-scaled for fusing (None when the projection is not a plain Linear: it is called instead)."""
    if not plain_linear(att.query_proj, att.key_proj, att.value_proj):
        return (lambda t: att.query_proj(t) / scale), None, None
    q_weight, q_bias = att.query_proj.weight / scale, att.query_proj.bias / scale
    return (lambda t: F.linear(t, q_weight, q_bias)), q_weight, q_bias


def projected(x: torch.Tensor, linears: list[nn.Module], fused: tuple | None) -> torch.Tensor:
    """x through `linears` side by side: one matmul over their concatenated weights, `fused` = (weights, biases)
    when they are plain Linear layers (the query's pre-scaled), else each module's own forward (LoRA)."""
    if fused is not None:
        return F.linear(x, torch.cat(fused[0]), torch.cat(fused[1]))
    return torch.cat([linear(x) for linear in linears], dim=-1)


def position_projections(att, rel_embeddings: torch.Tensor, query, scale: float
                         ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(pos_q, pos_k): the relative-position embeddings through the (pre-scaled) query and the key projections,
    the content ones when keys are shared (v3) or the model's own position projections; None where unused."""
    rel_embeddings = att.pos_dropout(rel_embeddings)
    if att.share_att_key:
        return query(rel_embeddings), att.key_proj(rel_embeddings)
    return (att.pos_query_proj(rel_embeddings) / scale if "p2c" in att.pos_att_type else None,
            att.pos_key_proj(rel_embeddings) if "c2p" in att.pos_att_type else None)


def attention(att, x: torch.Tensor, chunks: list[Chunk], rel_embeddings: torch.Tensor) -> torch.Tensor:
    """Disentangled self-attention of packed tokens x (N, H) -> context (N, H), chunk by chunk."""
    heads, dim = att.num_attention_heads, att.attention_head_size
    scale = math.sqrt(dim * (1 + len(att.pos_att_type)))
    hidden = heads * dim
    query, q_weight, q_bias = scaled_query(att, scale)
    fused = None if q_weight is None else ([q_weight, att.key_proj.weight, att.value_proj.weight],
                                           [q_bias, att.key_proj.bias, att.value_proj.bias])
    qkv = projected(x, [query, att.key_proj, att.value_proj], fused)  # (N, 3H), q already scaled
    pos_q_all, pos_k_all = position_projections(att, rel_embeddings, query, scale)
    contexts = []
    # split, not slices: the backward of a split is one concatenation, not a full-size zero tensor per slice
    for chunk, chunk_qkv in zip(chunks, qkv.split([c.end - c.start for c in chunks])):
        n, count, width = chunk.end - chunk.start, chunk.count, chunk.width
        heads_first = chunk_qkv.view(n, 3, heads, dim).permute(1, 2, 0, 3)  # (3, h, n, d)
        if chunk.rows is None:  # one sequence: its strided per-head views go to an fp32 bmm as they are, no copy
            # (a bf16 bmm on CPU copies interleaved per-head views at each use, forward and backward: copied once)
            padded = heads_first if count == 1 and chunk_qkv.dtype == torch.float32 else heads_first.contiguous()
        else:
            padded = heads_first.new_zeros(3, heads, count * width, dim).index_copy_(2, chunk.rows, heads_first)
        q, k, v = padded.unbind(0)  # each (h, count x width, d)
        c2p_index, p2c_index, lo, hi = chunk.relative

        def position_scores(t: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            """t (h, count x width, d) . pos[lo:hi] per head -> (h x count, width, P): one matmul per head."""
            per_head = pos[lo:hi].view(-1, heads, dim).permute(1, 2, 0)  # (h, d, P)
            return torch.bmm(t, per_head).view(heads * count, width, -1)

        shape = (heads * count, width, width)
        qb, kb, vb = (t.view(heads * count, width, dim) for t in (q, k, v))
        if "c2p" in att.pos_att_type:  # content -> position: scores[i, j] += q_i . pos_k[bucket(i - j)]
            scores = GatherLast.apply(position_scores(q, pos_k_all), c2p_index.expand(shape))
            scores = torch.baddbmm(scores, qb, kb.transpose(1, 2))
        else:
            scores = torch.bmm(qb, kb.transpose(1, 2))
        if "p2c" in att.pos_att_type:  # position -> content: scores[i, j] += k_j . pos_q[bucket(j - i)]
            scores = scores.add_(GatherLast.apply(position_scores(k, pos_q_all), p2c_index.expand(shape)).mT)
        if chunk.key_pad is not None:
            scores = scores.masked_fill_(chunk.key_pad, torch.finfo(scores.dtype).min)
        probs = att.dropout(torch.softmax(scores, dim=-1))
        context = torch.bmm(probs, vb).view(heads, count * width, dim)  # (h, count x width, d)
        if chunk.rows is not None:
            context = context[:, chunk.rows]
        contexts.append(context.permute(1, 0, 2).reshape(n, hidden))
    return contexts[0] if len(contexts) == 1 else torch.cat(contexts)


def first_token_attention(att, x: torch.Tensor, chunks: list[Chunk], rel_embeddings: torch.Tensor) -> torch.Tensor:
    """The attention context of each sequence's first token only: (sequences, H), in packed order. Keys and values
    still come from every token; the query side (one row of scores per sequence) costs next to nothing."""
    heads, dim = att.num_attention_heads, att.attention_head_size
    scale = math.sqrt(dim * (1 + len(att.pos_att_type)))
    hidden = heads * dim
    query, q_weight, _ = scaled_query(att, scale)
    fused = None if q_weight is None else ([att.key_proj.weight, att.value_proj.weight],
                                           [att.key_proj.bias, att.value_proj.bias])
    kv = projected(x, [att.key_proj, att.value_proj], fused)  # (N, 2H)
    pos_q_all, pos_k_all = position_projections(att, rel_embeddings, query, scale)
    contexts = []
    for chunk, chunk_kv in zip(chunks, kv.split([c.end - c.start for c in chunks])):
        n, count, width = chunk.end - chunk.start, chunk.count, chunk.width
        q = query(x[chunk.start + chunk.firsts]).view(count, heads, dim).transpose(0, 1)
        heads_first = chunk_kv.view(n, 2, heads, dim).permute(1, 2, 0, 3)  # (2, h, n, d)
        if chunk.rows is not None:
            heads_first = heads_first.new_zeros(2, heads, count * width, dim).index_copy_(2, chunk.rows, heads_first)
        k, v = (t.reshape(heads, count, width, dim) for t in heads_first.unbind(0))
        scores = torch.matmul(q.unsqueeze(2), k.transpose(-1, -2)).squeeze(2)  # (h, count, width)
        c2p_index, p2c_index, lo, _ = chunk.relative
        if "c2p" in att.pos_att_type:  # scores[0, j] += q_0 . pos_k[bucket(0 - j)]
            pos_k = pos_k_all[lo + c2p_index[0]].view(width, heads, dim).permute(1, 2, 0)  # (h, d, width)
            scores = scores + torch.bmm(q, pos_k)
        if "p2c" in att.pos_att_type:  # scores[0, j] += k_j . pos_q[bucket(j - 0)]
            pos_q = pos_q_all[lo + p2c_index[:, 0]].view(width, heads, dim).transpose(0, 1)  # (h, width, d)
            scores = scores + (k * pos_q.unsqueeze(1)).sum(-1)
        if chunk.key_pad is not None:
            scores = scores.masked_fill(chunk.key_pad.view(heads, count, width), torch.finfo(scores.dtype).min)
        probs = att.dropout(torch.softmax(scores, dim=-1))
        context = torch.matmul(probs.unsqueeze(2), v).squeeze(2)  # (h, count, d)
        contexts.append(context.transpose(0, 1).reshape(count, hidden))
    return contexts[0] if len(contexts) == 1 else torch.cat(contexts)


def encode(deberta: nn.Module, input_ids: torch.Tensor, lengths: list[int], max_scores: int | None,
           first_only: bool = False) -> tuple[torch.Tensor, list[int], list[int]]:
    """Last hidden states of the real tokens of right-padded rows (`lengths` real tokens each), packed longest
    sequence first: (N, H), with the sequence order and each sequence's token count. first_only: the last layer is
    computed for each sequence's first token only (all a cls head reads) and the result is (sequences, H)."""
    heads = deberta.encoder.layer[0].attention.self.num_attention_heads
    order, chunks = plan(lengths, heads, max_scores, input_ids.device)
    for chunk in chunks:
        chunk.relative = relative_indices(deberta.encoder.layer[0].attention.self, chunk.width, input_ids.device)
    total = input_ids.shape[1]
    tokens = to_device(torch.cat([torch.arange(lengths[s]) + s * total for s in order]), input_ids.device)
    emb = deberta.embeddings
    x = emb.dropout(emb.LayerNorm(emb.word_embeddings(input_ids.flatten()[tokens])))
    rel_embeddings = deberta.encoder.get_rel_embedding()
    last = len(deberta.encoder.layer) - 1
    for i, layer in enumerate(deberta.encoder.layer):
        x = layer_step(layer, encoder_layer, x, chunks, rel_embeddings, first_only and i == last)
    return x, order, [lengths[s] for s in order]


def encoder_layer(layer: nn.Module, x: torch.Tensor, chunks: list[Chunk], rel_embeddings: torch.Tensor,
                  first_only: bool) -> torch.Tensor:
    """One DebertaV2Layer on packed tokens (N, H) -> (N, H); first_only: for each sequence's first token only,
    (sequences, H)."""
    if first_only:
        firsts = torch.cat([chunk.start + chunk.firsts for chunk in chunks])
        context = first_token_attention(layer.attention.self, x, chunks, rel_embeddings)
        x = x[firsts]  # the residual stream of the first tokens
    else:
        context = attention(layer.attention.self, x, chunks, rel_embeddings)
    return feed_forward(layer, layer.attention.output(context, x))


# score elements (sequences x heads x width^2) per attention chunk on CPU: 4 MB of fp32, cache-sized (the sweep
# behind the value: bench/RESULTS.md, "Figures behind constants")
CPU_MAX_SCORES = 1 << 20


def rewards(hf_model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, pooling: str,
            lengths: list[int] | None = None) -> torch.Tensor:
    """(B,) rewards: cls = the sequence-classification head on each first token (as transformers computes it);
    mean = the same head on the masked mean of the last hidden states. Rows must be right-padded. `lengths`: each
    row's real tokens, as the host that padded them knows (else read from the mask: a device-to-host sync)."""
    max_scores = CPU_MAX_SCORES if input_ids.device.type == "cpu" else None
    lengths = attention_mask.sum(1).tolist() if lengths is None else list(lengths)
    hidden, order, sizes = encode(hf_model.deberta, input_ids, lengths, max_scores, pooling == "cls")
    if pooling == "cls":
        pooled = hidden  # each sequence's first token, in `order`
    else:
        sequence = to_device(torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes),
                                                     output_size=sum(sizes)), hidden.device)
        summed = hidden.new_zeros(len(sizes), hidden.shape[1]).index_add_(0, sequence, hidden)
        pooled = summed / to_device(torch.tensor(sizes, dtype=hidden.dtype), hidden.device).unsqueeze(1)
    out = hf_model.classifier(hf_model.dropout(hf_model.pooler(pooled.unsqueeze(1))))[:, 0]
    return out[to_device(torch.tensor(order).argsort(), out.device)]  # back to input order
