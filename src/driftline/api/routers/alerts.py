"""Alerts (current state, one alert, history) and silences (create, list, expire)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from driftline.api.deps import require, service
from driftline.api.problems import Problem
from driftline.contract import format_ts
from driftline.service import Service
from driftline.storage.alerts import silence_json

router = APIRouter(prefix="/v1", tags=["alerts"])
read = [Depends(require("read"))]
admin = [Depends(require("admin"))]


@router.get("/alerts", dependencies=read, summary="Alerts now pending or firing")
def current(svc: Annotated[Service, Depends(service)]) -> list[dict[str, Any]]:
    states = svc.alert_store.alert_states()
    return [
        _times({"state": state, **alert})
        for state, _, _, alert in states.values()
        if state in ("pending", "firing")
    ]


@router.get("/alerts/history", dependencies=read, summary="State transitions, newest first")
def history(
    svc: Annotated[Service, Depends(service)],
    model: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    return [_times(h) for h in svc.alert_store.alert_history(model, limit)]


@router.get(
    "/alerts/{fingerprint}",
    dependencies=read,
    summary="One alert's current state",
    responses={404: {"description": "unknown fingerprint"}},
)
def one(
    fingerprint: Annotated[str, Path(max_length=64)], svc: Annotated[Service, Depends(service)]
) -> dict[str, Any]:
    found = svc.alert_store.alert_states().get(fingerprint)
    if found is None:
        raise Problem(404, f"no alert with fingerprint {fingerprint!r}")
    state, breaches, _, alert = found
    return _times({"state": state, "breaches": breaches, **alert})


def _times(alert: dict[str, Any]) -> dict[str, Any]:
    """Episode start and end (stored as epoch seconds) in RFC 3339; window bounds stay epoch ms."""
    return alert | {
        k: None if alert[k] is None else format_ts(alert[k] * 1000) for k in ("starts_at", "ends_at")
    }


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented: no bool for a number
    matchers: dict[
        Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=256)]
    ] = Field(min_length=1, examples=[{"model": "churn", "feature": "age*"}])
    duration_s: float = Field(3600, gt=0, le=366 * 86400, examples=[7200])
    comment: str = Field("", max_length=2000, examples=["retraining in progress"])
    created_by: str = Field("", max_length=200, examples=["alice"])


@router.get("/silences", dependencies=read, summary="All silences")
def silences(svc: Annotated[Service, Depends(service)]) -> list[dict[str, Any]]:
    now = time.time()
    return [silence_json(s, now) for s in svc.alert_store.silences()]


@router.post("/silences", dependencies=admin, status_code=201, summary="Create a silence")
def create_silence(body: SilenceIn, svc: Annotated[Service, Depends(service)]) -> dict[str, Any]:
    now, sid = time.time(), uuid.uuid4().hex[:12]
    svc.alert_store.save_silence(
        sid, body.matchers, now, now + body.duration_s, body.comment, body.created_by
    )
    return silence_json((sid, body.matchers, now, now + body.duration_s, body.comment, body.created_by), now)


@router.delete(
    "/silences/{silence_id}",
    dependencies=admin,
    summary="Expire a silence now",
    responses={404: {"description": "unknown silence"}},
)
def expire_silence(
    silence_id: Annotated[str, Path(max_length=64)], svc: Annotated[Service, Depends(service)]
) -> dict[str, Any]:
    found = [s for s in svc.alert_store.silences() if s[0] == silence_id]
    if not found:
        raise Problem(404, f"no silence with id {silence_id!r}")
    sid, matchers, start, _, comment, by = found[0]
    now = time.time()
    svc.alert_store.save_silence(sid, matchers, start, now, comment, by)
    return silence_json((sid, matchers, start, now, comment, by), now)
