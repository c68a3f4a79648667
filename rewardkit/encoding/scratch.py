"""Offline bases before their weights: their sizes, their transformers configs and their tokenizers, trained on the
training texts (the weights: rewardkit.modeling.scratch); the same code path as a downloaded base. DeBERTa-v3
architecture with a SentencePiece tokenizer (scratch-tiny, scratch-deberta-v3-small), or BERT architecture with a
WordPiece tokenizer at the size of the common small BERT-family encoders (scratch-minilm: MiniLM-L6's hidden 384, 6
layers, 12 heads)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from rewardkit.encoding.tokenizers import quiet_transformers

# microsoft/deberta-v3-small's published architecture; scratch-tiny keeps everything but the sizes.
DEBERTA_V3_SMALL = MappingProxyType(dict(
    hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072, relative_attention=True,
    position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
    position_biased_input=False, max_relative_positions=-1, layer_norm_eps=1e-7, max_position_embeddings=512,
    type_vocab_size=0, hidden_act="gelu"))
MINILM_L6 = MappingProxyType(dict(model_type="bert", hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                  intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2,
                                  hidden_act="gelu"))
SCRATCH_SIZES = MappingProxyType({
    "scratch-tiny": MappingProxyType(dict(DEBERTA_V3_SMALL, hidden_size=128, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=512)),
    "scratch-deberta-v3-small": DEBERTA_V3_SMALL,
    "scratch-minilm": MINILM_L6,
})


def train_sentencepiece_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> None:
    """A SentencePiece tokenizer with DeBERTa-v3's special tokens, trained on `texts`, saved as HF files."""
    import sentencepiece as spm
    from transformers import DebertaV2Tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "corpus.txt"
    with open(corpus, "w", encoding="utf-8") as f:  # one text a line, streamed
        for i, text in enumerate(texts):
            f.write(("\n" if i else "") + text.replace("\n", " "))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out_dir / "spm"), vocab_size=vocab_size, model_type="unigram",
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", user_defined_symbols=["[MASK]"], byte_fallback=True, hard_vocab_limit=False,
        num_threads=1, shuffle_input_sentence=False, minloglevel=2)  # one thread: byte-identical reruns
    corpus.unlink()
    _forget_training_paths(out_dir / "spm.model")
    # transformers 5: from_pretrained converts spm.model correctly; constructing the tokenizer directly does not
    DebertaV2Tokenizer.from_pretrained(str(out_dir)).save_pretrained(str(out_dir))


def _forget_training_paths(model_file: Path) -> None:
    """SentencePiece records the corpus and output paths in the model; they are temporary names, so drop them:
    the same texts then give the same bytes (the tokenize stage's output is tracked by DVC)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    proto.trainer_spec.ClearField("input")
    proto.trainer_spec.model_prefix = "spm"
    model_file.write_bytes(proto.SerializeToString())


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> None:
    """A lower-casing WordPiece tokenizer with BERT's special tokens and text-pair template (token types 0/1),
    trained on `texts`, saved as HF files."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                             show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    BertTokenizer(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                  mask_token="[MASK]").save_pretrained(str(out_dir))


def _sizes(sizes: str | Mapping) -> tuple[dict, bool]:
    """(config values without model_type, whether it is a BERT architecture) of a SCRATCH_SIZES name or dict."""
    values = dict(SCRATCH_SIZES[sizes] if isinstance(sizes, str) else sizes)
    return values, values.pop("model_type", "deberta-v2") == "bert"


def train_scratch_tokenizer(sizes: str | Mapping, texts: Iterable[str], vocab_size: int, out_dir: Path) -> None:
    """The tokenizer of a scratch base, trained on `texts` (SentencePiece for DeBERTa, WordPiece for BERT)."""
    with quiet_transformers():
        (train_wordpiece_tokenizer if _sizes(sizes)[1] else train_sentencepiece_tokenizer)(texts, vocab_size, out_dir)


def scratch_config(sizes: str | Mapping, tokenizer):
    """The transformers config of a scratch base for `tokenizer`, and its sequence-classification class."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
    )

    values, bert = _sizes(sizes)
    config_class, model_class = ((BertConfig, BertForSequenceClassification) if bert else
                                 (DebertaV2Config, DebertaV2ForSequenceClassification))
    return config_class(**values, vocab_size=len(tokenizer), num_labels=1,
                        pad_token_id=tokenizer.pad_token_id), model_class
