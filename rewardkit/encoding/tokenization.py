"""The tokenize stage's job: the train and eval splits tokenized once, streamed into token stores, with the
tokenizer they were made with (a scratch base's is trained here, on the training split).

Rows stream in chunks, so memory stays flat for any split size; the fast tokenizer encodes each chunk on all
cores. Conversational rows are rendered first: with the tokenizer's chat template when it has one (and
model.chat_template is auto), else with the plain template (`rewardkit.data.formats`). Training pairs that become
identical after truncation carry no signal and are left out (counted); evaluation keeps every pair.
"""
from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass
from hashlib import blake2b
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from rewardkit.config import SCRATCH_BASES, ModelConfig, TrainConfig
from rewardkit.data.formats import CHAT_TEMPLATE, PLAIN, render, render_plain_prompt, render_plain_response
from rewardkit.encoding.families import input_template
from rewardkit.encoding.scratch import scratch_config, train_scratch_tokenizer
from rewardkit.encoding.store import META_COLUMNS, StoreWriter, TokenStore
from rewardkit.encoding.templates import (
    TRUNCATION_POLICY,
    PairTemplate,
    encode_both_answers,
    identical_after_truncation,
    row_margin,
)
from rewardkit.encoding.tokenizers import load_config, load_tokenizer, quiet_transformers
from rewardkit.errors import UserError
from rewardkit.io import atomic_path, directory_sha256, file_sha256, read_jsonl
from rewardkit.text import normalise

CHUNK_ROWS = 4096
# Characters of distinct training texts a scratch tokenizer is trained on: SentencePiece's trainer holds its whole
# corpus (tokenize at 200k HH-length pairs peaked at 2,138 MB fed the whole split, 661 MB with this sample: issue #28
# item 8, GNU time, not yet a bench/RESULTS.md row), and 10M characters (2M words) are far more than an 8k-30k
# vocabulary needs. Beyond it, an even sample over the whole split.
MAX_TOKENIZER_CHARS = 10_000_000


@dataclass(frozen=True)
class TokenizePaths:
    train: Path
    eval: Path
    train_store: Path
    eval_store: Path
    tokenizer: Path


def tokenizer_sample(path: Path, max_chars: int = MAX_TOKENIZER_CHARS) -> Iterator[str]:
    """The distinct prompt/chosen/rejected texts of a split (plain rendering) in file order: all of them when they
    hold at most `max_chars` characters, else texts evenly spaced over the split holding at most that many. Two
    streaming passes with 16 bytes a text in between (digest and length), never a set of the texts themselves."""
    def texts() -> Iterator[str]:
        for row in read_jsonl(path):
            yield render_plain_prompt(row["prompt"])
            yield render_plain_response(row["chosen"])
            yield render_plain_response(row["rejected"])

    digests, lengths = array("Q"), array("q")  # 8 bytes a text each, as numpy arrays would hold them
    for text in texts():
        digests.append(int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                                      "little"))
        lengths.append(len(text))
    _, first = np.unique(np.frombuffer(digests, dtype=np.uint64), return_index=True)
    first = np.sort(first)  # each distinct text's first occurrence, in file order
    picked = first[evenly_within(np.frombuffer(lengths, dtype=np.int64)[first], max_chars)]
    keep = np.zeros(len(digests), dtype=bool)
    keep[picked] = True
    return (t for t, k in zip(texts(), keep) if k)


def evenly_within(lengths: np.ndarray, budget: int) -> np.ndarray:
    """Indices of items evenly spaced over `lengths` whose lengths sum to at most `budget` (all when they fit)."""
    if int(lengths.sum()) <= budget:
        return np.arange(len(lengths))
    count = max(1, int(len(lengths) * budget / lengths.sum()))
    while True:  # the sample's mean length can exceed the whole's: shrink until it fits
        picked = np.unique(np.linspace(0, len(lengths) - 1, count).round().astype(np.int64))
        if int(lengths[picked].sum()) <= budget or count == 1:
            return picked
        count = int(count * 0.95)


def prepare_tokenizer(model_cfg: ModelConfig, train_split: Path, out_dir: Path):
    """(tokenizer, config) of the base, the tokenizer saved to `out_dir`: a scratch base's trained on the
    training split, any other base's own (with a pad token added for decoders that lack one)."""
    from transformers import AutoTokenizer

    if model_cfg.name in SCRATCH_BASES:
        with atomic_path(out_dir, is_dir=True) as tmp:
            train_scratch_tokenizer(model_cfg.name, tokenizer_sample(train_split), model_cfg.scratch_vocab_size, tmp)
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
        return tokenizer, scratch_config(model_cfg.name, tokenizer)[0]
    config = load_config(model_cfg.name)
    tokenizer = load_tokenizer(model_cfg.name, config)
    with atomic_path(out_dir, is_dir=True) as tmp, quiet_transformers():
        tokenizer.save_pretrained(str(tmp))
    return tokenizer, config


