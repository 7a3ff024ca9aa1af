"""The event contract: one place defines the fields of a prediction event and every rejection.

An event is a JSON object (a Kafka message value or one element of an HTTP batch)::

    >>> e = parse_event(b'{"event_id": "e1", "model_id": "churn", "ts": 1700000000000,'
    ...                 b' "features": {"age": 41, "plan": "pro", "x": null}, "prediction": 0.83}')
    >>> (e.model_id, e.ts_ms, e.features["x"], e.label)
    ('churn', 1700000000000, None, None)
    >>> parse_event(b'{"event_id": "e1"}')
    Traceback (most recent call last):
    ...
    driftline.contract.InvalidEvent: model_id: required field is missing

Every rejection is an :class:`InvalidEvent` naming the field and what was wrong; the ingest
path routes it to the dead-letter topic with that reason.

Ground truth known when the prediction is made goes in its ``label``; labels that arrive later
(joined to their prediction by ``event_id``) are not part of the contract yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

MAX_EVENT_BYTES = 1 << 20
MAX_ID_CHARS = 128
MAX_NAME_CHARS = 256
MAX_FEATURES = 4096
# Event time must be a plausible wall-clock time; a year-9999 timestamp would otherwise drag
# every watermark to the end of time and make all later events "late".
MIN_TS_MS = 0  # 1970-01-01T00:00:00Z
MAX_TS_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z

# Fields that identify an event rather than describe it: a table of exported events has them as
# columns, and they are never features.
IDENTITY_FIELDS = ("event_id", "model_id", "model_version", "ts")

Scalar = float | int | str | bool


class InvalidEvent(ValueError):
    """An event that breaks the contract: ``field`` is the JSON path, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    model_id: str
    ts_ms: int
    features: dict[str, Scalar | None]
    prediction: Scalar
    model_version: str = ""
    label: Scalar | None = None
    latency_ms: float | None = None
    segments: dict[str, str] = field(default_factory=dict)


