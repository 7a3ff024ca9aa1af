"""Categorical, latency and fairness statistics against numpy/scipy and hand-computed tables."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import stats as sps

from driftline.detectors import stats
from driftline.detectors.categorical import OTHER, CategoricalSketch, Vocabulary
from driftline.detectors.fairness import FairnessSketch, GroupTable, fairness_metrics, to_outcome
from driftline.detectors.latency import RELATIVE_ACCURACY, LatencySketch
from driftline.detectors.profile import Binning, SegmentLimits, bound_segments

RNG = np.random.default_rng(11)


def test_categorical_counts_other_and_missing() -> None:
    vocab = Vocabulary.fit(["b", "a", "a", "c", "c", "c", None], top_k=2)
    assert vocab.categories == ("c", "a")
    s = CategoricalSketch(vocab).update(["a", "b", "z", "z", None, "c", True])
    assert s.category_counts() == {"c": 1, "a": 1, OTHER: 4}
    assert s.n_missing == 1
    assert s.top_unseen() == [("z", 2), ("b", 1), ("true", 1)]


def test_categorical_psi_and_chi2_match_oracles() -> None:
    cats = np.array(["a", "b", "c", "d"])
    ref = RNG.choice(cats, 5000, p=[0.4, 0.3, 0.2, 0.1])
    cur = np.r_[RNG.choice(cats, 4000, p=[0.25, 0.25, 0.25, 0.25]), ["e"] * 50]
    vocab = Vocabulary.fit(ref)
    r, c = CategoricalSketch(vocab).update(ref), CategoricalSketch(vocab).update(cur)
    # Oracle: proportions over the reference categories plus "other", floored, by numpy.
    keys = [*vocab.categories]
    rp = np.array([*(np.mean(ref == k) for k in keys), np.mean(~np.isin(ref, keys))])
    cp = np.array([*(np.mean(cur == k) for k in keys), np.mean(~np.isin(cur, keys))])
    rp, cp = np.maximum(rp, 1e-4), np.maximum(cp, 1e-4)
    expected_psi = float(np.sum((cp - rp) * np.log(cp / rp)))
    got = stats.psi(stats.proportions(r.counts[:-1]), stats.proportions(c.counts[:-1]))
    assert got == pytest.approx(expected_psi, rel=1e-12)
    table = np.array([[np.sum(ref == k) for k in keys], [np.sum(cur == k) for k in keys]])
    table = np.c_[table, [0, 50]]
    chi = stats.chi2(r.counts[:-1], c.counts[:-1])
    expected = sps.chi2_contingency(table, correction=False)
    assert chi is not None
    assert chi.statistic == pytest.approx(expected.statistic, rel=1e-10)
    assert chi.p_value == pytest.approx(expected.pvalue, rel=1e-8, abs=1e-300)
    assert chi.dof == expected.dof


def test_categorical_degenerate_inputs() -> None:
    vocab = Vocabulary.fit(["a"])
    empty = CategoricalSketch(vocab).update([])
    only_missing = CategoricalSketch(vocab).update([None, None])
    assert (empty.n, only_missing.n, only_missing.n_missing) == (0, 0, 2)
    assert stats.chi2(CategoricalSketch(vocab).update(["a"]).counts[:-1], empty.counts[:-1]) is None


@pytest.mark.parametrize(
    "values",
    [
        RNG.lognormal(3, 1, 50_000),
        RNG.exponential(30, 20_000),
        RNG.uniform(0.5, 2000, 10_000),
        np.r_[np.zeros(100), RNG.gamma(2, 10, 5_000)],
        np.array([7.0]),
    ],
    ids=["lognormal", "exponential", "uniform", "zeros_and_gamma", "single"],
)
def test_latency_quantiles_within_relative_error(values: np.ndarray) -> None:
    s = LatencySketch().update(values)
    a = RELATIVE_ACCURACY
    for q in (0.0, 0.5, 0.9, 0.95, 0.99, 1.0):
        lo = np.quantile(values, q, method="lower")
        hi = np.quantile(values, q, method="higher")
        got = s.quantile(q)
        assert got is not None
        assert lo * (1 - a) - 1e-12 <= got <= hi * (1 + a) + 1e-12, (q, lo, hi, got)
    assert s.count == len(values)
    assert s.max == values.max()
    assert s.mean == pytest.approx(values.mean())


def test_latency_skips_nan_and_negative() -> None:
    s = LatencySketch().update([np.nan, -1.0, 5.0])
    assert (s.count, s.n_invalid) == (1, 2)
    assert LatencySketch().quantile(0.5) is None


def test_to_outcome() -> None:
    assert to_outcome([0.2, 0.5, np.nan, 0.9], threshold=0.5).tolist() == [0, 1, -1, 1]
    assert to_outcome(np.array([True, False])).tolist() == [1, 0]
    assert to_outcome(["yes", "no", None], positive_class="yes").tolist() == [1, 0, -1]


def test_fairness_against_hand_computed_table() -> None:
    # group a: 4 rows, 3 predicted positive; labels 1,1,0,1 -> label positives 3, TP 2 (rows 0,1)
    # group b: 4 rows, 1 predicted positive; labels 1,1,-,0  -> label positives 2, TP 1 (row 4)
    # group c: 1 row (below support) ; a missing group value is skipped
    seg = np.array(["a", "a", "a", "a", "b", "b", "b", "b", "c", None], dtype=object)
    pos = np.array([1, 1, 1, 0, 1, 0, 0, 0, 1, 1])
    lab = np.array([1, 1, 0, 1, 1, 1, -1, 0, 1, 1])
    s = FairnessSketch().update({"g": seg}, pos, lab)
    assert s.tables["g"].counts("a") == {
        "n": 4,
        "positive": 3,
        "labelled": 4,
        "label_positive": 3,
        "true_positive": 2,
    }
    assert s.tables["g"].counts("b") == {
        "n": 4,
        "positive": 1,
        "labelled": 3,
        "label_positive": 2,
        "true_positive": 1,
    }
    m = fairness_metrics(s.tables["g"], min_support=2)
    assert m["groups"]["a"] == {"n": 4, "positive_rate": 0.75, "tpr": 2 / 3, "excluded": False}
    assert m["groups"]["c"]["excluded"] is True
    assert m["demographic_parity_difference"] == pytest.approx(0.5)
    assert m["disparate_impact"] == pytest.approx(0.25 / 0.75)
    assert m["equal_opportunity_difference"] == pytest.approx(2 / 3 - 1 / 2)


def test_fairness_degenerate_groups() -> None:
    m = fairness_metrics(GroupTable(), min_support=30)
    assert m == {
        "groups": {},
        "demographic_parity_difference": None,
        "disparate_impact": None,
        "equal_opportunity_difference": None,
    }
    t = FairnessSketch().update({"g": np.array(["x"] * 40 + ["y"] * 40)}, np.zeros(80), np.full(80, -1))
    m = fairness_metrics(t.tables["g"])
    assert m["demographic_parity_difference"] == 0.0
    assert m["disparate_impact"] is None  # no positives anywhere: the ratio is undefined
    assert m["equal_opportunity_difference"] is None


def test_segment_plan_takes_the_references_most_frequent_values() -> None:
    region = ["n"] * 5 + ["s"] * 4 + ["e"] * 4 + ["w"] + [None] * 3
    binning = Binning.fit({}, {}, segments={"region": region, "tier": ["a", "b", "b"], "zone": ["z"]})
    # by count, ties by name: n, e, s, w; attributes by name when none are registered
    assert binning.segment_plan((), SegmentLimits(values=3, attributes=2)) == {
        "region": frozenset({"n", "e", "s"}),
        "tier": frozenset({"b", "a"}),
    }
    # registered attributes in their order, those the reference has values for
    assert binning.segment_plan(("zone", "nope", "region"), SegmentLimits(values=1, attributes=2)) == {
        "zone": frozenset({"z"}),
        "region": frozenset({"n"}),
    }


def test_bound_segments_against_counting() -> None:
    values = RNG.choice([f"g{i}" for i in range(40)], 3000).astype(object)
    values[RNG.random(3000) < 0.05] = None
    kept = frozenset(f"g{i}" for i in range(0, 40, 4))
    bounded, overflow = bound_segments(
        {"region": values, "junk": RNG.choice(["x", "y"], 3000)}, {"region": kept}
    )
    names, codes = bounded["region"]  # type: ignore[misc]
    assert set(bounded) == {"region"}
    assert Counter(names[c] for c in codes) == Counter(v if v is None or v in kept else OTHER for v in values)
    assert overflow == {"value": sum(v is not None and v not in kept for v in values), "attribute": 3000}
