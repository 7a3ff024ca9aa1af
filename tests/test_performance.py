"""Model-quality sketches: scikit-learn as the oracle on the same rows, the stated AUC error
bounds, the merge laws, the spec's task decision, and missing labels/predictions counted."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn import metrics as skm

from driftline.detectors._codec import SketchFormatError
from driftline.detectors.categorical import OTHER, dictionary_encode
from driftline.detectors.fairness import FairnessSketch
from driftline.detectors.performance import (
    PerformanceSketch,
    PerformanceSpec,
    performance_report,
)

SEEDS = [0, 1, 2]
BIN_TOL = 1e-12  # float rounding only: same formula, another summation order
# Stated tolerance of pr_auc against average precision on the raw scores, for 1000 reference-
# quantile bins on the continuous-score data sets here (20k rows, 5% to 50% positives). Its
# justification is the proven pr_auc_error_bound (checked on every case too): ≈ 0.0009 balanced,
# 0.0025 random, 0 perfect, and at most 0.0163 with 5% positives (a bin holds ~20 rows, and
# the top bins, where precision is decided, hold few rows above them: C_b is small). The errors
# actually seen are ≤ 0.005. ROC AUC needs no such constant: its bound is ≈ 0.0003-0.0005.
PR_AUC_RAW_TOL = 0.02


# --- data -------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def binary_rows(shape: str, seed: int, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels 0/1 as float) of a classifier of the given shape."""
    rng = np.random.default_rng(seed)
    rate = 0.05 if shape == "imbalanced" else 0.5 if shape != "ties" else 0.3
    y = (rng.random(n) < rate).astype(np.float64)
    noise = rng.normal(0, 1, n)
    if shape == "perfect":
        s = np.where(y == 1, 0.6 + 0.4 * rng.random(n), 0.4 * rng.random(n))
    elif shape == "random":
        s = rng.random(n)
    elif shape == "ties":  # a few distinct scores, many rows on each
        s = np.round(_sigmoid(noise + 1.2 * y - 0.5), 1)
    elif shape == "unbounded":  # margins, not probabilities: many scores outside [0, 1]
        s = noise + 1.5 * y - 0.2
    else:
        s = _sigmoid(noise + 1.5 * y - 0.5)
    return s, y


SHAPES = ["balanced", "imbalanced", "perfect", "random", "ties", "unbounded"]


def fitted(shape: str, seed: int, fine_bins: int = 1000) -> PerformanceSpec:
    ref_s, ref_y = binary_rows(shape, seed + 100)
    spec = PerformanceSpec.fit(ref_s, ref_y, fine_bins=fine_bins)
    assert spec is not None and spec.task == "binary"
    return spec


def bin_index(spec: PerformanceSpec, scores: np.ndarray) -> np.ndarray:
    """The sketch's bin of each score: how many edges are <= it."""
    return np.searchsorted(spec.score_edges, scores, side="right")


def none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def close(got: float | int | None, want: float | None, tol: float = 1e-12) -> bool:
    if want is None or got is None:
        return got is None and want is None
    return math.isclose(got, want, rel_tol=tol, abs_tol=tol)


