"""Model quality from mergeable sketches: classifier and regressor metrics for any window.

A :class:`PerformanceSpec` is fitted once on the reference (the task, the positive threshold and
class, the fine score bins of a binary classifier, the top classes of a multiclass one) and shared
by every :class:`PerformanceSketch` compared with it, as :class:`~driftline.detectors.numeric.NumericBins`
is. Sketches of panes merge into the sketch of their window; :func:`performance_report` puts the
reference's metrics next to the current window's.

What each task keeps (rows without a label are only counted, ``n_unlabelled``; labelled rows
without a prediction too, ``n_missing_prediction``; the metrics are over the labelled rows that
have a prediction):

* binary: per label, a histogram of the score over the fine bins (plus the bins below the first
  and at or above the last edge); the exact confusion counts at ``positive_threshold`` (from the
  raw score); the sum of the log loss terms of the scores in [0, 1] and how many scores were not.
* multiclass: the confusion matrix over ``classes + ("<other>",)`` (rows: label, columns:
  prediction).
* regression: n, Σ error, Σ |error|, Σ error² (error = prediction − label) and the label's mean,
  M2 (sum of squared deviations), min and max, merged with Chan's parallel formula.

    >>> import numpy as np
    >>> score = np.array([0.1, 0.4, 0.35, 0.8, np.nan])
    >>> label = np.array([0.0, 0.0, 1.0, 1.0, 1.0])
    >>> spec = PerformanceSpec.fit(score, label)
    >>> spec.task
    'binary'
    >>> m = PerformanceSketch(spec).update(score, label).metrics()
    >>> m["n_labelled"], m["n_missing_prediction"], m["accuracy"], m["roc_auc"]
    (5, 1, 0.75, 0.75)
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Self, cast

import numpy as np

from driftline.detectors import _codec
from driftline.detectors._kernels import MAX_TABLE, SMALL_TABLE, fold_binary
from driftline.detectors.categorical import OTHER, Column, as_category, dictionary_encode
from driftline.detectors.defaults import DEFAULT_FINE_BINS
from driftline.detectors.fairness import to_outcome

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")
DEFAULT_MAX_CLASSES = 20
Metrics = dict[str, float | int | None]

# Layout of PerformanceSketch.counts: two counts every task has, then the task's own.
UNLABELLED, MISSING_PREDICTION = 0, 1
# binary (as fold_binary writes them)
TP, FP, TN, FN, OUT_OF_RANGE = 2, 3, 4, 5, 6
# regression: rows in the sums; labelled rows with an infinite prediction or label
N, NON_FINITE = 2, 3
_N_COUNTS: dict[str, int] = {"binary": 7, "multiclass": 2, "regression": 4}
# regression sums: Σ error, Σ |error|, Σ error², label mean, label M2, label min, label max
SUM_E, SUM_ABS, SUM_SQ, MEAN, M2, LO, HI = range(7)
_EMPTY_REGRESSION = (0.0, 0.0, 0.0, 0.0, 0.0, math.inf, -math.inf)


@dataclass(frozen=True, eq=False)
class PerformanceSpec:
    """What every performance sketch of one model is folded on; fitted on the reference.

    ``score_edges`` (binary only): increasing, finite fine bin edges of the score. ``classes``
    (multiclass only): the kept classes, most frequent in the reference first; every other
    class counts as ``"<other>"``. A score >= ``positive_threshold`` is a positive prediction;
    ``positive_class`` is the positive label text (binary) or the class whose precision, recall
    and F1 are reported (multiclass).
    """

    task: Task
    positive_threshold: float = 0.5
    positive_class: str = "1"
    score_edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        object.__setattr__(self, "positive_threshold", float(self.positive_threshold))
        if math.isnan(self.positive_threshold):
            raise ValueError("positive_threshold must be a number")
        edges = np.array(self.score_edges, dtype=np.float64)
        edges.flags.writeable = False
        object.__setattr__(self, "score_edges", edges)
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.task == "binary":
            if edges.ndim != 1 or not 1 <= edges.size < MAX_TABLE:
                raise ValueError(f"a binary spec needs between 1 and {MAX_TABLE - 1} score edges")
            if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
                raise ValueError("score edges must be finite and increasing")
        elif edges.size:
            raise ValueError("only a binary spec has score edges")
        if self.task == "multiclass":
            if len(set(self.classes)) != len(self.classes) or OTHER in self.classes:
                raise ValueError(f"classes must be distinct and not {OTHER!r}")
        elif self.classes:
            raise ValueError("only a multiclass spec has classes")

    @classmethod
    def fit(
        cls,
        prediction: Column,
        label: Column,
        positive_threshold: float = 0.5,
        positive_class: str = "1",
        fine_bins: int = DEFAULT_FINE_BINS,
        max_classes: int = DEFAULT_MAX_CLASSES,
    ) -> PerformanceSpec | None:
        """The spec of a reference; None when no row of it has a label.

        A categorical prediction makes a multiclass task (labels and predictions compared as
        category text; a float class such as ``1.0`` reads ``"1"``); the ``max_classes`` most
        frequent classes of the labels and predictions together are kept (ties by name).
        A numeric prediction makes a binary task when the labels are binary (numbers in {0, 1},
        bools, or one or two category values; when two, exactly one of them ``positive_class``
        or ``"true"``), else a regression one (numeric labels). The binary score edges are the
        reference scores' quantiles at ``k / fine_bins`` (``np.quantile``, finite scores of
        every row), deduplicated; without any, the threshold is the one edge.

        Raises ValueError for a numeric prediction with a label of more than two category
        values, or of two values that are both positive or both negative (``positive_class``
        names neither: say which value is positive).
        """
        if len(_values(prediction)) != len(_values(label)):
            raise ValueError("prediction and label columns differ in length")
        threshold = float(positive_threshold)
        if not _is_numeric(prediction):
            names, codes = _class_codes(label)
            if not np.any(_present(names, codes)):
                return None
            classes = _top_classes([(names, codes), _class_codes(prediction)], max_classes)
            return cls("multiclass", threshold, positive_class, classes=classes)
        if _is_numeric(label):
            y = _floats(label)
            labelled = y[~np.isnan(y)]
            if labelled.size == 0:
                return None
            binary = bool(np.all((labelled == 0) | (labelled == 1)))
        else:
            names, codes = _coded(label)
            seen = _present(names, codes)
            if not np.any(seen):
                return None
            values = sorted({str(n) for n, s in zip(names, seen.tolist(), strict=True) if s})
            outcomes = set(
                to_outcome(np.array(values, dtype=object), positive_threshold, positive_class).tolist()
            )
            if len(values) > 2 or len(outcomes) < len(values):
                raise ValueError(
                    f"a numeric prediction needs a numeric label or one of two values, one of them "
                    f"{positive_class!r} (the positive class); got {values[:5]}"
                )
            binary = True
        if not binary:
            return cls("regression", threshold, positive_class)
        edges = _score_edges(_floats(prediction), fine_bins, threshold)
        return cls("binary", threshold, positive_class, score_edges=edges)

    @property
    def labels(self) -> tuple[str, ...]:
        """Rows and columns of a multiclass confusion matrix: the classes, then ``"<other>"``."""
        return (*self.classes, OTHER)

    @cached_property
    def class_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    @cached_property
    def table(self) -> np.ndarray:
        """Score edges padded with +inf to a power of two (at least one pad), as the kernel wants."""
        size = max(SMALL_TABLE, 1 << math.ceil(math.log2(len(self.score_edges) + 1)))
        t = np.full(size, np.inf)
        t[: len(self.score_edges)] = self.score_edges
        return t

    def _fields(self) -> list[bytes]:
        return [
            b"spec",
            self.task.encode(),
            _codec.f64(np.array([self.positive_threshold])),
            _codec.strings([self.positive_class]),
            _codec.f64(self.score_edges),
            _codec.strings(list(self.classes)),
        ]

    @cached_property
    def digest(self) -> bytes:
        """Identity of the spec; sketches merge only with sketches of the same digest."""
        body = b"".join(struct.pack("<Q", len(f)) + f for f in self._fields())
        return hashlib.sha256(body).digest()[:16]

    def to_bytes(self) -> bytes:
        return _codec.encode(_codec.KIND_PERFORMANCE, self._fields())

    @classmethod
    def from_bytes(cls, data: bytes) -> PerformanceSpec:
        fields = _codec.decode(data, _codec.KIND_PERFORMANCE)
        if not fields or fields[0] != b"spec":
            raise _codec.SketchFormatError("these bytes are a performance sketch, not its spec")
        if len(fields) != 6:
            raise _codec.SketchFormatError(f"a performance spec has 6 fields, these bytes {len(fields)}")
        _, task, threshold, positive, edges, classes = fields
        name = task.decode()
        if name not in TASKS:
            raise _codec.SketchFormatError(f"unknown performance task {name!r}")
        return cls(
            cast(Task, name),
            float(_codec.from_f64(threshold)[0]),
            _codec.from_strings(positive)[0],
            _codec.from_f64(edges),
            tuple(_codec.from_strings(classes)),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PerformanceSpec) and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)


class PerformanceSketch:
    """Mergeable state of one model's quality over some rows; see the module docstring.

    ``counts`` (int64: ``n_unlabelled``, ``n_missing_prediction``, then the task's counts),
    ``table`` (int64: the binary score histograms, shape (2, bins), negatives first; the
    multiclass confusion matrix; empty for regression) and ``sums`` (float64: the binary log
    loss sum; the regression sums and label moments).
    """

    __slots__ = ("counts", "spec", "sums", "table")

    def __init__(self, spec: PerformanceSpec) -> None:
        self.spec = spec
        self.counts = np.zeros(_N_COUNTS[spec.task], np.int64)
        if spec.task == "binary":
            self.table = np.zeros((2, len(spec.score_edges) + 1), np.int64)
            self.sums = np.zeros(1)
        elif spec.task == "multiclass":
            k = len(spec.classes) + 1
            self.table = np.zeros((k, k), np.int64)
            self.sums = np.zeros(0)
        else:
            self.table = np.zeros((0, 0), np.int64)
            self.sums = np.array(_EMPTY_REGRESSION)

    def update(self, prediction: Column, label: Column) -> Self:
        """Fold rows: ``prediction[j]`` for ``label[j]`` (a numeric column NaN where missing, or
        ``(names, codes)`` with None the missing name). Returns self.

        Binary: numeric scores; a numeric label is positive when >= 0.5 (1 of 0/1), a bool when
        true, a category when it is ``positive_class`` or ``"true"``. Multiclass: values of
        either form, compared as category text. Regression: numeric columns; a labelled row
        with an infinite prediction or label counts as ``n_non_finite``.
        """
        if len(_values(prediction)) != len(_values(label)):
            raise ValueError("prediction and label columns differ in length")
        task = self.spec.task
        if task == "binary":
            self._update_binary(prediction, label)
        elif task == "multiclass":
            self._update_multiclass(prediction, label)
        else:
            self._update_regression(prediction, label)
        return self

    def _update_binary(self, prediction: Column, label: Column) -> None:
        if not _is_numeric(prediction):
            raise TypeError("a binary performance sketch folds numeric scores, not categories")
        # Read-only, so numba compiles and caches one specialization (see NumericSketch.update).
        scores = np.ascontiguousarray(_floats(prediction)).view()
        scores.flags.writeable = False
        outcome = np.ascontiguousarray(_binary_label(label, self.spec), dtype=np.int8)
        spec = self.spec
        fold_binary(
            scores,
            outcome,
            spec.table,
            len(spec.score_edges),
            spec.positive_threshold,
            self.table,
            self.counts,
            self.sums,
        )

    def _update_multiclass(self, prediction: Column, label: Column) -> None:
        k = len(self.spec.classes) + 1
        y = self._class_rows(label)
        p = self._class_rows(prediction)
        labelled = y >= 0
        scored = labelled & (p >= 0)
        self.counts[UNLABELLED] += int(np.count_nonzero(~labelled))
        self.counts[MISSING_PREDICTION] += int(np.count_nonzero(labelled & (p < 0)))
        cells = np.bincount(y[scored] * k + p[scored], minlength=k * k)
        self.table += cells.reshape(k, k)

    def _class_rows(self, column: Column) -> np.ndarray:
        """Confusion-matrix index per row: a kept class, ``len(classes)`` for other, -1 missing."""
        names, codes = _class_codes(column)
        k, index = len(self.spec.classes), self.spec.class_index
        lut = np.array([-1 if n is None else index.get(n, k) for n in names] or [-1], np.int64)
        return lut[np.asarray(codes, np.int64)]

    def _update_regression(self, prediction: Column, label: Column) -> None:
        if not (_is_numeric(prediction) and _is_numeric(label)):
            raise TypeError("a regression performance sketch folds numeric predictions and labels")
        p, y = _floats(prediction), _floats(label)
        labelled = ~np.isnan(y)
        predicted = labelled & ~np.isnan(p)
        finite = predicted & np.isfinite(p) & np.isfinite(y)
        part = PerformanceSketch(self.spec)
        part.counts[UNLABELLED] = np.count_nonzero(~labelled)
        part.counts[MISSING_PREDICTION] = np.count_nonzero(labelled & ~predicted)
        part.counts[NON_FINITE] = np.count_nonzero(predicted & ~finite)
        part.counts[N] = np.count_nonzero(finite)
        if part.counts[N]:
            yf = y[finite]
            e = p[finite] - yf
            mean = float(np.mean(yf))  # two passes over the batch: its M2 is accurate
            part.sums[:] = (
                np.sum(e),
                np.sum(np.abs(e)),
                np.sum(e * e),
                mean,
                np.sum(np.square(yf - mean)),
                np.min(yf),
                np.max(yf),
            )
        merged = self.merge(part)
        self.counts, self.sums = merged.counts, merged.sums

    def merge(self, other: PerformanceSketch) -> PerformanceSketch:
        """A new sketch of both sketches' rows; ValueError when they have other specs.

        Exactly commutative: counts add, float sums add (IEEE addition commutes), and the
        regression label moments are combined in a canonical order (Chan et al.: from the
        larger part, ``mean = m_a + δ·n_b/n``, ``M2 = M2_a + M2_b + δ²·n_a·n_b/n``).
        """
        if other.spec.digest != self.spec.digest:
            raise ValueError("cannot merge performance sketches built on different specs")
        out = PerformanceSketch(self.spec)
        out.counts = self.counts + other.counts
        out.table = self.table + other.table
        if self.spec.task != "regression":
            out.sums = self.sums + other.sums
            return out
        a, b = self, other
        if (int(a.counts[N]), *a.sums.tolist()) < (int(b.counts[N]), *b.sums.tolist()):
            a, b = b, a  # a: the larger part (ties: a fixed order), so the result is symmetric
        na, nb = int(a.counts[N]), int(b.counts[N])
        out.sums = a.sums + b.sums
        out.sums[LO] = min(a.sums[LO], b.sums[LO])
        out.sums[HI] = max(a.sums[HI], b.sums[HI])
        if nb == 0:
            out.sums[MEAN], out.sums[M2] = a.sums[MEAN], a.sums[M2]
        else:
            n = na + nb
            delta = b.sums[MEAN] - a.sums[MEAN]
            out.sums[MEAN] = a.sums[MEAN] + delta * (nb / n)
            out.sums[M2] = a.sums[M2] + b.sums[M2] + delta * delta * (na * nb / n)
        return out

    def labelled_later(self, n: int) -> Self:
        """``n`` of the rows just folded were counted unlabelled when their predictions arrived
        (a label topic): they leave the unlabelled count, which a sketch of late labels alone
        holds as a negative number; merged with the predictions' sketch, it is the true count."""
        self.counts[UNLABELLED] -= n
        return self

    @property
    def n_labelled(self) -> int:
        """Rows with a label (with or without a prediction)."""
        c = self.counts
        if self.spec.task == "binary":
            scored = int(c[TP] + c[FP] + c[TN] + c[FN])
        elif self.spec.task == "multiclass":
            scored = int(self.table.sum())
        else:
            scored = int(c[N] + c[NON_FINITE])
        return scored + int(c[MISSING_PREDICTION])

    @property
    def n_unlabelled(self) -> int:
        return int(self.counts[UNLABELLED])

    @property
    def n_missing_prediction(self) -> int:
        return int(self.counts[MISSING_PREDICTION])

    def metrics(self) -> Metrics:
        """The task's metrics; a metric that is undefined on these rows (no positives, a zero
        denominator, no rows) is None. See :func:`binary_metrics`, :func:`multiclass_metrics`,
        :func:`regression_metrics`."""
        head: Metrics = {
            "n_labelled": self.n_labelled,
            "n_unlabelled": self.n_unlabelled,
            "n_missing_prediction": self.n_missing_prediction,
        }
        if self.spec.task == "binary":
            return head | binary_metrics(self)
        if self.spec.task == "multiclass":
            return head | multiclass_metrics(self)
        return head | regression_metrics(self)

    def to_bytes(self) -> bytes:
        return _codec.encode(
            _codec.KIND_PERFORMANCE,
            [
                b"sketch",
                self.spec.digest,
                _codec.i64(self.counts),
                _codec.i64(self.table.ravel()),
                _codec.f64(self.sums),
            ],
        )

    @classmethod
    def from_bytes(cls, data: bytes, spec: PerformanceSpec) -> PerformanceSketch:
        fields = _codec.decode_sketch(data, _codec.KIND_PERFORMANCE, spec.digest, "performance spec")
        s = cls(spec)
        if len(fields) != 3:
            raise _codec.SketchFormatError(f"a performance sketch has 3 fields, these bytes {len(fields)}")
        counts, table, sums = (
            _codec.from_i64(fields[0]),
            _codec.from_i64(fields[1]),
            _codec.from_f64(fields[2]),
        )
        if counts.shape != s.counts.shape or table.size != s.table.size or sums.shape != s.sums.shape:
            raise _codec.SketchFormatError("performance sketch fields do not fit its spec")
        s.counts, s.table, s.sums = counts, table.reshape(s.table.shape), sums
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PerformanceSketch) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]


