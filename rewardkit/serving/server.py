"""The reward model over HTTP, for RLHF loops that score in another process or on another machine.

FastAPI on uvicorn: the stack OpenRLHF's own serve_rm.py and most TRL/vLLM deployments already run, and uvicorn
drains in-flight requests on SIGTERM. Requests are checked (rewardkit.serving.requests), encoded as training
encoded pairs and scored in coalesced batches (rewardkit.serving.service).

    POST /score        {"prompts": [...], "responses": [...]} or {"prompt": "...", "responses": [...]},
                       optional "normalize": true                          -> {"rewards": [...]}
                       (each prompt and response text, or both lists of {"role", "content"} messages)
    POST /score_pairs  {"pairs": [{"prompt", "chosen", "rejected"}, ...]}  -> {"pairs": [{"reward_chosen",
                       "reward_rejected", "preferred": "chosen" | "rejected" | "tie"}, ...]}
    POST /get_reward   OpenRLHF's remote reward model (--remote_rm_url): {"query", "prompts", "labels"}
                       -> {"rewards", "scores", "extra_logs"}; ?normalize=true for z-scores
    GET  /health       {"status": "ok"} (503 "draining" during shutdown), no key needed
    GET  /metrics      Prometheus text format (rewardkit.serving.metrics)

Errors are {"error": message} with 400 (malformed JSON), 401 (key), 404, 413 (body or pair count over the limit),
422 (wrong types, empty or mismatched lists) or 503 (shutting down).
"""
from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from rewardkit.modeling.objective import preferred
from rewardkit.serving.guard import ApiError, Guard
from rewardkit.serving.metrics import MetricsMiddleware
from rewardkit.serving.openrlhf import OpenRLHFRequest, split_queries
from rewardkit.serving.requests import PairsRequest, ScoreRequest
from rewardkit.serving.schema import (
    ERRORS,
    NORMALIZE,
    OPENAPI_URL,
    PROMETHEUS,
    Health,
    OpenRLHFAnswer,
    PairsAnswer,
    Rewards,
    openapi,
    request_body,
    responses,
)
from rewardkit.serving.service import ScoringService


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
    where, message = ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def create_app(service: ScoringService) -> MetricsMiddleware:
    """The ASGI app of `service`: the FastAPI routes inside the guard (key, body size, draining), inside the
    metrics layer; GET /openapi.json (behind the key like the rest) with --openapi."""
    async def lifespan(app: FastAPI):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="rewardkit reward model", docs_url=None, redoc_url=None,
                  openapi_url=OPENAPI_URL if service.cfg.openapi else None, lifespan=lifespan)
    app.openapi = lambda: openapi(app, [ScoreRequest, PairsRequest, OpenRLHFRequest], service.cfg.api_key is not None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code,
                            exc.headers)  # a 405 keeps its Allow header

    app.include_router(scoring_routes(service))
    app.include_router(status_routes(service))
    guarded = Guard(app, service.cfg.api_key, service.cfg.max_body_bytes, lambda: service.draining,
                    service.cfg.body_timeout_s)
    return MetricsMiddleware(guarded, service.metrics)


def scoring_routes(service: ScoringService) -> APIRouter:
    """POST /score, /score_pairs and OpenRLHF's /get_reward."""
    router = APIRouter()

    @router.post("/score", responses=responses(Rewards, *ERRORS), openapi_extra=request_body(ScoreRequest))
    async def score(request: Request) -> JSONResponse:
        body = await _parse(request, ScoreRequest)
        service.check_size(len(body.responses), "responses")
        return JSONResponse({"rewards": await service.rewards(*body.inputs(), body.normalize)})

    @router.post("/score_pairs", responses=responses(PairsAnswer, *ERRORS), openapi_extra=request_body(PairsRequest))
    async def score_pairs(request: Request) -> JSONResponse:
        body = await _parse(request, PairsRequest)
        service.check_size(len(body.pairs), "pairs")
        rewards = await service.rewards(*body.inputs(), body.normalize)
        n = len(body.pairs)
        service.metrics.pairs.inc(n)
        return JSONResponse({"pairs": [{"reward_chosen": c, "reward_rejected": r, "preferred": preferred(c, r)}
                                       for c, r in zip(rewards[:n], rewards[n:])]})

    @router.post("/get_reward", responses=responses(OpenRLHFAnswer, *ERRORS),
                 openapi_extra=request_body(OpenRLHFRequest, parameters=[NORMALIZE]))
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

    return router


def status_routes(service: ScoringService) -> APIRouter:
    """GET /health (no key needed) and /metrics."""
    router = APIRouter()

    @router.get("/health", responses={200: {"model": Health}, 503: {"model": Health, "description": "draining"}})
    async def health() -> JSONResponse:
        if service.draining:
            return JSONResponse({"status": "draining"}, 503)
        return JSONResponse({"status": "ok", "model": str(service.cfg.model), "device": str(service.scorer.device)})

    @router.get("/metrics", responses={200: {"content": PROMETHEUS}, **responses(None, 401, 503)})
    async def metrics(request: Request) -> Response:
        body, content_type = service.metrics.render(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return router
