"""OpenRLHF's remote reward model protocol (`--remote_rm_url`), so its trainers use this server unchanged.

As OpenRLHF's client sends it (openrlhf/utils/remote_rm_utils.py, and the agent executors of newer versions):
POST to the URL exactly as given, header `Content-Type: application/json` only, body
`{"query": [...], "prompts": [...], "labels": [...]}`, where each query is the policy's prompt + completion tokens
decoded back to one string. It reads `rewards` from the answer; newer versions also read `scores` and
`extra_logs`, which openrlhf/cli/serve_rm.py returns beside it, so the answer carries all three.

serve_rm.py scores each query as one text and ignores `prompts`; this reward model scores (prompt, response)
pairs as it was trained, so the response is the part of the query after its prompt. The key, when the server has
one, goes in the URL (`http://host:8000/k/<key>/get_reward`), since this client sends no other header.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from rewardkit.serving.guard import ApiError


class OpenRLHFRequest(BaseModel):
    """What OpenRLHF's client posts; `labels` (ground truth for rule-based rewards) is accepted and unused."""

    model_config = ConfigDict(extra="ignore", strict=True)
    query: list[str]
    prompts: list[str] | None = None
    labels: Any = None


def split_queries(queries: list[str], prompts: list[str] | None, eos_texts: tuple[str, ...]) -> list[str]:
    """The response in each query: the text after the first occurrence of its prompt (a BOS text before it is
    skipped), with the policy's end-of-turn texts (`eos_texts`, e.g. "<|im_end|>") cut from its end."""
    if prompts is None:
        raise ApiError(422, "'prompts' is missing: this reward model scores (prompt, response) pairs and needs "
                            "the prompt of each query to split it (OpenRLHF sends 'prompts' with 'labels')")
    if len(prompts) != len(queries):
        raise ApiError(422, f"{len(queries)} queries but {len(prompts)} prompts: send one prompt per query")
    responses, missing = [], []
    for i, (query, prompt) in enumerate(zip(queries, prompts)):
        at = query.find(prompt)
        if at < 0:
            missing.append(i)
            continue
        responses.append(strip_ends(query[at + len(prompt):], eos_texts))
    if missing:
        raise ApiError(422, f"query {missing[:5]} does not contain its prompt: send the prompt text as it appears "
                            "in the query (a policy that left-truncates long prompts needs a larger prompt limit)")
    return responses


def strip_ends(text: str, suffixes: tuple[str, ...]) -> str:
    """`text` without any run of `suffixes` at its end ("...<|im_end|><|endoftext|>" -> "...")."""
    while cut := next((s for s in suffixes if s and text.endswith(s)), None):
        text = text[:-len(cut)]
    return text
