from __future__ import annotations

import math

import orjson
import pytest

from driftline.contract import (
    MAX_ID_CHARS,
    Event,
    InvalidEvent,
    parse_event,
    parse_label,
    parse_ts,
    validate_event,
)


def good(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": "e-1",
        "model_id": "churn",
        "model_version": "v3",
        "ts": "2026-01-01T00:00:01.500Z",
        "features": {"age": 41, "plan": "pro", "vip": True, "income": None},
        "prediction": 0.73,
        "label": 1,
        "latency_ms": 12.5,
        "segments": {"region": "eu"},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()


def test_valid_event_round_trips() -> None:
    e = parse_event(orjson.dumps(good()))
    assert e == Event(
        event_id="e-1",
        model_id="churn",
        model_version="v3",
        ts_ms=1_767_225_601_500,
        features={"age": 41, "plan": "pro", "vip": True, "income": None},
        prediction=0.73,
        label=1,
        latency_ms=12.5,
        segments={"region": "eu"},
    )


def test_optional_fields_default() -> None:
    e = validate_event(good(model_version=_DROP, label=_DROP, latency_ms=_DROP, segments=_DROP))
    assert (e.model_version, e.label, e.latency_ms, e.segments) == ("", None, None, {})


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1_700_000_000_123, 1_700_000_000_123),
        (1_700_000_000_123.9, 1_700_000_000_123),
        ("2026-01-01T00:00:00Z", 1_767_225_600_000),
        ("2026-01-01T01:00:00+01:00", 1_767_225_600_000),
    ],
)
def test_ts_forms(ts: object, expected: int) -> None:
    assert parse_ts(ts) == expected


REJECTIONS = [
    (b'{"event_id": "e"', "$", "not valid JSON"),
    (b"\xff\xfe{}", "$", "not UTF-8"),
    (b"[1, 2]", "$", "expected a JSON object, got array"),
    (good(event_id=_DROP), "event_id", "required field is missing"),
    (good(event_id=""), "event_id", "must not be empty"),
    (good(event_id="x" * (MAX_ID_CHARS + 1)), "event_id", "above the limit of 128"),
    (good(event_id=7), "event_id", "expected a string, got number"),
    (good(model_id=_DROP), "model_id", "required field is missing"),
    (good(model_version=["v"]), "model_version", "expected a string, got array"),
    (good(ts=_DROP), "ts", "required field is missing"),
    (good(ts="yesterday"), "ts", "is not an RFC 3339 timestamp"),
    (good(ts="2026-01-01T00:00:00"), "ts", "has no UTC offset"),
    (good(ts="9999-01-01T00:00:00Z"), "ts", "outside 1970-01-01 .. 2200-01-01"),
    (good(ts=-5), "ts", "outside 1970-01-01 .. 2200-01-01"),
    (good(ts=True), "ts", "got bool"),
    (good(features=_DROP), "features", "required field is missing"),
    (good(features=[1, 2]), "features", "expected an object, got array"),
    (good(features={"a": [1]}), "features.a", "got array"),
    (good(features={"a": {"b": 1}}), "features.a", "got object"),
    (good(prediction=_DROP), "prediction", "required field is missing"),
    (good(prediction={"p": 1}), "prediction", "got object"),
    (good(label="yes"), "label", "is string but prediction is number"),
    (good(label=[1]), "label", "got array"),
    (good(latency_ms=-1), "latency_ms", "must be a finite number >= 0"),
    (good(latency_ms="fast"), "latency_ms", "expected a number, got string"),
    (good(segments={"region": 3}), "segments.region", "expected a string, got number"),
    (good(segments=["eu"]), "segments", "expected an object, got array"),
]


@pytest.mark.parametrize(("raw", "field", "reason"), REJECTIONS)
def test_each_rejection_names_field_and_reason(raw: object, field: str, reason: str) -> None:
    data = raw if isinstance(raw, bytes) else orjson.dumps(raw)
    with pytest.raises(InvalidEvent) as info:
        parse_event(data)
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{field}: ")


def test_nan_in_required_number_is_rejected() -> None:
    # orjson refuses NaN literals; a Python producer could still hand us a decoded NaN.
    with pytest.raises(InvalidEvent, match="prediction: is not a finite number"):
        validate_event(good(prediction=math.nan))
    with pytest.raises(InvalidEvent, match="ts: is not a finite number"):
        validate_event(good(ts=math.inf))
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        parse_event(b'{"prediction": NaN}')


def test_oversized_message_is_rejected_before_parsing() -> None:
    raw = b'{"event_id": "' + b"x" * (10 << 20) + b'"}'
    with pytest.raises(InvalidEvent, match=r"\$: message is 10485776 bytes, above the 1048576-byte limit"):
        parse_event(raw)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"model_id": "m", "ts": 1767225600000, "label": 1}', "event_id"),
        (b'{"event_id": "e", "ts": 1767225600000, "label": 1}', "model_id"),
        (b'{"event_id": "e", "model_id": "m", "label": 1}', "ts"),
        (b'{"event_id": "e", "model_id": "m", "ts": "yesterday", "label": 1}', "ts"),
        (b'{"event_id": "e", "model_id": "m", "ts": 1767225600000}', "label"),
        (b'{"event_id": "e", "model_id": "m", "ts": 1767225600000, "label": null}', "label"),
        (b'{"event_id": "e", "model_id": "m", "ts": 1767225600000, "label": [1]}', "label"),
        (b"[1, 2]", "$"),
        (b"{not json", "$"),
    ],
)
def test_a_broken_label_event_names_its_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse_label(raw)
    assert err.value.field == field


def test_a_label_event_parses() -> None:
    label = parse_label(b'{"event_id": "e-1", "model_id": "churn", "ts": "2026-01-03T09:00:00Z", "label": 1}')
    assert (label.event_id, label.model_id, label.ts_ms, label.label) == ("e-1", "churn", 1767430800000, 1)
