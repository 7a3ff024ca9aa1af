"""Message bytes -> validated events -> columnar batches for the detectors.

The contract module alone decides what is valid; this module turns the valid events of one
model into numpy columns, touching each value once in Python and handing whole columns to
the Numba kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import NoneType

import numpy as np

from driftline.contract import Event, InvalidEvent, parse_event
from driftline.detectors.categorical import as_category, dictionary_encode
from driftline.detectors.fairness import to_outcome
from driftline.detectors.profile import Batch, Binning, Column

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


def decode(value: bytes | None, max_bytes: int) -> Event:
    if value is None:
        raise InvalidEvent("$", "empty message (no value)")
    return parse_event(value, max_bytes=max_bytes)


def to_batch(
    events: Sequence[Event], binning: Binning, positive_threshold: float = 0.5, positive_class: str = "1"
) -> Batch:
    """Columns of one model's events, shaped by its reference binning."""
    features: dict[str, Column] = {}
    type_errors: dict[str, int] = {}
    rows = [e.features for e in events]
    for name in binning.numeric:
        features[name], type_errors[name] = _numeric([r.get(name) for r in rows])
    for name in binning.categorical:
        features[name] = dictionary_encode(np.array([r.get(name) for r in rows], dtype=object))
    latency, _ = _numeric([e.latency_ms for e in events])
    predictions = [e.prediction for e in events]
    labels = [e.label for e in events]
    attrs = sorted({a for e in events for a in e.segments})
    return Batch(
        n=len(events),
        features=features,
        type_errors=type_errors,
        latency_ms=latency,
        segments={a: dictionary_encode(np.array([e.segments.get(a) for e in events], dtype=object))
                  for a in attrs},
        positive=_outcome(predictions, positive_threshold, positive_class),
        label=_outcome(labels, positive_threshold, positive_class),
    )


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