# --- binary: scikit-learn oracle --------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_binary_metrics_match_sklearn(shape: str, seed: int) -> None:
    spec = fitted(shape, seed)
    s, y = binary_rows(shape, seed)
    m = PerformanceSketch(spec).update(s, y).metrics()
    pred = (s >= spec.positive_threshold).astype(int)

    assert m["n_labelled"] == len(y)
    assert close(m["positive_rate"], float(np.mean(y)))
    assert close(m["predicted_positive_rate"], float(np.mean(pred)))
    assert close(m["accuracy"], skm.accuracy_score(y, pred))
    for key, fn in [("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)]:
        assert close(m[key], none_if_nan(fn(y, pred, zero_division=np.nan))), key

    inside = bool(np.all((s >= 0) & (s <= 1)))
    assert m["n_score_out_of_range"] == int(np.count_nonzero((s < 0) | (s > 1)))
    if inside:
        assert close(m["log_loss"], skm.log_loss(y, s, labels=[0, 1]), 1e-10)
    else:
        assert m["log_loss"] is None

    b = bin_index(spec, s)
    auc, bound = m["roc_auc"], m["roc_auc_error_bound"]
    assert isinstance(auc, float) and isinstance(bound, float)
    assert abs(auc - skm.roc_auc_score(y, s)) <= bound + BIN_TOL
    assert abs(auc - skm.roc_auc_score(y, b)) <= BIN_TOL

    ap, ap_bound = m["pr_auc"], m["pr_auc_error_bound"]
    assert isinstance(ap, float) and isinstance(ap_bound, float)
    assert abs(ap - skm.average_precision_score(y, b)) <= BIN_TOL
    raw_ap = skm.average_precision_score(y, s)
    assert abs(ap - raw_ap) <= ap_bound + BIN_TOL
    if shape != "ties":
        assert ap_bound <= PR_AUC_RAW_TOL
        assert abs(ap - raw_ap) <= PR_AUC_RAW_TOL


def test_a_perfect_classifier_has_exact_aucs() -> None:
    s, y = binary_rows("perfect", 0)  # negatives below 0.4, positives above 0.6
    edges = np.unique(np.r_[fitted("perfect", 0).score_edges, 0.5])  # and an edge between them
    spec = PerformanceSpec("binary", score_edges=edges)
    m = PerformanceSketch(spec).update(s, y).metrics()
    # No bin holds both labels, so the bounds are 0 and the raw AUCs are met exactly.
    assert m["roc_auc_error_bound"] == 0 and m["pr_auc_error_bound"] == 0
    assert close(m["roc_auc"], skm.roc_auc_score(y, s))
    assert close(m["pr_auc"], skm.average_precision_score(y, s))
    assert close(m["accuracy"], skm.accuracy_score(y, s >= 0.5))


def test_scores_on_the_edges_give_the_raw_roc_auc() -> None:
    """Every distinct score an edge: a bin holds one score value, its pairs are true ties."""
    s, y = binary_rows("ties", 3)
    spec = PerformanceSpec.fit(s, y)
    assert spec is not None and set(np.unique(s)) <= set(spec.score_edges.tolist())
    m = PerformanceSketch(spec).update(s, y).metrics()
    assert close(m["roc_auc"], skm.roc_auc_score(y, s))
    assert close(m["pr_auc"], skm.average_precision_score(y, s))


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_error_bound_is_reached(seed: int) -> None:
    """Inside every bin, all positives above all negatives (or below): the raw AUC is off the
    sketch's by exactly the bound, so the bound cannot be lowered."""
    rng = np.random.default_rng(seed)
    edges = np.arange(11.0)
    spec = PerformanceSpec("binary", positive_threshold=5.0, score_edges=edges)
    binned = rng.integers(0, 10, 3000) + 0.0
    y = (rng.random(3000) < 0.4).astype(np.float64)
    for sign in (1, -1):
        s = binned + 0.5 + sign * 0.25 * (2 * y - 1)  # within the bin [k, k + 1)
        m = PerformanceSketch(spec).update(s, y).metrics()
        auc, bound = m["roc_auc"], m["roc_auc_error_bound"]
        assert isinstance(auc, float) and isinstance(bound, float) and bound > 0.01
        assert close(skm.roc_auc_score(y, s) - auc, sign * bound)


@given(
    st.lists(st.tuples(st.integers(0, 40), st.booleans()), min_size=1, max_size=120),
    st.integers(1, 8),
)
def test_pr_auc_bound_holds_for_any_order_inside_the_bins(rows: list[tuple[int, bool]], width: int) -> None:
    """Scores on a grid of 41 values (ties), bins of ``width`` grid steps: every arrangement of
    the rows inside the bins keeps the raw average precision within the bound."""
    s = np.array([r[0] for r in rows], np.float64)
    y = np.array([r[1] for r in rows], np.float64)
    spec = PerformanceSpec("binary", score_edges=np.arange(0.0, 41.0, width))
    m = PerformanceSketch(spec).update(s, y).metrics()
    if not y.any():
        assert m["pr_auc"] is None and m["pr_auc_error_bound"] is None
        return
    ap, bound = m["pr_auc"], m["pr_auc_error_bound"]
    assert isinstance(ap, float) and isinstance(bound, float)
    assert abs(ap - skm.average_precision_score(y, bin_index(spec, s))) <= BIN_TOL
    assert abs(ap - skm.average_precision_score(y, s)) <= bound + BIN_TOL
    if y.all() or not y.any():
        return
    auc, auc_bound = m["roc_auc"], m["roc_auc_error_bound"]
    assert isinstance(auc, float) and isinstance(auc_bound, float)
    assert abs(auc - skm.roc_auc_score(y, s)) <= auc_bound + BIN_TOL


def test_pr_auc_upper_bound_is_reached_by_tied_positives() -> None:
    """Positives tied above every negative of their bin: the raw AP is above the sketch's by
    the upper side of the bound."""
    rng = np.random.default_rng(7)
    spec = PerformanceSpec("binary", score_edges=np.arange(11.0))
    binned = rng.integers(0, 10, 2000) + 0.0
    y = (rng.random(2000) < 0.5).astype(np.float64)
    s = binned + np.where(y == 1, 0.75, 0.25)
    m = PerformanceSketch(spec).update(s, y).metrics()
    ap, bound = m["pr_auc"], m["pr_auc_error_bound"]
    assert isinstance(ap, float) and isinstance(bound, float)
    # Here the upper side is the larger one, so the reported bound is met exactly.
    assert close(skm.average_precision_score(y, s) - ap, bound, 1e-12)
    # Every negative of a bin above its (untied) positives: the raw AP is below the sketch's.
    s = binned + np.where(y == 1, 0.25 + 0.05 * rng.random(2000), 0.75)
    assert -bound - BIN_TOL <= skm.average_precision_score(y, s) - ap < 0


def test_tiny_binary_case_by_hand() -> None:
    s = np.array([0.1, 0.4, 0.35, 0.8])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    spec = PerformanceSpec.fit(s, y)
    assert spec is not None
    m = PerformanceSketch(spec).update(s, y).metrics()
    # At 0.5: TP = 1 (0.8), FN = 1 (0.35), TN = 2.
    assert (m["accuracy"], m["precision"], m["recall"]) == (0.75, 1.0, 0.5)
    assert close(m["f1"], 2 / 3)
    # Pairs (pos, neg): 0.35 > 0.1, 0.35 < 0.4, 0.8 > both: 3 of 4.
    assert m["roc_auc"] == 0.75 and m["roc_auc_error_bound"] == 0
    # Descending: 0.8 (pos, precision 1), 0.4 (neg), 0.35 (pos, precision 2/3).
    assert close(m["pr_auc"], (1 + 2 / 3) / 2)
    assert close(m["log_loss"], -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)


def test_undefined_metrics_are_none() -> None:
    spec = PerformanceSpec("binary", score_edges=np.linspace(0, 1, 11))
    only_neg = PerformanceSketch(spec).update(np.array([0.1, 0.2, 0.3]), np.zeros(3)).metrics()
    assert only_neg["accuracy"] == 1.0 and only_neg["positive_rate"] == 0.0
    for key in ("precision", "recall", "f1", "roc_auc", "roc_auc_error_bound", "pr_auc"):
        assert only_neg[key] is None, key
    only_pos = PerformanceSketch(spec).update(np.array([0.7, 0.2]), np.ones(2)).metrics()
    assert only_pos["roc_auc"] is None and only_pos["precision"] == 1.0
    assert only_pos["pr_auc"] == skm.average_precision_score([1, 1], [0.7, 0.2])
    empty = PerformanceSketch(spec).metrics()
    assert empty["n_labelled"] == 0
    assert all(v is None for k, v in empty.items() if not k.startswith("n_"))
    for m in (only_neg, only_pos, empty):
        assert not any(isinstance(v, float) and math.isnan(v) for v in m.values())


def test_log_loss_clips_like_sklearn_and_refuses_out_of_range_scores() -> None:
    s = np.array([0.0, 1.0, 1.0, 0.0, 0.5])
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0])  # two confident mistakes: the clip decides the loss
    spec = PerformanceSpec("binary", score_edges=np.array([0.5]))
    m = PerformanceSketch(spec).update(s, y).metrics()
    assert close(m["log_loss"], skm.log_loss(y, s), 1e-12)
    out = PerformanceSketch(spec).update(np.array([0.2, 1.5, -np.inf]), np.array([0.0, 1.0, 0.0])).metrics()
    assert out["log_loss"] is None and out["n_score_out_of_range"] == 2
    assert out["accuracy"] == 1.0  # 1.5 >= 0.5 is a positive prediction; -inf a negative one


