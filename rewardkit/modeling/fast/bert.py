"""A faster forward for BERT-family reward models (BERT, RoBERTa, ELECTRA sequence classifiers), on the very same
transformers weights.

Why: transformers' BERT forward runs the token-wise layers (q/k/v and output projections, feed-forward,
LayerNorms: most of the FLOPs) on padding too, and a batch of chosen and rejected answers pads every sequence to
the longest. Here, as in `rewardkit.modeling.fast.deberta`:
- the token-wise layers see only the real tokens: hidden states are packed (N real tokens, H) and scattered into a
  padded (sequences, heads, width, head_dim) layout only around attention;
- attention is torch's scaled_dot_product_attention over chunks of sequences of similar length
  (`deberta_ops.plan`), with a key-padding mask where a chunk has padding; on CUDA the batch is one chunk;
- q, k, v come from one matmul;
- the last layer is computed for each sequence's first token only (the only output a cls head reads): its keys
  and values still come from every token, but its queries, attention rows, output projection and feed-forward
  shrink to one token per sequence;
- the feed-forward keeps gelu's input, not also its output, for backward (`deberta_ops.feed_forward`).
The embeddings (word + token type + absolute position, RoBERTa's positions from padding_idx + 1, ELECTRA's
projection) are the model's own modules, run on the padded batch before packing: that costs little and keeps
them exactly as transformers computes them. tests/unit/test_fast_bert.py checks rewards and gradients against
transformers' forward. Inputs must be right-padded (`pad()` is). Measured speed: bench/RESULTS.md. Each layer runs
through `ops.layer_step` (FSDP2, activation checkpointing); projections wrapped by LoRA are called as modules.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rewardkit.modeling.devices import to_device
from rewardkit.modeling.fast.ops import Chunk, feed_forward, layer_step, plain_linear, plan


def _classes() -> dict[type, str]:
    from transformers import (
        BertForSequenceClassification,
        ElectraForSequenceClassification,
        RobertaForSequenceClassification,
    )

    return {BertForSequenceClassification: "bert", RobertaForSequenceClassification: "roberta",
            ElectraForSequenceClassification: "electra"}


def supports(hf_model: nn.Module) -> bool:
    """True when `hf_model` is exactly a BERT, RoBERTa or ELECTRA sequence classifier (not a subclass) whose
    config this forward reproduces: an encoder with absolute positions and no cross-attention."""
    config = getattr(hf_model, "config", None)
    kind = _classes().get(type(hf_model))
    if config is None or kind is None or config.model_type != kind:
        return False
    att = hf_model.base_model.encoder.layer[0].attention.self
    return (not config.is_decoder and not getattr(config, "add_cross_attention", False)
            and getattr(config, "position_embedding_type", "absolute") == "absolute"
            and att.num_attention_heads * att.attention_head_size == config.hidden_size
            and (kind != "bert" or hf_model.bert.pooler is not None))


def attention(att, x: torch.Tensor, chunks: list[Chunk], first_only: bool) -> torch.Tensor:
    """Self-attention of packed tokens x (N, H) -> context (N, H), chunk by chunk; first_only: the context of
    each sequence's first token only, (sequences, H) in packed order."""
    heads, dim = att.num_attention_heads, att.attention_head_size
    hidden = heads * dim
    scale = getattr(att, "scaling", dim ** -0.5)
    dropout = att.dropout.p if att.training else 0.0
    linears = (att.key, att.value) if first_only else (att.query, att.key, att.value)
    if plain_linear(*linears):  # (N, 3H), or (N, 2H) keys and values only, in one matmul
        projected = F.linear(x, torch.cat([m.weight for m in linears]), torch.cat([m.bias for m in linears]))
    else:  # LoRA-wrapped projections: each module's own forward
        projected = torch.cat([m(x) for m in linears], dim=-1)
    if first_only:
        firsts = torch.cat([chunk.start + chunk.firsts for chunk in chunks])
        queries = att.query(x[firsts]).split([c.count for c in chunks])
    parts = len(linears)
    contexts = []
    # split, not slices: the backward of a split is one concatenation, not a full-size zero tensor per slice
    for i, (chunk, part) in enumerate(zip(chunks, projected.split([c.end - c.start for c in chunks]))):
        count, width = chunk.count, chunk.width
        if chunk.rows is not None:  # scatter into (count x width) rows; padding rows stay zero
            part = part.new_zeros(count * width, parts * hidden).index_copy_(0, chunk.rows, part)
        heads_first = part.view(count, width, parts, heads, dim).permute(2, 0, 3, 1, 4)  # (parts, count, h, w, d)
        mask = None if chunk.key_pad is None else ~chunk.key_pad.view(count, 1, 1, width)  # True: a real key
        if first_only:
            k, v = heads_first.unbind(0)
            q = queries[i].view(count, 1, heads, dim).transpose(1, 2)  # (count, h, 1, d)
        else:
            q, k, v = heads_first.unbind(0)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale)
        context = context.transpose(1, 2).reshape(-1, hidden)  # (count x width, H), or (count, H)
        if chunk.rows is not None and not first_only:
            context = context[chunk.rows]
        contexts.append(context)
    return contexts[0] if len(contexts) == 1 else torch.cat(contexts)


