"""Slices (`compare --by`): every report per value of an attribute, checked against independent oracles.

The oracle of a slice is ``driftline compare`` run on that value's rows alone (the files filtered
with polars and written again). A slice is folded on the bins of the whole reference (so the
slices of an attribute add up to the whole), where that oracle fits bins on the slice's own
reference rows: every statistic that does not depend on the bins (counts, null and type error
rates, moments, categorical PSI and chi-square, label drift, fairness, latency, the thresholded
model-quality metrics) is the oracle's; numeric PSI (features, prediction) is checked against
numpy on the raw slice rows with the whole reference's deciles, KS against scipy, ROC AUC
against scikit-learn within the reported error bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from driftline.cli import main
from driftline.detectors.categorical import OTHER
from driftline.detectors.defaults import DEFAULT_SLICE_VALUES
from driftline.detectors.profile import Binning, ModelSketch, Thresholds
from driftline.detectors.slices import Slicer, fold_slices, join_slices, slice_report
from driftline.ingest.files import TableSpec, to_batch
from driftline.simulate import FILE_DROP, Traffic, generate

from .helpers import ROLES, compare_files

SPEC = TableSpec(segments=["region", "gender"], prediction="prediction", label="label", latency="latency_ms")
NOT_NUMBERS = 40  # "n/a" entries written into the current file's f03_uniform


def _with_gaps(df: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Missing channels (they fall in <other>) and, in the current file, a channel the reference
    never had."""
    rng = np.random.default_rng(seed)
    channel = df["channel"].to_numpy().astype(object)
    channel[rng.random(df.height) < 0.02] = None
    return df.with_columns(pl.Series("channel", channel, dtype=pl.String))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("slices")
    ref = _with_gaps(generate(Traffic(n=6000, seed=5)).drop(FILE_DROP), 1)
    drifted = Traffic(
        n=5000, seed=6, drift_at=0.0, drift_features=["f00_normal"], fairness_regression="region=south"
    )
    cur = _with_gaps(generate(drifted).drop(FILE_DROP), 2)
    rng = np.random.default_rng(3)
    channel = cur["channel"].to_numpy().astype(object)
    channel[rng.random(cur.height) < 0.03] = "tv"
    uniform = cur["f03_uniform"].cast(pl.String).to_numpy().astype(object)
    uniform[rng.choice(cur.height, NOT_NUMBERS, replace=False)] = "n/a"
    cur = cur.with_columns(
        pl.Series("channel", channel, dtype=pl.String), pl.Series("f03_uniform", uniform, dtype=pl.String)
    )
    ref.write_parquet(d / "ref.parquet")
    cur.write_csv(d / "cur.csv")
    return d / "ref.parquet", d / "cur.csv"


def compare(capsys: pytest.CaptureFixture[str], ref: Path, cur: Path, *args: str) -> dict[str, Any]:
    assert main(["compare", "--reference", str(ref), "--current", str(cur), *args, "--json"]) == 0
    return orjson.loads(capsys.readouterr().out)


def read(files: tuple[Path, Path]) -> tuple[pl.DataFrame, pl.DataFrame]:
    return pl.read_parquet(files[0]), pl.read_csv(files[1], infer_schema_length=10_000)


def in_slice(column: str, value: str, kept: list[str]) -> pl.Expr:
    """The rows of a slice: the value, or for <other> every row whose value is not kept (missing too)."""
    col = pl.col(column).cast(pl.String)
    return (~col.is_in(kept) | col.is_null()) if value == OTHER else (col == value)


def psi_on_whole_deciles(whole: np.ndarray, ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    """PSI of a slice as the issue defines it, on the deciles of the whole reference."""
    edges = np.quantile(whole, np.arange(1, bins) / bins)
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=bins) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=bins) / len(cur)
    r, c = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


def floats(s: pl.Series) -> np.ndarray:
    return s.cast(pl.Float64, strict=False).drop_nulls().to_numpy()


