"""The JSON bodies the reward server accepts, as pydantic models: strict types, unknown fields refused, and the
checks that make a request meaningful (one prompt per response, no empty list).

A prompt or response is text, or a list of chat messages ({"role", "content"}) as the score CLI and RewardScorer
take them: a (prompt, response) pair is both text or both messages, the response starting with an assistant turn
(rewardkit.data.formats.check_scored_pair, the CLI's rule), and messages are rendered as the training data was.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from rewardkit.data.formats import ROLES, RowProblem, check_scored_pair


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Message(BaseModel):
    """One chat message; other keys (a tool call's "name", ...) are kept for the chat template, as in training."""
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal[tuple(ROLES)]  # type: ignore[valid-type]
    content: str


def _kind(value: object) -> str | None:
    return "text" if isinstance(value, str) else "messages" if isinstance(value, list) else None


Turns = Annotated[Union[Annotated[str, Tag("text")],
                        Annotated[Annotated[list[Message], Field(min_length=1)], Tag("messages")]],
                  Discriminator(_kind, custom_error_type="text_or_messages",
                                custom_error_message="must be a string or a list of messages")]
"""A prompt or a response: text, or a non-empty list of messages."""


def as_input(value: str | list[Message]) -> str | list[dict]:
    """What RewardScorer takes: the text, or the messages as plain dicts (extra keys included)."""
    return value if isinstance(value, str) else [m.model_dump() for m in value]


def _check_pair(prompt: object, response: object, prompt_field: str, response_field: str) -> None:
    try:
        check_scored_pair(as_input(prompt), as_input(response), prompt_field, response_field)
    except RowProblem as e:
        raise ValueError(str(e)) from None


class ScoreRequest(_Body):
    prompts: list[Turns] | None = None
    prompt: Turns | None = None
    responses: list[Turns]
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
        for i, response in enumerate(self.responses):
            prompt, field = (self.prompt, "prompt") if self.prompts is None else (self.prompts[i], f"prompts[{i}]")
            _check_pair(prompt, response, field, f"responses[{i}]")
        return self

    def inputs(self) -> tuple[str | list, list]:
        """(prompts, responses) as RewardScorer.score takes them (one prompt for all, or one per response)."""
        prompts = as_input(self.prompt) if self.prompts is None else [as_input(p) for p in self.prompts]
        return prompts, [as_input(r) for r in self.responses]


class Pair(_Body):
    prompt: Turns
    chosen: Turns
    rejected: Turns

    @model_validator(mode="after")
    def _same_kinds(self) -> Pair:
        _check_pair(self.prompt, self.chosen, "prompt", "chosen")
        _check_pair(self.prompt, self.rejected, "prompt", "rejected")
        return self


class PairsRequest(_Body):
    pairs: list[Pair]
    normalize: bool = False

    @field_validator("pairs")
    @classmethod
    def _not_empty(cls, pairs: list[Pair]) -> list[Pair]:
        if not pairs:
            raise ValueError("'pairs' is empty")
        return pairs

    def inputs(self) -> tuple[list, list]:
        """(prompts, responses) of every pair's chosen then every pair's rejected side, as one scoring list."""
        prompts = [as_input(p.prompt) for p in self.pairs]
        return prompts + prompts, [as_input(p.chosen) for p in self.pairs] + [as_input(p.rejected) for p in self.pairs]
