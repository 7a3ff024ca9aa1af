"""The FastAPI application: routers per resource, problem+json errors, request metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route, compile_path

from driftline import __version__
from driftline import telemetry as prom
from driftline.api import problems
from driftline.api.routers import alerts, health, ingest, models
from driftline.service import Service
from driftline.storage.errors import StoreError

SECURED = (ingest.router, models.router, alerts.router)  # every route needs a key with a scope
AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]  # either scheme


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="driftline",
        version=__version__,
        description="Model monitoring and drift detection. "
        "Authenticate with `Authorization: Bearer <API key>` (or `X-API-Key`); keys carry the scopes "
        "`ingest`, `read` and `admin`. Errors are RFC 9457 problem details.",
    )
    app.state.service = service
    for router in (*SECURED, health.router):
        app.include_router(router)
    allowed = _allowed_methods([r for router in (*SECURED, health.router) for r in router.routes], app.routes)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:  # Allow lists the methods of every route of the path (RFC 9110)
            exc.headers = {**(exc.headers or {}), "Allow": allowed(request.scope["path"])}
        return await problems.on_http_error(request, exc)

    app.add_exception_handler(problems.Problem, problems.on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, problems.on_validation_error)
    app.add_exception_handler(StoreError, problems.on_store_error)
    app.add_exception_handler(Exception, problems.on_unexpected)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = _documented_errors(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        prom.HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        prom.HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
        return response

    return app


def _allowed_methods(api_routes: list[Any], app_routes: list[Any]) -> Callable[[str], str]:
    """path -> the ``Allow`` value: the methods of every route whose template matches it."""
    table = [
        (compile_path(r.path)[0], r.methods)
        for r in [*api_routes, *app_routes]
        if isinstance(r, APIRoute | Route) and r.methods
    ]

    def allowed(path: str) -> str:
        return ", ".join(sorted({m for regex, methods in table if regex.match(path) for m in methods}))

    return allowed


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {problems.PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _documented_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """The error responses the server really sends: validation errors are 400 problems (not
    FastAPI's 422 HTTPValidationError), every keyed route may answer 401 and 403, every route
    that reads the store 503, every route with a path parameter 404; the routes declare their own
    404/413/415/422 with what they mean."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Problem"] = problems.SCHEMA
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    public = {r.path for r in health.router.routes if isinstance(r, APIRoute)}
    for path, operations in schema["paths"].items():
        for op in operations.values():
            responses = op.setdefault("responses", {})
            if responses.get("422", {}).get("description") == "Validation Error":  # FastAPI's, never sent
                del responses["422"]
            for code, response in list(responses.items()):
                if code.startswith(("4", "5")) and "content" not in response:
                    responses[code] = _problem(response.get("description", ""))
            if op.get("parameters") or op.get("requestBody"):
                responses.setdefault("400", _problem("invalid parameters or body"))
            if "{" in path:  # an id the router cannot route (a dot segment, say) is a 404 too
                responses.setdefault("404", _problem("no such resource"))
            if path in public:
                continue
            op["security"] = AUTH
            responses.setdefault("401", _problem("missing or unknown API key"))
            responses.setdefault("403", _problem("the key lacks the scope"))
            responses.setdefault("503", _problem("the store is unavailable; retry"))
    return schema
