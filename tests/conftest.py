"""Shared fixtures. Unit tests cannot reach the network: unless a test is marked
``integration``, any socket connection raises; ``loopback`` tests may reach 127.0.0.1 only
(the local receiver servers of the alerting tests)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from driftline.storage.store import Store

settings.register_profile(
    "ci", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("ci")

_real_connect = socket.socket.connect


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("integration"):
        yield
        return

    loopback_ok = request.node.get_closest_marker("loopback") is not None

    def guarded(self: socket.socket, address: object) -> None:
        if self.family == socket.AF_UNIX:
            return _real_connect(self, address)
        if loopback_ok and isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1", "localhost"):
            return _real_connect(self, address)
        raise RuntimeError(
            f"unit test tried to open a network connection to {address!r}; mark it integration"
        )

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh embedded store (chDB in this process, no network)."""
    s = Store.open(f"chdb://{tmp_path / 'db'}")
    try:
        yield s
    finally:
        s.close()
