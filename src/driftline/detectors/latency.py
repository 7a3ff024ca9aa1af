"""Latency sketch: DDSketch-style log buckets with 1% relative accuracy on quantiles.

A value x lands in bucket ``ceil(log_gamma(x))`` with ``gamma = (1 + a) / (1 - a)``; the bucket's
representative ``2 gamma^k / (gamma + 1)`` is within relative error ``a`` of every value in it.
The bucket range is fixed (1 µs .. 1e8 ms), so merging is adding two arrays.

    >>> s = LatencySketch().update([10.0, 20.0, 30.0, 40.0, 1000.0])
    >>> round(s.quantile(0.5), 1), s.max, s.count
    (30.3, 1000.0, 5)
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import numpy.typing as npt

from driftline.detectors import _codec
from driftline.detectors._kernels import fold_log_buckets

RELATIVE_ACCURACY = 0.01
MIN_VALUE_MS = 1e-3
MAX_VALUE_MS = 1e8
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_MIN_INDEX = math.ceil(math.log(MIN_VALUE_MS) / _LOG_GAMMA)
_MAX_INDEX = math.ceil(math.log(MAX_VALUE_MS) / _LOG_GAMMA)
_N_SLOTS = _MAX_INDEX - _MIN_INDEX + 2  # slot 0: values <= MIN_VALUE_MS


class LatencySketch:
    __slots__ = ("counts", "extremes", "n_invalid")

    def __init__(self) -> None:
        self.counts = np.zeros(_N_SLOTS, np.int64)
        self.extremes = np.array([np.inf, -np.inf, 0.0])  # min, max, sum
        self.n_invalid = 0

    def update(self, values_ms: npt.ArrayLike) -> Self:
        """Fold latencies in milliseconds; NaN (missing) and negative values are counted apart."""
        x = np.ascontiguousarray(values_ms, dtype=np.float64)
        self.n_invalid += fold_log_buckets(
            x, 1.0 / _LOG_GAMMA, _MIN_INDEX, MIN_VALUE_MS, self.counts, self.extremes
        )
        return self

    def merge(self, other: LatencySketch) -> LatencySketch:
        out = LatencySketch()
        out.counts = self.counts + other.counts
        out.extremes = np.array(
            [
                min(self.extremes[0], other.extremes[0]),
                max(self.extremes[1], other.extremes[1]),
                self.extremes[2] + other.extremes[2],
            ]
        )
        out.n_invalid = self.n_invalid + other.n_invalid
        return out

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @property
    def max(self) -> float | None:
        return float(self.extremes[1]) if self.count else None

    @property
    def mean(self) -> float | None:
        return float(self.extremes[2] / self.count) if self.count else None

    def quantile(self, q: float) -> float | None:
        """Value at rank ``q * (n - 1)``, within 1% of the order statistic at that rank."""
        n = self.count
        if n == 0:
            return None
        rank = q * (n - 1)
        slot = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        if slot == 0:
            value = 0.0
        else:
            k = slot - 1 + _MIN_INDEX
            value = 2 * _GAMMA**k / (_GAMMA + 1)
        # The exact extremes are known; never report a quantile outside them.
        return float(min(max(value, self.extremes[0]), self.extremes[1]))

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "mean": self.mean,
            "max": self.max,
            **{f"p{int(q * 100)}": self.quantile(q) for q in (0.5, 0.9, 0.95, 0.99)},
        }

    def to_bytes(self) -> bytes:
        return _codec.encode(
            _codec.KIND_LATENCY,
            [_codec.i64(self.counts), _codec.f64(self.extremes), _codec.i64(np.array([self.n_invalid]))],
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> LatencySketch:
        counts, extremes, invalid = _codec.decode(data, _codec.KIND_LATENCY)
        s = cls()
        s.counts, s.extremes = _codec.from_i64(counts), _codec.from_f64(extremes)
        if len(s.counts) != _N_SLOTS:
            raise _codec.SketchFormatError("latency sketch has another bucket layout")
        s.n_invalid = int(_codec.from_i64(invalid)[0])
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LatencySketch) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]
