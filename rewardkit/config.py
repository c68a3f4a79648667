"""One frozen, typed config per params.yaml section, each field documented once; `rewardkit.params` reads them
(`load(XConfig)`), casts the values and reports every problem of a section at once, naming its key."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import ClassVar

from rewardkit.errors import UserError
from rewardkit.params import (  # noqa: F401  (stages load from here)
    PARAMS_FILE,
    Section,
    at_least,
    build,
    load,
    one_of,
    within,
)

PRECISIONS = ("auto", "fp32", "bf16")
"""The values of every precision setting (train.precision, evaluate.precision, score's and serve's --precision);
rewardkit.modeling.devices.resolve_precision says what each means on a device."""


@dataclass(frozen=True)
class DataConfig(Section):
    section: ClassVar[str] = "data"
    path: str | list[str] = "dataset/financial_rewards.jsonl"
    """The preference data: a .jsonl, .jsonl.gz or .parquet file, a list of them, or a directory of them."""
    dir: str = "dataset"
    """The directory dvc.yaml tracks as the validate stage's data dependency: every data file lies under it."""

    def check(self) -> list[str]:
        entries = [self.path] if isinstance(self.path, str) else self.path
        if not isinstance(entries, list) or not entries or not all(isinstance(p, str) and p for p in entries):
            return [f"path: expected a file or directory path or a non-empty list of them, got {self.path!r}"]
        return []


@dataclass(frozen=True)
class ValidateConfig(Section):
    section: ClassVar[str] = "validate"
    max_line_bytes: int = 1_000_000
    """Lines longer than this (in bytes) are rejected as line_too_long."""
    max_reject_fraction: float = 0.05
    """The stage fails when more than this fraction of the lines read is rejected."""

    def check(self) -> list[str]:
        return [*at_least(self, 16, "max_line_bytes"), *within(self, "max_reject_fraction", 0, 1)]


@dataclass(frozen=True)
class SplitConfig(Section):
    section: ClassVar[str] = "split"
    eval_fraction: float = 0.1
    """Fraction of pairs held out for evaluation; whole prompt groups go to one side."""
    seed: int = 20240611
    """Key of the prompt hash: another seed gives another (equally stable) split."""

    def check(self) -> list[str]:
        return within(self, "eval_fraction", 0, 1, "()")


POOLINGS = ("cls", "mean")
# offline bases; their sizes: rewardkit.encoding.scratch.SCRATCH_SIZES
SCRATCH_BASES = ("scratch-tiny", "scratch-deberta-v3-small", "scratch-minilm")


@dataclass(frozen=True)
class ModelConfig(Section):
    section: ClassVar[str] = "model"
    name: str = "microsoft/deberta-v3-small"
    """Base model: a hub id, a local directory, or scratch-tiny / scratch-deberta-v3-small / scratch-minilm
    (offline random init, tokenizer trained on the training split)."""
    pooling: str = "cls"
    """cls: the standard HF sequence-classification head; mean: masked mean of the last hidden states."""
    scratch_vocab_size: int = 8000
    """Tokenizer vocabulary size for the scratch-* bases (trained on the training split)."""
    chat_template: str = "auto"
    """How conversational rows become text: auto (the tokenizer's chat template when it has one, else the plain
    `User: …\nAssistant:` template) or plain."""

    def check(self) -> list[str]:
        out = [*one_of(self, "pooling", POOLINGS), *one_of(self, "chat_template", ("auto", "plain")),
               *at_least(self, 300, "scratch_vocab_size")]
        if not self.name.strip():
            out.append("name: must not be empty")
        elif self.name not in SCRATCH_BASES and not os.path.isdir(self.name) and not _looks_like_hub_id(self.name):
            out.append(f"name: {self.name!r} is neither a local directory, a hub id (owner/name) nor one of "
                       f"{', '.join(SCRATCH_BASES)}")
        return out


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    ok = all(p and all(c.isalnum() or c in "-_." for c in p) and not p.startswith(("-", ".")) for p in parts)
    return ok and 1 <= len(parts) <= 2 and not name.startswith(("/", "./", "../"))


