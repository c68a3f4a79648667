"""Offline bases: a randomly initialised DeBERTa-v3-architecture classifier and a SentencePiece tokenizer trained
on the training texts, written as a Hugging Face directory (the same code path as a downloaded base)."""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import torch

from rewardkit.io import atomic_path

# microsoft/deberta-v3-small's published architecture; scratch-tiny keeps everything but the sizes.
DEBERTA_V3_SMALL = MappingProxyType(dict(
    hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072, relative_attention=True,
    position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
    position_biased_input=False, max_relative_positions=-1, layer_norm_eps=1e-7, max_position_embeddings=512,
    type_vocab_size=0, hidden_act="gelu"))
SCRATCH_SIZES = MappingProxyType({
    "scratch-tiny": MappingProxyType(dict(DEBERTA_V3_SMALL, hidden_size=128, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=512)),
    "scratch-deberta-v3-small": DEBERTA_V3_SMALL,
})


def train_sentencepiece_tokenizer(texts: list[str], vocab_size: int, out_dir: Path) -> None:
    """A SentencePiece tokenizer with DeBERTa-v3's special tokens, trained on `texts`, saved as HF files."""
    import sentencepiece as spm
    from transformers import DebertaV2Tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "corpus.txt"
    corpus.write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out_dir / "spm"), vocab_size=vocab_size, model_type="unigram",
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", user_defined_symbols=["[MASK]"], byte_fallback=True, hard_vocab_limit=False,
        num_threads=1, shuffle_input_sentence=False, minloglevel=2)  # one thread: byte-identical reruns
    corpus.unlink()
    # transformers 5: from_pretrained converts spm.model correctly; constructing the tokenizer directly does not
    DebertaV2Tokenizer.from_pretrained(str(out_dir)).save_pretrained(str(out_dir))


def build_scratch(sizes: str | dict, texts: list[str], vocab_size: int, out_dir: str | Path, seed: int) -> Path:
    """Write a randomly initialised DeBERTa-v3-architecture reward model and its tokenizer to `out_dir`.

    `sizes` is a SCRATCH_SIZES name or a dict of DebertaV2Config values (tests build smaller ones)."""
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2ForSequenceClassification

    config_values = dict(SCRATCH_SIZES[sizes] if isinstance(sizes, str) else sizes)
    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        train_sentencepiece_tokenizer(texts, vocab_size, tmp)
        tokenizer = AutoTokenizer.from_pretrained(str(tmp))
        config = DebertaV2Config(**config_values, vocab_size=len(tokenizer), num_labels=1,
                                 pad_token_id=tokenizer.pad_token_id)
        torch.manual_seed(seed)
        DebertaV2ForSequenceClassification(config).save_pretrained(str(tmp))
    return out_dir