def binary_metrics(s: PerformanceSketch) -> Metrics:
    """Binary classifier metrics over the labelled rows with a score.

    Exact (from the confusion counts at ``positive_threshold``): ``positive_rate`` (labels),
    ``predicted_positive_rate``, ``accuracy``, ``precision``, ``recall``, ``f1``. ``log_loss``:
    the mean of −log p(label), p the score clipped to [eps, 1 − eps] (eps the float64 machine
    epsilon, as scikit-learn clips float64 scores); None when a score was outside [0, 1].

    From the score histograms (``pos_b``, ``neg_b`` in bin ``b``, ``P``, ``N`` in all):

    * ``roc_auc`` = Σ_b pos_b·(neg_<b + ½·neg_b) / (P·N): the Mann–Whitney AUC with every pair
      of one bin a tie. A pair in different bins is ordered as its raw scores are (bins are
      score intervals), so only same-bin pairs can be off, by ½ each: the AUC of the raw scores
      is within ``roc_auc_error_bound`` = ½·Σ_b pos_b·neg_b / (P·N) of it, and that bound is
      exact (reached when every same-bin pair is ordered the same way). The value equals
      scikit-learn's ``roc_auc_score`` with each score replaced by its bin index.
    * ``pr_auc`` = Σ_b (pos_b/P)·(T_b + pos_b)/C_b, T_b and M_b the positives and rows in
      the bins above b, C_b = M_b + pos_b + neg_b: average precision over the bin thresholds,
      descending, which is scikit-learn's ``average_precision_score`` on the bin indexes. On the
      raw scores each positive of bin b gets the precision (T_b + a)/(M_b + a + c) of its own
      score instead, a >= its rank i among the bin's positives and c <= neg_b the bin's rows at
      or above it; that rises with a and falls with c, so it lies between (T_b + i)/(M_b + neg_b
      + i) (every negative of the bin above every positive) and (T_b + pos_b)/(M_b + pos_b) (the
      positives tied, above every negative). Bins are independent, hence the raw average
      precision lies in [pr_auc − Σ_b down_b, pr_auc + Σ_b up_b] with
      up_b = pos_b·((T_b + pos_b)/(M_b + pos_b) − (T_b + pos_b)/C_b) / P and
      down_b = (pos_b·(T_b + pos_b)/C_b − Σ_{i<=pos_b} (T_b + i)/(D_b + i)) / P, D_b = M_b + neg_b;
      the sum is bounded with Σ_{i<=p} 1/(D + i) <= ln(1 + p/D). ``pr_auc_error_bound`` is the
      larger of the two sums: |average precision of the raw scores − pr_auc| <= it. The upper
      side is reached (tied positives), the lower side up to that logarithm.

    ``roc_auc`` needs both labels, ``pr_auc`` a positive; else they are None.
    """
    c = s.counts
    tp, fp, tn, fn = (int(c[i]) for i in (TP, FP, TN, FN))
    n = tp + fp + tn + fn
    neg, pos = (s.table[i].astype(np.float64) for i in (0, 1))
    p_total, n_total = tp + fn, fp + tn
    out: Metrics = {
        "n_score_out_of_range": int(c[OUT_OF_RANGE]),
        "positive_rate": _ratio(p_total, n),
        "predicted_positive_rate": _ratio(tp + fp, n),
        "accuracy": _ratio(tp + tn, n),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, p_total),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": None,
        "roc_auc_error_bound": None,
        "pr_auc": None,
        "pr_auc_error_bound": None,
        "log_loss": float(s.sums[0]) / n if n and not c[OUT_OF_RANGE] else None,
    }
    if p_total and n_total:
        below = np.cumsum(neg) - neg
        pairs = float(p_total) * float(n_total)
        out["roc_auc"] = float(np.sum(pos * (below + 0.5 * neg)) / pairs)
        out["roc_auc_error_bound"] = float(0.5 * np.sum(pos * neg) / pairs)
    if p_total:
        tp_at = np.cumsum(pos[::-1])[::-1]  # positives in bins >= b
        rows_at = tp_at + np.cumsum(neg[::-1])[::-1]
        hit = pos > 0
        p, t, c_at = pos[hit], tp_at[hit], rows_at[hit]
        binned = t / c_at  # each positive's precision at its bin's threshold
        out["pr_auc"] = float(np.sum(p * binned) / p_total)
        above, d = t - p, c_at - p  # positives above the bin; rows above it and its negatives
        up = p * (t / (c_at - neg[hit]) - binned)
        gap = d - above  # negatives above or in the bin: the harmonic sum's weight
        harmonic = np.log1p(p / np.where(d > 0, d, 1.0))
        down = p * binned - p + np.where(gap > 0, gap * harmonic, 0.0)
        bound = max(float(np.sum(np.maximum(up, 0.0))), float(np.sum(np.maximum(down, 0.0))))
        out["pr_auc_error_bound"] = bound / p_total
    return out


