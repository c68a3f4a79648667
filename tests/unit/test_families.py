"""Any Hugging Face base: each family, built tiny and offline (random init, a tokenizer trained here), trains in
the pipeline, and transformers' Auto classes (and the text-classification pipeline for encoders) reproduce our
rewards from the artifact; a reward does not depend on its batch; token_type_ids reach BERT-style models."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
    ElectraConfig,
    ElectraForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    pipeline,
)

from rewardkit import RewardScorer
from rewardkit.encoding.scratch import train_wordpiece_tokenizer
from rewardkit.modeling.inference import score_sequences
from tests.conftest import build_tiny_base, easy_rows, train_in_process, train_summary

ROWS = easy_rows(40) + easy_rows(12, seed=2)
TEXTS = [t for r in ROWS for t in (r["prompt"], r["chosen"], r["rejected"])]
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
# short enough for max_length 64: no truncation, so Hugging Face's own encoding is ours
PAIRS = [("User: what is 2 plus 3?\nAssistant:", " The sum is 5."),
         ("User: what is 2 plus 3?\nAssistant:", " Probably about 6, but I am not sure."),
         ("User: hi\nAssistant:", " Hello.")]
PROMPTS, RESPONSES = (list(x) for x in zip(*PAIRS))


def bpe(directory: Path, specials: list[str], single: str | None, pair: str | None, **named: str) -> None:
    """A byte-level BPE tokenizer trained on TEXTS, with a post-processing template, saved as a fast tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if single:
        tok.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=[(t, tok.token_to_id(t)) for t in specials])
    PreTrainedTokenizerFast(tokenizer_object=tok, model_input_names=["input_ids", "attention_mask"],
                            **named).save_pretrained(str(directory))


