"""Dependencies: the service, API-key auth with scopes, time-range parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Query, Request

from driftline.api.problems import Problem
from driftline.contract import InvalidEvent, parse_ts
from driftline.service import Service


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def require(scope: str) -> Callable[..., None]:
    """``Authorization: Bearer <key>`` (or ``X-API-Key``) whose scopes include ``scope``."""

    def check(request: Request, svc: Annotated[Service, Depends(service)]) -> None:
        settings = svc.settings
        if settings.open_mode:
            return
        header = request.headers.get("authorization", "")
        key = (
            header.removeprefix("Bearer ").strip()
            if header.startswith("Bearer ")
            else request.headers.get("x-api-key")
        )
        if not key:
            raise Problem(401, "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
        scopes = settings.api_keys.get(key)
        if scopes is None:
            raise Problem(401, "unknown API key")
        if scope not in scopes and "admin" not in scopes:
            raise Problem(403, f"this API key lacks the {scope!r} scope")

    check.__name__ = f"require_{scope}"
    return check


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
