"""Numeric feature sketch over reference-quantile fine bins.

The reference fixes ``B + 1`` edges at its quantiles ``k / B`` (``numpy.quantile``, default
method; between the PSI edges, of a large reference, estimated from a sample). With ``B`` a
multiple of the PSI bin count the reference deciles are exact fine edges and PSI is a sum of
fine counts, equal to binning the raw values directly.

    >>> import numpy as np
    >>> bins = NumericBins.fit(np.arange(100.0), bins=10, psi_bins=10)
    >>> s = NumericSketch(bins).update(np.array([5.0, 50.0, np.nan, 1000.0]))
    >>> s.n, s.n_missing, s.out_of_range
    (3, 1, 1)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Self

import numpy as np
import numpy.typing as npt

from driftline.detectors import _codec
from driftline.detectors._kernels import MAX_TABLE, SMALL_TABLE, fold_numeric, select_brackets
from driftline.detectors.defaults import DEFAULT_FINE_BINS, DEFAULT_PSI_BINS

# Fitting a column of more than 2.5 x 10 x FIT_SAMPLE values (500k at the defaults) takes the
# fine edges from a sample of FIT_SAMPLE values per PSI slot (see quantile_edges): ≈ 1.25/B
# reference mass at most in one fine bin on continuous data, against 1/B for exact quantiles.
FIT_SAMPLE = 20_000
FIT_SEED = 0x5EED


@dataclass(frozen=True, eq=False)
class NumericBins:
    """Bin edges learned from a reference sample: ``edges[k] ≈ quantile(reference, k / B)``, exact
    at every PSI edge (``k`` a multiple of ``B / psi_bins``) and, up to 500k values, everywhere."""

    edges: np.ndarray
    psi_bins: int = DEFAULT_PSI_BINS

    def __post_init__(self) -> None:
        _check_shape(len(self.edges) - 1, self.psi_bins)
        if not np.all(np.isfinite(self.edges)) or np.any(np.diff(self.edges) < 0):
            raise ValueError("edges must be finite and sorted")

    @classmethod
    def fit(
        cls,
        reference: npt.ArrayLike,
        bins: int = DEFAULT_FINE_BINS,
        psi_bins: int = DEFAULT_PSI_BINS,
    ) -> NumericBins:
        x = np.asarray(reference, dtype=np.float64)
        x = x[~np.isnan(x)]
        if x.size == 0:
            raise ValueError("cannot fit bins: the reference has no non-missing values")
        if np.isinf(x).any():
            raise ValueError("cannot fit bins: the reference contains infinite values")
        _check_shape(bins, psi_bins)
        return cls(quantile_edges(x, bins, psi_bins), psi_bins)

    @property
    def fine_bins(self) -> int:
        return len(self.edges) - 1

    @cached_property
    def digest(self) -> bytes:
        """Identity of the binning; sketches merge only with sketches of the same digest."""
        h = hashlib.sha256(_codec.f64(self.edges) + self.psi_bins.to_bytes(4, "little"))
        return h.digest()[:16]

    @cached_property
    def table(self) -> np.ndarray:
        """Edges padded with +inf to a power of two, as the binning kernel wants them."""
        size = max(SMALL_TABLE, 1 << math.ceil(math.log2(len(self.edges))))
        t = np.full(size, np.inf)
        t[: len(self.edges)] = self.edges
        return t

    @cached_property
    def coarse_of_fine(self) -> np.ndarray:
        """Map from fine count index (0..B+1) to PSI bin (0..psi_bins-1).

        Fine index i means i edges are <= x; decile edge j (1..psi_bins-1) is fine edge
        j*step, which is <= x exactly when j*step < i. So the PSI bin is a function of i alone,
        and summing fine counts equals ``searchsorted(deciles, x, "right")`` even with ties.
        """
        step = self.fine_bins // self.psi_bins
        i = np.arange(self.fine_bins + 2)
        return np.clip((i - 1) // step, 0, self.psi_bins - 1).astype(np.int64)

    @property
    def psi_edges(self) -> np.ndarray:
        step = self.fine_bins // self.psi_bins
        return self.edges[step : self.fine_bins : step]

    def to_bytes(self) -> bytes:
        return _codec.encode(
            _codec.KIND_NUMERIC, [b"bins", _codec.f64(self.edges), _codec.i64(np.array([self.psi_bins]))]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> NumericBins:
        tag, edges, psi = _codec.decode(data, _codec.KIND_NUMERIC)
        if tag != b"bins":
            raise _codec.SketchFormatError("these bytes are a numeric sketch, not its bins")
        return cls(_codec.from_f64(edges), int(_codec.from_i64(psi)[0]))


def _check_shape(bins: int, psi_bins: int) -> None:
    if bins < 1 or bins + 1 > MAX_TABLE:
        raise ValueError(f"need between 2 and {MAX_TABLE} edges, got {bins + 1}")
    if bins % psi_bins:
        raise ValueError(f"fine bins ({bins}) must be a multiple of psi_bins ({psi_bins})")


def quantile_edges(
    x: np.ndarray, bins: int, psi_bins: int, sample: int = FIT_SAMPLE, seed: int = FIT_SEED
) -> np.ndarray:
    """``bins + 1`` sorted edges whose every ``bins // psi_bins``-th is ``np.quantile``'s, bit for bit.

    ``x`` holds finite float64 values (at least one). Up to ``2.5 * psi_bins * sample`` values it
    is sorted in place and every edge is ``np.quantile(x, k / bins)``. Above, a sorted sample of
    ``psi_bins * sample`` values drawn with a fixed seed (the same data always gives the same
    edges) places the fine edges, its draw ``i`` standing for rank ``(i + ½)·n/s − ½``, and the
    PSI edges are pinned exactly by :func:`order_statistics`, one pass over ``x`` (``x`` is left
    in its order unless that falls back to a partition).
    """
    n = x.size
    virtual = (n - 1) * (np.arange(bins + 1) / bins)  # np.quantile(x, np.arange(B + 1) / B)'s indexes
    step = bins // psi_bins
    if n <= 2.5 * psi_bins * sample or step == 1:
        x.sort()
        return _lerp(x, virtual)
    size = psi_bins * sample
    drawn = np.sort(x[np.random.default_rng(seed).integers(0, n, size)])
    prev, nxt, gamma = _neighbours(virtual[::step], n)
    ranks = np.unique(np.concatenate((prev, nxt)))
    at = order_statistics(x, ranks, drawn)
    exact = _interpolate(at[np.searchsorted(ranks, prev)], at[np.searchsorted(ranks, nxt)], gamma)
    # A monotone skeleton of (rank, value): the exact order statistics, and between two of them
    # the draws that fall there, spread evenly over the ranks in between (stratified after the
    # fact, so a fine edge is off by the sampling error of its slot, not of the whole column).
    skeleton_ranks: list[np.ndarray] = []
    skeleton_values: list[np.ndarray] = []
    inside = np.searchsorted(drawn, at, "right"), np.searchsorted(drawn, at, "left")
    for j, r in enumerate(ranks.tolist()):
        skeleton_ranks.append(np.array([r], np.float64))
        skeleton_values.append(at[j : j + 1])
        if j + 1 == len(ranks):
            break
        m, lo, hi = ranks[j + 1] - r - 1, inside[0][j], inside[1][j + 1]
        if m > 0 and hi > lo:
            skeleton_ranks.append(r + 0.5 + (np.arange(hi - lo) + 0.5) * (m / (hi - lo)))
            skeleton_values.append(drawn[lo:hi])
    edges = np.interp(virtual, np.concatenate(skeleton_ranks), np.concatenate(skeleton_values))
    # Each edge inside its slot's exact bounds (float rounding cannot unsort them), and the PSI
    # edges exactly np.quantile's.
    slot = np.minimum(np.arange(bins + 1) // step, psi_bins - 1)
    edges = np.clip(edges, exact[slot], exact[slot + 1])
    edges[::step] = exact
    return edges


# Half-width of the bracket around a rank, in standard deviations of the sample's count below
# that rank's value: a value outside its bracket (then np.partition) is a 1-in-10^9 event.
_BRACKET_SIGMAS = 6.0


def order_statistics(x: np.ndarray, ranks: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """The values of ranks ``ranks`` (sorted, distinct) in ``x`` sorted, exactly.

    ``drawn`` is a sorted random sample of ``x``: the values around each rank's position in it
    bracket that rank's value. One pass (:func:`~driftline.detectors._kernels.select_brackets`)
    counts the values between brackets and keeps the few inside them, which are then partitioned
    at the wanted ranks: O(n) with a small constant, against a multi-way ``np.partition`` of all
    of ``x``, which it falls back to when a rank's value lies outside its bracket.
    """
    n, size = x.size, drawn.size
    q = (ranks + 0.5) / n
    pos = q * size - 0.5
    width = _BRACKET_SIGMAS * np.sqrt(size * q * (1 - q)) + 2
    lo = np.clip(np.floor(pos - width).astype(np.int64), 0, size - 1)
    hi = np.clip(np.ceil(pos + width).astype(np.int64), 0, size - 1)
    low = np.where(lo == 0, -np.inf, drawn[lo])  # the first and last draws bound nothing
    high = np.where(hi == size - 1, np.inf, drawn[hi])
    # Brackets of neighbouring ranks overlap: merge them (both ends are non-decreasing).
    first = np.r_[True, low[1:] > np.maximum.accumulate(high)[:-1]]
    group = np.cumsum(first) - 1
    low, high = low[first], np.maximum.reduceat(high, np.flatnonzero(first))
    # Room for the values in each bracket: what the sample saw there, with margin.
    seen = np.searchsorted(drawn, high, "right") - np.searchsorted(drawn, low, "left")
    cap = np.minimum(n, (1.5 * (seen + 1) * (n / size)).astype(np.int64) + 1024)
    start = np.r_[0, np.cumsum(cap)[:-1]]
    # Memory bounded at twice the column (brackets of heavily tied values hold most of it).
    buf = np.empty(int(cap.sum()) if cap.sum() <= 2 * n else 0)
    length = np.zeros(len(low), np.int64)
    below = np.zeros(len(low) + 1, np.int64)
    if buf.size and select_brackets(x, low, high, start, cap, buf, length, below):
        first_rank = np.cumsum(below[:-1]) + np.r_[0, np.cumsum(length)[:-1]]
        local = ranks - first_rank[group]
        if np.all((local >= 0) & (local < length[group])):
            out = np.empty(len(ranks))
            for g in range(len(low)):
                mine = group == g
                kept = buf[start[g] : start[g] + length[g]]
                kept.partition(local[mine])
                out[mine] = kept[local[mine]]
            return out
    x.partition(ranks)
    return x[ranks]


def _neighbours(virtual: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.quantile 'linear': order statistics floor(v) and floor(v) + 1 (both the last one when
    v >= n - 1) and the weight gamma, which numpy computes against index -1 in that case."""
    prev = np.floor(virtual).astype(np.intp)
    nxt = prev + 1
    top = virtual >= n - 1
    prev[top] = -1
    nxt[top] = -1
    gamma = virtual - prev
    prev[top] = n - 1
    nxt[top] = n - 1
    return prev, nxt, gamma


