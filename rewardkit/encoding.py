"""Pair encoding shared by training, evaluation and scoring: `[CLS] prompt [SEP] response [SEP]` in `max_length`
tokens, the way DeBERTa reward models are used (`tokenizer(prompt, response)`).

Truncation policy: the response is kept whole and the prompt is cut from the LEFT, because the latest turns of a
conversation matter most; only a response that alone exceeds the budget is cut, from the right (the prompt then
keeps nothing).

Example with max_length=8 and the DeBERTa template ([CLS] p [SEP] r [SEP], 3 special tokens, budget 5):
    prompt  = [p1 p2 p3 p4]   response = [r1 r2]
    ->  [CLS] p2 p3 p4 [SEP] r1 r2 [SEP]          (prompt cut from the left, response whole)
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rewardkit.errors import UserError

TRUNCATION_POLICY = "prompt cut from the left first; response cut from the right only if it alone exceeds the budget"


@dataclass(frozen=True)
class PairTemplate:
    """Special tokens around a text pair, learnt from the tokenizer itself: prefix A middle B suffix."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]

    @property
    def n_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


def pair_template(tokenizer) -> PairTemplate:
    """Probe `tokenizer(a, b)` against the plain encodings of a and b to find where the special tokens go."""
    a = tokenizer("alpha", add_special_tokens=False)["input_ids"]
    b = tokenizer("omega", add_special_tokens=False)["input_ids"]
    full = tokenizer("alpha", "omega")["input_ids"]
    for i in range(len(full) - len(a) + 1):
        if full[i:i + len(a)] != a:
            continue
        for j in range(i + len(a), len(full) - len(b) + 1):
            if full[j:j + len(b)] == b:
                return PairTemplate(tuple(full[:i]), tuple(full[i + len(a):j]), tuple(full[j + len(b):]))
    raise UserError(f"tokenizer {type(tokenizer).__name__} does not encode text pairs as prefix+A+middle+B+suffix; "
                    "use a base whose tokenizer supports tokenizer(prompt, response)")


def truncate_pair(prompt: list[int], response: list[int], template: PairTemplate,
                  max_length: int) -> tuple[list[int], bool, bool]:
    """Token ids of one (prompt, response) within max_length, and whether prompt / response were cut."""
    budget = max_length - template.n_special
    if budget < 1:
        raise UserError(f"train.max_length={max_length} leaves no room for text after {template.n_special} "
                        "special tokens; raise train.max_length")
    response_cut = len(response) > budget
    response = response[:budget]
    room = budget - len(response)
    prompt_cut = len(prompt) > room
    prompt = prompt[max(0, len(prompt) - room):] if room else []
    ids = [*template.prefix, *prompt, *template.middle, *response, *template.suffix]
    return ids, prompt_cut, response_cut


@dataclass
class EncodedSequences:
    """One encoded (prompt, response) sequence per input row, and whether its prompt / response was cut."""

    ids: list[list[int]] = field(default_factory=list)
    prompt_cut: list[bool] = field(default_factory=list)
    response_cut: list[bool] = field(default_factory=list)


def tokenize_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Plain token ids (no special tokens) of many texts, in one batched call of the fast tokenizer."""
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def encode_sequences(tokenizer, prompts: list[str], responses: list[str], max_length: int,
                     template: PairTemplate | None = None) -> EncodedSequences:
    """Encode (prompt, response) rows with the truncation policy; each distinct prompt is tokenized once."""
    template = template or pair_template(tokenizer)
    unique = list(dict.fromkeys(prompts))
    prompt_ids = dict(zip(unique, tokenize_texts(tokenizer, unique)))
    out = EncodedSequences()
    for prompt, response in zip(prompts, tokenize_texts(tokenizer, responses)):
        ids, prompt_cut, response_cut = truncate_pair(prompt_ids[prompt], response, template, max_length)
        out.ids.append(ids)
        out.prompt_cut.append(prompt_cut)
        out.response_cut.append(response_cut)
    return out


def encode_both_answers(tokenizer, rows: list[dict], max_length: int) -> EncodedSequences:
    """`encode_sequences` of every row's chosen answer, then every row's rejected one (2n sequences), in one call,
    so each prompt is tokenized once for both."""
    prompts = [r["prompt"] for r in rows]
    responses = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    return encode_sequences(tokenizer, prompts + prompts, responses, max_length)


def row_margin(row: dict) -> float:
    """A row's optional numeric `margin` (validated upstream), 0.0 when absent."""
    margin = row.get("margin", 0.0)
    return float(margin) if isinstance(margin, (int, float)) and not isinstance(margin, bool) else 0.0


@dataclass
class TrainingPairs:
    """Pre-tokenized training pairs. `chosen[i]`/`rejected[i]` are full input ids; `margin[i]` is 0.0 when absent;
    `row_index[i]` is the input row the pair came from; `counts` are the truncation counts for the metrics."""

    chosen: list[list[int]] = field(default_factory=list)
    rejected: list[list[int]] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)
    row_index: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def encode_training_pairs(tokenizer, rows: list[dict], max_length: int, use_margin: bool = True) -> TrainingPairs:
    """Encode preference rows for training. Pairs that become identical after truncation carry no signal: they are
    excluded and counted. A pair counts as prompt- (response-) truncated when either of its sequences was cut."""
    enc = encode_both_answers(tokenizer, rows, max_length)
    n = len(rows)
    pairs = TrainingPairs()
    for i, (c, r) in enumerate(zip(enc.ids[:n], enc.ids[n:])):
        if c == r:
            continue
        pairs.chosen.append(c)
        pairs.rejected.append(r)
        pairs.margin.append(row_margin(rows[i]) if use_margin else 0.0)
        pairs.row_index.append(i)
    pairs.counts = {
        "pairs_read": n,
        "pairs_used": len(pairs.chosen),
        "identical_after_truncation": n - len(pairs.chosen),
        "prompt_truncated": sum(a or b for a, b in zip(enc.prompt_cut[:n], enc.prompt_cut[n:])),
        "response_truncated": sum(a or b for a, b in zip(enc.response_cut[:n], enc.response_cut[n:])),
    }
    return pairs