STRATEGIES = ("ddp", "fsdp")  # rewardkit.training.fsdp
LORA_DEFAULTS = {"r": 0, "alpha": 16.0, "dropout": 0.0, "target_modules": "all-linear"}


@dataclass(frozen=True)
class LoraSettings(Section):
    """train.lora: peft's LoraConfig in our keys (rewardkit.training.lora applies it)."""

    section: ClassVar[str] = "train.lora"
    r: int = LORA_DEFAULTS["r"]
    """Rank of the adapters (0: LoRA off)."""
    alpha: float = LORA_DEFAULTS["alpha"]
    """Scale of the adapters' update: alpha / r."""
    dropout: float = LORA_DEFAULTS["dropout"]
    """Dropout on the adapters' input (the base's own dropout stays off)."""
    target_modules: str | list = LORA_DEFAULTS["target_modules"]
    """all-linear (every linear layer of the body), a list of module names, or a regex over full module names."""

    def check(self) -> list[str]:
        out = [*at_least(self, 0, "r"), *within(self, "dropout", 0, 1, "[)")]
        if not self.alpha > 0:
            out.append(f"alpha: must be positive, got {self.alpha}")
        names = [self.target_modules] if isinstance(self.target_modules, str) else self.target_modules
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            out.append(f"target_modules: expected all-linear, a module name, a list of them or a regex, got "
                       f"{self.target_modules!r}")
        return out


def lora_problems(lora: object) -> list[str]:
    """What is wrong with train.lora, as TrainConfig.check problems ("lora.<key>: ...")."""
    if not isinstance(lora, dict):
        return [f"lora: expected a mapping of {', '.join(LORA_DEFAULTS)}, got {lora!r}"]
    if unknown := sorted(set(lora) - set(LORA_DEFAULTS)):
        return [f"lora: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(LORA_DEFAULTS)}"]
    try:
        LoraSettings(**lora)
    except UserError as e:  # "params.yaml: train.lora.r: ...; train.lora.alpha: ..."
        return [p.removeprefix("train.") for p in str(e).removeprefix(f"{PARAMS_FILE}: ").split("; ")]
    return []