def _lerp(x: np.ndarray, virtual: np.ndarray) -> np.ndarray:
    """numpy's quantile interpolation (``numpy.lib._function_base_impl._lerp``) at ``virtual``,
    for ``x`` sorted or partitioned at those order statistics: the same floating-point steps."""
    prev, nxt, gamma = _neighbours(virtual, x.size)
    return _interpolate(x[prev], x[nxt], gamma)


def _interpolate(a: np.ndarray, b: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


class NumericSketch:
    """Counts per fine bin plus missing count, type errors, min, max, sum and sum of squares.

    The sums of the values below and above the reference range are kept too: they make the
    Wasserstein contribution of the tails exact instead of guessing how the tail is spread.
    """

    __slots__ = ("bins", "counts", "hits", "moments", "n_missing", "type_errors")

    def __init__(self, bins: NumericBins) -> None:
        self.bins = bins
        b = bins.fine_bins
        self.counts = np.zeros(b + 2, np.int64)
        self.hits = np.zeros(b + 1, np.int64)
        # min, max, sum, sum of squares, sum below the reference range, sum at/above its max
        self.moments = np.array([np.inf, -np.inf, 0.0, 0.0, 0.0, 0.0])
        self.n_missing = 0
        self.type_errors = 0

    def update(self, values: npt.ArrayLike, type_errors: int = 0) -> Self:
        """Fold a column (NaN = missing; ±inf counts as out of range). Returns self."""
        # Always read-only, so numba compiles and caches one specialization, not two: columns
        # straight from Arrow memory are read-only, decoded ones are writable.
        x = np.ascontiguousarray(values, dtype=np.float64).view()
        x.flags.writeable = False
        table = self.bins.table
        self.n_missing += fold_numeric(x, table, len(self.bins.edges), self.counts, self.hits, self.moments)
        self.type_errors += type_errors
        return self

    def merge(self, other: NumericSketch) -> NumericSketch:
        if other.bins.digest != self.bins.digest:
            raise ValueError("cannot merge numeric sketches built on different reference bins")
        out = NumericSketch(self.bins)
        out.counts = self.counts + other.counts
        out.hits = self.hits + other.hits
        out.moments = self.moments + other.moments
        out.moments[0] = min(self.moments[0], other.moments[0])
        out.moments[1] = max(self.moments[1], other.moments[1])
        out.n_missing = self.n_missing + other.n_missing
        out.type_errors = self.type_errors + other.type_errors
        return out

    @property
    def n(self) -> int:
        """Non-missing values."""
        return int(self.counts.sum())

    @property
    def out_of_range(self) -> int:
        """Values below the reference minimum or above its maximum."""
        return int(self.counts[0] + self.counts[-1] - self.hits[-1])

    @property
    def mean(self) -> float | None:
        return float(self.moments[2] / self.n) if self.n else None

    @property
    def std(self) -> float | None:
        """Population standard deviation (ddof=0), from the sum and sum of squares."""
        if not self.n:
            return None
        mean = self.moments[2] / self.n
        return math.sqrt(max(0.0, self.moments[3] / self.n - mean * mean))

    def psi_counts(self) -> np.ndarray:
        return np.bincount(self.bins.coarse_of_fine, weights=self.counts, minlength=self.bins.psi_bins)

    def to_bytes(self) -> bytes:
        return _codec.encode(
            _codec.KIND_NUMERIC,
            [
                b"sketch",
                self.bins.digest,
                _codec.i64(self.counts),
                _codec.i64(self.hits),
                _codec.f64(self.moments),
                _codec.i64(np.array([self.n_missing, self.type_errors])),
            ],
        )

    @classmethod
    def from_bytes(cls, data: bytes, bins: NumericBins) -> NumericSketch:
        fields = _codec.decode_sketch(data, _codec.KIND_NUMERIC, bins.digest, "reference bins")
        counts, hits, moments, scalars = fields
        s = cls(bins)
        s.counts, s.hits, s.moments = _codec.from_i64(counts), _codec.from_i64(hits), _codec.from_f64(moments)
        s.n_missing, s.type_errors = (int(v) for v in _codec.from_i64(scalars))
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NumericSketch) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]
