"""HTTP ingest from several producers (API keys): each is judged against its own event time, and
windows are computed when every active producer has passed them, a producer more than the
lateness behind the leader holding nothing back, a quiet one nothing at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, Traffic, events, generate

T = 1_767_225_600_000
MINUTE = 60_000


class Clock:
    def __init__(self, seconds: float) -> None:
        self.now = seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Service, Clock]]:
    ref = tmp_path / "ref.parquet"
    generate(Traffic(n=5000, seed=1000)).drop(FILE_DROP).write_parquet(ref)
    clock = Clock(T / 1000 + 7200)  # events up to T + 2 h are not in the future
    settings = load_settings(
        store=f"chdb://{tmp_path / 'store'}",
        references={"churn": str(ref)},
        pane_ms=MINUTE,
        window_ms=5 * MINUTE,
        lateness_ms=MINUTE,
        idle_ms=30_000,
        open_mode=True,
    )
    service = Service(settings, clock=clock)
    try:
        yield service, clock
    finally:
        service.stop()


def post(service: Service, producer: str, n: int, start_ms: int, seed: int) -> int:
    """``n`` events one second apart from ``start_ms``; returns how many were late."""
    batch = [orjson.dumps(e) for e in events(generate(Traffic(n=n, seed=seed, start_ms=start_ms, rate=1.0)))]
    result = service.http_ingest.ingest(batch, None, producer)
    assert result.accepted == n and not result.errors
    return result.late


def computed(service: Service) -> set[int]:
    """Ends of the windows computed, in minutes after T."""
    done = service.store.windows_computed(5 * MINUTE, T - 10 * MINUTE)
    return {(end - T) // MINUTE for (_, _, end) in done}


def test_windows_wait_for_active_producers_within_the_lateness(served: tuple[Service, Clock]) -> None:
    service, clock = served
    assert post(service, "b", 1, T, seed=1) == 0  # both producers are known from here on
    assert post(service, "a", 241, T, seed=2) == 0  # a: up to T+4m, its watermark T+3m
    # b (watermark T-1m) is more than the lateness behind a: it holds windows back to T+2m only
    assert computed(service) == {1, 2}
    assert post(service, "b", 211, T, seed=3) == 0  # b: up to T+3.5m, watermark T+2.5m, on time
    assert computed(service) == {1, 2}  # window T+3m waits for b
    clock.now += 31  # b goes quiet: a alone decides
    assert post(service, "a", 61, T + 241_000, seed=4) == 0  # a: up to T+5m, watermark T+4m
    assert computed(service) == {1, 2, 3, 4}


def test_a_producer_behind_another_is_not_late_and_its_windows_are_computed_again(
    served: tuple[Service, Clock],
) -> None:
    service, _ = served
    assert post(service, "a", 600, T + 60 * MINUTE, seed=5) == 0  # an hour ahead
    assert post(service, "b", 120, T, seed=6) == 0  # on time for b itself
    events_metric = {
        (m.window_end - T) // MINUTE: m.value for m in service.store.metrics("churn", "events", "")
    }
    assert events_metric[1] == 60 and events_metric[2] == 120  # b's windows, with b's events
