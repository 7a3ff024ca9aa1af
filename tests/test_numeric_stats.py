"""Numeric drift statistics against independent oracles (numpy definitions, scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import spatial, special
from scipy import stats as sps

from driftline.detectors import stats
from driftline.detectors.numeric import NumericBins, NumericSketch


def oracle_psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    """PSI exactly as the issue defines it, straight from raw values."""
    edges = np.quantile(ref, np.arange(1, bins) / bins)
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=bins) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=bins) / len(cur)
    r, c = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


def sketches(ref: np.ndarray, cur: np.ndarray, fine: int = 1000) -> tuple[NumericSketch, NumericSketch]:
    bins = NumericBins.fit(ref, fine)
    return NumericSketch(bins).update(ref), NumericSketch(bins).update(cur)


def sketch_psi(r: NumericSketch, c: NumericSketch) -> float:
    return stats.psi(stats.proportions(r.psi_counts()), stats.proportions(c.psi_counts()))


RNG = np.random.default_rng(20261126)
CASES = {
    "normal_same": (RNG.normal(0, 1, 50_000), RNG.normal(0, 1, 40_000)),
    "normal_shifted": (RNG.normal(0, 1, 50_000), RNG.normal(0.3, 1, 40_000)),
    "lognormal_scaled": (RNG.lognormal(0, 1, 60_000), RNG.lognormal(0.1, 1.2, 30_000)),
    "exponential_vs_gamma": (RNG.exponential(2, 30_000), RNG.gamma(2, 1, 30_000)),
    "poisson_ties": (RNG.poisson(3, 50_000).astype(float), RNG.poisson(3.4, 50_000).astype(float)),
    "few_values_ties": (
        RNG.choice([0.0, 1.0, 5.0], 20_000, p=[0.7, 0.2, 0.1]),
        RNG.choice([0.0, 1.0, 5.0], 20_000),
    ),
    "current_outside_range": (RNG.uniform(0, 1, 20_000), RNG.uniform(0.5, 2, 20_000)),
    "small_exact_p": (RNG.normal(0, 1, 800), RNG.normal(0.2, 1, 600)),
}


@pytest.mark.parametrize("case", CASES)
def test_psi_equals_definition_on_raw_values(case: str) -> None:
    ref, cur = CASES[case]
    r, c = sketches(ref, cur)
    assert sketch_psi(r, c) == pytest.approx(oracle_psi(ref, cur), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("fine", [10, 100, 1000, 2000])
def test_psi_coarse_bins_are_exact_for_any_multiple(fine: int) -> None:
    ref, cur = CASES["poisson_ties"]
    r, c = sketches(ref, cur, fine)
    assert sketch_psi(r, c) == pytest.approx(oracle_psi(ref, cur), rel=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_ks_brackets_scipy_and_is_within_stated_bound(case: str) -> None:
    ref, cur = CASES[case]
    r, c = sketches(ref, cur)
    exact = sps.ks_2samp(ref, cur)
    got = stats.ks(r, c)
    assert got is not None
    # The sketch D is a lower bound and statistic_upper an upper bound of the exact D.
    assert got.statistic <= exact.statistic + 1e-12
    assert exact.statistic <= got.statistic_upper + 1e-12
    assert exact.statistic - got.statistic <= 0.005
    # The p-value is scipy's for the sketch D: conservative, never below the exact one.
    assert got.p_value >= exact.pvalue - 1e-12
    assert got.p_value == pytest.approx(sps.ks_2samp(ref, cur).pvalue, rel=0.2, abs=1e-3) or (
        got.statistic < exact.statistic
    )


@pytest.mark.parametrize("case", ["poisson_ties", "few_values_ties"])
def test_ks_is_exact_when_every_value_sits_on_an_edge(case: str) -> None:
    ref, cur = CASES[case]
    r, c = sketches(ref, cur)
    exact = sps.ks_2samp(ref, cur)
    got = stats.ks(r, c)
    assert got is not None
    assert got.statistic == pytest.approx(exact.statistic, abs=1e-12)
    assert_ks_p_value(got.p_value, exact.pvalue, len(ref), len(cur))


def assert_ks_p_value(got: float, exact: float, n1: int, n2: int) -> None:
    """scipy's value up to 10,000 per sample; above, within the stated bound of the limit law."""
    if max(n1, n2) <= stats.KS_EXACT_MAX_N:
        assert got == pytest.approx(exact, rel=1e-9, abs=1e-300)
    elif exact >= 1e-10:
        assert got == pytest.approx(exact, rel=0.01 if exact >= 1e-3 else 0.05)
    else:
        assert got < 1e-9