def multiclass_metrics(s: PerformanceSketch) -> Metrics:
    """Multiclass metrics from the confusion matrix over ``classes + ("<other>",)``.

    ``accuracy`` = ``micro_f1`` (each row has one label and one prediction). ``macro_f1``: the
    mean F1 of the classes present in the labels or the predictions of these rows (``<other>``
    included when present), as scikit-learn's ``f1_score(average="macro")`` without ``labels``.
    ``precision``, ``recall``, ``f1`` of ``positive_class`` when it is a kept class.
    """
    m = s.table
    n = int(m.sum())
    tp = np.diag(m).astype(np.float64)
    actual, predicted = m.sum(axis=1), m.sum(axis=0)
    present = (actual + predicted) > 0
    f1 = 2 * tp[present] / (actual + predicted)[present]
    out: Metrics = {
        "accuracy": _ratio(int(tp.sum()), n),
        "macro_f1": float(np.mean(f1)) if f1.size else None,
        "micro_f1": _ratio(2 * int(tp.sum()), 2 * n),
    }
    i = s.spec.class_index.get(s.spec.positive_class)
    if i is not None:
        out["precision"] = _ratio(int(tp[i]), int(predicted[i]))
        out["recall"] = _ratio(int(tp[i]), int(actual[i]))
        out["f1"] = _ratio(2 * int(tp[i]), int(actual[i] + predicted[i]))
    return out


