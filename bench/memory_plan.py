"""The planning table of docs/scaling.md, computed: bytes per parameter per strategy and precision, and which bases
(0.5B, 1.5B, 8B, 70B decoders) fit at 4k tokens on 1, 8 and 16 GPUs of 80 GB, with which settings.

    python -m bench.memory_plan            # print the tables
    python -m bench.memory_plan --write    # put them into docs/scaling.md (tests/unit/test_memory_plan.py checks)

Parameters are counted on the meta device from each base's published architecture (no download, no memory).
Activation bytes per token and layer are measured: a small Llama-architecture layer's saved-for-backward tensors
(`saved_tensors_hooks`, bf16 autocast, SDPA) at two sequence lengths (the difference removes weight-sized saves),
fitted exactly as linear in (hidden, kv width, intermediate, heads) over five small shapes, then applied at the
bases' widths. Model state per GPU follows from what each strategy holds (MODEL_STATE's comments); the optimizer is
AdamW (two fp32 moments). A micro-batch is one pair: two sequences of 4096 tokens. A GPU's budget is 90% of 80 GB
(context, workspaces and fragmentation take the rest).
"""
from __future__ import annotations

import argparse
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

GB = 1e9
GPU_BYTES, BUDGET = 80 * GB, 0.9
TOKENS = 2 * 4096  # one pair, chosen and rejected, at 4k tokens each
GPUS = (1, 8, 16)
LORA_RANK = 16
# published architectures (config.json of each hub model); vocabularies as published
BASES = {
    "Qwen2.5-0.5B": ("qwen2", dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                                   num_key_value_heads=2, intermediate_size=4864, vocab_size=151936)),
    "Qwen2.5-1.5B": ("qwen2", dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                                   num_key_value_heads=2, intermediate_size=8960, vocab_size=151936)),
    "Llama-3.1-8B": ("llama", dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                                   num_key_value_heads=8, intermediate_size=14336, vocab_size=128256)),
    "Llama-3.1-70B": ("llama", dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                                    num_key_value_heads=8, intermediate_size=28672, vocab_size=128256)),
}
DOC = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"
START, END = "<!-- memory-plan: start (python -m bench.memory_plan --write) -->", "<!-- memory-plan: end -->"


@dataclass(frozen=True)
class Base:
    name: str
    params: int
    """All parameters of the one-label classifier (embeddings, layers, final norm, score head)."""
    layer_params: int
    """One transformer layer's (an FSDP unit)."""
    root_params: int
    """What is not in a layer: embeddings, final norm, head (FSDP's root unit)."""
    lora_params: int
    """Trainable with LoRA r=LORA_RANK on every linear layer of the body, plus the head."""
    layers: int
    dims: tuple[float, ...]
    """`features` of its layer: what activation bytes depend on."""


