"""Explain drift: each PSI bin's (or category's) term, the top movers, and what they sum to."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.detectors import stats
from driftline.detectors.categorical import CategoricalSketch, Vocabulary
from driftline.detectors.numeric import NumericBins, NumericSketch
from driftline.detectors.profile import (
    Batch,
    Binning,
    ModelSketch,
    drift_report,
    explain,
    feature_report,
    format_movers,
    psi_bin_labels,
    psi_contributions,
)
from driftline.storage.codec import metric_rows


def oracle_terms(ref_counts: list[int], cur_counts: list[int]) -> list[float]:
    """(c − r)·ln(c / r) per bin, shares floored at 1e-4, in plain Python."""
    rt, ct = sum(ref_counts), sum(cur_counts)
    out = []
    for a, b in zip(ref_counts, cur_counts, strict=True):
        r, c = max(a / rt, 1e-4), max(b / ct, 1e-4)
        out.append((c - r) * math.log(c / r))
    return out


counts = st.lists(st.integers(0, 10_000), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_contributions_sum_to_the_psi_for_random_counts(data: st.DataObject) -> None:
    ref = data.draw(counts.filter(lambda c: sum(c) > 0))
    cur = data.draw(st.lists(st.integers(0, 10_000), min_size=len(ref), max_size=len(ref)))
    if not sum(cur):
        cur[0] = 1
    r, c = stats.proportions(np.array(ref, float)), stats.proportions(np.array(cur, float))
    terms = stats.psi_contributions(r, c)
    assert float(np.sum(terms)) == stats.psi(r, c)  # psi is their sum, by construction
    assert (terms >= 0).all()
    oracle = oracle_terms(ref, cur)
    assert terms.tolist() == pytest.approx(oracle, rel=1e-12, abs=1e-15)
    assert stats.psi(r, c) == pytest.approx(math.fsum(oracle), rel=1e-12, abs=1e-15)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_categorical_features_contributions_sum_to_its_psi(data: st.DataObject) -> None:
    k = data.draw(st.integers(1, 8))
    vocab = Vocabulary(tuple(f"c{i}" for i in range(k)))
    sizes = st.lists(st.integers(0, 500), min_size=k + 2, max_size=k + 2)  # categories, unseen, missing
    ref, cur = CategoricalSketch(vocab), CategoricalSketch(vocab)
    ref.counts, cur.counts = np.array(data.draw(sizes), np.int64), np.array(data.draw(sizes), np.int64)
    report = feature_report(ref, cur, cur.n + cur.n_missing)
    terms = psi_contributions(ref, cur)
    if not (ref.n and cur.n):
        assert terms == [] and explain(ref, cur) == []
        return
    assert [t["bin"] for t in terms] == [*vocab.categories, "<unseen>"]
    assert math.fsum(t["psi"] for t in terms) == pytest.approx(report["psi"], rel=1e-12, abs=1e-15)
    assert [t["psi"] for t in terms] == pytest.approx(
        oracle_terms(ref.counts[:-1].tolist(), cur.counts[:-1].tolist())
    )
    top = explain(ref, cur)
    assert len(top) <= 5 and all(t["psi"] > 0 for t in top)
    assert [t["psi"] for t in top] == sorted((t["psi"] for t in terms if t["psi"] > 0), reverse=True)[:5]


def test_hand_computed_two_bins() -> None:
    vocab = Vocabulary(("a", "b"))
    ref, cur = CategoricalSketch(vocab), CategoricalSketch(vocab)
    ref.counts = np.array([50, 50, 0, 7])  # a, b, unseen, missing (left out)
    cur.counts = np.array([90, 10, 0, 100])
    terms = {t["bin"]: t for t in psi_contributions(ref, cur)}
    assert terms["a"] == {
        "bin": "a",
        "reference_share": 0.5,
        "current_share": 0.9,
        "psi": 0.4 * math.log(1.8),
    }
    assert terms["b"]["psi"] == pytest.approx(-0.4 * math.log(0.2), rel=1e-15)
    assert terms["<unseen>"]["psi"] == 0.0  # 1e-4 on both sides
    assert sum(t["psi"] for t in terms.values()) == pytest.approx(0.8789, abs=5e-5)
    assert [t["bin"] for t in explain(ref, cur)] == ["b", "a"]  # 0.644 then 0.235; the unmoved left out


def test_numeric_bins_are_labelled_by_the_psi_edges_with_open_ends() -> None:
    bins = NumericBins.fit(np.arange(100.0), bins=100, psi_bins=10)  # deciles 9.9, 19.8, ..., 89.1
    labels = psi_bin_labels(bins)
    assert labels[0] == "< 9.9" and labels[1] == "[9.9, 19.8)" and labels[-1] == ">= 89.1"
    assert len(labels) == 10
    ref = NumericSketch(bins).update(np.arange(100.0))
    others = np.arange(5.0, 90.0, 10.0)  # one value in each of the other nine deciles
    cur = NumericSketch(bins).update(np.r_[np.full(91, 95.0), others, np.full(30, np.nan)])
    terms = psi_contributions(ref, cur)
    report = feature_report(ref, cur, 130)
    assert math.fsum(t["psi"] for t in terms) == pytest.approx(report["psi"], rel=1e-12)
    top = explain(ref, cur)  # missing values excluded: 91 % at or above 89.1, 1 % in each other decile
    assert [(t["bin"], t["reference_share"], t["current_share"]) for t in top] == [
        (">= 89.1", 0.1, 0.91),
        ("< 9.9", 0.1, 0.01),  # ties: in bin order
        ("[9.9, 19.8)", 0.1, 0.01),
        ("[19.8, 29.7)", 0.1, 0.01),
        ("[29.7, 39.6)", 0.1, 0.01),
    ]
    assert top[0]["psi"] == pytest.approx(0.81 * math.log(9.1))
    assert [t["psi"] for t in top[1:]] == pytest.approx([0.09 * math.log(10)] * 4)
    assert format_movers(top) == ">= 89.1 10%→91%, < 9.9 10%→1%, [9.9, 19.8) 10%→1%"


def test_close_edges_keep_distinct_labels() -> None:
    bins = NumericBins(np.array([0.0, 1.00001, 1.00002, 3.0]), psi_bins=3)
    assert psi_bin_labels(bins) == ["< 1.00001", "[1.00001, 1.00002)", ">= 1.00002"]


def report_of(ref_cols: dict, cur_cols: dict, kinds: dict) -> dict:
    binning = Binning.fit(ref_cols, kinds)
    n_ref, n_cur = len(next(iter(ref_cols.values()))), len(next(iter(cur_cols.values())))
    reference = ModelSketch(binning).update(Batch(n_ref, ref_cols))
    return drift_report(reference, ModelSketch(binning).update(Batch(n_cur, cur_cols)))


def test_drift_report_explains_drifted_features_only_and_their_rows_carry_it() -> None:
    rng = np.random.default_rng(7)
    ref = {"x": rng.normal(size=4000), "y": rng.normal(size=4000)}
    cur = {"x": rng.normal(1.0, size=4000), "y": rng.normal(size=4000)}
    report = report_of(ref, cur, {"x": "numeric", "y": "numeric"})
    x, y = report["features"]["x"], report["features"]["y"]
    assert x["drift"] and not y["drift"] and "explain" not in y
    assert len(x["explain"]) == 5 and x["explain"][0]["bin"].startswith(">= ")
    assert sum(t["psi"] for t in x["explain"]) <= x["psi"]
    rows = {r.metric: r for r in metric_rows(report, "m", "v1", 0, 60_000) if r.feature == "x"}
    for metric in ("psi", "js", "ks", "wasserstein"):
        assert list(rows[metric].explain) == x["explain"]
    assert rows["null_rate"].explain == ()
    assert all(r.explain == () for r in metric_rows(report, "m", "v1", 0, 60_000) if r.feature == "y")