def regression_metrics(s: PerformanceSketch) -> Metrics:
    """``mae``, ``rmse``, ``mean_error`` (mean of prediction − label) and ``r2`` = 1 − SSE/SST,
    SST the label's M2; ``r2`` is None when every label is the same (SST = 0)."""
    n = int(s.counts[N])
    x = s.sums
    out: Metrics = {"n_non_finite": int(s.counts[NON_FINITE])}
    if not n:
        return out | {"mae": None, "rmse": None, "mean_error": None, "r2": None}
    return out | {
        "mae": float(x[SUM_ABS] / n),
        "rmse": math.sqrt(x[SUM_SQ] / n),
        "mean_error": float(x[SUM_E] / n),
        "r2": float(1.0 - x[SUM_SQ] / x[M2]) if x[HI] > x[LO] and x[M2] > 0 else None,
    }


def performance_report(
    reference: PerformanceSketch | None, current: PerformanceSketch | None
) -> dict[str, object] | None:
    """``{"task", "reference": metrics, "current": metrics}`` (None for a sketch not given);
    None when neither sketch has a labelled row. ValueError when they have other specs."""
    given = [s for s in (reference, current) if s is not None]
    if not any(s.n_labelled for s in given):
        return None
    if len({s.spec.digest for s in given}) > 1:
        raise ValueError("cannot compare performance sketches built on different specs")
    return {
        "task": given[0].spec.task,
        "reference": reference.metrics() if reference is not None else None,
        "current": current.metrics() if current is not None else None,
    }


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _values(column: Column) -> np.ndarray:
    return np.asarray(column[1] if isinstance(column, tuple) else column)


