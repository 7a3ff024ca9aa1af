"""`driftline compare` end to end on files, checked against oracles computed from the raw columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from scipy import stats as sps

from driftline.cli import main
from driftline.detectors.profile import Binning, ModelSketch, drift_report
from driftline.ingest.files import TableSpec, read_table, to_batch
from driftline.simulate import FILE_DROP, Traffic, generate

from .helpers import ROLES
from .test_numeric_stats import oracle_psi


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cmp")
    ref = generate(Traffic(n=20_000, seed=1)).drop(FILE_DROP)
    cur = generate(
        Traffic(
            n=15_000,
            seed=2,
            drift_at=0.0,
            drift_features=["f00_normal", "plan"],
            fairness_regression="region=south",
        )
    ).drop(FILE_DROP)
    ref.write_parquet(d / "ref.parquet")
    cur.write_csv(d / "cur.csv")
    return d / "ref.parquet", d / "cur.csv"


def oracle_psi_counts(ref: pl.DataFrame, cur: pl.DataFrame, col: str) -> float:
    """PSI of a categorical column from ``value_counts``: the reference's values plus one bucket
    for every other value; missing values left out."""
    r = {str(v): n for v, n in ref.iter_rows() if v is not None}
    c = {str(v): n for v, n in cur.iter_rows() if v is not None}
    cats = sorted(r)
    rp = np.array([r[k] for k in cats] + [0]) / sum(r.values())
    unseen = sum(n for k, n in c.items() if k not in r)
    cp = np.array([c.get(k, 0) for k in cats] + [unseen]) / sum(c.values())
    rp, cp = np.maximum(rp, 1e-4), np.maximum(cp, 1e-4)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["compare", *args, "--json"]) == 0
    return orjson.loads(capsys.readouterr().out)


def test_compare_json_matches_oracles(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    ref_path, cur_path = files
    report = run_json(capsys, "--reference", str(ref_path), "--current", str(cur_path), *ROLES)
    ref, cur = pl.read_parquet(ref_path), pl.read_csv(cur_path)
    assert (report["n_reference"], report["n_current"]) == (ref.height, cur.height)
    roles = {"prediction", "label", "latency_ms"}
    assert set(report["features"]) == {c for c in ref.columns if c not in roles}
    for segment in ("region", "gender"):  # the mix of a segment attribute is a categorical feature
        f = report["features"][segment]
        assert (f["kind"], f["role"]) == ("categorical", "segment")
        r, c = ref[segment].value_counts(), cur[segment].value_counts()
        assert f["psi"] == pytest.approx(oracle_psi_counts(r, c, segment), rel=1e-9)
    prediction = report["prediction"]  # a score: a numeric feature's report
    p_ref, p_cur = ref["prediction"].to_numpy(), cur["prediction"].to_numpy()
    assert prediction["kind"] == "numeric"
    assert prediction["psi"] == pytest.approx(oracle_psi(p_ref, p_cur), rel=1e-9)
    exact = sps.ks_2samp(p_ref, p_cur)
    assert prediction["ks"]["statistic"] <= exact.statistic <= prediction["ks"]["statistic_upper"] + 1e-12
    label = report["label"]  # 0/1 with a float score: classes
    assert label["kind"] == "categorical"
    assert label["psi"] == pytest.approx(
        oracle_psi_counts(ref["label"].value_counts(), cur["label"].value_counts(), "label"), rel=1e-9
    )

    for name in ("f00_normal", "f02_exponential", "f04_poisson"):
        f = report["features"][name]
        r = ref[name].drop_nulls().to_numpy()
        c = cur[name].drop_nulls().to_numpy()
        assert f["kind"] == "numeric"
        assert f["psi"] == pytest.approx(oracle_psi(r, c), rel=1e-9)
        exact = sps.ks_2samp(r, c)
        assert f["ks"]["statistic"] <= exact.statistic <= f["ks"]["statistic_upper"] + 1e-12
        assert abs(f["ks"]["statistic"] - exact.statistic) <= 0.005
        assert f["null_rate"] == pytest.approx(cur[name].null_count() / cur.height)
    assert report["features"]["f00_normal"]["drift"] is True
    assert report["features"]["f02_exponential"]["drift"] is False
    assert report["features"]["plan"]["kind"] == "categorical" and report["features"]["plan"]["drift"] is True
    assert set(report["drifted_features"]) == {"f00_normal", "plan"}

    lat = report["latency"]
    true_p99 = np.quantile(cur["latency_ms"].to_numpy(), 0.99)
    assert lat["p99"] == pytest.approx(true_p99, rel=0.011)
    assert lat["count"] == cur.height

    region = report["fairness"]["region"]
    for group in ("north", "south"):
        rows = cur.filter(pl.col("region") == group)
        pos = (rows["prediction"] >= 0.5).to_numpy()
        lab = rows["label"].to_numpy() == 1
        assert region["groups"][group]["n"] == rows.height
        assert region["groups"][group]["positive_rate"] == pytest.approx(pos.mean())
        assert region["groups"][group]["tpr"] == pytest.approx((pos & lab).sum() / lab.sum())
    rates = [g["positive_rate"] for g in region["groups"].values()]
    assert region["disparate_impact"] == pytest.approx(min(rates) / max(rates))
    assert region["disparate_impact"] < 0.8


def _oracle_terms(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    r, c = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    return (c - r) * np.log(c / r)


def test_compare_json_explains_each_drifted_feature(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref_path, cur_path = files
    report = run_json(capsys, "--reference", str(ref_path), "--current", str(cur_path), *ROLES)
    ref, cur = pl.read_parquet(ref_path), pl.read_csv(cur_path)
    for f in [*report["features"].values(), report["prediction"], report["label"]]:
        assert ("explain" in f) == f["drift"]
        if f["drift"]:
            terms = [e["psi"] for e in f["explain"]]
            assert 0 < len(terms) <= 5 and terms == sorted(terms, reverse=True)
            assert sum(terms) <= f["psi"] * (1 + 1e-12)

    # numeric: the reference deciles of the raw values, an independent oracle of every bin
    x = report["features"]["f00_normal"]
    r_raw, c_raw = ref["f00_normal"].drop_nulls().to_numpy(), cur["f00_normal"].drop_nulls().to_numpy()
    edges = np.quantile(r_raw, np.arange(1, 10) / 10)
    r = np.bincount(np.searchsorted(edges, r_raw, side="right"), minlength=10) / len(r_raw)
    c = np.bincount(np.searchsorted(edges, c_raw, side="right"), minlength=10) / len(c_raw)
    terms = _oracle_terms(r, c)
    assert terms.sum() == pytest.approx(x["psi"], rel=1e-9)  # every bin's term: the PSI
    top = np.argsort(-terms, kind="stable")[:5]
    assert [e["psi"] for e in x["explain"]] == pytest.approx(terms[top].tolist(), rel=1e-9)
    assert [e["reference_share"] for e in x["explain"]] == pytest.approx(r[top].tolist())
    assert [e["current_share"] for e in x["explain"]] == pytest.approx(c[top].tolist())
    for e, i in zip(x["explain"], top.tolist(), strict=True):
        lo, hi = (edges[i - 1] if i else None), (edges[i] if i < 9 else None)
        if lo is None:
            assert e["bin"].startswith("< ") and float(e["bin"][2:]) == pytest.approx(hi, rel=1e-3)
        elif hi is None:
            assert e["bin"].startswith(">= ") and float(e["bin"][3:]) == pytest.approx(lo, rel=1e-3)
        else:
            a, b = e["bin"].strip("[)").split(", ")
            assert (float(a), float(b)) == pytest.approx((lo, hi), rel=1e-3)

    # categorical: every category of the reference and one bucket for unseen ones; few enough
    # that every moved one is listed, so the explanation sums to the PSI
    plan = report["features"]["plan"]
    rc = dict(ref["plan"].drop_nulls().value_counts().iter_rows())
    cc = dict(cur["plan"].drop_nulls().value_counts().iter_rows())
    cats = sorted(rc)
    rp = np.array([rc[k] for k in cats] + [0]) / sum(rc.values())
    cp = np.array([cc.get(k, 0) for k in cats] + [sum(n for k, n in cc.items() if k not in rc)])
    cp = cp / cp.sum()
    oracle = dict(zip([*cats, "<unseen>"], _oracle_terms(rp, cp).tolist(), strict=True))
    assert sum(v > 0 for v in oracle.values()) <= 5
    assert {e["bin"]: e["psi"] for e in plan["explain"]} == pytest.approx(
        {k: v for k, v in oracle.items() if v > 0}, rel=1e-9
    )
    assert sum(e["psi"] for e in plan["explain"]) == pytest.approx(plan["psi"], rel=1e-12)


def test_compare_identical_files_reports_no_drift(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref_path, _ = files
    report = run_json(capsys, "--reference", str(ref_path), "--current", str(ref_path))
    assert report["drifted_features"] == []
    for f in report["features"].values():
        assert f["psi"] == pytest.approx(0.0, abs=1e-12)
        if f["kind"] == "numeric":
            assert f["ks"]["statistic"] == 0.0 and f["ks"]["p_value"] == 1.0


def test_compare_table_output(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    ref_path, cur_path = files
    assert main(["compare", "--reference", str(ref_path), "--current", str(cur_path), *ROLES]) == 0
    out = capsys.readouterr().out
    assert "DRIFT" in out and "f00_normal" in out and "disparate impact" in out
    movers = [line.strip() for line in out.splitlines() if line.strip().startswith("top movers of")]
    drifted = {m.split(":")[0].removeprefix("top movers of ") for m in movers}
    assert drifted == {"f00_normal", "plan", "prediction"}  # the drifted ones, the prediction too
    (x,) = [m for m in movers if "f00_normal" in m]
    assert x.count("%→") == 3  # its top three contributors, reference → current share


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reference", "/nonexistent/ref.parquet"], "/nonexistent/ref.parquet: no such file"),
        (["--segments", "planet"], "no column named 'planet'"),
        (["--kind", "plan=ordinal"], "expected COLUMN=numeric or COLUMN=categorical"),
    ],
)
def test_compare_errors_are_one_line_exit_2(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    ref_path, cur_path = files
    args = ["compare", "--reference", str(ref_path), "--current", str(cur_path), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_compare_empty_input_is_an_error(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref_path, _ = files
    empty = tmp_path / "empty.csv"
    empty.write_text("f00_normal,plan\n")
    assert main(["compare", "--reference", str(ref_path), "--current", str(empty)]) == 2
    assert "has no rows" in capsys.readouterr().err


def test_kind_override_counts_type_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pl.DataFrame({"x": ["1", "2", "3", "4"]}).write_csv(tmp_path / "r.csv")
    pl.DataFrame({"x": ["1", "oops", "3", None]}).write_csv(tmp_path / "c.csv")
    report = run_json(
        capsys,
        "--reference",
        str(tmp_path / "r.csv"),
        "--current",
        str(tmp_path / "c.csv"),
        "--kind",
        "x=numeric",
    )
    f = report["features"]["x"]
    assert (f["kind"], f["n"], f["type_errors"]) == ("numeric", 2, 1)
    assert f["null_rate"] == pytest.approx(0.5)


def test_model_sketch_of_halves_merges_to_the_whole(files: tuple[Path, Path]) -> None:
    ref_path, cur_path = files
    spec = TableSpec(
        segments=["region", "gender"], prediction="prediction", label="label", latency="latency_ms"
    )
    ref, cur = read_table(ref_path), read_table(cur_path)
    kinds = spec.feature_kinds(ref)
    ref_batch = to_batch(ref, spec, kinds)
    binning = Binning.fit(ref_batch.features, kinds, 1000, 10)
    reference = ModelSketch(binning).update(ref_batch)
    whole = ModelSketch(binning).update(to_batch(cur, spec, kinds), threads=2)
    a = ModelSketch(binning).update(to_batch(cur[:7000], spec, kinds))
    b = ModelSketch(binning).update(to_batch(cur[7000:], spec, kinds))
    assert_close(drift_report(reference, b.merge(a)), drift_report(reference, whole))


def assert_close(a: object, b: object, path: str = "$") -> None:
    """Equal structure and values; floats to 1e-9 relative (float sums depend on order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def test_bins_from_the_reference_itself_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--bins-from`` fits the bins on another file; given the reference file, the report is the
    one without it. Given another file, counts stay and PSI moves with the bins."""
    ref, cur, other = (tmp_path / f"{n}.parquet" for n in ("ref", "cur", "other"))
    generate(Traffic(n=3000, seed=1)).drop(FILE_DROP).write_parquet(ref)
    generate(Traffic(n=2000, seed=2, drift_at=0.0, drift_features=["f00_normal"])).drop(
        FILE_DROP
    ).write_parquet(cur)
    generate(Traffic(n=500, seed=3)).drop(FILE_DROP).write_parquet(other)
    args = ["compare", "--reference", str(ref), "--current", str(cur), *ROLES, "--json"]
    reports = []
    for extra in ([], ["--bins-from", str(ref)], ["--bins-from", str(other)]):
        capsys.readouterr()
        assert main([*args, *extra]) == 0
        reports.append(orjson.loads(capsys.readouterr().out))
    assert_close(reports[0], reports[1])
    assert reports[2]["n_reference"] == 3000 and reports[2]["n_current"] == 2000
    assert reports[2]["features"]["f00_normal"]["psi"] != reports[0]["features"]["f00_normal"]["psi"]
    assert main([*args, "--bins-from", str(tmp_path / "missing.parquet")]) == 2
