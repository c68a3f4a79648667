"""Pair encoding shared by training, evaluation and scoring: a (prompt, response) becomes one model input of at
most `max_length` tokens, in the input format of the base's family (`InputFormat`):
- encoders (DeBERTa, BERT, RoBERTa, ELECTRA, ModernBERT): the text pair `tokenizer(prompt, response)`, e.g.
  `[CLS] prompt [SEP] response [SEP]`, with token_type_ids 0 up to the response and 1 from it when the base has
  token types (BERT, ELECTRA);
- decoder-only classifiers (Llama, Qwen2, ...): `tokenizer(prompt + response)` followed by EOS; transformers'
  head reads the last non-pad token.

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


TEXT_PAIR, CONCAT = "text_pair", "concat"
RECIPES = {TEXT_PAIR: "tokenizer(prompt, response)", CONCAT: "tokenizer(prompt + response + eos_token)"}


@dataclass(frozen=True)
class PairTemplate:
    """The special tokens around a (prompt, response), learnt from the tokenizer: prefix A middle B suffix.

    kind TEXT_PAIR: what `tokenizer(prompt, response)` adds; CONCAT: what `tokenizer(prompt + response)` adds
    (middle is empty), with EOS appended to the suffix. segment_ids: the input carries token_type_ids, 0 up to B
    and 1 from B on (BERT-style text pairs)."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    kind: str = TEXT_PAIR
    segment_ids: bool = False

    @property
    def n_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @property
    def recipe(self) -> str:
        """How to build this input with Hugging Face's tokenizer (recorded in reward_model.json)."""
        return RECIPES[self.kind]


def _find(full: list[int], a: list[int], b: list[int]) -> tuple[int, int] | None:
    """Positions (i, j) where a and then b occur in full, or None."""
    for i in range(len(full) - len(a) + 1):
        if full[i:i + len(a)] != a:
            continue
        for j in range(i + len(a), len(full) - len(b) + 1):
            if full[j:j + len(b)] == b:
                return i, j
    return None


def pair_template(tokenizer, kind: str = TEXT_PAIR, token_types: bool = False) -> PairTemplate:
    """Probe the tokenizer on two words to find where its special tokens go.

    token_types: the model reads token_type_ids (a type vocabulary of 2 or more); they are used when the tokenizer
    makes them 0 for the first text and 1 for the second, as BERT's does."""
    a = tokenizer("alpha", add_special_tokens=False)["input_ids"]
    b = tokenizer("omega", add_special_tokens=False)["input_ids"]
    name = type(tokenizer).__name__
    if kind == CONCAT:
        full = tokenizer("alpha")["input_ids"]
        at = _find(full, a, [])
        if at is None or tokenizer.eos_token_id is None:
            raise UserError(f"tokenizer {name} has no EOS token or does not keep a text whole; a decoder-only "
                            "reward model needs tokenizer(prompt + response) followed by EOS")
        suffix = tuple(full[at[0] + len(a):])
        if not suffix or suffix[-1] != tokenizer.eos_token_id:
            suffix += (tokenizer.eos_token_id,)
        return PairTemplate(tuple(full[:at[0]]), (), suffix, CONCAT)
    encoded = tokenizer("alpha", "omega")
    full = encoded["input_ids"]
    at = _find(full, a, b)
    if at is None:
        raise UserError(f"tokenizer {name} does not encode text pairs as prefix+A+middle+B+suffix; use a base "
                        "whose tokenizer supports tokenizer(prompt, response)")
    i, j = at
    template = PairTemplate(tuple(full[:i]), tuple(full[i + len(a):j]), tuple(full[j + len(b):]))
    types = encoded.get("token_type_ids")
    if token_types and types is not None and any(types):
        if types != [0] * j + [1] * (len(full) - j):
            raise UserError(f"tokenizer {name} makes token_type_ids {types} for a text pair; rewardkit supports "
                            "0 for the prompt and 1 from the response on (BERT-style)")
        template = PairTemplate(template.prefix, template.middle, template.suffix, TEXT_PAIR, segment_ids=True)
    return template


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


