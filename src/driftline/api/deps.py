"""Dependencies: the service, API-key auth with scopes, time-range parameters, bounded bodies."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Query, Request

from driftline.api.problems import Problem
from driftline.contract import InvalidEvent, parse_ts
from driftline.service import Service

OPEN = "open"  # the principal of every request in open mode


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def presented_key(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>`` (the scheme is case-insensitive, RFC 9110
    §11.1) or of ``X-API-Key``."""
    scheme, _, credentials = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("x-api-key") or None


def principal(key: str) -> str:
    """A stable name for an API key that reveals nothing of it (idempotency scopes, watermarks)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def require(scope: str) -> Callable[..., str]:
    """A key whose scopes include ``scope``; the dependency's value is the key's principal."""

    def check(request: Request, svc: Annotated[Service, Depends(service)]) -> str:
        settings = svc.settings
        if settings.open_mode:
            return OPEN
        key = presented_key(request)
        if not key:
            raise Problem(401, "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
        scopes = settings.api_keys.get(key)
        if scopes is None:
            raise Problem(401, "unknown API key")
        if scope not in scopes and "admin" not in scopes:
            raise Problem(403, f"this API key lacks the {scope!r} scope")
        return principal(key)

    check.__name__ = f"require_{scope}"
    return check


async def body_chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives; 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"request body is {declared} bytes, above the {limit}-byte limit")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"request body is above the {limit}-byte limit")
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in body_chunks(request, limit)])


def _ms(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        numeric = value.isascii() and value.lstrip("-").isdigit()
        return parse_ts(int(value) if numeric else value)
    except InvalidEvent as exc:
        raise Problem(400, f"{name}: {exc.reason}") from None


class TimeRange:
    """``from``/``to`` as RFC 3339 or epoch milliseconds; ``to`` is exclusive."""

    def __init__(
        self,
        from_: Annotated[str | None, Query(alias="from", examples=["2026-01-01T00:00:00Z"])] = None,
        to: Annotated[str | None, Query(examples=["1767229200000"])] = None,
    ) -> None:
        self.start = _ms(from_, "from")
        self.end = _ms(to, "to")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise Problem(400, "to: must be after from")
