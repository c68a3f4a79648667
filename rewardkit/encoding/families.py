"""Model families: which bases are decoder-only classifiers, and how each family reads a (prompt, response)."""
from __future__ import annotations

from rewardkit.encoding.templates import CONCAT, TEXT_PAIR, PairTemplate, pair_template


def is_decoder_only(config) -> bool:
    """A causal language model family (Llama, Qwen2, Mistral, Gemma, ...), not an encoder that also has a causal
    head (BERT, RoBERTa) nor an encoder-decoder."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = config.model_type
    return (kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
            and not getattr(config, "is_encoder_decoder", False))


def input_template(config, tokenizer) -> PairTemplate:
    """How this model reads a (prompt, response): a decoder's concatenation + EOS, or an encoder's text pair with
    token_type_ids when its config has a type vocabulary (BERT, ELECTRA; not DeBERTa-v3 or RoBERTa)."""
    if is_decoder_only(config):
        return pair_template(tokenizer, CONCAT)
    return pair_template(tokenizer, TEXT_PAIR, token_types=(getattr(config, "type_vocab_size", 0) or 0) > 1)
