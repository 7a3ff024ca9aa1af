"""POST /v1/events and /v1/labels: the HTTP ingest path (same contract and same panes as Kafka)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from driftline.api.deps import read_body, require, service
from driftline.api.problems import Problem
from driftline.contract import InvalidEvent, parse_label
from driftline.ingest.push import IdempotencyConflict
from driftline.service import Service
from driftline.storage.errors import StoreError

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
    staged: int = Field(
        0,
        description="Of the accepted: of models warming up (no reference yet), kept until their "
        "reference is fitted on their first events, then counted.",
    )
    errors: list[EventError]


@router.post(
    "/events",
    response_model=IngestResponse,
    summary="Ingest prediction events",
    description="A JSON array of events, or NDJSON (`Content-Type: application/x-ndjson`). Valid events are "
    "stored before the response; invalid ones are listed with their index, field and reason. "
    "`Idempotency-Key` makes a retried request count once: it is scoped to the API key and the models "
    "of the request; a retry with the same body gets the first answer again, a different body under a "
    "key already used gets 422. Event times are judged per API key (each key's traffic has its own "
    "watermark), and an event more than `http_max_future_ms` ahead of the server's clock is rejected.",
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
        422: {"description": "the Idempotency-Key was used before with another body"},
    },
)
async def post_events(
    request: Request,
    svc: Annotated[Service, Depends(service)],
    producer: Annotated[str, Depends(require("ingest"))],
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> dict[str, Any]:
    body = await read_body(request, svc.settings.max_request_bytes)
    messages = _split(body, request.headers.get("content-type", ""))
    try:
        result = await run_in_threadpool(svc.http_ingest.ingest, messages, idempotency_key, producer)
    except IdempotencyConflict as exc:
        raise Problem(422, str(exc)) from None
    except StoreError as exc:
        raise Problem(503, f"the store refused the write, nothing was stored; retry: {exc}") from None
    out = {
        "accepted": result.accepted,
        "rejected": len(result.errors),
        "late": result.late,
        "staged": result.staged,
        "errors": result.errors,
    }
    if result.errors and not result.accepted:
        raise Problem(400, f"none of the {len(messages)} events is valid", **out)
    return out


def _split(body: bytes, content_type: str) -> list[bytes]:
    if "ndjson" in content_type or "jsonlines" in content_type:
        lines = [line for line in body.split(b"\n") if line.strip()]
        if not lines:
            raise Problem(400, "body has no events: NDJSON wants one event per line")
        return lines
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"body is not JSON: {exc}") from None
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not isinstance(parsed, list) or not parsed:
        raise Problem(400, "body must be a non-empty JSON array of events (or NDJSON)")
    return [orjson.dumps(e) for e in parsed]


class LabelsResponse(BaseModel):
    accepted: int
    rejected: int
    errors: list[EventError]


@router.post(
    "/labels",
    response_model=LabelsResponse,
    summary="Ingest labels that arrive after their predictions",
    description="A JSON array of `{event_id, model_id, ts, label}` (or NDJSON). Each label is joined to its "
    "prediction by `event_id` and counts in the pane of the prediction's event time; one whose prediction "
    "has not arrived waits (within `label_horizon_ms`); a second label for an event replaces the first. "
    "Needs `http_labels: true`.",
    responses={
        400: {"description": "no valid label, or the body is not JSON"},
        409: {"description": "labels over HTTP are off (http_labels)"},
        413: {"description": "body above the configured limit"},
    },
)
async def post_labels(
    request: Request,
    svc: Annotated[Service, Depends(service)],
    producer: Annotated[str, Depends(require("ingest"))],
) -> dict[str, Any]:
    joiner = svc.http_labels
    if joiner is None:
        raise Problem(
            409, "labels over HTTP are off: set http_labels: true (or send them to the label topic)"
        )
    body = await read_body(request, svc.settings.max_request_bytes)
    labels, errors = [], []
    for i, raw in enumerate(_split(body, request.headers.get("content-type", ""))):
        try:
            label = parse_label(raw)
            reference = svc.references.get(label.model_id)
            if reference is None:
                raise InvalidEvent("model_id", f"no reference registered for model {label.model_id!r}")
            if reference.binning.performance is None:
                raise InvalidEvent("model_id", f"the reference of {label.model_id!r} has no labels")
        except InvalidEvent as exc:
            errors.append({"index": i, "field": exc.field, "reason": exc.reason})
            continue
        labels.append((label, f"http:{producer}"))
    if not labels:
        raise Problem(
            400, f"none of the {len(errors)} labels is valid", accepted=0, rejected=len(errors), errors=errors
        )
    try:
        await run_in_threadpool(joiner.add, labels)
    except StoreError as exc:  # labels are upserts: sending them again is safe
        raise Problem(
            503, f"the store refused a write (some labels may be stored); send them again: {exc}"
        ) from None
    return {"accepted": len(labels), "rejected": len(errors), "errors": errors}