def encode_first_tokens(base: nn.Module, input_ids: torch.Tensor, lengths: list[int],
                        token_type_ids: torch.Tensor | None, max_scores: int | None) -> tuple[torch.Tensor, list[int]]:
    """Last hidden state of each sequence's first token of right-padded rows (`lengths` real tokens each),
    (sequences, H), longest sequence first, with that sequence order."""
    order, chunks = plan(lengths, 1, max_scores, input_ids.device)
    total = input_ids.shape[1]
    tokens = to_device(torch.cat([torch.arange(lengths[s]) + s * total for s in order]), input_ids.device)
    x = base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # (B, T, E): transformers' own
    x = x.flatten(0, 1)[tokens]
    if hasattr(base, "embeddings_project"):  # ELECTRA with embedding_size != hidden_size
        x = base.embeddings_project(x)
    last = len(base.encoder.layer) - 1
    for i, layer in enumerate(base.encoder.layer):
        x = layer_step(layer, encoder_layer, x, chunks, i == last)
    return x, order


def encoder_layer(layer: nn.Module, x: torch.Tensor, chunks: list[Chunk], first_only: bool) -> torch.Tensor:
    """One BERT-family layer on packed tokens (N, H) -> (N, H); first_only: for each sequence's first token only,
    (sequences, H)."""
    context = attention(layer.attention.self, x, chunks, first_only)
    if first_only:
        x = x[torch.cat([chunk.start + chunk.firsts for chunk in chunks])]  # the first tokens' residual stream
    return feed_forward(layer, layer.attention.output(context, x))


# score elements (sequences x width^2, per head) per attention chunk on CPU; scaled_dot_product_attention tiles
# its scores, so the budget mainly bounds the padded copies around it (the sweep: bench/RESULTS.md)
CPU_MAX_SCORES = 1 << 18


def rewards(hf_model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None, lengths: list[int] | None = None) -> torch.Tensor:
    """(B,) rewards: the model's sequence-classification head on each first token, as transformers computes it
    (BERT: pooler, dropout, classifier; RoBERTa and ELECTRA: their classification heads). Rows must be
    right-padded; `lengths`: each row's real tokens, as the host knows them (else read from the mask)."""
    max_scores = CPU_MAX_SCORES if input_ids.device.type == "cpu" else None
    lengths = attention_mask.sum(1).tolist() if lengths is None else list(lengths)
    first, order = encode_first_tokens(hf_model.base_model, input_ids, lengths, token_type_ids, max_scores)
    if hf_model.config.model_type == "bert":
        out = hf_model.classifier(hf_model.dropout(hf_model.bert.pooler(first.unsqueeze(1))))[:, 0]
    else:  # RobertaClassificationHead and ElectraClassificationHead read features[:, 0]
        out = hf_model.classifier(first.unsqueeze(1))[:, 0]
    return out[to_device(torch.tensor(order).argsort(), out.device)]  # back to input order
