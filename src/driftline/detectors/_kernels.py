"""Numba kernels: the per-row work of every sketch, over whole numpy columns.

Each kernel is ``nogil`` so callers may fold several features at once on threads, and
``cache=True`` so the compile cost (≈0.4 s each) is paid once per machine, not per process.
None of them is ``parallel=True``: numba's default threading layer aborts when two Python
threads launch parallel kernels at once, and the stream consumer runs workers as threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

kernel = njit(nogil=True, cache=True, error_model="numpy")
inline_kernel = njit(nogil=True, cache=True, error_model="numpy", inline="always")


# Edge tables are padded with +inf to a power of two so the search is a fixed sequence of
# halving steps. With the steps as literal constants LLVM unrolls them and overlaps the searches
# of consecutive values (≈130 M values/s here); a data-dependent loop runs ≈20 M/s.
SMALL_TABLE = 1024
_SMALL_STEPS = (512, 256, 128, 64, 32, 16, 8, 4, 2, 1)
_LARGE_STEPS = (32768, 16384, 8192, 4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)
MAX_TABLE = 65536


@inline_kernel
def _count_le_small(table: np.ndarray, x: float) -> int:
    b = 0
    for s in _SMALL_STEPS:
        b += (table[b + s - 1] <= x) * s
    return b


@inline_kernel
def _count_le_large(table: np.ndarray, x: float) -> int:
    size = table.shape[0]
    b = 0
    for s in _LARGE_STEPS:
        if s < size:
            b += (table[b + s - 1] <= x) * s
    return b


@kernel
def fold_numeric(
    values: np.ndarray,
    table: np.ndarray,
    n_edges: int,
    counts: np.ndarray,
    hits: np.ndarray,
    moments: np.ndarray,
) -> int:
    """Add ``values`` (float64, NaN = missing) to a numeric sketch in place; returns the NaN count.

    ``table`` holds the ``n_edges`` sorted bin edges padded with +inf to a power of two.
    ``counts[i]`` counts values with exactly ``i`` edges <= value (i = 0 is below the reference
    minimum, i = n_edges is at or above its maximum); ``hits[k]`` counts values equal to
    edge ``k``, so the KS bound can use the mass strictly inside a bin.
    ``moments`` = [min, max, sum, sum of squares, sum below the reference range, sum at or
    above its maximum]; the tail sums make the Wasserstein tails exact.
    """
    small = table.shape[0] == SMALL_TABLE
    n_nan = 0
    lo = moments[0]
    hi = moments[1]
    s = moments[2]
    s2 = moments[3]
    s_under = moments[4]
    s_over = moments[5]
    for j in range(values.shape[0]):
        x = values[j]
        if x != x:
            n_nan += 1
            continue
        i = _count_le_small(table, x) if small else _count_le_large(table, x)
        i = min(i, n_edges)  # +inf counts the padding too
        counts[i] += 1
        if i > 0 and table[i - 1] == x:
            hits[i - 1] += 1
        if i == 0:
            s_under += x
        elif i == n_edges:
            s_over += x
        lo = min(lo, x)
        hi = max(hi, x)
        s += x
        s2 += x * x
    moments[0] = lo
    moments[1] = hi
    moments[2] = s
    moments[3] = s2
    moments[4] = s_under
    moments[5] = s_over
    return n_nan


@kernel
def select_brackets(
    x: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    start: np.ndarray,
    cap: np.ndarray,
    buf: np.ndarray,
    length: np.ndarray,
    below: np.ndarray,
) -> bool:
    """One pass towards exact order statistics (``NumericBins.fit``).

    Values inside bracket ``j`` = [low[j], high[j]] (sorted, disjoint) are copied to
    ``buf[start[j]:]``, ``length[j]`` of them; ``below[j]`` counts the values between bracket
    j − 1 and bracket j, ``below[K]`` those above the last. False when a bracket has more than
    ``cap[j]`` values (the caller then selects another way).
    """
    k = low.shape[0]
    for i in range(x.shape[0]):
        v = x[i]
        if k <= 32:  # a branch-free count beats a search over this few brackets (2x here)
            j = -1
            for t in range(k):
                j += low[t] <= v
        else:
            j = np.searchsorted(low, v, side="right") - 1
        if j >= 0 and v <= high[j]:
            c = length[j]
            if c == cap[j]:
                return False
            buf[start[j] + c] = v
            length[j] = c + 1
        else:
            below[j + 1] += 1
    return True


@kernel
def fold_codes(codes: np.ndarray, counts: np.ndarray) -> None:
    """Categorical fold: ``counts[code] += 1``; code -1 (missing) lands in the last slot."""
    last = counts.shape[0] - 1
    for j in range(codes.shape[0]):
        c = codes[j]
        counts[c if c >= 0 else last] += 1


@kernel
def fold_log_buckets(
    values: np.ndarray,
    inv_log_gamma: float,
    min_index: int,
    min_value: float,
    counts: np.ndarray,
    extremes: np.ndarray,
) -> int:
    """DDSketch fold: value x > min_value goes to bucket ceil(log_gamma(x)), clamped to the range.

    ``counts[0]`` holds values <= min_value (zero latency). ``extremes`` = [min, max, sum].
    Returns the number of NaN/negative values skipped.
    """
    skipped = 0
    top = counts.shape[0] - 1
    lo = extremes[0]
    hi = extremes[1]
    s = extremes[2]
    for j in range(values.shape[0]):
        x = values[j]
        if not x >= 0.0:
            skipped += 1
            continue
        if x <= min_value:
            counts[0] += 1
        else:
            k = int(np.ceil(np.log(x) * inv_log_gamma)) - min_index + 1
            counts[max(1, min(k, top))] += 1
        lo = min(lo, x)
        hi = max(hi, x)
        s += x
    extremes[0] = lo
    extremes[1] = hi
    extremes[2] = s
    return skipped


@kernel
def fold_outcomes(groups: np.ndarray, positive: np.ndarray, label: np.ndarray, table: np.ndarray) -> None:
    """Fairness fold. ``table[g]`` = [n, predicted positive, labelled, label positive, true positive].

    ``groups`` holds group codes (-1 = attribute missing, skipped), ``positive`` 0/1 per row,
    ``label`` 1 / 0 / -1 (no label yet).
    """
    for j in range(groups.shape[0]):
        g = groups[j]
        if g < 0:
            continue
        p = positive[j]
        y = label[j]
        table[g, 0] += 1
        table[g, 1] += p
        if y >= 0:
            table[g, 2] += 1
            table[g, 3] += y
            table[g, 4] += p * y


# Log loss clips a probability to [eps, 1 - eps], eps = float64 machine epsilon, as scikit-learn
# (>= 1.5) does for float64 predictions.
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


@kernel
def fold_binary(
    scores: np.ndarray,
    labels: np.ndarray,
    table: np.ndarray,
    n_edges: int,
    threshold: float,
    hist: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
) -> None:
    """Binary classifier performance fold, in place.

    ``scores`` float64 (NaN = no prediction), ``labels`` int8 1 / 0 / -1 (no label yet).
    ``table`` holds the ``n_edges`` sorted score edges padded with +inf to a power of two.
    ``hist[y, i]`` counts rows of label ``y`` whose score has exactly ``i`` edges <= it.
    ``counts`` = [unlabelled, labelled without a prediction, TP, FP, TN, FN, scores outside
    [0, 1]]: the confusion counts compare the raw score with ``threshold`` (>= is positive).
    ``sums[0]`` adds −log p(label) over the scores in [0, 1], p clipped to [eps, 1 − eps].
    """
    small = table.shape[0] == SMALL_TABLE
    eps = LOG_LOSS_EPS
    loss = sums[0]
    for j in range(scores.shape[0]):
        y = labels[j]
        if y < 0:
            counts[0] += 1
            continue
        x = scores[j]
        if x != x:
            counts[1] += 1
            continue
        i = _count_le_small(table, x) if small else _count_le_large(table, x)
        i = min(i, n_edges)  # +inf counts the padding too
        positive = y == 1
        hist[1 if positive else 0, i] += 1
        if x >= threshold:
            counts[2 if positive else 3] += 1
        else:
            counts[5 if positive else 4] += 1
        if 0.0 <= x <= 1.0:
            p = x if positive else 1.0 - x
            loss -= np.log(min(max(p, eps), 1.0 - eps))
        else:
            counts[6] += 1
    sums[0] = loss


@kernel
def ks_exceed_fraction(m: int, n: int, c: int) -> float:
    """Exact P(D >= c / (m·n)) of the two-sample Kolmogorov–Smirnov D under H0; ``m >= n``.

    Equal sizes: the reflection formula 2·Σ_k (−1)^(k−1)·C(2n, n − k·h) / C(2n, n), h = c / n,
    nested Horner-style so it never subtracts nearly equal terms: O(n). Otherwise the fraction of
    monotone lattice paths from (0, 0) to (m, n) that touch |i·n − j·m| >= c (Hodges, 1958),
    computed as that fraction itself rather than 1 − the fraction inside (Viehmann, 2021) so tiny
    p-values keep their relative precision: q(i, j) = (i·q(i−1, j) + j·q(i, j−1)) / (i + j),
    q = 1 outside the band, q(0, 0) = 0. One row of the band at a time: O(c) time, O(n) memory.
    """
    if c <= 0:
        return 1.0
    if m == n:
        h = c // n
        p = 0.0
        for k in range(n // h, -1, -1):
            ratio = 1.0  # C(2n, n − (k+1)·h) / C(2n, n − k·h)
            for t in range(h):
                ratio *= (n - k * h - t) / (n + k * h + t + 1)
            p = ratio * (1.0 - p)
        return min(1.0, 2.0 * p)
    inv = 1.0 / np.arange(1, m + n + 1)  # a product instead of a division in the inner loop
    # q[j] holds row i−1 inside its band; the band only moves right with i, so every slot
    # right of it was never written and still reads 1 (outside).
    q = np.ones(n + 1)
    for i in range(m + 1):
        lo = max(0, (i * n - c) // m + 1)
        hi = min(n, (i * n + c - 1) // m)
        left = 1.0  # q(i, lo − 1): outside the band, or off the grid with weight 0
        for j in range(lo, hi + 1):
            v = 0.0 if i + j == 0 else (i * q[j] + j * left) * inv[i + j - 1]
            q[j] = v
            left = v
    return q[n]