@dataclass(frozen=True)
class TrainConfig(Section):
    section: ClassVar[str] = "train"
    max_length: int = 512
    """Tokens per `[CLS] prompt [SEP] response [SEP]`; the prompt is cut from the left first."""
    batch_size: int = 16
    """Pairs per optimizer step in total: split over processes and accumulation steps, so changing
    nproc_per_node or grad_accum_steps keeps the optimisation the same."""
    grad_accum_steps: int = 1
    """Micro-batches per process per optimizer step (trades memory for time)."""
    epochs: int = 1
    """Passes over the training split."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: off); the learning-rate schedule follows it."""
    lr: float = 2e-5
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and LayerNorm weights)."""
    scheduler: str = "linear"
    """A `transformers.get_scheduler` name: linear, cosine, constant_with_warmup, ..."""
    warmup_ratio: float = 0.1
    """Fraction of optimizer steps spent in linear warm-up."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 disables clipping)."""
    center_rewards_coef: float = 0.0
    """Weight of the reward-centering term E[(r+ + r-)^2] (0.01 is a common choice)."""
    use_margin: bool = True
    """Use a row's numeric `margin` field: loss = -log σ(r+ - r- - margin)."""
    seed: int = 42
    """Seed for initialisation (scratch bases and the new head) and batch order."""
    device: str = "auto"
    """auto (cuda when present), cpu or cuda."""
    precision: str = "fp32"
    """auto (bf16 autocast where the device has native bf16: CUDA compute capability >= 8.0, CPUs with AVX512-BF16
    or AMX; fp32 elsewhere), fp32 or bf16. Weights, optimizer state, score head, loss and rewards stay fp32."""
    compile: bool = False
    """torch.compile the model; sequence lengths are padded to a multiple of 64 to bound recompiles."""
    prefix_sharing: str = "auto"
    """auto: a causal decoder reads each pair as one packed `[prompt | chosen | rejected]` (the prompt computed once,
    no padding work; docs/decoders.md); off: chosen and rejected as two padded sequences. Encoders and
    train.compile always run padded."""
    checkpoint_every: int = 200
    """Optimizer steps between resumable checkpoints in .scratch/ (0 disables checkpoints)."""
    nproc_per_node: int = 1
    """Processes (GPUs) per node; above 1 the stage relaunches itself under torchrun with DDP."""
    eval_every: int = 0
    """Optimizer steps between scorings of a validation slice of the training split (0: off, every training pair
    is trained on). The eval split is never used during training."""
    validation_fraction: float = 0.05
    """With eval_every: the share of the training pairs, whole prompts at a time, kept out of training to validate."""
    stats_pairs: int = 20000
    """Training pairs scored with the final weights for the training metrics and the reward mean/std (all of them
    when there are fewer; else this many, evenly spaced)."""
    strategy: str = "ddp"
    """ddp: every process holds the whole model (DistributedDataParallel over several); fsdp: parameters,
    gradients and optimizer state sharded over the processes (FSDP2), for bases too big for one device."""
    gradient_checkpointing: bool = False
    """Recompute each transformer layer's activations in backward instead of keeping them (transformers' forward
    and the fast ones alike): much less activation memory for about one more forward per step."""
    lora: dict = dataclasses.field(default_factory=lambda: dict(LORA_DEFAULTS))
    """LoRA adapters (peft) on the base's body, the head trained fully: {r, alpha, dropout, target_modules}
    (`LoraSettings`; r = 0: off, every weight is trained)."""

    def lora_settings(self) -> LoraSettings:
        """train.lora read and checked, the keys it leaves out at their defaults."""
        return LoraSettings(**self.lora)

    def check(self) -> list[str]:
        from transformers.trainer_utils import SchedulerType

        out = [*at_least(self, 8, "max_length"), *at_least(self, 1, "batch_size", "grad_accum_steps", "epochs",
                                                             "nproc_per_node"),
               *at_least(self, 0, "weight_decay", "max_grad_norm", "center_rewards_coef", "checkpoint_every",
                         "max_steps", "stats_pairs", "eval_every"),
               *within(self, "validation_fraction", 0, 1, "()"), *within(self, "warmup_ratio", 0, 1, "[)"),
               *one_of(self, "scheduler", [s.value for s in SchedulerType]),
               *one_of(self, "device", ("auto", "cpu", "cuda")), *one_of(self, "precision", PRECISIONS),
               *one_of(self, "prefix_sharing", ("auto", "off")), *one_of(self, "strategy", STRATEGIES)]
        if self.batch_size % max(1, self.nproc_per_node * self.grad_accum_steps):
            out.append(f"batch_size: {self.batch_size} pairs cannot be split evenly over nproc_per_node="
                       f"{self.nproc_per_node} x grad_accum_steps={self.grad_accum_steps}")
        if not self.lr > 0:
            out.append(f"lr: must be positive, got {self.lr}")
        return out + lora_problems(self.lora)


@dataclass(frozen=True)
class EvaluateConfig(Section):
    section: ClassVar[str] = "evaluate"
    batch_size: int = 64
    """Pairs per inference batch (batches are length-sorted)."""
    calibration_bins: int = 10
    """Equal-width confidence bins for ECE and the calibration curve."""
    precision: str = "fp32"
    """auto, fp32 or bf16 (as train.precision): the precision the model's body scores in; rewards are fp32."""
    extra_sets: dict = dataclasses.field(default_factory=dict)
    """Extra evaluation sets, {name: path} or {name: {path, scoring}}: files (any format validate accepts) under
    eval_sets/, each validated, scored per answer and reported under extra_sets.<name> in metrics/eval.json, with
    the benchmark's own rule (scoring: auto | rmbench | rewardbench2 | pairs; checked by evaluation.extra_sets)."""

    def check(self) -> list[str]:
        return [*at_least(self, 1, "batch_size"), *within(self, "calibration_bins", 2, 100),
                *one_of(self, "precision", PRECISIONS)]