def test_ks_p_value_matches_scipy_exactly_for_small_samples() -> None:
    for n1, n2 in [(30, 40), (500, 500), (9_000, 10_000)]:
        a, b = RNG.normal(0, 1, n1), RNG.normal(0.1, 1, n2)
        res = sps.ks_2samp(a, b)
        assert stats.ks_p_value(res.statistic, n1, n2) == pytest.approx(res.pvalue, rel=1e-9, abs=1e-300)


def test_exact_ks_p_value_matches_scipy_on_random_sizes_and_tiny_p_values() -> None:
    """Own lattice-path counting against scipy's exact method, equal and unequal sizes, p down
    to 1e-200 (the count of paths that leave the band keeps its relative precision)."""
    rng = np.random.default_rng(12)
    sizes = [(int(a), int(b)) for a, b in rng.integers(1, 400, size=(60, 2))]
    sizes += [(n, n) for n in (1, 2, 17, 250, 3_000)] + [(1, 9_999), (2_500, 10_000), (9_999, 10_000)]
    tiny = 0
    for n1, n2 in sizes:
        shift = float(rng.choice([0.0, 0.3, 1.0, 3.0]))
        a, b = rng.normal(0, 1, n1), rng.normal(shift, 1, n2)
        res = sps.ks_2samp(a, b, method="exact")
        got = stats.ks_p_value(float(res.statistic), n1, n2)
        assert got == pytest.approx(res.pvalue, rel=1e-9, abs=1e-300), (n1, n2, res)
        tiny += 1e-200 < res.pvalue < 1e-20
    assert tiny >= 3


def test_kolmogorov_survival_matches_scipy_special() -> None:
    xs = np.concatenate([np.linspace(0.0, 0.4, 41), np.linspace(0.4, 1.6, 1_201), np.linspace(1.6, 19, 400)])
    for x in xs:
        exact = float(special.kolmogorov(x))
        assert stats.kolmogorov_sf(float(x)) == pytest.approx(exact, rel=1e-12, abs=1e-300), x
    assert stats.kolmogorov_sf(-1.0) == 1.0


@pytest.mark.parametrize("n_e", [10_001, 500_000])
def test_ks_p_value_for_large_samples_is_within_the_stated_bound_of_the_exact_law(n_e: int) -> None:
    """Stephens' corrected limit law against scipy's exact one-sample law at the effective n:
    within 1 % for p >= 1e-3 and 5 % for p >= 1e-10 (README, "What the statistics are")."""
    n1 = n2 = 2 * n_e
    checked = 0
    for d in np.linspace(0.0005, 0.1, 2_000):
        exact = float(sps.kstwo.sf(d, n_e))
        if exact < 1e-10:
            break
        rel = abs(stats.ks_p_value(float(d), n1, n2) - exact) / exact
        assert rel <= (0.01 if exact >= 1e-3 else 0.05), (d, exact)
        checked += 1
    assert checked > 50
    assert stats.ks_p_value(0.0, n1, n2) == 1.0


@pytest.mark.parametrize("case", [k for k in CASES if "ties" not in k])
def test_js_distance_matches_scipy(case: str) -> None:
    ref, cur = CASES[case]
    r, c = sketches(ref, cur)
    p, q = stats.proportions(r.psi_counts()), stats.proportions(c.psi_counts())
    assert stats.js_distance(p, q) == pytest.approx(spatial.distance.jensenshannon(p, q, base=2), abs=1e-12)


@pytest.mark.parametrize(
    ("case", "rel"),
    [
        ("normal_same", 0.02),
        ("normal_shifted", 0.02),
        ("exponential_vs_gamma", 0.02),
        ("current_outside_range", 0.02),
        # Heavy right tail with a wider current: the last fine bin spans the reference's top
        # 0.1% (a wide interval) and mass is assumed even inside it, so W1 is approximate.
        ("lognormal_scaled", 0.15),
    ],
)
def test_wasserstein_close_to_scipy_on_continuous_data(case: str, rel: float) -> None:
    ref, cur = CASES[case]
    r, c = sketches(ref, cur)
    exact = sps.wasserstein_distance(ref, cur) / np.std(ref)
    got = stats.wasserstein(r, c)
    assert got == pytest.approx(exact, rel=rel, abs=2e-3)


@pytest.mark.parametrize("case", ["poisson_ties", "few_values_ties"])
def test_wasserstein_with_ties_is_close(case: str) -> None:
    ref, cur = CASES[case]
    r, c = sketches(ref, cur)
    exact = sps.wasserstein_distance(ref, cur) / np.std(ref)
    assert stats.wasserstein(r, c) == pytest.approx(exact, rel=0.05, abs=5e-3)


