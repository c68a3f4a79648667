"""The reward model over HTTP, for RLHF loops that score in another process or on another machine.

FastAPI on uvicorn: the stack OpenRLHF's own serve_rm.py and most TRL/vLLM deployments already run, and uvicorn
drains in-flight requests on SIGTERM. Requests are encoded as training encoded pairs (RewardScorer.encode_sequences,
token types included) and scored through rewardkit.batcher, which coalesces concurrent requests into token-budgeted
batches, and the scorer's own score_sequences.

    POST /score        {"prompts": [...], "responses": [...]} or {"prompt": "...", "responses": [...]},
                       optional "normalize": true                          -> {"rewards": [...]}
    POST /score_pairs  {"pairs": [{"prompt", "chosen", "rejected"}, ...]}  -> {"pairs": [{"reward_chosen",
                       "reward_rejected", "preferred": "chosen" | "rejected" | "tie"}, ...]}
    POST /get_reward   OpenRLHF's remote reward model (--remote_rm_url): {"query", "prompts", "labels"}
                       -> {"rewards", "scores", "extra_logs"}; ?normalize=true for z-scores
    GET  /health       {"status": "ok"} (503 "draining" during shutdown), no key needed
    GET  /metrics      Prometheus text format (rewardkit.server_metrics)

Errors are {"error": message} with 400 (malformed JSON), 401 (key), 404, 413 (body or pair count over the limit),
422 (wrong types, empty or mismatched lists) or 503 (shutting down).
"""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from starlette.exceptions import HTTPException

from rewardkit.batcher import BatcherClosed, DynamicBatcher
from rewardkit.errors import UserError
from rewardkit.inference import score_sequences
from rewardkit.scorer import RewardScorer
from rewardkit.server_config import ServeConfig
from rewardkit.server_guard import ApiError, Guard
from rewardkit.server_metrics import MetricsMiddleware, ServerMetrics
from rewardkit.server_openrlhf import OpenRLHFRequest, split_queries


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

    def _encode(self, prompts: str | list[str], responses: list[str]) -> list[Sequence]:
        """(input ids, where the response starts or None) per row, as RewardScorer encodes them."""
        enc = self.scorer.encode_sequences(prompts, responses)
        return list(zip(enc.ids, enc.segments or [None] * len(enc.ids)))

    def _forward(self, items: list[Sequence]) -> list[float]:
        """One coalesced batch through the scorer's own scoring path (in a batcher thread)."""
        ids = [item[0] for item in items]
        segments = None if items[0][1] is None else [item[1] for item in items]  # token types (BERT) or none
        return score_sequences(self.scorer.model, ids, self.scorer.tokenizer.pad_token_id, len(ids),
                               self.scorer.device, None, segments).tolist()

    def check_size(self, n: int, what: str) -> None:
        if n > self.cfg.max_pairs:
            raise ApiError(413, f"{n} {what} in one request; this server takes at most {self.cfg.max_pairs} "
                                "(its --max-pairs): split the request")

    async def rewards(self, prompts: str | list[str], responses: list[str], normalize: bool) -> list[float]:
        _check_unicode(responses, "responses")
        _check_unicode([prompts] if isinstance(prompts, str) else prompts, "prompts")
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


def _check_unicode(texts: list[str], field: str) -> None:
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(422, f"{field}[{i}] has an unpaired surrogate escape (\\ud800-\\udfff): send valid "
                                "Unicode text") from None


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    try:
        data = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"malformed JSON: {e}") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ApiError(422, "; ".join(_describe(err) for err in e.errors()[:3])) from None


def _describe(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"].removeprefix("Value error, ")


def create_app(service: ScoringService) -> MetricsMiddleware:
    """The ASGI app of `service`: the FastAPI routes inside the guard (key, body size, draining), inside the
    metrics layer."""
    async def lifespan(app: FastAPI):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="rewardkit reward model", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code)

    @app.post("/score")
    async def score(request: Request) -> JSONResponse:
        body = await _parse(request, ScoreRequest)
        service.check_size(len(body.responses), "responses")
        prompts = body.prompt if body.prompts is None else body.prompts
        return JSONResponse({"rewards": await service.rewards(prompts, body.responses, body.normalize)})

    @app.post("/score_pairs")
    async def score_pairs(request: Request) -> JSONResponse:
        body = await _parse(request, PairsRequest)
        service.check_size(len(body.pairs), "pairs")
        prompts = [p.prompt for p in body.pairs]
        responses = [p.chosen for p in body.pairs] + [p.rejected for p in body.pairs]
        rewards = await service.rewards(prompts + prompts, responses, body.normalize)
        n = len(body.pairs)
        service.metrics.pairs.inc(n)
        return JSONResponse({"pairs": [{"reward_chosen": c, "reward_rejected": r,
                                        "preferred": "chosen" if c > r else "rejected" if r > c else "tie"}
                                       for c, r in zip(rewards[:n], rewards[n:])]})

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        body = await _parse(request, OpenRLHFRequest)
        if not body.query:
            raise ApiError(422, "'query' is empty")
        service.check_size(len(body.query), "queries")
        normalize = request.query_params.get("normalize", "false").lower()
        if normalize not in ("true", "false", "1", "0"):
            raise ApiError(422, f"?normalize={normalize}: use true or false")
        responses = split_queries(body.query, body.prompts, service.cfg.eos_text)
        rewards = await service.rewards(body.prompts, responses, normalize in ("true", "1"))
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": {}})

    @app.get("/health")
    async def health() -> JSONResponse:
        if service.draining:
            return JSONResponse({"status": "draining"}, 503)
        return JSONResponse({"status": "ok", "model": str(service.cfg.model), "device": str(service.scorer.device)})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        body, content_type = service.metrics.render(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    guarded = Guard(app, service.cfg.api_key, service.cfg.max_body_bytes, lambda: service.draining)
    return MetricsMiddleware(guarded, service.metrics)
