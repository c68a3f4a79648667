"""A synchronous Python client for the reward server (`python -m stages.serve`), usable as a TRL reward function.

    rm = RemoteRewardModel("http://rm-host:8000", api_key=Path("rm.key").read_text().strip())
    rewards = rm.score(prompts, responses)                     # list[float], one per (prompt, response)
    trainer = GRPOTrainer(..., reward_funcs=rm)                # TRL calls rm(prompts=..., completions=...)

The server encodes exactly as training did, so these rewards equal RewardScorer.score on the same texts or
message lists.
"""
from __future__ import annotations

from typing import Sequence

import httpx

from rewardkit.data.formats import is_message_list


class RemoteRewardError(RuntimeError):
    """The server answered with an error (its message is included) or could not be reached."""


class RemoteRewardModel:
    """A reward server at `url` (e.g. "http://rm-host:8000"), one HTTP connection pool, sync calls.

    `api_key` is sent as `Authorization: Bearer <key>`; `timeout` is seconds per request; `normalize` is what
    `__call__` (the TRL reward function) asks for; `chunk` is the most responses per request (the server's
    --max-pairs, 1024 by default): longer lists are sent in several requests. Connection failures are retried twice.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0, normalize: bool = False,
                 chunk: int = 1024):
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url, self.normalize, self.chunk = url.rstrip("/"), normalize, chunk
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                  transport=httpx.HTTPTransport(retries=2))
        self.__name__ = "remote_reward_model"  # TRL names each reward function's logged metrics by __name__

    def score(self, prompts: str | Sequence, responses: Sequence, normalize: bool = False) -> list[float]:
        """One reward per (prompt, response), in order; a single prompt (a string or one message list) is paired
        with every response. Texts, or lists of {"role", "content"} messages as the server takes them."""
        responses = list(responses)
        single = isinstance(prompts, str) or is_message_list(prompts)
        if not single:
            prompts = list(prompts)
            if len(prompts) != len(responses):
                raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; pass one prompt per "
                                 "response, or one prompt string for all")
        rewards: list[float] = []
        for start in range(0, len(responses), self.chunk):
            part = slice(start, start + self.chunk)
            body = {"prompt": prompts} if single else {"prompts": prompts[part]}
            body.update(responses=responses[part], normalize=normalize)
            rewards += self._request("POST", "/score", body)["rewards"]
        return rewards

    def score_pairs(self, pairs: Sequence[dict], normalize: bool = False) -> list[dict]:
        """{"reward_chosen", "reward_rejected", "preferred"} for each {"prompt", "chosen", "rejected"} dict."""
        out: list[dict] = []
        for start in range(0, len(pairs), self.chunk):
            out += self._request("POST", "/score_pairs", {"pairs": list(pairs[start:start + self.chunk]),
                                               "normalize": normalize})["pairs"]
        return out

    def health(self) -> dict:
        """The server's /health answer ({"status": "ok", ...}); raises RemoteRewardError when it is not up."""
        return self._request("GET", "/health", None)

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[float]:
        """TRL's reward-function signature (GRPOTrainer, RLOOTrainer): text prompts and completions, or
        conversational ones (message lists), which the server renders as the training data was."""
        return self.score(list(prompts), list(completions), self.normalize)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteRewardModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, body: dict | None) -> dict:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise RemoteRewardError(f"reward server {self.url} unreachable: {e}") from None
        if response.status_code != 200:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise RemoteRewardError(f"reward server {self.url}{path}: HTTP {response.status_code}: {message}")
        return response.json()