def test_no_drift_is_never_flagged_at_one_million() -> None:
    # Same distribution, many seeds, n = 1M: the effect sizes must stay far below the
    # thresholds (PSI 0.2, D 0.1) even though p-values are uniform under the null.
    for seed in range(12):
        rng = np.random.default_rng(seed)
        shape = ["normal", "lognormal", "exponential"][seed % 3]
        draw = getattr(rng, shape)
        ref, cur = draw(size=1_000_000), draw(size=1_000_000)
        r, c = sketches(ref, cur)
        got = stats.ks(r, c)
        assert got is not None
        assert sketch_psi(r, c) < 0.001
        assert got.statistic_upper < 0.005
        # ε: the largest reference mass strictly inside one fine bin (stats.KSResult); above 500k
        # values the fine edges come from a sample, ≈ 1.25/B instead of 1/B
        inside = (r.counts[1:-1] - r.hits[:-1]).max() / r.n
        assert got.statistic_upper - got.statistic <= inside + 1e-12 and inside <= 0.0015


def test_moments_and_quality_counts() -> None:
    ref = np.arange(1000.0)
    bins = NumericBins.fit(ref)
    cur = np.array([-5.0, 0.0, 999.0, 1000.5, np.nan, np.inf, 3.0])
    s = NumericSketch(bins).update(cur)
    assert (s.n, s.n_missing, s.out_of_range) == (6, 1, 3)  # -5, 1000.5 and inf; 999 is the max
    finite = np.array([-5.0, 0.0, 999.0, 1000.5, 3.0])
    s2 = NumericSketch(bins).update(finite)
    assert s2.mean == pytest.approx(finite.mean())
    assert s2.std == pytest.approx(finite.std())
    assert (s2.moments[0], s2.moments[1]) == (-5.0, 1000.5)


def test_empty_and_single_value_inputs() -> None:
    bins = NumericBins.fit([3.0])  # a single reference value: all edges equal
    ref = NumericSketch(bins).update([3.0])
    empty = NumericSketch(bins).update(np.array([]))
    assert stats.ks(ref, empty) is None
    assert stats.wasserstein(ref, empty) is None
    same = NumericSketch(bins).update([3.0, 3.0])
    got = stats.ks(ref, same)
    assert got is not None and got.statistic == 0.0 and got.p_value == 1.0
    assert stats.wasserstein(ref, same) == 0.0
    other = NumericSketch(bins).update([4.0])
    got = stats.ks(ref, other)
    assert got is not None and got.statistic == 1.0
    with pytest.raises(ValueError, match="no non-missing values"):
        NumericBins.fit([np.nan])


def test_benjamini_hochberg_matches_scipy() -> None:
    p = RNG.uniform(0, 0.2, 25)
    p[[3, 7]] = [1e-8, 1e-5]
    expected = sps.false_discovery_control(p, method="bh")
    assert np.allclose(stats.benjamini_hochberg(list(p)), expected, rtol=1e-12)
    got = stats.benjamini_hochberg([0.01, float("nan"), 0.04])
    assert np.isnan(got[1]) and got[0] == pytest.approx(0.02) and got[2] == pytest.approx(0.04)


@pytest.mark.parametrize(("n", "m", "reps"), [(1000, 1000, 4000), (2000, 1000, 4000), (10_000, 10_000, 4000)])
def test_psi_critical_value_false_alarm_rate_under_h0(n: int, m: int, reps: int) -> None:
    """Oracle for :func:`stats.psi_critical`: both samples from one distribution, the 10 PSI bins
    fitted on each (independent) reference as driftline fits them, PSI from the sketches: the
    share of PSIs above the critical value at α = 0.05 is α within a percentage point (binomial
    standard error ≈ 0.35 pp at these repetitions; at 500/500 the rate is ≈ 5.7 %, see the
    docstring: the approximation's bias grows as the bins get fewer values)."""
    rng = np.random.default_rng(20180 + n + m)
    alpha = 0.05
    alarms = 0
    for _ in range(reps):
        r, c = rng.standard_normal(n), rng.standard_normal(m)
        bins = NumericBins.fit(r, psi_bins=10)
        rc = NumericSketch(bins).update(r).psi_counts()
        cc = NumericSketch(bins).update(c).psi_counts()
        value = stats.psi(stats.proportions(rc), stats.proportions(cc))
        alarms += value > stats.psi_critical(n, m, stats.psi_dof(rc, cc) + 1, alpha)
    print(f"false-alarm rate at {n}/{m}: {alarms / reps:.4f}")
    assert abs(alarms / reps - alpha) <= 0.01, alarms / reps


def test_psi_critical_is_the_chi2_quantile_scaled_by_the_sample_sizes() -> None:
    assert stats.psi_critical(500, 2000, 10, 0.05) == pytest.approx(
        sps.chi2.ppf(0.95, 9) * (1 / 500 + 1 / 2000), rel=1e-12
    )
    assert np.isnan(stats.psi_critical(0, 10, 10, 0.05))
    assert stats.psi_dof(np.array([5, 0, 3, 0]), np.array([1, 0, 0, 2])) == 2
