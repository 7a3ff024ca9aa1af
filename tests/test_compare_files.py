"""Fitting without full sorts, and ``compare_files`` reading a column group at a time.

The streamed report must be the whole-table report; the PSI edges must be ``np.quantile``'s bit
for bit whatever the fine edges are; the KS bound must hold for sampled fine edges.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from driftline.detectors import stats
from driftline.detectors.numeric import (
    FIT_SAMPLE,
    NumericBins,
    NumericSketch,
    order_statistics,
    quantile_edges,
)
from driftline.detectors.profile import Binning, ModelSketch, Thresholds, drift_report
from driftline.ingest.compare import new_columns
from driftline.ingest.files import TableError, TableSpec, load_reference, read_table, to_batch
from driftline.simulate import FILE_DROP, Traffic, generate
from driftline.storage.codec import metric_rows

from .helpers import compare_files
from .test_numeric_stats import oracle_psi

SPEC = TableSpec(segments=["region", "gender"], prediction="prediction", label="label", latency="latency_ms")
# Above this many values NumericBins.fit samples the fine edges (see quantile_edges).
SAMPLED_ABOVE = int(2.5 * 10 * FIT_SAMPLE)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cmpfiles")
    ref = generate(Traffic(n=6_000, seed=11)).drop(FILE_DROP)
    cur = generate(Traffic(n=5_000, seed=12, drift_at=0.0, drift_features=["f00_normal", "plan"])).drop(
        FILE_DROP
    )
    ref.write_parquet(d / "ref.parquet")
    cur.write_parquet(d / "cur.parquet")
    cur.write_csv(d / "cur.csv")
    cur.write_csv(d / "cur.tsv", separator="\t")
    cur.write_ndjson(d / "cur.ndjson")
    return d


def whole_table_report(reference: Path, current: Path, spec: TableSpec) -> dict:
    """What ``driftline compare`` computed before (``cli._compare``): both tables read whole."""
    ref_sketch, kinds = load_reference(reference, spec, 1000, 10)
    cur = read_table(current)
    replace(spec, features=None, kinds={}).check(cur, current)  # a missing feature is reported
    cur_sketch = ModelSketch(ref_sketch.binning).update(to_batch(cur, spec, kinds), threads=2)
    new = new_columns(read_table(reference).columns, cur.columns, spec)
    return drift_report(ref_sketch, cur_sketch, Thresholds(), new)


@pytest.mark.parametrize("current", ["cur.parquet", "cur.csv", "cur.tsv", "cur.ndjson"])
@pytest.mark.parametrize("group_bytes", [1, 100_000, 1 << 30])
def test_streamed_report_equals_the_whole_table_report(tables: Path, current: str, group_bytes: int) -> None:
    # group_bytes=1: one column per group; 1 GiB: every feature in one group
    streamed = compare_files(tables / "ref.parquet", tables / current, SPEC, group_bytes=group_bytes)
    whole = whole_table_report(tables / "ref.parquet", tables / current, SPEC)
    assert orjson.dumps(streamed) == orjson.dumps(whole)
    assert streamed["fairness"] and streamed["latency"] and "f00_normal" in streamed["drifted_features"]


def test_streamed_report_without_roles(tables: Path) -> None:
    spec = TableSpec(exclude=["region", "gender", "prediction", "label", "latency_ms"])
    streamed = compare_files(tables / "ref.parquet", tables / "cur.csv", spec, group_bytes=50_000)
    assert orjson.dumps(streamed) == orjson.dumps(
        whole_table_report(tables / "ref.parquet", tables / "cur.csv", spec)
    )
    assert streamed["latency"] is None and streamed["fairness"] == {}


def test_psi_and_ks_against_oracles_on_raw_columns(tables: Path) -> None:
    report = compare_files(tables / "ref.parquet", tables / "cur.csv", SPEC, group_bytes=1)
    ref, cur = pl.read_parquet(tables / "ref.parquet"), pl.read_csv(tables / "cur.csv")
    for name in ("f00_normal", "f01_lognormal", "f04_poisson"):
        r, c = ref[name].drop_nulls().to_numpy(), cur[name].drop_nulls().to_numpy()
        f = report["features"][name]
        assert f["psi"] == oracle_psi(r, c)
        assert f["ks"]["statistic"] <= sps.ks_2samp(r, c).statistic <= f["ks"]["statistic_upper"] + 1e-12


def _write(path: Path, columns: dict[str, list]) -> Path:
    pl.DataFrame(columns).write_parquet(path)
    return path


def _error(fn: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(TableError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return str(info.value)


def _whole_error(reference: Path, current: Path, spec: TableSpec) -> str:
    return _error(whole_table_report, reference, current, spec)


@pytest.mark.parametrize(
    ("ref_cols", "cur_cols", "spec", "message"),
    [
        (
            {"x": [1.0, 2.0]},
            {"x": [1.0]},
            TableSpec(segments=["planet"]),
            "ref.parquet: no column named 'planet'",
        ),
        (
            {"x": [1.0], "s": ["a"]},
            {"x": [1.0]},
            TableSpec(segments=["s"]),
            "cur.parquet: no column named 's'",
        ),
        ({"x": [1.0]}, {"x": [1.0]}, TableSpec(features=["x", "z"]), "ref.parquet: no column named 'z'"),
        (
            {"x": [None, None]},
            {"x": [1.0]},
            TableSpec(kinds={"x": "numeric"}),
            "ref.parquet: cannot fit bins",
        ),
        ({"x": []}, {"x": [1.0]}, TableSpec(), "ref.parquet: the file has no rows"),
    ],
)
def test_errors_name_the_file_and_column_as_before(
    tmp_path: Path, ref_cols: dict, cur_cols: dict, spec: TableSpec, message: str
) -> None:
    ref = _write(
        tmp_path / "ref.parquet",
        {k: pl.Series(k, v, pl.Float64) if k != "s" else v for k, v in ref_cols.items()},
    )
    cur = _write(tmp_path / "cur.parquet", cur_cols)
    got = _error(compare_files, ref, cur, spec)
    assert message in got and got == _whole_error(ref, cur, spec)


def test_file_errors(tmp_path: Path, tables: Path) -> None:
    ref = tables / "ref.parquet"
    missing = tmp_path / "nope.parquet"
    assert _error(compare_files, ref, missing, SPEC) == f"{missing}: no such file"
    header_only = tmp_path / "empty.csv"
    header_only.write_text("f00_normal,plan\n")
    assert _error(compare_files, ref, header_only, TableSpec()) == f"{header_only}: the file has no rows"
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    assert "unknown file type '.xlsx'" in _error(compare_files, odd, ref, SPEC)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    assert _error(compare_files, broken, ref, SPEC).startswith(f"{broken}: cannot read: ")


# --------------------------------------------------------------------------------------------
# fitting: exact PSI edges, sampled fine edges


def _data(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(0, 1, n)
    if kind == "lognormal":
        return rng.lognormal(0, 1, n)
    if kind == "ties":
        return rng.poisson(2.0, n).astype(np.float64)
    if kind == "few":
        return rng.choice([-1.0, 0.0, 0.0, 2.5], n)
    if kind == "constant":
        return np.full(n, 7.0)
    return np.round(rng.uniform(-1e6, 1e6, n), 1)


shapes = st.sampled_from(["normal", "lognormal", "ties", "few", "constant", "uniform"])
layouts = st.sampled_from([(1000, 10), (100, 10), (20, 5), (10, 10), (30, 1)])


@given(
    kind=shapes,
    n=st.integers(1, 3000),
    m=st.integers(1, 2000),
    layout=layouts,
    sample=st.sampled_from([1, 3, 40, 500, FIT_SAMPLE]),
    seed=st.integers(0, 2**16),
)
def test_psi_edges_are_numpy_deciles_and_psi_is_exact_with_sampled_fine_edges(
    kind: str, n: int, m: int, layout: tuple[int, int], sample: int, seed: int
) -> None:
    bins, psi_bins = layout
    ref, cur = _data(kind, n, seed), _data(kind, m, seed + 1) * 1.1
    edges = quantile_edges(ref.copy(), bins, psi_bins, sample=sample)
    # the PSI edges are np.quantile's to the bit; the fine edges are finite and sorted
    assert np.array_equal(edges[:: bins // psi_bins], np.quantile(ref, np.arange(psi_bins + 1) / psi_bins))
    assert np.all(np.isfinite(edges)) and np.all(np.diff(edges) >= 0)
    r = NumericSketch(NumericBins(edges, psi_bins)).update(ref)
    c = NumericSketch(NumericBins(edges, psi_bins)).update(cur)
    got = stats.psi(stats.proportions(r.psi_counts()), stats.proportions(c.psi_counts()))
    assert got == oracle_psi(ref, cur, psi_bins)
    # KS: scipy's D inside the bounds, whose gap is at most the largest reference mass strictly
    # inside one fine bin (the bound stated in stats.KSResult)
    ks = stats.ks(r, c)
    assert ks is not None
    exact = sps.ks_2samp(ref, cur).statistic
    assert ks.statistic - 1e-12 <= exact <= ks.statistic_upper + 1e-12
    assert ks.statistic_upper - ks.statistic <= (r.counts[1:-1] - r.hits[:-1]).max() / r.n + 1e-12


@given(
    kind=shapes,
    n=st.integers(1, 5000),
    draws=st.integers(1, 400),
    wanted=st.integers(1, 25),
    biased=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_order_statistics_are_the_sorted_values_at_those_ranks(
    kind: str, n: int, draws: int, wanted: int, biased: bool, seed: int
) -> None:
    """Exact whatever the sample: a sample from elsewhere (biased) makes the brackets miss, and
    the partition fallback must still give the sorted values."""
    rng = np.random.default_rng(seed)
    x = _data(kind, n, seed)
    ranks = np.unique(rng.integers(0, n, wanted))
    drawn = np.sort(x[rng.integers(0, n, draws)] + (rng.normal(0, 10, draws) if biased else 0))
    assert np.array_equal(order_statistics(x.copy(), ranks, drawn), np.sort(x)[ranks])


@pytest.mark.parametrize("kind", ["normal", "lognormal", "ties", "uniform"])
def test_fit_above_the_sampling_threshold(kind: str) -> None:
    x = _data(kind, SAMPLED_ABOVE + 1, 5)
    bins = NumericBins.fit(x)
    exact = np.quantile(x, np.arange(1001) / 1000)
    assert np.array_equal(bins.psi_edges, exact[100:1000:100])
    assert np.array_equal(bins.edges[::100], exact[::100])
    assert not np.array_equal(bins.edges, exact)  # the fine edges did come from the sample
    # the KS bound (largest mass strictly inside a fine bin) stays close to exact edges' 1/B
    s = NumericSketch(bins).update(x)
    assert (s.counts[1:-1] - s.hits[:-1]).max() / s.n <= 1.5 / 1000


def test_fit_is_deterministic() -> None:
    x = _data("lognormal", SAMPLED_ABOVE + 10, 9)
    a = NumericBins.fit(x)
    b = NumericBins.fit(x.copy())
    assert a.digest == b.digest and np.array_equal(a.edges, b.edges)
    assert np.array_equal(x, _data("lognormal", SAMPLED_ABOVE + 10, 9))  # the input is not reordered


def test_fit_up_to_the_threshold_is_np_quantile() -> None:
    x = _data("normal", 20_000, 3)
    assert np.array_equal(NumericBins.fit(x).edges, np.quantile(x, np.arange(1001) / 1000))


def test_binning_fit_on_threads_equals_serial() -> None:
    rng = np.random.default_rng(4)
    cols = {f"x{i}": rng.normal(size=5000) for i in range(6)} | {"c": np.array(["a", "b"] * 2500)}
    kinds = {name: ("categorical" if name == "c" else "numeric") for name in cols}
    serial, threaded = Binning.fit(cols, kinds), Binning.fit(cols, kinds, threads=3)  # type: ignore[arg-type]
    assert {k: b.digest for k, b in serial.numeric.items()} == {
        k: b.digest for k, b in threaded.numeric.items()
    }
    assert serial.categorical["c"].categories == threaded.categorical["c"].categories == ("a", "b")
    with pytest.raises(ValueError, match="no non-missing values"):
        Binning.fit({"x": np.array([np.nan])}, {"x": "numeric"}, threads=2)


def test_schema_lists_a_missing_and_a_new_column_and_the_dataset_verdict(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ref = _write(
        tmp_path / "ref.parquet",
        {"a": rng.normal(size=3000).tolist(), "b": rng.normal(size=3000).tolist(), "c": ["x", "y"] * 1500},
    )
    cur = _write(
        tmp_path / "cur.parquet",
        {"a": rng.normal(0.5, size=2000).tolist(), "c": ["x", "y"] * 1000, "z": [1.0] * 2000},
    )
    for thresholds in (Thresholds(), Thresholds(psi_alpha=0.05, ks_alpha=0.05)):
        report = compare_files(ref, cur, TableSpec(), thresholds=thresholds, group_bytes=1)
        assert report["schema"] == {"missing": ["b"], "new": ["z"]}
        b = report["features"]["b"]
        assert b["n"] == 0 and b["null_rate"] == 1.0 and b["psi"] is None and not b["drift"]
        # b is missing, not judged: a drifted out of a and c
        assert report["drifted_features"] == ["a"]
        assert report["dataset_drift"] == {"drifted_share": 0.5, "threshold": 0.5, "drift": True}
    strict = compare_files(ref, cur, TableSpec(), thresholds=Thresholds(dataset_drift=0.6))
    assert strict["dataset_drift"] == {"drifted_share": 0.5, "threshold": 0.6, "drift": False}
    rows = {(r.feature, r.metric): r.value for r in metric_rows(report, "m", "v", 0, 1)}
    assert rows[("", "drifted_share")] == 0.5
    assert rows[("", "missing_features")] == 1 and rows[("", "new_features")] == 1


def test_auto_thresholds_are_the_critical_value_and_the_adjusted_p_value(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    ref = _write(tmp_path / "ref.parquet", {"a": rng.normal(size=4000).tolist(), "c": ["x", "y"] * 2000})
    cur = _write(
        tmp_path / "cur.parquet", {"a": rng.normal(0.15, size=3000).tolist(), "c": ["x", "y"] * 1500}
    )
    fixed = compare_files(ref, cur, TableSpec())
    auto = compare_files(ref, cur, TableSpec(), thresholds=Thresholds(psi_alpha=0.05, ks_alpha=0.05))
    a, fa = auto["features"]["a"], fixed["features"]["a"]
    assert fa["psi_threshold"] == 0.2 and fa["ks_threshold"] == 0.1 and fa["ks_threshold_on"] == "statistic"
    assert not fa["drift"]  # a small shift: below the effect sizes
    critical = sps.chi2.ppf(0.95, a["psi_dof"]) * (1 / 4000 + 1 / 3000)
    assert a["psi_dof"] == 9 and a["psi_threshold"] == pytest.approx(critical, rel=1e-12)
    assert a["ks_threshold"] == 0.05 and a["ks_threshold_on"] == "p_value_adjusted"
    assert a["psi"] > a["psi_threshold"] and a["ks"]["p_value_adjusted"] < 0.05 and a["drift"]
    c = auto["features"]["c"]  # identical mix: no drift either way
    assert c["psi_dof"] == 1 and c["psi_threshold"] == pytest.approx(
        sps.chi2.ppf(0.95, 1) * (1 / 4000 + 1 / 3000)
    )
    assert not c["drift"] and "ks_threshold" not in c
    # only the KS by significance: the PSI stays an effect size
    ks_only = compare_files(ref, cur, TableSpec(), thresholds=Thresholds(ks_alpha=0.05))
    assert ks_only["features"]["a"]["psi_threshold"] == 0.2 and ks_only["features"]["a"]["drift"]
    rows = {(r.feature, r.metric): r for r in metric_rows(auto, "m", "v", 0, 1)}
    assert rows[("a", "psi_dof")].value == 9 and (
        rows[("a", "psi_dof")].n_ref,
        rows[("a", "psi_dof")].n_cur,
    ) == (
        4000,
        3000,
    )
