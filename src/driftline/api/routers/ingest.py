"""POST /v1/events: the HTTP ingest path (same contract and same panes as Kafka)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from driftline.api.deps import require, service
from driftline.api.problems import Problem
from driftline.service import Service
from driftline.storage.store import StoreError

router = APIRouter(prefix="/v1", tags=["ingest"])

EXAMPLE_EVENT = {
    "event_id": "e-1",
    "model_id": "churn",
    "model_version": "v1",
    "ts": "2026-01-01T00:00:00Z",
    "features": {"f00_normal": 51.2, "plan": "pro", "f09_poisson": None},
    "prediction": 0.83,
    "label": 1,
    "latency_ms": 21.5,
    "segments": {"region": "north", "gender": "female"},
}


class EventError(BaseModel):
    index: int
    field: str
    reason: str


class IngestResponse(BaseModel):
    accepted: int
    rejected: int
    late: int
    errors: list[EventError]


@router.post(
    "/events",
    response_model=IngestResponse,
    dependencies=[Depends(require("ingest"))],
    summary="Ingest prediction events",
    description="A JSON array of events, or NDJSON (`Content-Type: application/x-ndjson`). Valid events are "
    "stored before the response; invalid ones are listed with their index, field and reason. "
    "`Idempotency-Key` makes a retried request count once.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"type": "object"}},
                    "example": [EXAMPLE_EVENT],
                },
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
    responses={
        400: {"description": "no valid event, or the body is not JSON"},
        413: {"description": "body above the configured limit"},
    },
)
async def post_events(
    request: Request,
    svc: Annotated[Service, Depends(service)],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    limit = svc.settings.max_request_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"request body is {declared} bytes, above the {limit}-byte limit")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, f"request body is above the {limit}-byte limit")
    messages = _split(body, request.headers.get("content-type", ""))
    try:
        result = await run_in_threadpool(svc.http_ingest.ingest, messages, idempotency_key)
    except StoreError as exc:
        raise Problem(503, f"the store refused the write, nothing was stored; retry: {exc}") from None
    out = {
        "accepted": result.accepted,
        "rejected": len(result.errors),
        "late": result.late,
        "errors": result.errors,
    }
    if result.errors and not result.accepted:
        raise Problem(400, f"none of the {len(messages)} events is valid", **out)
    return out


def _split(body: bytes, content_type: str) -> list[bytes]:
    if "ndjson" in content_type or "jsonlines" in content_type:
        return [line for line in body.split(b"\n") if line.strip()]
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"body is not JSON: {exc}") from None
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not isinstance(parsed, list) or not parsed:
        raise Problem(400, "body must be a non-empty JSON array of events (or NDJSON)")
    return [orjson.dumps(e) for e in parsed]
