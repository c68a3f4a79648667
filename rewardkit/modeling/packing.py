"""Prefix sharing for causal decoders: sequences that begin with the same tokens (a pair's chosen and rejected
answers after one prompt, best-of-n candidates) run as ONE packed group `[prefix | answer 1 | answer 2 | ...]`, the
prefix computed once, several groups packed into a row with no padding between them.

In a causal model a token's hidden state depends only on the tokens before it, so an answer that attends to the
shared prefix and to itself, with position ids continuing from the prefix's end, gets exactly the hidden states of
its own unpacked sequence. The mask is built by transformers' own `create_causal_mask` with an `and_mask_function`
(a boolean mask for sdpa, an additive one for eager, a BlockMask for flex_attention), so the model is
transformers' own and every attention implementation that takes a custom mask runs it. Encoders are bidirectional
(a prompt token sees the answer after it): nothing can be shared there.

Example, one pair with prompt p1 p2 and answers c1 c2 / r1, in one row with a second group g:
    input_ids    p1 p2 c1 c2 r1 | g1 g2 ...
    position_ids  0  1  2  3  2 |  0  1 ...
    answer        0  0  1  1  2 |  0  1 ...       (0: the shared prefix; r1 sees p1 p2 r1, not c1 c2)
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from rewardkit.encoding.families import is_decoder_only
from rewardkit.modeling.batching import pad_batch

MASKED_ATTENTION = ("sdpa", "eager", "flex_attention")  # implementations that honour a custom 4D mask / BlockMask
MIN_SHARED = 16  # fewer common leading tokens than this (a BOS, a system line) do not make two sequences a group
SORT_TOKENS = 64  # sequences are grouped after sorting by their first tokens


class Layout(NamedTuple):
    """Where each packed token belongs, all (R, T) but `ends`: its position id, its group (-1: padding at a row's
    end), its answer within the group (0: the shared prefix), and `ends` (N,): the flat index r * T + t of each
    input sequence's last token, in input order (where its reward is read)."""

    position_ids: torch.Tensor
    group: torch.Tensor
    answer: torch.Tensor
    ends: torch.Tensor


class Packed(NamedTuple):
    """A packed batch in the order RewardModel.forward takes it (no attention_mask or token types: the layout says
    who sees whom)."""

    input_ids: torch.Tensor
    attention_mask: None
    token_type_ids: None
    layout: Layout

    def to(self, device: torch.device) -> Packed:
        move = (lambda t: t.pin_memory().to(device, non_blocking=True)) if device.type == "cuda" else \
            (lambda t: t.to(device))
        return Packed(move(self.input_ids), None, None, Layout(*map(move, self.layout)))


def supports(hf_model) -> bool:
    """A decoder-only classifier with a `score` head whose every layer attends to all earlier tokens and whose
    attention takes a custom mask (`unsupported_reason` says why not)."""
    return unsupported_reason(hf_model) is None


def unsupported_reason(hf_model) -> str | None:
    """Why `hf_model`'s pairs cannot be packed, or None. Sliding-window layers (Mistral/Qwen2 with a window,
    Gemma 2/3): transformers builds their window from row indices (q_idx - kv_idx), and in a packed row the
    rejected answer sits after the chosen one, so its window would cover the wrong tokens."""
    model = unwrap(hf_model)
    config = model.config
    layer_types = getattr(config, "layer_types", None)
    if not is_decoder_only(config) or not hasattr(model, "score"):
        return "not a causal decoder classifier with a score head (an encoder's prompt sees the answer)"
    if (any(t != "full_attention" for t in layer_types) if layer_types is not None
            else getattr(config, "sliding_window", None) is not None):
        return (f"{type(model).__name__} has sliding-window attention layers (window {config.sliding_window}), "
                "whose window transformers counts in a row's positions, not in a packed pair's")
    if config._attn_implementation not in MASKED_ATTENTION:
        return f"attention {config._attn_implementation!r} takes no custom mask (sdpa, eager and flex_attention do)"
    return None


def unwrap(hf_model):
    """The transformers classifier inside a PEFT wrapper (LoRA), or the model itself."""
    return hf_model.get_base_model() if hasattr(hf_model, "get_base_model") else hf_model


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens a and b have in common."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n