def parse_event(raw: bytes | str, *, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Decode one JSON message and validate it against the contract."""
    return validate_event(_loads(raw, max_bytes))


def _loads(raw: bytes | str, max_bytes: int) -> Any:
    if len(raw) > max_bytes:
        raise InvalidEvent("$", f"message is {len(raw)} bytes, above the {max_bytes}-byte limit")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "not UTF-8" if "utf-8" in str(exc).lower() else f"not valid JSON ({exc})"
        raise InvalidEvent("$", reason) from None


def validate_event(obj: Any) -> Event:
    """Validate a decoded JSON value; returns the typed :class:`Event` or raises InvalidEvent."""
    if not isinstance(obj, dict):
        raise InvalidEvent("$", f"expected a JSON object, got {_json_type(obj)}")
    event_id = _string(obj, "event_id", MAX_ID_CHARS, required=True)
    model_id = _string(obj, "model_id", MAX_NAME_CHARS, required=True)
    model_version = _string(obj, "model_version", MAX_NAME_CHARS, required=False)
    ts_ms = parse_ts(_required(obj, "ts"))
    features = _features(_required(obj, "features"))
    prediction = _required(obj, "prediction")
    _check_target("prediction", prediction)
    label = obj.get("label")
    if label is not None:
        _check_target("label", label)
        if _target_kind(label) != _target_kind(prediction):
            raise InvalidEvent("label", f"is {_json_type(label)} but prediction is {_json_type(prediction)}")
    return Event(
        event_id=event_id,
        model_id=model_id,
        model_version=model_version,
        ts_ms=ts_ms,
        features=features,
        prediction=prediction,
        label=label,
        latency_ms=_latency(obj.get("latency_ms")),
        segments=_segments(obj.get("segments")),
    )


@dataclass(frozen=True)
class LabelEvent:
    """Ground truth that arrives after its prediction, on its own topic: joined by ``event_id``."""

    event_id: str
    model_id: str
    ts_ms: int  # when the label was known
    label: Scalar


def parse_label(raw: bytes | str, *, max_bytes: int = MAX_EVENT_BYTES) -> LabelEvent:
    """Decode one label message: ``{"event_id", "model_id", "ts", "label"}``."""
    obj = _loads(raw, max_bytes)
    if not isinstance(obj, dict):
        raise InvalidEvent("$", f"expected a JSON object, got {_json_type(obj)}")
    event_id = _string(obj, "event_id", MAX_ID_CHARS, required=True)
    model_id = _string(obj, "model_id", MAX_NAME_CHARS, required=True)
    ts_ms = parse_ts(_required(obj, "ts"))
    label = _required(obj, "label")
    _check_target("label", label)
    return LabelEvent(event_id, model_id, ts_ms, label)


def parse_ts(value: Any) -> int:
    """Event time as epoch milliseconds, from RFC 3339 text or an epoch-ms number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidEvent("ts", f"expected RFC 3339 text or epoch milliseconds, got {_json_type(value)}")
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent("ts", f"{value[:40]!r} is not an RFC 3339 timestamp") from None
        if dt.tzinfo is None:
            raise InvalidEvent("ts", f"{value[:40]!r} has no UTC offset (RFC 3339 requires one)")
        ms = math.floor(dt.timestamp() * 1000)
    else:
        if not math.isfinite(value):
            raise InvalidEvent("ts", "is not a finite number")
        ms = math.floor(value)
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise InvalidEvent("ts", f"{ms} ms is outside 1970-01-01 .. 2200-01-01")
    return ms


def format_ts(ms: float) -> str:
    """Epoch milliseconds as RFC 3339 in UTC, to the millisecond: the one time format driftline prints.

    >>> format_ts(1767225600000), format_ts(1767225600123.9)
    ('2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.123Z')
    """
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=math.floor(ms))
    return dt.isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def _required(obj: dict[str, Any], name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise InvalidEvent(name, "required field is missing")
    return obj[name]


def _string(obj: dict[str, Any], name: str, limit: int, *, required: bool) -> str:
    value = _required(obj, name) if required else obj.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidEvent(name, f"expected a string, got {_json_type(value)}")
    if required and not value:
        raise InvalidEvent(name, "must not be empty")
    if len(value) > limit:
        raise InvalidEvent(name, f"is {len(value)} characters, above the limit of {limit}")
    return value


def _features(value: Any) -> dict[str, Scalar | None]:
    if not isinstance(value, dict):
        raise InvalidEvent("features", f"expected an object, got {_json_type(value)}")
    if len(value) > MAX_FEATURES:
        raise InvalidEvent("features", f"has {len(value)} entries, above the limit of {MAX_FEATURES}")
    for name, v in value.items():
        if not name or len(name) > MAX_NAME_CHARS:
            raise InvalidEvent("features", f"feature name {name[:40]!r} is empty or too long")
        if v is not None and not isinstance(v, int | float | str | bool):
            raise InvalidEvent(
                f"features.{name}", f"expected number, string, bool or null, got {_json_type(v)}"
            )
    return value


def _check_target(name: str, value: Any) -> None:
    if not isinstance(value, int | float | str | bool):
        raise InvalidEvent(name, f"expected number, string or bool, got {_json_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEvent(name, "is not a finite number")


def _target_kind(value: Scalar) -> str:
    if isinstance(value, bool):
        return "bool"
    return "str" if isinstance(value, str) else "number"


def _latency(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent("latency_ms", f"expected a number, got {_json_type(value)}")
    if not math.isfinite(value) or value < 0:
        raise InvalidEvent("latency_ms", f"must be a finite number >= 0, got {value}")
    return float(value)


def _segments(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("segments", f"expected an object, got {_json_type(value)}")
    for name, v in value.items():
        if not isinstance(v, str):
            raise InvalidEvent(f"segments.{name}", f"expected a string, got {_json_type(v)}")
    return value


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "bool"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "object"
    return type(value).__name__
