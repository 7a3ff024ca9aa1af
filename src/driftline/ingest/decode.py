"""Message bytes -> validated events -> columnar batches for the detectors.

The contract module decides what is valid. The fast path decodes into a msgspec Struct whose
types and limits mirror the contract (≈2.4× orjson + Python validation, bench/decode.py) and
then applies the checks a type cannot express (event time, label kind, finiteness); whenever
msgspec refuses a message, the contract's own parser runs on it, so every rejection carries the
contract's reason. Columns are built by one pass per feature and dictionary-coded with a dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import NoneType
from typing import Annotated, Any

import msgspec
import numpy as np

from driftline.contract import (
    MAX_FEATURES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_TS_MS,
    MIN_TS_MS,
    Event,
    InvalidEvent,
    parse_event,
    parse_ts,
)
from driftline.detectors.categorical import as_category, dictionary_encode
from driftline.detectors.fairness import OVERFLOW_ATTRIBUTE, to_outcome
from driftline.detectors.profile import NO_SEGMENTS, Batch, Binning, Column, bound_segments

_NUMBERS = {float, int, NoneType}


@dataclass(frozen=True)
class Rejected:
    """A message that broke the contract, with where it came from (for the dead-letter headers)."""

    value: bytes
    reason: str
    topic: str
    partition: int
    offset: int
    key: bytes | None = None


_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
_Scalar = float | int | str | bool


class FastEvent(msgspec.Struct, gc=False):
    """The contract as msgspec types; attribute names match :class:`driftline.contract.Event`."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
    model_id: _Name
    ts_ms: Any = msgspec.field(name="ts")
    features: Annotated[dict[_Name, _Scalar | None], msgspec.Meta(max_length=MAX_FEATURES)]
    prediction: _Scalar
    model_version: Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)] = ""
    label: _Scalar | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    segments: dict[str, str] = msgspec.field(default_factory=dict)


AnyEvent = Event | FastEvent


_fast = msgspec.json.Decoder(FastEvent)


def decode(value: bytes | None, max_bytes: int, max_ts_ms: int | None = None) -> AnyEvent:
    """One message -> a valid event, or InvalidEvent. ``max_ts_ms`` bounds event time from above:
    one event stamped in 2100 would otherwise drag the watermark there and make all traffic late."""
    e = _decode(value, max_bytes)
    if max_ts_ms is not None and e.ts_ms > max_ts_ms:
        raise InvalidEvent("ts", f"{e.ts_ms} ms is too far in the future (more than the allowed clock skew)")
    return e


def _decode(value: bytes | None, max_bytes: int) -> AnyEvent:
    if value is None:
        raise InvalidEvent("$", "empty message (no value)")
    if len(value) > max_bytes:
        raise InvalidEvent("$", f"message is {len(value)} bytes, above the {max_bytes}-byte limit")
    try:
        e = _fast.decode(value)
    except msgspec.DecodeError:
        return parse_event(value, max_bytes=max_bytes)  # raises with the contract's reason
    if e.ts_ms is None:
        return parse_event(value, max_bytes=max_bytes)
    ts = e.ts_ms
    if type(ts) is not int or not MIN_TS_MS <= ts < MAX_TS_MS:
        e.ts_ms = parse_ts(ts)
    p, label = e.prediction, e.label
    if type(p) is float and not math.isfinite(p):
        raise InvalidEvent("prediction", "is not a finite number")
    if label is not None and _kind(label) != _kind(p):
        return parse_event(value, max_bytes=max_bytes)
    if e.latency_ms is not None and not math.isfinite(e.latency_ms):
        raise InvalidEvent("latency_ms", f"must be a finite number >= 0, got {e.latency_ms}")
    return e


def _kind(v: object) -> type:
    return type(v) if type(v) in (bool, str) else float


def to_batch(
    events: Sequence[AnyEvent],
    binning: Binning,
    positive_threshold: float = 0.5,
    positive_class: str = "1",
    segments: Mapping[str, frozenset[str]] = NO_SEGMENTS,
) -> Batch:
    """Columns of one model's events, shaped by its reference binning; ``segments`` is the
    model's segment plan (:meth:`~driftline.detectors.profile.Binning.segment_plan`): only its
    attributes get columns, other values as ``<other>``, the rest counted in ``segment_overflow``."""
    features: dict[str, Column] = {}
    type_errors: dict[str, int] = {}
    rows = [e.features for e in events]
    for name in binning.numeric:
        features[name], type_errors[name] = _numeric([r.get(name) for r in rows])
    for name in binning.categorical:
        features[name] = _codes([r.get(name) for r in rows])
    latency, _ = _numeric([e.latency_ms for e in events])
    predictions = [e.prediction for e in events]
    labels = [e.label for e in events]
    ignored = sum(a not in segments for e in events for a in e.segments)
    present = {a for e in events for a in e.segments if a in segments}
    columns, overflow = bound_segments(
        {a: _codes([e.segments.get(a) for e in events]) for a in sorted(present)}, segments
    )
    if ignored:
        overflow[OVERFLOW_ATTRIBUTE] = ignored
    return Batch(
        n=len(events),
        features=features,
        type_errors=type_errors,
        latency_ms=latency,
        segments=columns,
        positive=_outcome(predictions, positive_threshold, positive_class),
        label=_outcome(labels, positive_threshold, positive_class),
        segment_overflow=overflow,
        outputs=_outputs(binning, {"prediction": predictions, "label": labels}),
    )


def _outputs(binning: Binning, values: Mapping[str, list[object]]) -> dict[str, Column]:
    """The prediction and label columns as the reference bins them (numbers, or class text)."""
    kinds = {role: binning.output_kind(role) for role in values}
    return {
        role: _numeric(values[role])[0] if kind == "numeric" else _codes(values[role])
        for role, kind in kinds.items()
        if kind is not None
    }


_TEXT = {str, NoneType}


def _codes(values: list[object]) -> tuple[list[str | None], np.ndarray]:
    """(names, codes) as ``dictionary_encode`` gives; a dict lookup per value for text columns."""
    if not set(map(type, values)) <= _TEXT:
        return dictionary_encode(np.array(values, dtype=object))  # bools, numbers: canonical text
    index: dict[str | None, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int64, len(values))  # type: ignore[arg-type]
    return list(index), codes


def _numeric(values: Sequence[object]) -> tuple[np.ndarray, int]:
    """float64 column (None -> NaN) and the count of values that are not numbers.

    numpy would turn "0.5" into 0.5 and True into 1.0, so types are checked first; the common
    all-numbers case is one C pass over the types plus one conversion.
    """
    if set(map(type, values)) <= _NUMBERS:
        return np.array(values, dtype=np.float64), 0
    ok = [v if type(v) in _NUMBERS else None for v in values]
    errors = sum(1 for v in values if type(v) not in _NUMBERS)
    return np.array(ok, dtype=np.float64), errors


def _outcome(values: Sequence[object], threshold: float, positive_class: str) -> np.ndarray:
    if set(map(type, values)) <= _NUMBERS:
        return to_outcome(np.array(values, dtype=np.float64), threshold)
    return to_outcome(np.array([as_category(v) for v in values], dtype=object), threshold, positive_class)