def prefix_groups(sequences: Sequence[Sequence[int]], max_tokens: int) -> list[tuple[list[int], int]]:
    """(member indices, shared prefix length) of groups of sequences that start alike, each at most `max_tokens`
    packed tokens. Sorted by their first tokens, a sequence joins the group before it when it shares at least
    MIN_SHARED tokens with the group's first member and does not shorten the group's prefix; every member keeps
    at least one token of its own (its last, where the reward is read)."""
    order = sorted(range(len(sequences)), key=lambda i: tuple(sequences[i][:SORT_TOKENS]))
    groups: list[tuple[list[int], int]] = []
    for i in order:
        if groups:
            members, prefix = groups[-1]
            common = min(shared_prefix(sequences[members[0]], sequences[i]), len(sequences[i]) - 1,
                         len(sequences[members[0]]) - 1)
            joined = (members + [i], common if len(members) == 1 else prefix)
            if (common >= MIN_SHARED and (len(members) == 1 or common >= prefix)
                    and group_tokens(sequences, joined) <= max_tokens):
                groups[-1] = joined
                continue
        groups.append(([i], 0))
    return groups


def group_tokens(sequences: Sequence[Sequence[int]], group: tuple[list[int], int]) -> int:
    members, prefix = group
    return prefix + sum(len(sequences[m]) - prefix for m in members)


def with_prefix(sequences: Sequence[Sequence[int]], members: list[int]) -> tuple[list[int], int]:
    """(members, the leading tokens they all share), every member keeping at least its last token."""
    if len(members) < 2:
        return members, 0
    first = sequences[members[0]]
    prefix = min(min(len(sequences[m]) for m in members) - 1,
                 *(shared_prefix(first, sequences[m]) for m in members[1:]))
    return members, prefix


def pair_groups(n_pairs: int) -> list[list[int]]:
    """The groups of a pair batch (sequences [0, n) chosen, [n, 2n) rejected): each pair's two answers."""
    return [[i, n_pairs + i] for i in range(n_pairs)]


