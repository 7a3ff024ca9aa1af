"""The HTTP server around a :class:`~driftline.service.Service`: the app, uvicorn, the signals."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator

import uvicorn

from driftline.api.app import create_app
from driftline.service import Service


class Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown, which would kill the process before the
    service flushed; driftline handles the signals itself. ``listening`` is called with the port
    once the socket is bound, so whoever waits for the line can connect."""

    listening: Callable[[int], None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.listening:
            self.listening(self.servers[0].sockets[0].getsockname()[1])


def server(service: Service, host: str, port: int, log_level: str | None = None) -> Server:
    """The API of ``service`` on ``host:port``; logs go through driftline's handlers."""
    config = uvicorn.Config(create_app(service), host=host, port=port, log_config=None, log_level=log_level)
    return Server(config)