def base(name: str) -> Base:
    """Count `name`'s parameters on the meta device."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    family, dims = BASES[name]
    config = AutoConfig.for_model(family, **dims, num_labels=1, tie_word_embeddings=False)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    layer = count(model.model.layers[0])
    linear = sum(m.in_features + m.out_features for m in model.model.layers[0].modules()
                 if isinstance(m, torch.nn.Linear))
    h, heads, layers = dims["hidden_size"], dims["num_attention_heads"], dims["num_hidden_layers"]
    kv = dims["num_key_value_heads"] * (h // heads)
    return Base(name, count(model), layer, count(model) - layers * layer, layers * LORA_RANK * linear + h + 1,
                layers, tuple(features(h, kv, dims["intermediate_size"], heads)))


def saved_bytes(h: int, kv_heads: int, i: int, heads: int, tokens: int, checkpointed: bool, lora: bool,
                layers: int) -> int:
    """Bytes a Llama classifier of `layers` layers saves for backward on a batch of two sequences of tokens/2,
    bf16 autocast (each storage once)."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(hidden_size=h, intermediate_size=i, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         num_hidden_layers=layers, vocab_size=64, num_labels=1, pad_token_id=0,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).train()
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=LORA_RANK, target_modules="all-linear"))
    if checkpointed:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(1, 64, (2, tokens // 2))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids)
    return sum(storages.values())


def features(h: int, kv: int, i: int, heads: int) -> list[float]:
    """What one layer's saved bytes per token are linear in: the widths, the heads (attention's log-sum-exp) and
    the head width (the rotary tables)."""
    return [h, kv, i, heads, h / heads]


SHAPES = [(64, 2, 176, 4), (128, 2, 176, 4), (64, 4, 176, 4), (64, 2, 352, 4), (128, 4, 352, 8),
          (128, 2, 176, 8), (256, 2, 176, 4)]  # (hidden, kv heads, intermediate, heads)


@functools.cache
def activation_coefficients(checkpointed: bool, lora: bool) -> np.ndarray:
    """Bytes saved per token per layer = coefficients . features(...), fitted on seven small shapes; the fit must
    be exact (five unknowns: two shapes check it)."""
    rows, per_token = [], []
    for h, kv_heads, i, heads in SHAPES:
        grown = [saved_bytes(h, kv_heads, i, heads, n, checkpointed, lora, layers)
                 for layers in (1, 2) for n in (64, 128)]
        # a second layer's bytes, on 64 more tokens: what does not grow with tokens or layers cancels
        per_token.append(((grown[3] - grown[2]) - (grown[1] - grown[0])) / 64)
        rows.append(features(h, kv_heads * h // heads, i, heads))
    coefficients, *_ = np.linalg.lstsq(np.array(rows, float), np.array(per_token), rcond=None)
    residual = np.abs(np.array(rows, float) @ coefficients - per_token).max()
    assert residual < 1e-6 * max(per_token), f"activation bytes are not linear in the dims (residual {residual})"
    return coefficients


def activations(b: Base, checkpointed: bool, lora: bool) -> float:
    """Peak saved activations of one micro-batch, plus one layer's worth for the backward working set; with
    checkpointing, what each layer keeps plus one layer recomputed at a time."""
    full = float(activation_coefficients(False, lora) @ np.array(b.dims)) * TOKENS
    if not checkpointed:
        return (b.layers + 1) * full
    kept = float(activation_coefficients(True, lora) @ np.array(b.dims)) * TOKENS
    return b.layers * kept + 2 * full


def model_state(b: Base, strategy: str, precision: str, world: int, lora: bool) -> float:
    """Bytes of weights, gradients and AdamW state one GPU holds (MODEL_STATE)."""
    bf16 = precision == "bf16"
    if lora:  # frozen base in fp32 (as loaded); trainable adapters and head: weights, grads, 2 moments
        trained = 16 * b.lora_params
        if strategy == "ddp":
            return 4 * b.params + (2 * b.params if bf16 else 0) + trained + (4 * b.lora_params if world > 1 else 0)
        return (4 * b.params + trained) / world + (2 if bf16 else 4) * (2 * b.layer_params + b.root_params)
    if strategy == "ddp":  # fp32 weights, grads, m, v; bf16 autocast keeps a bf16 copy of each weight for
        # backward; over several processes DDP's gradient buckets are another fp32 copy of the gradients
        return 16 * b.params + (2 * b.params if bf16 else 0) + (4 * b.params if world > 1 else 0)
    # fsdp: 1/world of the fp32 weights, grads, m, v; unsharded: two layers' weights (the running one and the
    # prefetched one) in the compute dtype, one layer's gradients before their reduce-scatter (bf16 ones cast to
    # the fp32 reduce dtype), the root through forward and backward
    unit = 2 if bf16 else 4
    return 16 * b.params / world + unit * (2 * b.layer_params + b.root_params) + (6 if bf16 else 4) * b.layer_params


SETTINGS = [  # in order of preference: full fine-tuning first, then the least recomputation, then no sharding
    ("ddp", False, False), ("fsdp", False, False), ("ddp", True, False), ("fsdp", True, False),
    ("ddp", True, True), ("fsdp", True, True)]


def label(strategy: str, checkpointed: bool, lora: bool) -> str:
    return strategy + (" + checkpointing" if checkpointed else "") + (f" + LoRA r={LORA_RANK}" if lora else "")


def per_gpu(b: Base, strategy: str, checkpointed: bool, lora: bool, world: int) -> float:
    return model_state(b, strategy, "bf16", world, lora) + activations(b, checkpointed, lora)


def fit(b: Base, world: int) -> str:
    """The first setting that fits one GPU's budget, with its GB per GPU; or what the leanest one would need."""
    for strategy, checkpointed, lora in SETTINGS:
        if strategy == "fsdp" and world == 1:
            continue
        need = per_gpu(b, strategy, checkpointed, lora, world)
        if need <= BUDGET * GPU_BYTES:
            return f"{label(strategy, checkpointed, lora)} ({need / GB:.0f} GB)"
    leanest = SETTINGS[-1] if world > 1 else SETTINGS[-2]
    return f"does not fit ({label(*leanest)}: {per_gpu(b, *leanest, world) / GB:.0f} GB)"


def tables() -> str:
    bases = [base(name) for name in BASES]
    rows = ["| strategy | precision | weights + grads + AdamW, bytes per parameter per GPU |", "|---|---|---|"]
    b8 = bases[2]
    for strategy, precision, world in [("ddp", "fp32", 1), ("ddp", "bf16", 1), ("ddp", "bf16", 8),
                                       ("fsdp", "fp32", 8), ("fsdp", "bf16", 8), ("fsdp", "bf16", 16)]:
        per_param = model_state(b8, strategy, precision, world, False) / b8.params
        rows.append(f"| {strategy} x{world} | {precision} | {per_param:.2f} |")
    fits = [f"| base (parameters) | {' | '.join(f'{n} x 80 GB' for n in GPUS)} |",
            "|---|" + "---|" * len(GPUS)]
    for b in bases:
        fits.append(f"| {b.name} ({b.params / 1e9:.2f}B) | " + " | ".join(fit(b, n) for n in GPUS) + " |")
    per_token = {k: activation_coefficients(*k) @ np.array(b8.dims) for k in ((False, False), (True, False))}
    return "\n".join([
        f"Bytes per parameter at {b8.name}'s layer/root split (ddp is the same at any size; fsdp's unsharded layers "
        "weigh less as bases grow):", "", *rows, "",
        f"Activations, measured (bf16 autocast, SDPA): {per_token[False, False] / 1e3:.0f} kB per token per layer at "
        f"{b8.name}'s widths, {per_token[True, False] / 1e3:.0f} kB kept per token per layer with checkpointing.",
        "", f"Which bases fit, one pair (2 x 4096 tokens) per micro-batch, bf16, {BUDGET:.0%} of 80 GB per GPU, the "
        "first setting that fits in the order full fine-tuning, no checkpointing, no sharding:", "", *fits])


def write(doc: Path = DOC) -> None:
    text = doc.read_text(encoding="utf-8")
    block = f"{START}\n{tables()}\n{END}"
    doc.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S),
                   encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="put the tables into docs/scaling.md")
    if parser.parse_args().write:
        write()
    else:
        print(tables())