def rows_of(sizes: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: group indices per row, each row at most `capacity` tokens (a larger group alone)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for g in sorted(range(len(sizes)), key=lambda g: -sizes[g]):
        r = next((r for r in range(len(rows)) if room[r] >= sizes[g]), None)
        if r is None:
            rows.append([]), room.append(max(capacity, sizes[g]))
            r = len(rows) - 1
        rows[r].append(g)
        room[r] -= sizes[g]
    return rows


def pack(sequences: Sequence[Sequence[int]], pad_id: int, groups: list[list[int]] | None = None,
         multiple: int = 8) -> Packed:
    """Sequences as packed rows, each group's common prefix once (`groups`: lists of sequence indices; default:
    found by `prefix_groups`); rows as wide as the largest group (rounded up to `multiple`), so rows hold several
    groups and padding stays at the rows' ends."""
    if groups is None:
        groups = prefix_groups(sequences, 2 * max(len(s) for s in sequences))
    else:
        groups = [with_prefix(sequences, list(g)) for g in groups]
    sizes = [group_tokens(sequences, g) for g in groups]
    width = -(-max(sizes) // multiple) * multiple
    rows = rows_of(sizes, width)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position, owner = torch.zeros_like(ids), torch.full_like(ids, -1)
    answer, ends = torch.zeros_like(ids), torch.zeros(len(sequences), dtype=torch.long)
    for r, row in enumerate(rows):
        t = 0
        for g in row:
            members, prefix = groups[g]
            first = sequences[members[0]]
            ids[r, t:t + prefix] = torch.as_tensor(np.asarray(first[:prefix], dtype=np.int64))
            position[r, t:t + prefix] = torch.arange(prefix)
            owner[r, t:t + sizes[g]] = g
            t += prefix
            for k, m in enumerate(members, start=1):
                own = np.asarray(sequences[m][prefix:], dtype=np.int64)
                ids[r, t:t + len(own)] = torch.from_numpy(own)
                position[r, t:t + len(own)] = torch.arange(prefix, prefix + len(own))
                answer[r, t:t + len(own)] = k
                t += len(own)
                ends[m] = r * width + t - 1
    return Packed(ids, None, None, Layout(position, owner, answer, ends))


def group_mask_function(group: torch.Tensor, answer: torch.Tensor):
    """transformers' mask-function signature: a query sees a key of its own group that is the shared prefix or
    its own answer (causality is added by create_causal_mask)."""
    def mask(batch_idx, head_idx, q_idx, kv_idx):
        kv_answer = answer[batch_idx, kv_idx]
        return ((group[batch_idx, q_idx] == group[batch_idx, kv_idx])
                & ((kv_answer == 0) | (kv_answer == answer[batch_idx, q_idx])))
    return mask


def packed_rewards(hf_model, input_ids: torch.Tensor, layout: Layout) -> torch.Tensor:
    """(N,) rewards of a packed batch, in input order: transformers' decoder body under the group mask, its own
    score head at each sequence's last token (what the classifier's last-non-pad pooling reads)."""
    from transformers.masking_utils import create_causal_mask

    model = unwrap(hf_model)
    body = getattr(model, model.base_model_prefix)
    shape_of = torch.empty((*input_ids.shape, 0), dtype=body.get_input_embeddings().weight.dtype,
                           device=input_ids.device)  # create_causal_mask reads batch, length, dtype, device
    mask = create_causal_mask(config=body.config, inputs_embeds=shape_of, attention_mask=None, past_key_values=None,
                              and_mask_function=group_mask_function(layout.group, layout.answer))
    hidden = body(input_ids=input_ids, attention_mask=mask, position_ids=layout.position_ids,
                  use_cache=False).last_hidden_state  # (R, T, H)
    return model.score(hidden.flatten(0, 1)[layout.ends])[:, 0]


def batch_for(model, sequences: Sequence[Sequence[int]], pad_id: int, multiple: int = 8,
              segments: list[int] | None = None):
    """The input for `model` (a RewardModel, possibly DDP-wrapped) of a pair batch (chosen then rejected):
    packed pairs when it shares prefixes, else the right-padded batch (`batching.pad_batch`)."""
    if getattr(getattr(model, "module", model), "share_prefix", False):
        return pack(sequences, pad_id, pair_groups(len(sequences) // 2), multiple)
    return pad_batch(sequences, pad_id, multiple, segments)


def packed_batches(sequences: Sequence[Sequence[int]], groups: list[list[int]] | None, max_sequences: int,
                   max_tokens: int) -> list[list[list[int]]]:
    """Inference batches of groups (lists of sequence indices), largest first, each at most `max_sequences`
    sequences and `max_tokens` packed tokens (a larger group alone). A group larger than a row may be (the lesser
    of max_tokens and 4x the longest sequence) is cut into pieces; without `groups`, `prefix_groups` finds them."""
    cap = min(max_tokens, 4 * max(len(s) for s in sequences))
    if groups is None:
        groups = [m for m, _ in prefix_groups(sequences, cap)]
    pieces = []
    for members in groups:
        piece: list[int] = []
        for m in members:
            if piece and (group_tokens(sequences, with_prefix(sequences, piece + [m])) > cap
                          or len(piece) >= max_sequences):
                pieces.append(piece)
                piece = []
            piece.append(m)
        pieces.append(piece)
    sizes = [group_tokens(sequences, with_prefix(sequences, p)) for p in pieces]
    batches, tokens, count = [], 0, 0
    for k in sorted(range(len(pieces)), key=lambda k: -sizes[k]):
        if not batches or tokens + sizes[k] > max_tokens or count + len(pieces[k]) > max_sequences:
            batches.append([])
            tokens, count = 0, 0
        batches[-1].append(pieces[k])
        tokens, count = tokens + sizes[k], count + len(pieces[k])
    return batches


def pack_batch(sequences: Sequence[Sequence[int]], batch: list[list[int]], pad_id: int) -> Packed:
    """`pack` of one inference batch (groups of indices into `sequences`); rewards come in the order of the
    batch's members, group after group."""
    members = [m for g in batch for m in g]
    local, start = [], 0
    for g in batch:
        local.append(list(range(start, start + len(g))))
        start += len(g)
    return pack([sequences[m] for m in members], pad_id, local)
