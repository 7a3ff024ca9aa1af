"""The FastAPI application: routers per resource, problem+json errors, request metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from driftline import __version__
from driftline import metrics as prom
from driftline.api import problems
from driftline.api.routers import alerts, health, ingest, models
from driftline.service import Service
from driftline.storage.store import StoreError


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="driftline",
        version=__version__,
        description="Model monitoring and drift detection. "
        "Authenticate with `Authorization: Bearer <API key>`; keys carry the scopes `ingest`, `read` "
        "and `admin`. Errors are RFC 9457 problem details.",
    )
    app.state.service = service
    app.add_exception_handler(problems.Problem, problems.on_problem)
    app.add_exception_handler(StarletteHTTPException, problems.on_http_error)
    app.add_exception_handler(RequestValidationError, problems.on_validation_error)
    app.add_exception_handler(StoreError, problems.on_store_error)
    app.add_exception_handler(Exception, problems.on_unexpected)
    for router in (ingest.router, models.router, alerts.router, health.router):
        app.include_router(
            router,
            responses={
                401: {"description": "missing or unknown API key", "content": {problems.PROBLEM: {}}},
                403: {"description": "the key lacks the scope", "content": {problems.PROBLEM: {}}},
            },
        )

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        prom.HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        prom.HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
        return response

    return app