def _is_numeric(column: Column) -> bool:
    return not isinstance(column, tuple) and np.asarray(column).dtype.kind in "biuf"


def _floats(column: Column) -> np.ndarray:
    return np.asarray(column, dtype=np.float64)


def _coded(column: Column) -> tuple[Sequence[str | None], np.ndarray]:
    if isinstance(column, tuple):
        names, codes = column
        return names, np.asarray(codes, np.int64)
    return dictionary_encode(column)


def _class_codes(column: Column) -> tuple[Sequence[str | None], np.ndarray]:
    """(names, codes) of class text; a float that is a whole number reads as an int (1.0: "1")."""
    if isinstance(column, tuple) or np.asarray(column).dtype.kind != "f":
        return _coded(column)
    uniques, inverse = np.unique(np.asarray(column), return_inverse=True)
    names = [
        None if math.isnan(u) else str(int(u)) if u.is_integer() else as_category(u) for u in uniques.tolist()
    ]
    return names, inverse.astype(np.int64).ravel()


def _present(names: Sequence[str | None], codes: np.ndarray) -> np.ndarray:
    """Per name: not missing and used by some row."""
    used = np.bincount(np.asarray(codes, np.int64), minlength=len(names)) > 0
    return used[: len(names)] & np.array([n is not None for n in names], dtype=bool)