def check_slice(
    got: dict[str, Any],
    oracle: dict[str, Any],
    whole_ref: pl.DataFrame,
    ref: pl.DataFrame,
    cur: pl.DataFrame,
) -> None:
    """A slice's report against compare on its rows alone and against numpy/scipy on them."""
    assert (got["n_reference"], got["n_current"]) == (oracle["n_reference"], oracle["n_current"])
    assert (got["n_reference"], got["n_current"]) == (ref.height, cur.height)
    assert set(got["features"]) == set(oracle["features"])
    for name, f in got["features"].items():
        o = oracle["features"][name]
        assert (f["kind"], f["n"], f["type_errors"]) == (o["kind"], o["n"], o["type_errors"]), name
        assert f["null_rate"] == pytest.approx(o["null_rate"], rel=1e-12), name
        if f["kind"] == "categorical":
            assert f["psi"] == pytest.approx(o["psi"], rel=1e-9, abs=1e-12), name
            assert (f["chi2"] is None) == (o["chi2"] is None), name
            if f["chi2"]:
                assert f["chi2"]["statistic"] == pytest.approx(o["chi2"]["statistic"], rel=1e-9), name
            assert f["unseen"] == o["unseen"], name
            continue
        for stat in ("mean", "std", "min", "max"):
            assert f[stat] == pytest.approx(o[stat], rel=1e-9), (name, stat)
        r, c = floats(ref[name]), floats(cur[name])
        assert f["psi"] == pytest.approx(psi_on_whole_deciles(floats(whole_ref[name]), r, c), rel=1e-9), name
        exact = sps.ks_2samp(r, c).statistic
        assert f["ks"]["statistic"] <= exact + 1e-12 and exact <= f["ks"]["statistic_upper"] + 1e-12, name
    r, c = ref["prediction"].to_numpy(), cur["prediction"].to_numpy()
    expected = psi_on_whole_deciles(whole_ref["prediction"].to_numpy(), r, c)
    assert got["prediction"]["psi"] == pytest.approx(expected, rel=1e-9)
    assert got["label"]["psi"] == pytest.approx(oracle["label"]["psi"], rel=1e-9, abs=1e-12)
    assert got["fairness"] == oracle["fairness"]
    assert got["latency"] == oracle["latency"]
    for side in ("reference", "current"):
        mine, theirs = got["performance"][side], oracle["performance"][side]
        for metric in ("n_labelled", "accuracy", "precision", "recall", "f1", "positive_rate", "log_loss"):
            assert mine[metric] == pytest.approx(theirs[metric], rel=1e-12), (side, metric)