def response_start(n_ids: int, n_response: int, template: PairTemplate) -> int:
    """Where the response starts in a truncated sequence of n_ids tokens whose response had n_response tokens:
    after the prefix, the kept prompt and the middle (the response is cut only when the prompt kept nothing)."""
    return n_ids - len(template.suffix) - min(n_response, n_ids - template.n_special)


@dataclass
class EncodedSequences:
    """One encoded (prompt, response) sequence per input row, and whether its prompt / response was cut.
    `segments[i]` is where the response starts in `ids[i]` (its token_type_ids turn 1), when the format has
    segment ids; None otherwise."""

    ids: list[list[int]] = field(default_factory=list)
    prompt_cut: list[bool] = field(default_factory=list)
    response_cut: list[bool] = field(default_factory=list)
    segments: list[int] | None = None


def tokenize_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Plain token ids (no special tokens) of many texts, in one batched call of the fast tokenizer. verbose=False:
    texts longer than the model are expected here (they are truncated afterwards), so no warning about them."""
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


def split_concatenations(tokenizer, prompts: list[str], responses: list[str]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) of each `prompt + response` tokenized as ONE text (what a decoder's tokenizer
    sees), cut where the response's first character starts: a token across the boundary stays with the prompt."""
    joined = tokenizer([p + r for p, r in zip(prompts, responses)], add_special_tokens=False, verbose=False,
                       return_offsets_mapping=True)
    out = []
    for prompt, ids, offsets in zip(prompts, joined["input_ids"], joined["offset_mapping"]):
        cut = next((k for k, (start, _) in enumerate(offsets) if start >= len(prompt)), len(ids))
        out.append((ids[:cut], ids[cut:]))
    return out


def encode_sequences(tokenizer, prompts: list[str], responses: list[str], max_length: int,
                     template: PairTemplate | None = None) -> EncodedSequences:
    """Encode (prompt, response) rows with the truncation policy. For text pairs each distinct prompt is
    tokenized once; a decoder's input is tokenized as one text (see `split_concatenations`)."""
    template = template or pair_template(tokenizer)
    if template.kind == CONCAT:
        parts = split_concatenations(tokenizer, prompts, responses)
    else:
        unique = list(dict.fromkeys(prompts))
        prompt_ids = dict(zip(unique, tokenize_texts(tokenizer, unique)))
        parts = zip((prompt_ids[p] for p in prompts), tokenize_texts(tokenizer, responses))
    out = EncodedSequences(segments=[] if template.segment_ids else None)
    for prompt, response in parts:
        ids, prompt_cut, response_cut = truncate_pair(prompt, response, template, max_length)
        out.ids.append(ids)
        out.prompt_cut.append(prompt_cut)
        out.response_cut.append(response_cut)
        if out.segments is not None:
            out.segments.append(response_start(len(ids), len(response), template))
    return out


def encode_both_answers(tokenizer, rows: list[dict], max_length: int,
                        template: PairTemplate | None = None) -> EncodedSequences:
    """`encode_sequences` of every row's chosen answer, then every row's rejected one (2n sequences), in one call,
    so each prompt is tokenized once for both."""
    prompts = [r["prompt"] for r in rows]
    responses = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    return encode_sequences(tokenizer, prompts + prompts, responses, max_length, template)


def identical_after_truncation(enc: EncodedSequences, i: int, j: int) -> bool:
    """Whether sequences i and j (a pair's chosen and rejected answers) became the same model input after
    truncation (same ids and, with segment ids, the same response start): such a pair carries no signal, so it is
    not trained on (evaluation keeps it: a tie)."""
    return enc.ids[i] == enc.ids[j] and (enc.segments is None or enc.segments[i] == enc.segments[j])


def row_margin(row: dict) -> float:
    """A row's optional numeric `margin` (validated upstream), 0.0 when absent."""
    margin = row.get("margin", 0.0)
    return float(margin) if isinstance(margin, (int, float)) and not isinstance(margin, bool) else 0.0
