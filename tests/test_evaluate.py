"""The window evaluator on a real chDB store (no Kafka): when windows are computed, what late
events and a restart's catch-up make it compute again, and that it computes from the store."""

from __future__ import annotations

import threading

from driftline.detectors.profile import ModelRegistry, ModelSketch
from driftline.ingest.evaluate import WindowEvaluator
from driftline.ingest.panes import WindowSpec
from driftline.storage.codec import pane_rows
from driftline.storage.rows import MetricRow, OffsetRange
from driftline.storage.store import Store

from .test_storage import model_sketch

PANE = 60_000
SPEC = WindowSpec(pane_ms=PANE, window_ms=3 * PANE, lateness_ms=0)


class Seen:
    def __init__(self) -> None:
        self.windows: list[tuple[int, int]] = []  # (end, events)

    def __call__(self, model: str, version: str, start: int, end: int, rows: list[MetricRow]) -> None:
        self.windows.append((end, int(next(r.value for r in rows if r.metric == "events"))))


def write_pane(store: Store, current: ModelSketch, pane: int, offset: int, late: bool = False) -> None:
    store.write_flush(
        "g", pane_rows("m", "v1", pane, PANE, late, current), OffsetRange("t", 0, offset, offset)
    )


def evaluator(store: Store, reference: ModelSketch, seen: Seen) -> WindowEvaluator:
    return WindowEvaluator(store, {"m": reference}, SPEC, ModelRegistry(), seen)


def test_windows_wait_until_final_and_stored(store: Store) -> None:
    reference, current = model_sketch(1, n=100)
    seen = Seen()
    ev = evaluator(store, reference, seen)
    for k in range(3):
        write_pane(store, current, k * PANE, k)
    ev.changed([("m", "v1", k * PANE, False) for k in range(3)], final_ms=2 * PANE)
    assert ev.evaluate_due() == 2 and seen.windows == [(PANE, 100), (2 * PANE, 200)]
    assert ev.pending == 1  # the window ending at 3 min is not final yet
    ev.changed((), final_ms=3 * PANE)
    ev.evaluate_due()
    assert seen.windows[-1] == (3 * PANE, 300)


def test_late_events_recompute_every_computed_window_that_contains_their_pane(store: Store) -> None:
    reference, current = model_sketch(2, n=50)
    seen = Seen()
    ev = evaluator(store, reference, seen)
    for k in range(5):
        write_pane(store, current, k * PANE, k)
    ev.changed([("m", "v1", k * PANE, False) for k in range(5)], final_ms=5 * PANE)
    ev.evaluate_due()
    seen.windows.clear()
    write_pane(store, current, PANE, 10, late=True)  # late events for minute 1
    ev.changed([("m", "v1", PANE, True)], final_ms=None)
    ev.evaluate_due()
    # windows (3 panes) containing minute 1 end at 2, 3 and 4 minutes; each now counts 50 more
    assert sorted(seen.windows) == [(2 * PANE, 150), (3 * PANE, 200), (4 * PANE, 200)]


def test_catch_up_computes_what_a_crashed_predecessor_left(store: Store) -> None:
    reference, current = model_sketch(3, n=10)
    first = Seen()
    ev = evaluator(store, reference, first)
    for k in range(6):
        write_pane(store, current, k * PANE, k)
    ev.changed([("m", "v1", k * PANE, False) for k in range(6)], final_ms=3 * PANE)
    ev.evaluate_due()  # windows ending at 1..3 min computed; then the process dies
    write_pane(store, current, 2 * PANE, 20)  # and a partial for minute 2 had landed after them
    second = Seen()
    restarted = evaluator(store, reference, second)
    restarted.catch_up()
    restarted.changed((), final_ms=6 * PANE)
    restarted.evaluate_due()
    # recomputed: the windows containing minute 2 (ending at 3, 4, 5) and never computed: 4, 5, 6
    assert sorted(second.windows) == [(3 * PANE, 40), (4 * PANE, 40), (5 * PANE, 40), (6 * PANE, 30)]
    third = Seen()
    again = evaluator(store, reference, third)
    again.catch_up()
    again.changed((), final_ms=6 * PANE)
    assert again.evaluate_due() == 0 and third.windows == []  # nothing left to do


def test_the_thread_computes_due_windows_and_survives_store_errors(store: Store) -> None:
    reference, current = model_sketch(4, n=10)
    seen = Seen()
    ev = evaluator(store, reference, seen)
    write_pane(store, current, 0, 0)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [ev.run_once(stop, 0.05) for _ in iter(stop.is_set, True)])
    thread.start()
    try:
        ev.changed([("m", "v1", 0, False)], final_ms=PANE)
        for _ in range(100):
            if seen.windows:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join()
    assert seen.windows == [(PANE, 10)]


def test_a_shared_evaluator_waits_for_every_member_that_reads(store: Store) -> None:
    reference, current = model_sketch(5, n=10)
    seen = Seen()
    ev = evaluator(store, reference, seen)
    for k in range(3):
        write_pane(store, current, k * PANE, k)
    ev.changed([("m", "v1", k * PANE, False) for k in range(3)], final_ms=3 * PANE, member="a")
    ev.changed((), final_ms=PANE, member="b")  # b's partitions are behind: only minute 0 is final
    ev.evaluate_due()
    assert [end for end, _ in seen.windows] == [PANE]
    ev.withdraw("b")  # b lost its partitions: a alone decides
    ev.evaluate_due()
    assert [end for end, _ in seen.windows] == [PANE, 2 * PANE, 3 * PANE]
    ev.withdraw("a", stopping=True)  # everyone stopped: what they stored stays final
    assert ev.final_ms == 3 * PANE
