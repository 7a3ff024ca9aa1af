"""Local HTTP servers that speak the receivers' real wire formats and can be told to fail.

* ``pagerduty``: Events API v2 ``POST /v2/enqueue``; validates the event like the service does
  (routing_key, event_action, dedup_key, payload.summary/source/severity on trigger) -> 202 / 400.
* ``slack``: incoming webhook; needs ``text`` or ``blocks`` -> 200 ``ok`` / 400 ``invalid_payload``.
* ``webhook``: any POST -> 200.
Failures are scripted per request: a status (with headers, e.g. Retry-After), a reset connection,
or a slow answer; ``down`` makes every request fail until cleared; ``fail_when`` answers every
request a predicate picks (one poisonous notification) with an error status.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Script:
    kind: str  # "status" | "reset" | "slow"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class ReceiverServer:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.accepted: list[Received] = []  # requests answered with success
        self.attempts: list[Received] = []  # every request that arrived
        self.script: list[Script] = []
        self.down = False
        self._refuse: tuple[Callable[[Received], bool], int] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                rec = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                server._handle(self, rec)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ReceiverServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, n: int, status: int = 500, **headers: str) -> None:
        self.script += [Script("status", status, {k.replace("_", "-"): v for k, v in headers.items()})] * n

    def fail_when(self, predicate: Callable[[Received], bool], status: int = 500) -> None:
        self._refuse = (predicate, status)

    def reset_next(self, n: int) -> None:
        self.script += [Script("reset")] * n

    def slow_next(self, n: int, seconds: float) -> None:
        self.script += [Script("slow", seconds=seconds)] * n

    def _handle(self, h: BaseHTTPRequestHandler, rec: Received) -> None:
        with self._lock:
            self.attempts.append(rec)
            action = Script("reset") if self.down else (self.script.pop(0) if self.script else None)
            if action is None and self._refuse is not None and self._refuse[0](rec):
                action = Script("status", self._refuse[1])
        if action is not None and action.kind == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            h.connection.close()
            return
        if action is not None and action.kind == "slow":
            time.sleep(action.seconds)
        if action is not None and action.kind == "status":
            self._reply(h, action.status, b'{"status":"error"}', action.headers)
            return
        status, body = self._validate(rec)
        if status < 300:
            with self._lock:
                self.accepted.append(rec)
        self._reply(h, status, body, {})

    def _validate(self, rec: Received) -> tuple[int, bytes]:
        if self.kind == "pagerduty":
            problems = _pagerduty_problems(rec)
            if problems:
                return 400, json.dumps({"status": "invalid event", "message": "Event object is invalid",
                                        "errors": problems}).encode()  # fmt: skip
            return 202, json.dumps({"status": "success", "message": "Event processed",
                                    "dedup_key": rec.json["dedup_key"]}).encode()  # fmt: skip
        if self.kind == "slack":
            try:
                msg = rec.json
            except ValueError:
                return 400, b"invalid_payload"
            return (200, b"ok") if msg.get("text") or msg.get("blocks") else (400, b"invalid_payload")
        return 200, b"{}"

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("content-length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


def _pagerduty_problems(rec: Received) -> list[str]:
    if rec.path != "/v2/enqueue":
        return [f"unknown path {rec.path}"]
    try:
        e = rec.json
    except ValueError:
        return ["body is not JSON"]
    problems = []
    if not e.get("routing_key"):
        problems.append("'routing_key' is missing")
    if e.get("event_action") not in PD_ACTIONS:
        problems.append("'event_action' is invalid")
    if e.get("event_action") in ("acknowledge", "resolve") and not e.get("dedup_key"):
        problems.append("'dedup_key' is required to acknowledge or resolve")
    if e.get("event_action") == "trigger":
        p = e.get("payload") or {}
        for f in ("summary", "source", "severity"):
            if not p.get(f):
                problems.append(f"'payload.{f}' is missing")
        if p.get("severity") and p["severity"] not in PD_SEVERITIES:
            problems.append("'payload.severity' is invalid")
        if len(p.get("summary", "")) > 1024:
            problems.append("'payload.summary' is too long")
    return problems