def rendered(rows: list[dict], renderer) -> list[dict]:
    """Rows with text prompt/chosen/rejected (message lists rendered); other fields kept."""
    out = []
    for row in rows:
        prompt, chosen = render(row["prompt"], row["chosen"], renderer)
        _, rejected = render(row["prompt"], row["rejected"], renderer)
        out.append({**row, "prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


COUNTS = ("pairs_read", "pairs_used", "identical_after_truncation", "prompt_truncated", "response_truncated")


def tokenize_rows(rows: Iterable[dict], store: Path, tokenizer, template: PairTemplate, max_length: int, renderer,
                  keep_identical: bool, meta: dict) -> dict:
    """Stream preference rows (any iterable, read CHUNK_ROWS at a time) into a token store; returns the store's
    metadata with the truncation counts. keep_identical: keep the pairs that became identical after truncation
    (evaluation scores them as ties; training leaves them out)."""
    counts = dict.fromkeys(COUNTS, 0)
    rows = iter(rows)
    with StoreWriter(store) as writer:
        while chunk := list(islice(rows, CHUNK_ROWS)):
            add_chunk(writer, chunk, counts, tokenizer, template, max_length, renderer, keep_identical)
        counts["identical_after_truncation"] = counts["pairs_read"] - counts["pairs_used"]
        return writer.close({**meta, **counts})


def add_chunk(writer: StoreWriter, chunk: list[dict], counts: dict, tokenizer, template: PairTemplate,
              max_length: int, renderer, keep_identical: bool) -> None:
    """Render, encode and append one chunk of rows (row numbers continue from counts["pairs_read"])."""
    try:
        chunk = rendered(chunk, renderer)
    except ValueError as e:
        raise UserError(str(e)) from None
    enc = encode_both_answers(tokenizer, chunk, max_length, template)
    n, first_row = len(chunk), counts["pairs_read"]
    picked = [i for i in range(n) if keep_identical or not identical_after_truncation(enc, i, n + i)]
    counts["pairs_read"] += n
    counts["pairs_used"] += len(picked)
    counts["prompt_truncated"] += sum(enc.prompt_cut[i] or enc.prompt_cut[n + i] for i in range(n))
    counts["response_truncated"] += sum(enc.response_cut[i] or enc.response_cut[n + i] for i in range(n))
    segments = enc.segments or [0] * (2 * n)
    columns = {"margin": [row_margin(chunk[i]) for i in picked],
               "row": [first_row + i for i in picked],
               "prompt_key": [prompt_key(chunk[i]["prompt"]) for i in picked],
               "chosen_chars": [len(chunk[i]["chosen"]) for i in picked],
               "rejected_chars": [len(chunk[i]["rejected"]) for i in picked],
               **{name: [_text_or_none(chunk[i].get(name)) for i in picked] for name in META_COLUMNS}}
    writer.add([enc.ids[i] for i in picked], [enc.ids[n + i] for i in picked],
               [segments[i] for i in picked], [segments[n + i] for i in picked], columns)


def tokenize_split(split: Path, store: Path, tokenizer, template: PairTemplate, max_length: int, renderer,
                   keep_identical: bool, meta: dict) -> dict:
    """Stream one split file into a token store (`tokenize_rows`), recording the split's sha256."""
    meta = {**meta, "source_sha256": file_sha256(split)}
    return tokenize_rows(read_jsonl(split), store, tokenizer, template, max_length, renderer, keep_identical, meta)


def prompt_key(prompt: str) -> int:
    """A signed 64-bit digest of the normalised prompt: pairs of one prompt share it (validation is carved by it)."""
    return int.from_bytes(blake2b(normalise(prompt).encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little", signed=True)


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def tokenize_splits(paths: TokenizePaths, model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
    """Tokenize both splits; returns {"train": meta, "eval": meta}."""
    for split in (paths.train, paths.eval):
        if not split.is_file():
            raise UserError(f"{split} not found: run `dvc repro split` first")
    tokenizer, config = prepare_tokenizer(model_cfg, paths.train, paths.tokenizer)
    template = input_template(config, tokenizer)
    use_chat_template = model_cfg.chat_template == "auto" and getattr(tokenizer, "chat_template", None)
    renderer = tokenizer if use_chat_template else None
    meta = store_meta(model_cfg.name, cfg.max_length, template, CHAT_TEMPLATE if renderer is not None else PLAIN,
                      tokenizer_digest(paths.tokenizer), model_type=config.model_type, vocab_size=len(tokenizer))
    out = {}
    for name, split, store, keep in (("train", paths.train, paths.train_store, False),
                                     ("eval", paths.eval, paths.eval_store, True)):
        out[name] = tokenize_split(split, store, tokenizer, template, cfg.max_length, renderer, keep, meta)
        print(f"tokenize: {name}: {out[name]['pairs']} pairs, {out[name]['tokens']:,} tokens -> {store}",
              file=sys.stderr)
    return out


def store_meta(base_model: str, max_length: int, template: PairTemplate, rendering: str,
               tokenizer_sha256: str | None, **more) -> dict:
    """What a token store records of how it was made (train and evaluate check it against their params and the
    model)."""
    return {"base_model": base_model, "max_length": max_length, "truncation": TRUNCATION_POLICY,
            "input_kind": template.kind, "input_format": template.recipe, "segment_ids": template.segment_ids,
            "rendering": rendering, "tokenizer_sha256": tokenizer_sha256, **more}


def store_rows(rows: Iterable[dict], directory: Path, tokenizer, config, max_length: int,
               keep_identical: bool = False) -> TokenStore:
    """Rows with text fields tokenized for `config`'s family into a store at `directory`, opened: what benchmarks
    and tests train and score from, made by the tokenize stage's own code (plain rendering)."""
    template = input_template(config, tokenizer)
    meta = store_meta(config.model_type, max_length, template, PLAIN, None)
    tokenize_rows(rows, Path(directory), tokenizer, template, max_length, None, keep_identical, meta)
    return TokenStore(directory)


def tokenizer_digest(directory: Path) -> str:
    """sha256 over the tokenizer's files, so a store names the tokenizer it was made with."""
    return directory_sha256(directory)
