"""The Python API for best-of-n, rejection sampling and RLHF reward functions: a trained reward model loaded once,
scoring (prompt, response) pairs exactly as training encoded them."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from rewardkit.data.formats import render, renderer_for
from rewardkit.encoding.families import input_template
from rewardkit.encoding.templates import EncodedSequences, encode_sequences
from rewardkit.errors import UserError
from rewardkit.modeling.artifact import load_artifact
from rewardkit.modeling.devices import enable_tf32, resolve_device, resolve_precision
from rewardkit.modeling.inference import score_sequences


def same_prompt_groups(prompts, n: int) -> list[list[int]]:
    """Indices of the responses that share a prompt (all of them for one prompt: best-of-n): a decoder computes
    that prompt once for the group (rewardkit.modeling.packing)."""
    if isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict)):
        return [list(range(n))]
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(repr(prompt), []).append(i)
    return list(groups.values())


class RewardScorer:
    """A trained reward model loaded once; `score` encodes like training and scores in length-sorted batches.

        scorer = RewardScorer.from_pretrained("models/reward_model")
        rewards = scorer.score(prompt, candidates)           # one prompt, n candidates: best-of-n
        best = candidates[max(range(len(rewards)), key=rewards.__getitem__)]
    """

    def __init__(self, model, tokenizer, meta: dict, device: torch.device, precision: str = "fp32"):
        self.model, self.tokenizer, self.meta, self.device = model, tokenizer, meta, device
        self.precision = resolve_precision(precision, device)
        """fp32 or bf16: the model body's precision (the score head and the rewards are fp32 either way)."""
        self.template = input_template(model.hf.config, tokenizer)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str = "auto", precision: str = "fp32") -> RewardScorer:
        """`precision`: auto (bf16 where the device has native bf16), fp32 or bf16."""
        torch_device = resolve_device(device)
        enable_tf32(torch_device)
        model, tokenizer, meta = load_artifact(model_dir, torch_device)
        return cls(model.to(torch_device), tokenizer, meta, torch_device, precision)

    def encode(self, prompts: str | Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        """Input ids as in training; a single prompt string is paired with every response."""
        return self.encode_sequences(prompts, responses).ids

    def encode_sequences(self, prompts: str | Sequence[str], responses: Sequence[str]) -> EncodedSequences:
        """The encoding as in training, with where each response starts (for bases with token types).

        Prompts and responses are strings, or message lists ({"role", "content"}) rendered as the training data
        was (the tokenizer's chat template or the plain template, as reward_model.json records)."""
        if isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict)):
            prompts = [prompts] * len(responses)  # one prompt for every response: best-of-n
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; pass one prompt per response")
        renderer = renderer_for(self.meta.get("rendering"), self.tokenizer)
        texts = [render(p, r, renderer) for p, r in zip(prompts, responses)]
        return encode_sequences(self.tokenizer, [p for p, _ in texts], [r for _, r in texts],
                                self.meta["max_length"], self.template)

    def normalize(self, rewards: torch.Tensor) -> torch.Tensor:
        """(r - mean) / std with the reward statistics of the training pairs, saved by the train stage."""
        mean, std = self.meta.get("reward_mean"), self.meta.get("reward_std")
        if mean is None or not std:
            raise UserError(f"reward_model.json has no usable reward_mean/reward_std (got {mean}, {std}); "
                            "score without normalize")
        return (rewards - mean) / std

    def rewards(self, prompts: str | Sequence[str], responses: Sequence[str], normalize: bool = False,
                batch_size: int = 64, progress=None) -> torch.Tensor:
        """One reward per (prompt, response) pair, as a float32 CPU tensor in input order."""
        enc = self.encode_sequences(prompts, responses)
        if not enc.ids:
            return torch.empty(0)
        rewards = score_sequences(self.model, enc.ids, self.tokenizer.pad_token_id, batch_size, self.device,
                                  progress, enc.segments, same_prompt_groups(prompts, len(responses)),
                                  self.precision)
        return self.normalize(rewards) if normalize else rewards

    def score(self, prompts: str | Sequence[str], responses: Sequence[str], normalize: bool = False,
              batch_size: int = 64) -> list[float]:
        """One reward per (prompt, response) pair, as Python floats (what an RLHF reward function returns)."""
        return self.rewards(prompts, responses, normalize, batch_size).tolist()
