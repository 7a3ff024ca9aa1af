from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from driftline.detectors.windows import (
    Watermark,
    is_final,
    late_mask,
    pane_start,
    pane_starts,
    sliding_windows,
    window_panes,
)


@given(st.integers(0, 10**13), st.sampled_from([1_000, 60_000, 300_000]))
def test_pane_contains_its_timestamp(ts: int, pane: int) -> None:
    start = pane_start(ts, pane)
    assert start <= ts < start + pane and start % pane == 0
    assert pane_starts(np.array([ts]), pane)[0] == start


def test_window_panes_cover_only_whole_panes() -> None:
    assert list(window_panes(0, 180_000, 60_000)) == [0, 60_000, 120_000]
    assert list(window_panes(30_000, 180_000, 60_000)) == [60_000, 120_000]
    assert list(window_panes(0, 59_999, 60_000)) == []


def test_sliding_windows_containing_a_pane() -> None:
    wins = sliding_windows(600_000, 60_000, 180_000)
    assert wins == [(600_000, 780_000), (540_000, 720_000), (480_000, 660_000)]
    assert all(s <= 600_000 and e >= 660_000 for s, e in wins)


def test_watermark_min_over_partitions_with_lateness() -> None:
    w = Watermark(lateness_ms=5_000)
    assert w.current() is None
    w.observe(0, 100_000)
    w.observe(1, 70_000)
    assert w.current() == 65_000
    assert is_final(0, 60_000, 65_000) and not is_final(60_000, 60_000, 65_000)


def test_idle_partition_stops_holding_back_and_never_regresses() -> None:
    w = Watermark(lateness_ms=0)
    w.observe(0, 100_000)
    w.observe(1, 50_000)
    w.observe(0, 200_000)
    assert w.current() == 50_000
    w.set_idle(1, True)  # the source found it read to the end and quiet
    assert w.current() == 200_000
    w.observe(1, 60_000)  # it speaks again, far behind: it counts again ...
    assert w.current() == 200_000  # ... but panes already final stay final
    w.forget(0)
    w.forget(1)
    assert w.current() == 200_000


def test_all_idle_lets_last_panes_close() -> None:
    w = Watermark(lateness_ms=1_000)
    w.observe(0, 100_000)
    w.observe(1, 40_000)
    assert w.current() == 39_000
    w.set_idle(0, True)
    w.set_idle(1, True)
    assert w.current() == 99_000


def test_no_clock_inside_only_idle_facts_release_a_partition() -> None:
    # A stall of the process is invisible here: without set_idle the lagging partition holds.
    w = Watermark(lateness_ms=0)
    w.observe("ahead", 10_000_000)
    w.observe("behind", 1_000)
    for _ in range(3):
        assert w.current() == 1_000
    assert not late_mask(np.array([1_500, 2_000]), 1_000, w.marks("behind", np.array([1_500, 2_000]))).any()


def test_restored_max_event_holds_until_the_partition_moves() -> None:
    w = Watermark(lateness_ms=0)
    w.assign("a", max_event_ms=300_000)
    w.assign("b", max_event_ms=120_000)
    assert w.current() == 120_000
    w.set_idle("b", True)
    assert w.current() == 300_000


def test_late_mask() -> None:
    ts = np.array([10_000, 59_999, 60_000, 125_000])
    assert late_mask(ts, 60_000, None).tolist() == [False] * 4
    assert late_mask(ts, 60_000, 120_000).tolist() == [True, True, True, False]


def test_assigned_silent_partition_holds_watermark_until_idle() -> None:
    w = Watermark(lateness_ms=0)
    w.assign("b")
    w.observe("a", 500_000)
    assert w.current() is None  # "b" may still deliver old events
    w.observe("b", 100_000)
    assert w.current() == 100_000
    w.set_idle("a", True)
    w.set_idle("b", True)
    assert w.current() == 500_000  # both idle: the latest event time counts


def test_marks_judge_each_event_of_a_batch_in_order() -> None:
    w = Watermark(lateness_ms=60_000)
    ts = np.array([600_000, 610_000, 30_000, 700_000, 560_000])
    marks = w.marks("p", ts)
    assert marks.tolist()[1:] == [540_000, 550_000, 550_000, 640_000]
    assert late_mask(ts, 60_000, marks).tolist() == [False, False, True, False, True]
    w.observe("q", 100_000)  # another partition far behind caps the marks
    assert w.marks("p", ts).max() == 40_000


def test_marks_with_a_silent_partition_are_never_late() -> None:
    w = Watermark(lateness_ms=300_000)
    w.assign("quiet")
    ts = np.array([600_000, 610_000, 30_000])
    marks = w.marks("busy", ts)
    assert not late_mask(ts, 60_000, marks).any()  # the silent partition may still be behind
