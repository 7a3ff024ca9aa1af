"""Event -> column conversion and pane folding, without Kafka."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.contract import MAX_EVENT_BYTES, Event, InvalidEvent, parse_event
from driftline.detectors.profile import Binning, ModelSketch
from driftline.ingest.decode import decode, to_batch
from driftline.ingest.panes import PaneFolder, WindowSpec

BINNING = Binning.fit(
    {"x": np.arange(100.0), "c": np.array(["a", "b"] * 50, dtype=object)},
    {"x": "numeric", "c": "categorical"},
    10,
    10,
)


def ev(i: int, ts: int, **features: object) -> Event:
    return Event(
        f"e{i}",
        "m",
        ts,
        dict(features),
        prediction=0.9 if i % 2 else 0.1,
        label=i % 3 == 0,
        latency_ms=float(i),
        segments={"g": "u" if i < 2 else "v"},
    )


def test_to_batch_types_missing_and_outcomes() -> None:
    events = [ev(0, 0, x=1.5, c="a"), ev(1, 0, x="2", c=True), ev(2, 0, c=None), ev(3, 0, x=True, c=3)]
    b = to_batch(events, BINNING)
    x = b.features["x"]
    assert isinstance(x, np.ndarray)
    assert x[0] == 1.5 and np.isnan(x[1:]).all()
    assert b.type_errors["x"] == 2  # "2" and True are not numbers; the missing one is just missing
    names, codes = b.features["c"]  # type: ignore[misc]
    assert [names[k] for k in codes] == ["a", "true", None, "3"]
    assert b.positive is not None and b.positive.tolist() == [0, 1, 0, 1]
    assert b.label is not None and b.label.tolist() == [1, 0, 0, 1]
    assert b.latency_ms is not None and b.latency_ms.tolist() == [0.0, 1.0, 2.0, 3.0]
    sketch = ModelSketch(BINNING).update(b)
    assert (sketch.features["x"].n, sketch.features["x"].type_errors) == (1, 2)


def test_decode_refuses_empty_and_oversized() -> None:
    with pytest.raises(InvalidEvent, match="empty message"):
        decode(None, 100)
    with pytest.raises(InvalidEvent, match="above the 10-byte limit"):
        decode(b'{"a": 12345678}', 10)


def test_folder_routes_late_events_per_partition() -> None:
    spec = WindowSpec(pane_ms=60_000, window_ms=600_000, lateness_ms=30_000)
    ref = ModelSketch(BINNING)
    folder = PaneFolder({"m": ref}, spec)
    folder.fold([ev(i, 10_000 * i, x=float(i), c="a") for i in range(20)], "p0")  # 0 .. 190 s
    # watermark = 190 s - 30 s = 160 s: panes [0, 60) and [60, 120) are final
    assert folder.watermark.current() == 160_000
    folder.fold([ev(100, 5_000, x=1.0, c="b"), ev(101, 150_000, x=1.0, c="b")], "p0")
    folder.fold([ev(102, 5_000, x=2.0, c="a")], "p1")  # another partition: its own state
    assert folder.late_events == 2  # p1 is behind everything p0 has made final
    assert folder.pending_events == 23
    rows, panes = folder.take_rows("p0")
    late = {(r.pane_start, r.late) for r in rows if r.kind == "events"}
    assert (0, True) in late and (120_000, False) in late
    assert sum(r.n for r in rows if r.kind == "events") == 22
    assert ("m", "", 0, True) in panes and ("m", "", 120_000, False) in panes
    assert folder.take_rows("p0") == ([], [])
    assert folder.pending_events == 1 and folder.partitions() == ["p1"]
    folder.forget_partitions(["p1"])
    assert folder.pending_events == 0 and folder.take_rows("p1") == ([], [])


# -- the fast decoder agrees with the contract ---------------------------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.lists(st.integers(-9, 9), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(-9, 9), max_size=1),
)
_fields = {
    "event_id": st.one_of(st.text(min_size=0, max_size=130), _values),
    "model_id": st.one_of(st.sampled_from(["churn", ""]), _values),
    "model_version": st.one_of(st.just("v1"), _values),
    "ts": st.one_of(
        st.integers(-10, 8_000_000_000_000),
        st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "9999-01-01T00:00:00Z", "nope"]),
        _values,
    ),
    "features": st.one_of(st.dictionaries(st.text(min_size=0, max_size=3), _values, max_size=4), _values),
    "prediction": st.one_of(st.floats(0, 1), st.sampled_from(["yes", True]), _values),
    "label": st.one_of(st.integers(0, 1), st.sampled_from(["no", False]), _values),
    "latency_ms": st.one_of(st.floats(-1, 100, allow_nan=False), _values),
    "segments": st.one_of(
        st.dictionaries(st.sampled_from(["region"]), st.one_of(st.text(max_size=3), _values)), _values
    ),
}


@given(st.fixed_dictionaries({}, optional=_fields))
def test_fast_decoder_agrees_with_the_contract(obj: dict[str, object]) -> None:
    raw = orjson.dumps(obj)
    try:
        expected = parse_event(raw)
    except InvalidEvent as exc:
        with pytest.raises(InvalidEvent) as info:
            decode(raw, MAX_EVENT_BYTES)
        assert info.value.field == exc.field, (obj, str(info.value), str(exc))
        return
    got = decode(raw, MAX_EVENT_BYTES)
    for name in (
        "event_id",
        "model_id",
        "model_version",
        "ts_ms",
        "features",
        "prediction",
        "label",
        "latency_ms",
        "segments",
    ):
        assert getattr(got, name) == getattr(expected, name), name


def test_events_too_far_in_the_future_are_rejected() -> None:
    raw = orjson.dumps(
        {"event_id": "e", "model_id": "m", "ts": 2_000_000_000_000, "features": {}, "prediction": 1}
    )
    assert decode(raw, MAX_EVENT_BYTES).ts_ms == 2_000_000_000_000
    with pytest.raises(InvalidEvent, match="ts: 2000000000000 ms is too far in the future"):
        decode(raw, MAX_EVENT_BYTES, max_ts_ms=1_900_000_000_000)
