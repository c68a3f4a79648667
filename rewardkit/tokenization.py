"""The tokenize stage's job: the train and eval splits tokenized once, streamed into token stores, with the
tokenizer they were made with (a scratch base's is trained here, on the training split).

Rows stream in chunks, so memory stays flat for any split size; the fast tokenizer encodes each chunk on all
cores. Conversational rows are rendered first: with the tokenizer's chat template when it has one (and
model.chat_template is auto), else with the plain template (`rewardkit.formats`). Training pairs that become
identical after truncation carry no signal and are left out (counted); evaluation keeps every pair.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from hashlib import blake2b
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np

from rewardkit.config import SCRATCH_BASES, ModelConfig, TrainConfig
from rewardkit.encoding import TRUNCATION_POLICY, PairTemplate, encode_both_answers, row_margin
from rewardkit.errors import UserError
from rewardkit.families import input_template
from rewardkit.formats import PLAIN, render, render_plain_prompt, render_plain_response
from rewardkit.io import atomic_path, directory_sha256, file_sha256, read_jsonl
from rewardkit.loading import load_config, load_tokenizer, quiet_transformers
from rewardkit.scratch import scratch_config, train_scratch_tokenizer
from rewardkit.store import META_COLUMNS, StoreWriter
from rewardkit.text import normalise

CHUNK_ROWS = 4096
MAX_TOKENIZER_TEXTS = 200_000  # distinct texts a scratch tokenizer is trained on (the first ones): plenty for 8k


@dataclass(frozen=True)
class TokenizePaths:
    train: Path
    eval: Path
    train_store: Path
    eval_store: Path
    tokenizer: Path


def distinct_texts(path: Path, limit: int = MAX_TOKENIZER_TEXTS) -> Iterator[str]:
    """The first `limit` distinct prompt/chosen/rejected texts of a split (plain rendering), in file order.
    Two streaming passes with 8 bytes a text in between, not a set of the texts themselves."""
    def texts() -> Iterator[str]:
        for row in read_jsonl(path):
            yield render_plain_prompt(row["prompt"])
            yield render_plain_response(row["chosen"])
            yield render_plain_response(row["rejected"])

    digests = np.fromiter((int.from_bytes(blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                                          "little") for t in texts()), np.uint64)
    _, first = np.unique(digests, return_index=True)
    keep = np.zeros(len(digests), dtype=bool)
    keep[np.sort(first)[:limit]] = True
    return (t for t, k in zip(texts(), keep) if k)


def prepare_tokenizer(model_cfg: ModelConfig, train_split: Path, out_dir: Path):
    """(tokenizer, config) of the base, the tokenizer saved to `out_dir`: a scratch base's trained on the
    training split, any other base's own (with a pad token added for decoders that lack one)."""
    from transformers import AutoTokenizer

    if model_cfg.name in SCRATCH_BASES:
        with atomic_path(out_dir, is_dir=True) as tmp:
            train_scratch_tokenizer(model_cfg.name, distinct_texts(train_split), model_cfg.scratch_vocab_size, tmp)
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


def tokenize_split(split: Path, store: Path, tokenizer, template: PairTemplate, max_length: int, renderer,
                   keep_identical: bool, meta: dict) -> dict:
    """Stream one split into a token store; returns the store's metadata with the truncation counts."""
    counts = dict.fromkeys(("pairs_read", "pairs_used", "identical_after_truncation", "prompt_truncated",
                            "response_truncated"), 0)
    rows = read_jsonl(split)
    row_number = 0
    with StoreWriter(store) as writer:
        while chunk := list(islice(rows, CHUNK_ROWS)):
            try:
                chunk = rendered(chunk, renderer)
            except ValueError as e:
                raise UserError(str(e)) from None
            enc = encode_both_answers(tokenizer, chunk, max_length, template)
            n = len(chunk)
            segments = enc.segments or [0] * (2 * n)
            keep = [keep_identical or enc.ids[i] != enc.ids[n + i] or segments[i] != segments[n + i]
                    for i in range(n)]
            picked = [i for i in range(n) if keep[i]]
            counts["pairs_read"] += n
            counts["pairs_used"] += len(picked)
            counts["prompt_truncated"] += sum(enc.prompt_cut[i] or enc.prompt_cut[n + i] for i in range(n))
            counts["response_truncated"] += sum(enc.response_cut[i] or enc.response_cut[n + i] for i in range(n))
            columns = {"margin": [row_margin(chunk[i]) for i in picked],
                       "row": [row_number + i for i in picked],
                       "prompt_key": [prompt_key(chunk[i]["prompt"]) for i in picked],
                       "chosen_chars": [len(chunk[i]["chosen"]) for i in picked],
                       "rejected_chars": [len(chunk[i]["rejected"]) for i in picked],
                       **{name: [_text_or_none(chunk[i].get(name)) for i in picked] for name in META_COLUMNS}}
            writer.add([enc.ids[i] for i in picked], [enc.ids[n + i] for i in picked],
                       [segments[i] for i in picked], [segments[n + i] for i in picked], columns)
            row_number += n
        counts["identical_after_truncation"] = counts["pairs_read"] - counts["pairs_used"]
        return writer.close({**meta, **counts, "source_sha256": file_sha256(split)})


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
    meta = {"base_model": model_cfg.name, "max_length": cfg.max_length, "truncation": TRUNCATION_POLICY,
            "input_kind": template.kind, "input_format": template.recipe, "segment_ids": template.segment_ids,
            "rendering": "chat_template" if renderer is not None else PLAIN, "model_type": config.model_type,
            "tokenizer_sha256": tokenizer_digest(paths.tokenizer), "vocab_size": len(tokenizer)}
    out = {}
    for name, split, store, keep in (("train", paths.train, paths.train_store, False),
                                     ("eval", paths.eval, paths.eval_store, True)):
        out[name] = tokenize_split(split, store, tokenizer, template, cfg.max_length, renderer, keep, meta)
        print(f"tokenize: {name}: {out[name]['pairs']} pairs, {out[name]['tokens']:,} tokens -> {store}",
              file=sys.stderr)
    return out


def tokenizer_digest(directory: Path) -> str:
    """sha256 over the tokenizer's files, so a store names the tokenizer it was made with."""
    return directory_sha256(directory)
