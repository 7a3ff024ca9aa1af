"""Fixtures for integration tests against a real Kafka broker.

Every test under tests/integration/ is marked ``integration`` (see
``pytest_collection_modifyitems``), which also lifts the socket block of tests/conftest.py.

The broker is a single-node KRaft Kafka started once per session by ``scripts/kafka-dev up`` in a
temporary state directory (needs java and mvn; the first run downloads the jars from Maven
Central). Set ``DRIFTLINE_TEST_BOOTSTRAP=host:port`` to use an already running broker instead.
Deselect these tests with ``-m "not integration"``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

INTEGRATION_DIR = Path(__file__).resolve().parent
REPO = INTEGRATION_DIR.parents[1]
KAFKA_DEV = REPO / "scripts" / "kafka-dev"
BOOTSTRAP_ENV = "DRIFTLINE_TEST_BOOTSTRAP"

# The first `up` on a machine resolves ~45 jars from Maven Central.
UP_TIMEOUT_S = 900
DOWN_TIMEOUT_S = 60


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection, so `-m "not integration"` sees the marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class KafkaBroker:
    bootstrap: str
    state_dir: Path | None  # None when DRIFTLINE_TEST_BOOTSTRAP points at an external broker


def run_kafka_dev(*args: str, timeout: float = DOWN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAFKA_DEV), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def parse_bootstrap(stdout: str) -> str | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("BOOTSTRAP="):
            return line.removeprefix("BOOTSTRAP=").strip()
    return None


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        yield KafkaBroker(bootstrap=external, state_dir=None)
        return

    state_dir = tmp_path_factory.mktemp("kafka-run")
    try:
        up = run_kafka_dev("up", "--dir", str(state_dir), timeout=UP_TIMEOUT_S)
        bootstrap = parse_bootstrap(up.stdout)
        if up.returncode != 0 or bootstrap is None:
            pytest.fail(
                f"`scripts/kafka-dev up` failed (exit {up.returncode}); it needs java 17+ and mvn. "
                f"Use -m 'not integration' to skip these tests, or set {BOOTSTRAP_ENV}.\n"
                f"stdout:\n{up.stdout}\nstderr:\n{up.stderr}",
                pytrace=False,
            )
        yield KafkaBroker(bootstrap=bootstrap, state_dir=state_dir)
    finally:
        # Also after a failed or interrupted `up`: never leave a broker behind.
        down = run_kafka_dev("down", "--dir", str(state_dir))
        if down.returncode != 0:
            print(f"warning: `scripts/kafka-dev down` failed:\n{down.stdout}{down.stderr}")


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    # One long-lived client: a temporary AdminClient can be collected before its request
    # completes, and the future then fails with _DESTROY.
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.list_topics(timeout=30)  # fail early if the broker is unreachable
    return admin


def _wait_for_topic(admin: AdminClient, topic: str, partitions: int, timeout: float = 30.0) -> None:
    """Wait until the metadata shows the topic with all partitions led."""
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (
            md is not None
            and md.error is None
            and len(md.partitions) == partitions
            and all(p.leader >= 0 for p in md.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} not ready after {timeout}s: {md}")
        time.sleep(0.1)


@pytest.fixture
def new_topic(kafka_admin: AdminClient) -> Iterator[Callable[..., str]]:
    """``new_topic(partitions=3, prefix="t") -> name``: a fresh topic, deleted after the test."""
    created: list[str] = []

    def make(partitions: int = 3, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        futures = kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)],
            request_timeout=30,
            operation_timeout=30,
        )
        futures[name].result(timeout=60)
        created.append(name)
        _wait_for_topic(kafka_admin, name, partitions)
        return name

    yield make

    if created:
        with contextlib.suppress(Exception):
            futures = kafka_admin.delete_topics(created, request_timeout=30, operation_timeout=30)
            for future in futures.values():
                with contextlib.suppress(Exception):
                    future.result(timeout=30)
