"""The model behind the reward server's routes: requests encoded as training encoded pairs
(RewardScorer.encode_sequences, token types included) on one thread, scored through the dynamic batcher
(rewardkit.serving.batcher) on the scorer's own score_sequences."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import torch

from rewardkit.data.formats import is_message_list
from rewardkit.errors import UserError
from rewardkit.modeling.inference import score_sequences
from rewardkit.scoring.scorer import RewardScorer
from rewardkit.serving.batcher import BatcherClosed, DynamicBatcher
from rewardkit.serving.config import ServeConfig
from rewardkit.serving.guard import ApiError
from rewardkit.serving.metrics import ServerMetrics


class ScoringService:
    """The model behind the routes: encodes on one thread, scores through the dynamic batcher."""

    def __init__(self, scorer: RewardScorer, cfg: ServeConfig):
        self.scorer, self.cfg, self.draining = scorer, cfg, False
        cpu = scorer.device.type == "cpu"
        threads = torch.get_num_threads()
        workers = cfg.workers or (threads if cpu else 1)  # CPU: whole batches in parallel, one core each
        per_worker = max(1, threads // workers)
        self.metrics = ServerMetrics(lambda: self.batcher.queued)
        self.batcher = DynamicBatcher(self._forward, max_batch_tokens=cfg.batch_tokens(scorer.device),
                                      max_wait_ms=cfg.max_wait_ms, workers=workers, length=lambda item: len(item[0]),
                                      thread_init=(lambda: torch.set_num_threads(per_worker)) if cpu else None,
                                      on_batch=self.metrics.on_batch)
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="rewardkit-encode")  # keeps the loop free

    def _encode(self, prompts: str | list, responses: list) -> list[Sequence]:
        """(input ids, where the response starts or None) per row, as RewardScorer encodes them."""
        enc = self.scorer.encode_sequences(prompts, responses)
        return list(zip(enc.ids, enc.segments or [None] * len(enc.ids)))

    def _forward(self, items: list[Sequence]) -> list[float]:
        """One coalesced batch through the scorer's own scoring path (in a batcher thread)."""
        ids = [item[0] for item in items]
        segments = None if items[0][1] is None else [item[1] for item in items]  # token types (BERT) or none
        return score_sequences(self.scorer.model, ids, self.scorer.tokenizer.pad_token_id, len(ids),
                               self.scorer.device, None, segments, precision=self.scorer.precision).tolist()

    def check_size(self, n: int, what: str) -> None:
        if n > self.cfg.max_pairs:
            raise ApiError(413, f"{n} {what} in one request; this server takes at most {self.cfg.max_pairs} "
                                "(its --max-pairs): split the request")

    async def rewards(self, prompts: str | list, responses: list, normalize: bool) -> list[float]:
        """Rewards of (prompt, response) pairs, texts or message lists (a single prompt for every response)."""
        _check_unicode(responses, "responses")
        _check_unicode([prompts] if isinstance(prompts, str) or is_message_list(prompts) else prompts, "prompts")
        if normalize:
            try:
                self.scorer.normalize(torch.zeros(1))
            except UserError as e:
                raise ApiError(422, str(e)) from None
        items = await asyncio.get_running_loop().run_in_executor(self._encoder, self._encode, prompts, responses)
        try:
            rewards = await self.batcher.submit(items)
        except BatcherClosed as e:
            raise ApiError(503, str(e)) from None
        self.metrics.sequences.inc(len(rewards))
        return self.scorer.normalize(torch.tensor(rewards)).tolist() if normalize else rewards

    async def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        self.draining = True
        await self.batcher.close()  # whatever is queued is scored before the process exits
        self._encoder.shutdown()


def _check_unicode(items: list, field: str) -> None:
    """Every text (or message string) encodes as UTF-8: JSON's \\ud800 escapes decode to strings that do not."""
    for i, item in enumerate(items):
        texts = [v for m in item for v in m.values() if isinstance(v, str)] if isinstance(item, list) else [item]
        try:
            for text in texts:
                text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(422, f"{field}[{i}] has an unpaired surrogate escape (\\ud800-\\udfff): send valid "
                                "Unicode text") from None