def build(family: str, directory: Path) -> Path:
    """A tiny random-init base of `family` with its tokenizer, as a save_pretrained directory."""
    torch.manual_seed(0)
    if family == "deberta-v3":
        return build_tiny_base(directory, ROWS)
    if family == "deberta-v2":  # absolute positions + token types: a config the fast path does not cover
        return build_tiny_base(directory, ROWS, relative_attention=False, position_biased_input=True,
                               type_vocab_size=2)
    if family in ("bert", "electra"):
        train_wordpiece_tokenizer(TEXTS, 300, directory)
        vocab = len(AutoTokenizer.from_pretrained(directory))
        if family == "bert":  # the base model only: loading it as a classifier initialises a new head
            BertModel(BertConfig(vocab_size=vocab, **SIZES, pad_token_id=0)).save_pretrained(directory)
        else:
            ElectraForSequenceClassification(ElectraConfig(vocab_size=vocab, embedding_size=32, **SIZES,
                                                           num_labels=1, pad_token_id=0)).save_pretrained(directory)
        return directory
    if family == "roberta":
        bpe(directory, ["<s>", "<pad>", "</s>", "<unk>"], "<s> $A </s>", "<s> $A </s> </s> $B </s>",
            bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
            cls_token="<s>")
        config = RobertaConfig(vocab_size=400, **SIZES, max_position_embeddings=130, type_vocab_size=1,
                               pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=1)
        RobertaForSequenceClassification(config).save_pretrained(directory)
    elif family == "modernbert":
        bpe(directory, ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], "[CLS] $A [SEP]", "[CLS] $A [SEP] $B [SEP]",
            pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]", mask_token="[MASK]")
        config = ModernBertConfig(vocab_size=400, **SIZES, max_position_embeddings=128, pad_token_id=0,
                                  cls_token_id=1, sep_token_id=2, bos_token_id=1, eos_token_id=2, num_labels=1,
                                  global_attn_every_n_layers=1, attn_implementation="eager")
        ModernBertForSequenceClassification(config).save_pretrained(directory)
    elif family == "llama":  # BOS first, no pad token: the loader adds one
        bpe(directory, ["<s>", "</s>"], "<s> $A", "<s> $A <s> $B", bos_token="<s>", eos_token="</s>")
        config = LlamaConfig(vocab_size=400, **SIZES, num_key_value_heads=1, max_position_embeddings=128,
                             bos_token_id=0, eos_token_id=1, num_labels=1)
        LlamaForSequenceClassification(config).save_pretrained(directory)
    elif family == "qwen2":  # no BOS, pad == EOS as in Qwen2 base models: the loader adds a distinct pad
        bpe(directory, ["<|endoftext|>"], None, None, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
        config = Qwen2Config(vocab_size=400, **SIZES, num_key_value_heads=1, max_position_embeddings=128,
                             eos_token_id=0, num_labels=1)
        Qwen2ForSequenceClassification(config).save_pretrained(directory)
    return directory


FAMILIES = ["deberta-v3", "deberta-v2", "bert", "roberta", "electra", "modernbert", "llama", "qwen2"]
DECODERS = {"llama", "qwen2"}
SEGMENT_IDS = {"deberta-v2", "bert", "electra"}


@pytest.fixture(scope="module", params=FAMILIES)
def trained(request, tmp_path_factory):
    family = request.param
    root = tmp_path_factory.mktemp(family)
    base = build(family, root / "base")
    work = train_in_process(root / "work", base, easy_rows(32), easy_rows(12, seed=2),
                            train={"max_length": 64, "batch_size": 8, "epochs": 1, "lr": 1e-2,
                                   "warmup_ratio": 0.0, "checkpoint_every": 0})
    model_dir = work / "models" / "reward_model"
    return family, model_dir, RewardScorer.from_pretrained(model_dir, device="cpu", precision="fp32")


def hf_inputs(family: str, tokenizer, prompt: str, response: str) -> dict:
    if family in DECODERS:
        return tokenizer(prompt + response + tokenizer.eos_token, return_tensors="pt")
    return tokenizer(prompt, response, return_tensors="pt")


def test_trains_in_the_pipeline_and_describes_its_input(trained):
    family, model_dir, scorer = trained
    metrics = json.loads((model_dir.parents[1] / "metrics/eval.json").read_text())
    assert metrics["pairs"] == 12 and 0 <= metrics["accuracy"] <= 1
    train = train_summary(model_dir.parents[1])
    assert train["step"] == 4 and train["train_loss"] == train["train_loss"]  # finite, not NaN
    meta = json.loads((model_dir / "reward_model.json").read_text())
    assert meta["input_kind"] == ("concat" if family in DECODERS else "text_pair")
    assert meta["segment_ids"] == (family in SEGMENT_IDS)
    assert meta["input_format"] == ("tokenizer(prompt + response + eos_token)" if family in DECODERS
                                    else "tokenizer(prompt, response)")
    assert scorer.model.fast == (family == "deberta-v3")


def test_auto_classes_reproduce_our_rewards(trained):
    family, model_dir, scorer = trained
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    for (p, r), ids in zip(PAIRS, scorer.encode(PROMPTS, RESPONSES)):
        assert hf_inputs(family, tokenizer, p, r)["input_ids"][0].tolist() == ids
    ours = scorer.score(PROMPTS, RESPONSES)
    with torch.inference_mode():
        theirs = [model(**hf_inputs(family, tokenizer, p, r)).logits[0, 0].item() for p, r in PAIRS]
    assert theirs == pytest.approx(ours, abs=1e-5)
    assert max(ours) - min(ours) > 1e-4  # the rewards differ, so matching each one means something


def test_text_classification_pipeline_reproduces_our_rewards(trained):
    family, model_dir, scorer = trained
    pipe = pipeline("text-classification", model=str(model_dir), function_to_apply="none", device="cpu")
    if family in DECODERS:  # one text: prompt + response + EOS
        inputs = [p + r + pipe.tokenizer.eos_token for p, r in PAIRS]
    else:  # a text pair
        inputs = [{"text": p, "text_pair": r} for p, r in PAIRS]
    scores = [out["score"] for out in pipe(inputs)]
    assert scores == pytest.approx(scorer.score(PROMPTS, RESPONSES), abs=1e-5)


def test_a_reward_does_not_depend_on_its_batch(trained):
    _, _, scorer = trained
    enc = scorer.encode_sequences(PROMPTS + [PROMPTS[0]] * 2, RESPONSES + [" Yes.", " The sum is five, I think."])
    assert len({len(s) for s in enc.ids}) > 2  # different lengths, so the batch pads each one differently
    pad, cpu = scorer.tokenizer.pad_token_id, torch.device("cpu")
    alone = torch.cat([score_sequences(scorer.model, [s], pad, 1, cpu,
                                       segments=None if enc.segments is None else [enc.segments[i]])
                       for i, s in enumerate(enc.ids)])
    together = score_sequences(scorer.model, enc.ids, pad, 64, cpu, segments=enc.segments)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_segment_ids_change_the_reward_of_models_that_read_them(trained):
    family, _, scorer = trained
    enc = scorer.encode_sequences(PROMPTS, RESPONSES)
    assert (enc.segments is not None) == (family in SEGMENT_IDS)
    if enc.segments is None:
        return
    pad, cpu = scorer.tokenizer.pad_token_id, torch.device("cpu")
    with_types = score_sequences(scorer.model, enc.ids, pad, 8, cpu, segments=enc.segments)
    without = score_sequences(scorer.model, enc.ids, pad, 8, cpu)
    assert (with_types - without).abs().max() > 1e-4


def test_one_line_for_a_new_head_and_no_tokenizer_warnings(tmp_path, capfd):
    from rewardkit.encoding.families import input_template
    from rewardkit.encoding.templates import encode_both_answers
    from rewardkit.modeling.model import load_base

    base = build("bert", tmp_path / "bert")
    config = json.loads((base / "tokenizer_config.json").read_text())
    (base / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 32}))
    capfd.readouterr()
    model, tokenizer = load_base(str(base), "cls", seed=0)
    long_row = {"prompt": "User: " + "what is the rate " * 40 + "\nAssistant:", "chosen": " five", "rejected": " six"}
    enc = encode_both_answers(tokenizer, [long_row], 32, input_template(model.hf.config, tokenizer))
    assert all(len(ids) == 32 for ids in enc.ids)  # longer than the model: cut by us, silently
    err = capfd.readouterr().err
    assert err.splitlines() == [f"model: BertForSequenceClassification from {base}: newly initialised "
                                "classifier.bias, classifier.weight (a new reward head on a base model is expected)"]