def _top_classes(columns: list[tuple[Sequence[str | None], np.ndarray]], max_classes: int) -> tuple[str, ...]:
    counts: Counter[str] = Counter()
    for names, codes in columns:
        per_name = np.bincount(np.asarray(codes, np.int64), minlength=len(names))
        for name, c in zip(names, per_name.tolist(), strict=True):
            if name is not None and name != OTHER and c:
                counts[name] += c
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(k for k, _ in ranked[:max_classes])


def _score_edges(scores: np.ndarray, fine_bins: int, threshold: float) -> np.ndarray:
    if not 1 <= fine_bins < MAX_TABLE - 1:
        raise ValueError(f"fine_bins must be between 1 and {MAX_TABLE - 2}, got {fine_bins}")
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return np.array([threshold], np.float64)
    return np.unique(np.quantile(finite, np.arange(fine_bins + 1) / fine_bins))


def _binary_label(label: Column, spec: PerformanceSpec) -> np.ndarray:
    """1 / 0 / -1 (no label) per row; see :meth:`PerformanceSketch.update`."""
    if _is_numeric(label):
        y = _floats(label)
        return np.where(np.isnan(y), -1, y >= 0.5).astype(np.int8)
    names, codes = _coded(label)
    lut = to_outcome(
        np.array(list(names) or [None], dtype=object), spec.positive_threshold, spec.positive_class
    )
    return lut[codes]
