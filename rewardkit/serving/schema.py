"""The reward server's OpenAPI schema (GET /openapi.json with `serve --openapi`), built by FastAPI from the routes.

The routes parse their bodies themselves (rewardkit.serving.server._parse: 400 for malformed JSON, one-line 422s),
so FastAPI cannot see the request models: each route names its model in `openapi_extra` (FastAPI's way for bodies
read by hand) and `openapi` adds the models' JSON schemas, as pydantic writes them, to the components. Answers are
described by the response models below (`responses=`), errors by `Error`; with an API key every operation but
/health carries a bearer security requirement, so a schema-driven fuzzer (schemathesis) checks that it is enforced.
"""
from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

OPENAPI_URL = "/openapi.json"
COMPONENTS = "#/components/schemas/{model}"


class Error(BaseModel):
    """Every error answer: {"error": "what went wrong and what to do"}."""
    error: str


class Rewards(BaseModel):
    rewards: list[float]


class PairRewards(BaseModel):
    reward_chosen: float
    reward_rejected: float
    preferred: Literal["chosen", "rejected", "tie"]


class PairsAnswer(BaseModel):
    pairs: list[PairRewards]


class OpenRLHFAnswer(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok", "draining"]
    model: str | None = None
    device: str | None = None


ERRORS = {400: "malformed JSON", 401: "missing or wrong API key", 413: "body or item count over the limit",
          422: "wrong types, empty or mismatched lists", 503: "shutting down"}
NORMALIZE = {"name": "normalize", "in": "query", "required": False, "description": "z-scores: true or false",
             "schema": {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$"}}
PROMETHEUS = {"text/plain": {"schema": {"type": "string"}},
              "application/openmetrics-text": {"schema": {"type": "string"}}}


def responses(answer: type[BaseModel] | None, *errors: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: `answer` as its 200 and an `Error` body for each of `errors`."""
    out: dict[int | str, dict[str, Any]] = {} if answer is None else {200: {"model": answer}}
    out.update({code: {"model": Error, "description": ERRORS[code]} for code in errors})
    return out


PROMPT = "User: 2+2?\nAssistant:"
EXAMPLES = {"ScoreRequest": {"prompt": PROMPT, "responses": [" 4", " 5"]},
            "PairsRequest": {"pairs": [{"prompt": PROMPT, "chosen": " 4", "rejected": " 5"}]},
            "OpenRLHFRequest": {"query": [PROMPT + " 4"], "prompts": [PROMPT], "labels": [None]}}
"""A request each route answers 200, sent first by schemathesis: the JSON schema cannot say every rule (one prompt
per response, the prompt inside its query), so most generated bodies are 422s."""


def request_body(model: type[BaseModel], **extra: Any) -> dict[str, Any]:
    """The `openapi_extra=` of a route that reads a JSON body of `model` by hand (with its example)."""
    media = {"schema": {"$ref": COMPONENTS.format(model=model.__name__)}, "example": EXAMPLES[model.__name__]}
    return {"requestBody": {"required": True, "content": {"application/json": media}}, **extra}


def openapi(app: FastAPI, request_models: list[type[BaseModel]], keyed: bool) -> dict[str, Any]:
    """FastAPI's schema of `app`, plus the request models' schemas and, when `keyed`, bearer auth on every
    operation but /health. Built once, on the first GET /openapi.json (FastAPI caches it in app.openapi_schema)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        _, defs = models_json_schema([(m, "validation") for m in request_models], ref_template=COMPONENTS)
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        if keyed:
            schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema["paths"].items():
                for operation in operations.values():
                    if path != "/health":
                        operation["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema
