"""The reward model: base loading (hub, local directory or offline scratch build), pooling, saving, scoring."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stages import fast_deberta
from stages.batching import pad, padded_width, sorted_batches
from stages.common import UserError, atomic_path
from stages.config import SCRATCH_BASES

META_FILE = "reward_model.json"

# microsoft/deberta-v3-small's published architecture; scratch-tiny keeps everything but the sizes.
DEBERTA_V3_SMALL = dict(hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072,
                        relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
                        pos_att_type=["p2c", "c2p"], position_biased_input=False, max_relative_positions=-1,
                        layer_norm_eps=1e-7, max_position_embeddings=512, type_vocab_size=0, hidden_act="gelu")
SCRATCH_SIZES = {
    "scratch-tiny": dict(DEBERTA_V3_SMALL, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=512),
    "scratch-deberta-v3-small": DEBERTA_V3_SMALL,
}


class RewardModel(nn.Module):
    """r(x) for a batch of encoded sequences: (N, T) ids and mask -> (N,) rewards.

    pooling "cls": the standard sequence-classification head (what `AutoModelForSequenceClassification` computes).
    pooling "mean": masked mean of the last hidden states fed through the same head (DeBERTa's pooler+classifier).
    DeBERTa-v3 models run `stages.fast_deberta` (same weights and math, no work on padding) on right-padded
    batches outside torch.compile; `fast=False` or any other model runs transformers' own forward.
    """

    def __init__(self, hf_model: nn.Module, pooling: str, fast: bool = True):
        super().__init__()
        if pooling == "mean" and not (hasattr(hf_model, "pooler") and hasattr(hf_model, "classifier")):
            raise UserError(f"model.pooling=mean needs a DeBERTa-style head (pooler + classifier); "
                            f"{type(hf_model).__name__} has none: use model.pooling=cls")
        self.hf = hf_model
        self.pooling = pooling
        self.fast = fast and fast_deberta.supports(hf_model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # compiled graphs keep transformers' static-shape forward (fast_deberta's packing is data-dependent)
        if self.fast and not torch.compiler.is_compiling() and fast_deberta.right_padded(attention_mask):
            return fast_deberta.rewards(self.hf, input_ids, attention_mask, self.pooling)
        if self.pooling == "cls":
            return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
        hidden = self.hf.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (N, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (N, H)
        return self.hf.classifier(self.hf.pooler(mean.unsqueeze(1)))[:, 0]  # the pooler reads position 0


def disable_dropout(model: nn.Module) -> None:
    """Reward models train without dropout (as TRL's RewardTrainer does by default): scores then do not depend
    on train/eval mode, and padding or batch composition cannot change them."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def train_scratch_tokenizer(texts: list[str], vocab_size: int, out_dir: Path) -> None:
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
    # from_pretrained converts spm.model correctly (direct construction does not, see NOTES)
    DebertaV2Tokenizer.from_pretrained(str(out_dir)).save_pretrained(str(out_dir))


def build_scratch(name: str, texts: list[str], vocab_size: int, out_dir: str | Path, seed: int) -> Path:
    """Write a randomly initialised DeBERTa-v3-architecture reward model and its tokenizer to `out_dir`."""
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2ForSequenceClassification

    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        train_scratch_tokenizer(texts, vocab_size, tmp)
        tokenizer = AutoTokenizer.from_pretrained(str(tmp))
        config = DebertaV2Config(**SCRATCH_SIZES[name], vocab_size=len(tokenizer), num_labels=1,
                                 pad_token_id=tokenizer.pad_token_id)
        torch.manual_seed(seed)
        DebertaV2ForSequenceClassification(config).save_pretrained(str(tmp))
    return out_dir


def load_hf(name_or_dir: str):
    """AutoModelForSequenceClassification(num_labels=1) and AutoTokenizer, with errors that say what to do."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own tqdm bars are the ones worth reading in `dvc repro` logs
    if os.path.isdir(name_or_dir) and not os.path.isfile(os.path.join(name_or_dir, "config.json")):
        raise UserError(f"model directory {name_or_dir} has no config.json: point model.name at a directory "
                        "written by save_pretrained (config.json, weights and tokenizer files)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_dir)
        model = AutoModelForSequenceClassification.from_pretrained(name_or_dir, num_labels=1)
    except OSError as e:
        raise UserError(f"could not load model {name_or_dir!r}: {str(e).splitlines()[0]} -- without network use "
                        "model.name=scratch-tiny (offline) or a local directory with the weights") from None
    if model.config.num_labels != 1:
        raise UserError(f"{name_or_dir} has a {model.config.num_labels}-label head; a reward model needs num_labels=1")
    if tokenizer.pad_token_id is None:
        raise UserError(f"tokenizer of {name_or_dir} has no pad token; set one in its tokenizer_config.json")
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_base(name_or_dir: str, pooling: str, seed: int):
    """The base to fine-tune, as (RewardModel, tokenizer); scratch bases are built first with `build_scratch`."""
    torch.manual_seed(seed)  # the new head of a pretrained base is initialised from this seed
    model, tokenizer = load_hf(name_or_dir)
    disable_dropout(model)
    return RewardModel(model, pooling), tokenizer


def save_artifact(model: RewardModel, tokenizer, out_dir: str | Path, meta: dict) -> None:
    """save_pretrained (safetensors) + tokenizer + reward_model.json, written atomically as one directory."""
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.hf.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_artifact(model_dir: str | Path) -> tuple[RewardModel, object, dict]:
    """A trained reward model directory -> (RewardModel in eval mode, tokenizer, metadata)."""
    meta_path = Path(model_dir) / META_FILE
    if not meta_path.is_file():
        raise UserError(f"{model_dir} is not a reward model written by the train stage ({META_FILE} is missing)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    model, tokenizer = load_hf(str(model_dir))
    disable_dropout(model)
    return RewardModel(model, meta["pooling"]).eval(), tokenizer, meta


def autocast(device: torch.device):
    """bf16 autocast on CUDA; fp32 on CPU (bf16 matmuls are far slower than fp32 on CPUs without AMX)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu",
                                                                                                     enabled=False)


# On CPU, inference batches hold at most this many (padded) tokens: a tiny model's activations then stay in cache
# (tiny bench workload on 2 cores, scoring alone, no worker threads: 128-sequence batches 52 pairs/s, 32 ones 62).
CPU_BATCH_TOKENS = 8192


def inference_batches(lengths: list[int], batch_size: int, device: torch.device) -> list[np.ndarray]:
    """Length-sorted batches, longest first, of at most batch_size sequences; on CPU also of at most
    CPU_BATCH_TOKENS padded tokens (a sequence longer than that is a batch of its own)."""
    batches = sorted_batches(lengths, batch_size)
    if device.type != "cpu":
        return batches
    out = []
    for batch in batches:
        start = 0
        while start < len(batch):  # sorted longest first: the first sequence of a piece sets its width
            n = max(1, min(len(batch) - start, CPU_BATCH_TOKENS // padded_width(lengths[batch[start]])))
            out.append(batch[start:start + n])
            start += n
    return out


def _score_batch(model: RewardModel, sequences: list[list[int]], batch: np.ndarray, pad_id: int,
                 device: torch.device) -> torch.Tensor:
    with torch.inference_mode(), autocast(device):  # both are thread-local: entered in the thread that scores
        ids, mask = pad([sequences[i] for i in batch], pad_id)
        return model(ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)).float().cpu()


def score_ids(model: RewardModel, sequences: list[list[int]], pad_id: int, batch_size: int,
              device: torch.device, progress=None) -> torch.Tensor:
    """Rewards (float32, on CPU) of encoded sequences, in input order.

    On CPU the length-sorted batches run on `torch.get_num_threads()` Python threads with one intra-op thread
    each, longest first (whole small batches in parallel beat one batch's small matmuls split over cores). Every
    batch is computed by one thread, so rewards are bit-identical whatever the number of cores.
    """
    rewards = torch.empty(len(sequences), dtype=torch.float32)
    batches = inference_batches([len(s) for s in sequences], batch_size, device)
    if device.type != "cpu":
        _collect(rewards, batches, (_score_batch(model, sequences, b, pad_id, device) for b in batches), progress)
        return rewards
    workers = max(1, min(torch.get_num_threads(), len(batches)))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="score", initializer=torch.set_num_threads, initargs=(1,))
    try:  # set_num_threads is per thread (OpenMP's and MKL's settings are thread-local): the caller's is kept
        results = pool.map(lambda b: _score_batch(model, sequences, b, pad_id, device), batches)
        _collect(rewards, batches, results, progress)
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C or an error the queued batches are dropped, not run
    return rewards


def _collect(rewards: torch.Tensor, batches: list[np.ndarray], results, progress) -> None:
    for batch, out in zip(batches, results):
        rewards[torch.from_numpy(batch)] = out
        if progress is not None:
            progress.update(len(batch))
