"""Liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from driftline.api.deps import service
from driftline.api.problems import problem_response
from driftline.service import Service

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz(svc: Annotated[Service, Depends(service)]) -> dict[str, Any]:
    return {"status": "ok", "uptime_s": round(svc.clock() - svc.started_at, 3)}


@router.get(
    "/readyz",
    summary="Store reachable and, with Kafka, partitions assigned",
    responses={503: {"description": "not ready"}},
)
def readyz(svc: Annotated[Service, Depends(service)]) -> Any:
    checks = svc.ready()
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", "checks": checks}
    return problem_response(
        503, "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()), "/readyz", checks=checks
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