def test_every_slice_is_compare_on_the_rows_of_its_value(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_path, cur_path = files
    report = compare(capsys, ref_path, cur_path, *ROLES, "--by", "region,plan")
    whole = compare(capsys, ref_path, cur_path, *ROLES)
    assert {k: v for k, v in report.items() if k != "slices"} == whole  # slicing leaves the whole as is
    ref, cur = read(files)
    assert list(report["slices"]) == ["region", "plan"]  # each attribute apart, not crossed
    for attr in ("region", "plan"):
        counts = ref[attr].value_counts(sort=True)
        ranked = sorted(counts.iter_rows(), key=lambda vc: (-vc[1], vc[0]))
        assert list(report["slices"][attr]) == [v for v, _ in ranked]  # all kept: no <other>
        for value, got in report["slices"][attr].items():
            r, c = ref.filter(pl.col(attr) == value), cur.filter(pl.col(attr) == value)
            r.write_parquet(tmp_path / "r.parquet")
            c.write_csv(tmp_path / "c.csv")
            oracle = compare(capsys, tmp_path / "r.parquet", tmp_path / "c.csv", *ROLES)
            assert got["judged"] is True
            check_slice(got, oracle, ref, r, c)
    south = report["slices"]["region"]["south"]  # its scores dropped: its prediction drifted most
    assert south["prediction"]["drift"] is True
    assert south["prediction"]["psi"] == max(
        s["prediction"]["psi"] for s in report["slices"]["region"].values()
    )
    assert south["performance"]["current"]["predicted_positive_rate"] < 0.1
    assert all("f00_normal" in s["drifted_features"] for s in report["slices"]["plan"].values())


def test_other_holds_the_values_beyond_the_top_k_missing_and_unseen_ones(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_path, cur_path = files
    report = compare(capsys, ref_path, cur_path, *ROLES, "--by", "channel", "--slice-values", "2")
    ref, cur = read(files)
    slices = report["slices"]["channel"]
    assert list(slices) == ["web", "ios", OTHER]  # the two most frequent in the reference, then the rest
    assert cur.filter(in_slice("channel", OTHER, ["web", "ios"]))["channel"].null_count() > 0
    assert (cur["channel"] == "tv").sum() > 0
    for value, got in slices.items():
        r = ref.filter(in_slice("channel", value, ["web", "ios"]))
        c = cur.filter(in_slice("channel", value, ["web", "ios"]))
        r.write_parquet(tmp_path / "r.parquet")
        c.write_csv(tmp_path / "c.csv")
        oracle = compare(capsys, tmp_path / "r.parquet", tmp_path / "c.csv", *ROLES)
        check_slice(got, oracle, ref, r, c)
    # a value the reference never had is unseen in the slice's channel, as in the whole
    assert dict(slices[OTHER]["features"]["channel"]["unseen"])["tv"] == (cur["channel"] == "tv").sum()
    assert sum(s["n_current"] for s in slices.values()) == cur.height
    # the current file's non-numbers are counted in the slice of their row
    assert sum(s["features"]["f03_uniform"]["type_errors"] for s in slices.values()) == NOT_NUMBERS


def test_performance_per_slice_matches_scikit_learn(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref_path, cur_path = files
    report = compare(capsys, ref_path, cur_path, *ROLES, "--by", "region")
    ref, cur = read(files)
    for value, s in report["slices"]["region"].items():
        assert s["performance"]["task"] == "binary"
        for side, df in (("reference", ref), ("current", cur)):
            rows = df.filter(pl.col("region") == value)
            y, score = rows["label"].to_numpy(), rows["prediction"].to_numpy()
            pred = score >= 0.5
            got = s["performance"][side]
            assert got["n_labelled"] == rows.height
            assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
            assert got["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0), abs=1e-12)
            assert got["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
            assert got["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
            assert got["log_loss"] == pytest.approx(skm.log_loss(y, score), rel=1e-9)
            assert abs(got["roc_auc"] - skm.roc_auc_score(y, score)) <= got["roc_auc_error_bound"] + 1e-12
            pr_auc = skm.average_precision_score(y, score)
            assert abs(got["pr_auc"] - pr_auc) <= got["pr_auc_error_bound"] + 1e-12


def test_a_slice_below_min_support_is_reported_not_judged(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref_path, cur_path = files
    _, cur = read(files)
    n_cur = dict(cur["plan"].value_counts().iter_rows())
    support = n_cur["basic"] + 1  # free is above it, basic and the rarer plans below
    report = compare(capsys, ref_path, cur_path, *ROLES, "--by", "plan", "--min-support", str(support))
    plans = report["slices"]["plan"]
    assert plans["free"]["judged"] is True and "f00_normal" in plans["free"]["drifted_features"]
    for value in ("basic", "pro", "team", "enterprise"):
        s = plans[value]
        assert s["judged"] is False and s["n_current"] == n_cur[value] < support
        assert s["drifted_features"] == []
        assert not any(f["drift"] for f in [*s["features"].values(), s["prediction"], s["label"]])
        assert s["features"]["f00_normal"]["psi"] > 0.2  # the statistics are there, only not judged
        assert s["performance"]["current"]["n_labelled"] == n_cur[value]


def _skewed_pair(d: Path) -> tuple[Path, Path]:
    """x drifts in the small group b only: too little for the whole, a lot for b's slice."""
    rng = np.random.default_rng(9)
    for name, n in (("ref", 4000), ("cur", 4000)):
        group = np.where(rng.random(n) < 0.05, "b", "a")
        x = rng.normal(0, 1, n) + np.where((group == "b") & (name == "cur"), 3.0, 0.0)
        pl.DataFrame({"x": x, "group": group}).write_parquet(d / f"{name}.parquet")
    return d / "ref.parquet", d / "cur.parquet"


def test_fail_on_drift_counts_drift_in_judged_slices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur = _skewed_pair(tmp_path)
    base = ["compare", "--reference", str(ref), "--current", str(cur), "--features", "x", "--fail-on-drift"]
    assert main(base) == 0  # the whole did not drift
    assert main([*base, "--by", "group"]) == 1  # slice b did
    assert main([*base, "--by", "group", "--min-support", "100000"]) == 0  # ... but is too small to judge
    out = capsys.readouterr().out
    assert "slices by group" in out and "no (small)" in out and "prediction PSI" in out


def test_text_output_has_a_table_per_attribute(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref_path, cur_path = files
    args = [
        "compare",
        "--reference",
        str(ref_path),
        "--current",
        str(cur_path),
        *ROLES,
        "--by",
        "region,plan",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "slices by region" in out and "slices by plan" in out and "accuracy ref → cur" in out
    assert "south" in out and "enterprise" in out


@pytest.mark.parametrize(("where", "by"), [("ref", "planet"), ("cur", "region")])
def test_a_by_column_that_does_not_exist_exits_2_naming_file_and_column(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, by: str
) -> None:
    ref_path, cur_path = files
    if where == "cur":  # the current file lacks it
        pl.read_csv(cur_path).drop("region").write_csv(tmp_path / "cur.csv")
        cur_path = tmp_path / "cur.csv"
    path = ref_path if where == "ref" else cur_path
    args = ["compare", "--reference", str(ref_path), "--current", str(cur_path), "--features", "f00_normal"]
    args += ["--by", f"plan,{by}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{path}: no column named '{by}' to slice by" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_streamed_slices_do_not_depend_on_the_column_groups(files: tuple[Path, Path]) -> None:
    ref_path, cur_path = files
    by = ["region", "channel", "label", "f04_poisson"]  # a segment, features, an output column
    one = compare_files(ref_path, cur_path, SPEC, by=by, group_bytes=1)  # a column per group
    all_ = compare_files(ref_path, cur_path, SPEC, by=by, group_bytes=1 << 30)
    assert orjson.dumps(one) == orjson.dumps(all_)
    ref, cur = read(files)
    labels = one["slices"]["label"]
    assert {v: s["n_current"] for v, s in labels.items()} == {
        str(v): n for v, n in cur["label"].value_counts().iter_rows()
    }
    poisson = one["slices"]["f04_poisson"]
    assert len(poisson) == DEFAULT_SLICE_VALUES + 1 and OTHER in poisson  # more values: the rest is <other>
    assert sum(s["n_reference"] for s in poisson.values()) == ref.height
    assert "slices" not in compare_files(ref_path, cur_path, SPEC, group_bytes=1 << 30)


# -- the pure part ------------------------------------------------------------------------------


def _frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    return pl.DataFrame(
        {
            "x": pl.Series([None if i % 17 == 0 else str(v) for i, v in enumerate(x)]).cast(pl.String),
            "c": rng.choice(["p", "q", "r"], n),
            "seg": rng.choice(["s1", "s2", "s3", "s4"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "score": rng.random(n),
            "y": (rng.random(n) < 0.5).astype(np.int64),
            "ms": rng.lognormal(3, 0.5, n),
        }
    ).with_columns(
        pl.when(pl.int_range(pl.len()) % 23 == 0).then(pl.lit("oops")).otherwise(pl.col("x")).alias("x")
    )


FRAME_SPEC = TableSpec(segments=["seg"], prediction="score", label="y", latency="ms")
FRAME_KINDS: dict[str, Any] = {"x": "numeric", "c": "categorical"}


def _decoded(column: Any) -> list[Any]:
    if isinstance(column, tuple):
        names, codes = column
        return [names[i] for i in codes]
    return np.asarray(column).tolist()


def test_batch_select_is_the_batch_of_the_selected_rows() -> None:
    df = _frame(500, 1)
    batch = to_batch(df, FRAME_SPEC, FRAME_KINDS)
    assert batch.type_errors["x"] > 0
    mask = (df["seg"] == "s2").to_numpy()
    for rows in (mask, np.flatnonzero(mask)):
        got, want = batch.select(rows), to_batch(df.filter(pl.Series(mask)), FRAME_SPEC, FRAME_KINDS)
        assert got.n == want.n and got.type_errors == want.type_errors
        for part in ("features", "segments", "outputs"):
            mine, theirs = getattr(got, part), getattr(want, part)
            assert set(mine) == set(theirs)
            for k in mine:
                assert _decoded(mine[k]) == pytest.approx(_decoded(theirs[k]), nan_ok=True), (part, k)
        for arr in ("latency_ms", "positive", "label"):
            np.testing.assert_array_equal(getattr(got, arr), getattr(want, arr))
    with pytest.raises(ValueError, match="row mask"):
        batch.select(np.ones(3, bool))


def test_slicer_ranks_values_and_puts_the_rest_in_other() -> None:
    reference = {"a": np.array(["x", "y", "y", "z", "z", OTHER, OTHER, OTHER, None], dtype=object)}
    slicer = Slicer.fit(reference, top_k=2)
    assert slicer.values == {"a": ("y", "z")}  # ties by name; a value spelled <other> is other
    rows = slicer.rows({"a": np.array(["z", "new", None, "y", "x", "z"], dtype=object)})["a"]
    assert {v: r.tolist() for v, r in rows.items()} == {"y": [3], "z": [0, 5], OTHER: [1, 2, 4]}
    assert Slicer.fit(reference, top_k=0).rows(reference)["a"][OTHER].tolist() == list(range(9))


def test_the_slices_of_an_attribute_add_up_to_the_whole() -> None:
    """Same bins as the whole: merging an attribute's slice sketches gives the whole sketch."""
    df = _frame(2000, 2)
    batch = to_batch(df, FRAME_SPEC, FRAME_KINDS)
    binning = Binning.fit(batch.features, FRAME_KINDS, segments=batch.segments, outputs=batch.outputs)
    whole = ModelSketch(binning).update(batch)
    slicer = Slicer.fit({"c": batch.features["c"], "seg": batch.segments["seg"]}, top_k=2)
    rows = slicer.rows({"c": batch.features["c"], "seg": batch.segments["seg"]})
    slices = join_slices([fold_slices(batch, rows, binning)])
    for by_value in slices.values():
        parts = list(by_value.values())
        merged = parts[0]
        for p in parts[1:]:
            merged = merged.merge(p)
        assert merged.n_events == whole.n_events
        for name, sketch in whole.features.items():
            np.testing.assert_array_equal(merged.features[name].counts, sketch.counts)
            assert merged.features[name].type_errors == sketch.type_errors
        assert merged.performance is not None and whole.performance is not None
        np.testing.assert_array_equal(merged.performance.counts, whole.performance.counts)
        np.testing.assert_array_equal(merged.performance.table, whole.performance.table)
        np.testing.assert_allclose(merged.performance.sums, whole.performance.sums, rtol=1e-12)
        np.testing.assert_array_equal(merged.latency.counts, whole.latency.counts)


def test_slice_report_judges_only_slices_with_support_on_both_sides() -> None:
    ref_df, cur_df = _frame(3000, 3), _frame(3000, 4)
    ref, cur = to_batch(ref_df, FRAME_SPEC, FRAME_KINDS), to_batch(cur_df, FRAME_SPEC, FRAME_KINDS)
    cur.features["x"] = np.asarray(cur.features["x"]) + 2.0  # every slice drifts
    binning = Binning.fit(ref.features, FRAME_KINDS, segments=ref.segments, outputs=ref.outputs)
    slicer = Slicer.fit({"seg": ref.segments["seg"]}, top_k=3)
    refs = fold_slices(ref, slicer.rows({"seg": ref.segments["seg"]}), binning)
    curs = fold_slices(cur, slicer.rows({"seg": cur.segments["seg"]}), binning)
    counts = {v: s.n_events for v, s in curs["seg"].items()}
    support = sorted(counts.values())[1]  # the smallest slice (s4, as <other>) is below it
    report = slice_report(refs, curs, Thresholds(min_support=support))["seg"]
    assert list(report) == ["s1", "s2", "s3", OTHER]
    for s in report.values():
        small = min(s["n_reference"], s["n_current"]) < support
        assert s["judged"] is not small
        assert s["features"]["x"]["psi"] > 0.2
        assert s["drifted_features"] == ([] if small else ["x"])
        assert s["features"]["x"]["drift"] is not small
    assert not report[OTHER]["judged"]
    assert all(s["judged"] for s in slice_report(refs, curs, min_support=1)["seg"].values())
    # an <other> without rows on either side is left out
    every = Slicer.fit({"seg": ref.segments["seg"]}, top_k=4)
    r = fold_slices(ref, every.rows({"seg": ref.segments["seg"]}), binning)
    c = fold_slices(cur, every.rows({"seg": cur.segments["seg"]}), binning)
    assert list(slice_report(r, c)["seg"]) == ["s1", "s2", "s3", "s4"]