@pytest.mark.parametrize("seed", SEEDS)
def test_missing_labels_and_predictions_are_counted_not_dropped(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s, y = binary_rows("balanced", seed, 5000)
    y[rng.random(5000) < 0.2] = np.nan
    s[rng.random(5000) < 0.1] = np.nan
    labelled, scored = ~np.isnan(y), ~np.isnan(y) & ~np.isnan(s)
    spec = fitted("balanced", seed)
    sketch = PerformanceSketch(spec).update(s, y)
    m = sketch.metrics()
    assert m["n_unlabelled"] == np.count_nonzero(~labelled) == sketch.n_unlabelled
    assert m["n_missing_prediction"] == np.count_nonzero(labelled & np.isnan(s))
    assert m["n_labelled"] == sketch.n_labelled == np.count_nonzero(labelled)
    assert m["n_labelled"] + m["n_unlabelled"] == 5000
    ys, ss = y[scored], s[scored]
    assert close(m["accuracy"], skm.accuracy_score(ys, ss >= 0.5))
    assert close(m["log_loss"], skm.log_loss(ys, ss), 1e-10)
    auc, bound = m["roc_auc"], m["roc_auc_error_bound"]
    assert isinstance(auc, float) and isinstance(bound, float)
    assert abs(auc - skm.roc_auc_score(ys, ss)) <= bound + BIN_TOL


@pytest.mark.parametrize(
    ("label", "positive_class"),
    [
        (np.array([True, False, True, False, True]), "1"),
        (np.array(["yes", "no", "yes", "no", "yes"], dtype=object), "yes"),
        (dictionary_encode(["true", "false", "true", "false", "true"]), "1"),
        (np.array([1, 0, 1, 0, 1]), "1"),
    ],
)
def test_binary_labels_of_every_form(label: Any, positive_class: str) -> None:
    s = np.array([0.9, 0.8, 0.3, 0.1, 0.6])
    spec = PerformanceSpec.fit(s, label, positive_class=positive_class)
    assert spec is not None and spec.task == "binary"
    m = PerformanceSketch(spec).update(s, label).metrics()
    # labels 1 0 1 0 1, predictions 1 1 0 0 1: TP 2, FP 1, FN 1, TN 1
    assert (m["accuracy"], m["precision"], m["recall"], m["positive_rate"]) == (0.6, 2 / 3, 2 / 3, 0.6)


# --- multiclass -------------------------------------------------------------------------------


def class_rows(seed: int, n: int = 8000, accuracy: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, labels) over 30 classes of falling frequency, None missing (5% of labels)."""
    rng = np.random.default_rng(seed)
    names = np.array([f"c{i}" for i in range(30)], dtype=object)
    weights = 1.0 / np.arange(1, 31)
    y = names[rng.choice(30, n, p=weights / weights.sum())]
    p = np.where(rng.random(n) < accuracy, y, names[rng.integers(0, 30, n)])
    y[rng.random(n) < 0.05] = None
    return p, y


def mapped(values: np.ndarray, spec: PerformanceSpec) -> np.ndarray:
    return np.array([v if v in spec.classes else OTHER for v in values], dtype=object)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("accuracy", [0.0, 0.6, 1.0])
def test_multiclass_metrics_match_sklearn(seed: int, accuracy: float) -> None:
    ref_p, ref_y = class_rows(seed + 100)
    spec = PerformanceSpec.fit(dictionary_encode(ref_p), ref_y, positive_class="c0")
    assert spec is not None and spec.task == "multiclass" and len(spec.classes) == 20
    p, y = class_rows(seed, accuracy=accuracy)
    sketch = PerformanceSketch(spec).update(dictionary_encode(p), dictionary_encode(y))
    assert sketch == PerformanceSketch(spec).update(p, y)  # either column form folds the same
    m = sketch.metrics()
    labelled = np.array([v is not None for v in y])
    assert m["n_unlabelled"] == np.count_nonzero(~labelled)
    assert m["n_labelled"] == np.count_nonzero(labelled)
    yt, yp = mapped(y[labelled], spec), mapped(p[labelled], spec)
    present = sorted(set(yt) | set(yp))
    assert close(m["accuracy"], skm.accuracy_score(yt, yp))
    assert close(m["micro_f1"], skm.f1_score(yt, yp, average="micro"))
    assert close(m["macro_f1"], skm.f1_score(yt, yp, average="macro", labels=present, zero_division=np.nan))
    assert close(m["macro_f1"], skm.f1_score(yt, yp, average="macro"))
    prec, rec, f1, _ = skm.precision_recall_fscore_support(yt, yp, labels=["c0"], zero_division=np.nan)
    assert close(m["precision"], none_if_nan(prec[0]))
    assert close(m["recall"], none_if_nan(rec[0]))
    assert close(m["f1"], none_if_nan(f1[0]))


def test_multiclass_tiny_case_and_missing_predictions() -> None:
    spec = PerformanceSpec("multiclass", positive_class="cat", classes=("cat", "dog"))
    pred = np.array(["cat", "dog", "cat", None, "bird", "cat"], dtype=object)
    label = np.array(["cat", "cat", "dog", "dog", "fish", None], dtype=object)
    m = PerformanceSketch(spec).update(pred, label).metrics()
    # Scored rows (label, prediction): (cat, cat) (cat, dog) (dog, cat) (<other>, <other>).
    assert (m["n_labelled"], m["n_unlabelled"], m["n_missing_prediction"]) == (5, 1, 1)
    assert m["accuracy"] == 0.5 and m["micro_f1"] == 0.5
    # F1: cat 2·1/(2 + 2) = 0.5, dog 0, <other> 1.
    assert close(m["macro_f1"], 0.5)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)


def test_multiclass_float_labels_read_as_class_names() -> None:
    pred = dictionary_encode(["1", "2", "2", "10"])
    label = np.array([1.0, 2.0, np.nan, 10.0])
    spec = PerformanceSpec.fit(pred, label)
    assert spec is not None and spec.task == "multiclass"
    assert set(spec.classes) == {"1", "2", "10"}
    m = PerformanceSketch(spec).update(pred, label).metrics()
    assert m["accuracy"] == 1.0 and m["n_unlabelled"] == 1
    assert "precision" in m  # "1" is a kept class


# --- regression -------------------------------------------------------------------------------


def regression_rows(seed: int, n: int = 10_000, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = offset + rng.normal(0, 3, n)
    p = y + rng.normal(0.2, 1, n)
    return p, y


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("offset", [0.0, 1e8])
def test_regression_metrics_match_sklearn(seed: int, offset: float) -> None:
    p, y = regression_rows(seed, offset=offset)
    spec = PerformanceSpec.fit(*regression_rows(seed + 100, offset=offset))
    assert spec is not None and spec.task == "regression"
    # Folded in 37 batches: the label moments go through Chan's merge many times.
    sketch = PerformanceSketch(spec)
    for part_p, part_y in zip(np.array_split(p, 37), np.array_split(y, 37), strict=True):
        sketch.update(part_p, part_y)
    m = sketch.metrics()
    assert m["n_labelled"] == len(y)
    assert close(m["mae"], skm.mean_absolute_error(y, p), 1e-9)
    assert close(m["rmse"], skm.root_mean_squared_error(y, p), 1e-9)
    assert close(m["mean_error"], float(np.mean(p - y)), 1e-9)
    assert close(m["r2"], skm.r2_score(y, p), 1e-9)


def test_regression_tiny_case_and_constant_label() -> None:
    spec = PerformanceSpec("regression")
    m = PerformanceSketch(spec).update(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 5.0])).metrics()
    # errors 0, 1, −2; label mean 7/3, SST = 32/3, SSE = 5
    assert close(m["mae"], 1.0) and close(m["rmse"], math.sqrt(5 / 3)) and close(m["mean_error"], -1 / 3)
    assert close(m["r2"], 17 / 32)
    flat = PerformanceSketch(spec).update(np.array([0.1, 0.3, 0.2]), np.full(3, 0.1)).metrics()
    assert flat["r2"] is None and close(flat["mae"], 0.1)


def test_regression_counts_missing_and_infinite_rows() -> None:
    spec = PerformanceSpec("regression")
    p = np.array([1.0, np.nan, 3.0, np.inf, 5.0, 6.0])
    y = np.array([1.5, 2.0, np.nan, 4.0, -np.inf, 6.5])
    m = PerformanceSketch(spec).update(p, y).metrics()
    assert (m["n_labelled"], m["n_unlabelled"], m["n_missing_prediction"], m["n_non_finite"]) == (5, 1, 1, 2)
    # Scored rows: (1, 1.5), (6, 6.5): errors −0.5 twice; label mean 4, SST 12.5, SSE 0.5.
    assert close(m["mae"], 0.5) and close(m["mean_error"], -0.5) and close(m["r2"], 1 - 0.5 / 12.5)


# --- the spec ---------------------------------------------------------------------------------


def task_of(prediction: Any, label: Any, positive_class: str = "1") -> str | None:
    spec = PerformanceSpec.fit(prediction, label, positive_class=positive_class)
    return None if spec is None else spec.task


def test_spec_fit_decides_the_task() -> None:
    score = np.array([0.2, 0.7, 0.9, np.nan])
    assert task_of(score, np.array([0.0, 1.0, np.nan, 1.0])) == "binary"
    assert task_of(score, np.array([1.0, 1.0, 1.0, 1.0])) == "binary"
    assert task_of(score, np.array([False, True, True, False])) == "binary"
    assert task_of(score, np.array([0, 1, 1, 0])) == "binary"
    assert task_of(score, np.array(["no", "yes", None, "yes"], dtype=object), "yes") == "binary"
    assert task_of(score, dictionary_encode(["true", "false", "true", None])) == "binary"
    assert task_of(score, np.array(["1", "1", "1", None], dtype=object)) == "binary"
    assert task_of(score, np.array([0.0, 1.0, 2.5, 1.0])) == "regression"
    assert task_of(score, np.array([3, 4, 5, 6])) == "regression"
    classes = dictionary_encode(["a", "b", "a", None])
    assert task_of(classes, np.array(["a", "b", "b", "a"])) == "multiclass"
    assert task_of(np.array(["a", "b", "a", "c"]), classes) == "multiclass"
    assert (
        task_of(np.array(["0", "1", "1", "0"], dtype=object), np.array([0.0, 1.0, 1.0, 0.0])) == "multiclass"
    )


def test_spec_fit_without_labels_is_none_and_ambiguous_labels_are_refused() -> None:
    score = np.array([0.2, 0.7, 0.9])
    assert PerformanceSpec.fit(score, np.full(3, np.nan)) is None
    assert PerformanceSpec.fit(score, ([None], np.zeros(3, np.int64))) is None
    assert PerformanceSpec.fit(np.array(["a", "b", "c"]), ([None], np.zeros(3, np.int64))) is None
    assert PerformanceSpec.fit(np.zeros(0), np.zeros(0)) is None
    with pytest.raises(ValueError, match="two values"):  # neither is the positive class "1"
        PerformanceSpec.fit(score, np.array(["yes", "no", "yes"], dtype=object))
    with pytest.raises(ValueError, match="two values"):
        PerformanceSpec.fit(score, np.array(["a", "b", "c"], dtype=object))
    with pytest.raises(ValueError, match="differ in length"):
        PerformanceSpec.fit(score, np.zeros(2))


def test_spec_fit_binary_edges_and_multiclass_classes() -> None:
    rng = np.random.default_rng(0)
    s = rng.random(5000)
    spec = PerformanceSpec.fit(s, (s > 0.5).astype(float), fine_bins=100)
    assert spec is not None
    assert np.allclose(spec.score_edges, np.quantile(s, np.linspace(0, 1, 101)), rtol=0, atol=1e-15)
    assert spec.score_edges[0] == s.min() and spec.score_edges[-1] == s.max()
    few = PerformanceSpec.fit(np.array([0.5, 0.5, np.inf, 0.5]), np.array([0.0, 1.0, 1.0, 1.0]))
    assert few is not None and few.score_edges.tolist() == [0.5]  # deduplicated, finite only
    none = PerformanceSpec.fit(np.array([np.nan, np.nan]), np.array([0.0, 1.0]), positive_threshold=0.3)
    assert none is not None and none.score_edges.tolist() == [0.3]
    labels = np.array(["b", "a", "b", "c", "c", "d", OTHER], dtype=object)
    preds = np.array(["b", "a", "a", "c", "e", "e", "e"], dtype=object)
    # counts over labels and predictions: b 3, a 3, c 3, e 3, d 1 (and <other>, never a class)
    multi = PerformanceSpec.fit(preds, labels, max_classes=3)
    assert multi is not None and multi.classes == ("a", "b", "c")
    assert multi.labels == ("a", "b", "c", OTHER)


def test_spec_bytes_round_trip_and_digest() -> None:
    specs = [
        fitted("balanced", 0, fine_bins=200),
        PerformanceSpec("multiclass", 0.3, "dog", classes=("dog", "cat")),
        PerformanceSpec("regression"),
    ]
    for spec in specs:
        back = PerformanceSpec.from_bytes(spec.to_bytes())
        assert back.to_bytes() == spec.to_bytes() and back.digest == spec.digest and back == spec
        assert back.task == spec.task and back.classes == spec.classes
    assert len({s.digest for s in specs}) == 3
    assert PerformanceSpec("multiclass", classes=("a", "b")) != PerformanceSpec(
        "multiclass", classes=("b", "a")
    )
    with pytest.raises(SketchFormatError):
        PerformanceSpec.from_bytes(PerformanceSketch(specs[2]).to_bytes())
    with pytest.raises(ValueError):
        PerformanceSpec("binary", score_edges=np.array([0.5, 0.5]))
    with pytest.raises(ValueError):
        PerformanceSpec("multiclass", classes=("a", OTHER))


# --- merge laws -------------------------------------------------------------------------------

BINARY_SPEC = PerformanceSpec("binary", score_edges=np.linspace(0.0, 1.0, 21))
MULTI_SPEC = PerformanceSpec("multiclass", positive_class="a", classes=("a", "b", "c"))
REGRESSION_SPEC = PerformanceSpec("regression")

scores = st.one_of(
    st.floats(-0.5, 1.5, allow_nan=False), st.just(math.nan), st.sampled_from([0.0, 0.5, 1.0, 0.55])
)
binary_labels = st.sampled_from([0.0, 1.0, math.nan])
words = st.one_of(st.sampled_from(["a", "b", "c", "d", "e"]), st.none())
reals = st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.just(math.nan), st.just(math.inf))


def _fold_numeric(s: PerformanceSketch, rows: list[tuple[float, float]]) -> PerformanceSketch:
    p = np.array([r[0] for r in rows], np.float64)
    y = np.array([r[1] for r in rows], np.float64)
    return s.update(p, y)


def _fold_classes(s: PerformanceSketch, rows: list[tuple[str | None, str | None]]) -> PerformanceSketch:
    p = np.array([r[0] for r in rows], dtype=object)
    y = np.array([r[1] for r in rows], dtype=object)
    return s.update(dictionary_encode(p), dictionary_encode(y))


TASKS: dict[str, tuple[PerformanceSpec, st.SearchStrategy[Any], Callable[..., PerformanceSketch]]] = {
    "binary": (BINARY_SPEC, st.tuples(scores, binary_labels), _fold_numeric),
    "multiclass": (MULTI_SPEC, st.tuples(words, words), _fold_classes),
    "regression": (REGRESSION_SPEC, st.tuples(reals, reals), _fold_numeric),
}


def sketch_of(task: str, rows: list[Any]) -> PerformanceSketch:
    spec, _, fold = TASKS[task]
    return fold(PerformanceSketch(spec), rows)


def assert_same_state(a: PerformanceSketch, b: PerformanceSketch, rows: list[Any]) -> None:
    """Counts equal exactly; float sums within 1e-9 of the rows' magnitude (float addition is
    not associative, so another grouping may round differently)."""
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.table, b.table)
    finite = [abs(v) for r in rows for v in r if isinstance(v, float) and math.isfinite(v)]
    # Magnitude of what a sum adds: Σ error², M2 <= (Σ|values|)²; a log loss term is <= 37.
    scale = 1.0 + (sum(finite) ** 2 if a.spec.task == "regression" else 37.0 * len(rows))
    for x, y in zip(a.sums.tolist(), b.sums.tolist(), strict=True):
        assert x == y or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9 * scale), (x, y)


@pytest.mark.parametrize("task", TASKS)
def test_merge_is_commutative_in_bytes(task: str) -> None:
    rows = TASKS[task][1]

    @given(st.lists(rows, max_size=60), st.lists(rows, max_size=60))
    def check(a: list[Any], b: list[Any]) -> None:
        x, y = sketch_of(task, a), sketch_of(task, b)
        assert x.merge(y).to_bytes() == y.merge(x).to_bytes()
        assert x.merge(y) == y.merge(x)

    check()


@pytest.mark.parametrize("task", TASKS)
def test_merging_parts_equals_the_sketch_of_the_whole(task: str) -> None:
    rows = TASKS[task][1]

    @given(st.lists(rows, max_size=120), st.data())
    def check(whole: list[Any], data: st.DataObject) -> None:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=4)))
        parts = [whole[i:j] for i, j in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
        merged = PerformanceSketch(TASKS[task][0])
        for part in parts:
            merged = merged.merge(sketch_of(task, part))
        one = sketch_of(task, whole)
        assert_same_state(merged, one, whole)
        assert merged.n_labelled == one.n_labelled
        if task != "regression":  # r2 of nearly equal labels is ill-conditioned; the rest:
            for key, value in one.metrics().items():
                assert close(merged.metrics()[key], value, 1e-9), key

    check()


@pytest.mark.parametrize("task", TASKS)
def test_merge_is_associative_and_empty_is_the_identity(task: str) -> None:
    rows = TASKS[task][1]

    @given(st.lists(rows, max_size=40), st.lists(rows, max_size=40), st.lists(rows, max_size=40))
    def check(a: list[Any], b: list[Any], c: list[Any]) -> None:
        x, y, z = (sketch_of(task, r) for r in (a, b, c))
        assert_same_state(x.merge(y).merge(z), x.merge(y.merge(z)), a + b + c)
        empty = PerformanceSketch(TASKS[task][0])
        assert x.merge(empty) == x and empty.merge(x) == x

    check()


@pytest.mark.parametrize("task", TASKS)
def test_sketch_bytes_round_trip_and_are_deterministic(task: str) -> None:
    spec, rows, _ = TASKS[task]

    @given(st.lists(rows, max_size=80))
    def check(batch: list[Any]) -> None:
        s = sketch_of(task, batch)
        data = s.to_bytes()
        back = PerformanceSketch.from_bytes(data, spec)
        assert back.to_bytes() == data and back == s
        assert back.metrics() == s.metrics()
        assert sketch_of(task, batch).to_bytes() == data

    check()


def test_sketches_of_other_specs_do_not_mix() -> None:
    other = PerformanceSpec("binary", score_edges=np.linspace(0.0, 1.0, 11))
    with pytest.raises(ValueError, match="different specs"):
        PerformanceSketch(BINARY_SPEC).merge(PerformanceSketch(other))
    with pytest.raises(ValueError, match="other performance spec"):
        PerformanceSketch.from_bytes(PerformanceSketch(BINARY_SPEC).to_bytes(), other)
    with pytest.raises(SketchFormatError):
        PerformanceSketch.from_bytes(FairnessSketch().to_bytes(), other)
    with pytest.raises(SketchFormatError):
        PerformanceSketch.from_bytes(BINARY_SPEC.to_bytes(), BINARY_SPEC)
    with pytest.raises(TypeError):
        PerformanceSketch(BINARY_SPEC).update(dictionary_encode(["a"]), np.array([1.0]))
    with pytest.raises(TypeError):
        PerformanceSketch(REGRESSION_SPEC).update(np.array([1.0]), dictionary_encode(["a"]))
    with pytest.raises(ValueError, match="differ in length"):
        PerformanceSketch(BINARY_SPEC).update(np.array([0.5, 0.2]), np.array([1.0]))


# --- the report -------------------------------------------------------------------------------


def test_performance_report() -> None:
    spec = fitted("balanced", 0)
    ref = PerformanceSketch(spec).update(*binary_rows("balanced", 10, 2000))
    cur = PerformanceSketch(spec).update(*binary_rows("random", 11, 2000))
    report = performance_report(ref, cur)
    assert report is not None and report["task"] == "binary"
    assert report["reference"] == ref.metrics() and report["current"] == cur.metrics()
    assert performance_report(None, None) is None
    unlabelled = PerformanceSketch(spec).update(np.array([0.3]), np.array([np.nan]))
    assert performance_report(unlabelled, PerformanceSketch(spec)) is None
    only_current = performance_report(None, cur)
    assert only_current is not None and only_current["reference"] is None
    with pytest.raises(ValueError, match="different specs"):
        performance_report(ref, PerformanceSketch(REGRESSION_SPEC).update(np.ones(2), np.ones(2)))
