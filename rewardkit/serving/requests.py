"""The JSON bodies the reward server accepts, as pydantic models: strict types, unknown fields refused, and the
checks that make a request meaningful (one prompt per response, no empty list)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator, model_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ScoreRequest(_Body):
    prompts: list[str] | None = None
    prompt: str | None = None
    responses: list[str]
    normalize: bool = False

    @model_validator(mode="after")
    def _one_prompt_per_response(self) -> ScoreRequest:
        if (self.prompts is None) == (self.prompt is None):
            raise ValueError("give either 'prompts' (one per response) or 'prompt' (one for all responses)")
        if not self.responses:
            raise ValueError("'responses' is empty")
        if self.prompts is not None and len(self.prompts) != len(self.responses):
            raise ValueError(f"{len(self.prompts)} prompts but {len(self.responses)} responses: send one prompt "
                             "per response, or one 'prompt' string for all")
        return self


class Pair(_Body):
    prompt: str
    chosen: str
    rejected: str


class PairsRequest(_Body):
    pairs: list[Pair]
    normalize: bool = False

    @field_validator("pairs")
    @classmethod
    def _not_empty(cls, pairs: list[Pair]) -> list[Pair]:
        if not pairs:
            raise ValueError("'pairs' is empty")
        return pairs
