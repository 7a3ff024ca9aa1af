"""Model quality end to end: prediction and label drift, performance against scikit-learn on the
same rows, and the same numbers from stored panes (``stats``) as from the files (``compare``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from sklearn import metrics as skm

from driftline.cli import main
from driftline.simulate import Traffic, generate

from .helpers import ROLES, build_reference


def compare(capsys: pytest.CaptureFixture[str], ref: Path, cur: Path, *roles: str) -> dict:
    assert main(["compare", "--reference", str(ref), "--current", str(cur), *roles, "--json"]) == 0
    return orjson.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("quality")
    generate(Traffic(n=6000, seed=5)).write_parquet(d / "ref.parquet")
    drifted = Traffic(
        n=5000, seed=6, drift_at=0.0, drift_features=["f00_normal"], fairness_regression="region=south"
    )
    generate(drifted).write_parquet(d / "cur.parquet")
    return d / "ref.parquet", d / "cur.parquet"


def test_binary_performance_matches_scikit_learn(
    simulated: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref_path, cur_path = simulated
    report = compare(capsys, ref_path, cur_path, *ROLES)
    perf = report["performance"]
    assert perf["task"] == "binary"
    for side, path in (("reference", ref_path), ("current", cur_path)):
        df = pl.read_parquet(path)
        y, score = df["label"].to_numpy(), df["prediction"].to_numpy()
        pred = score >= 0.5
        got = perf[side]
        assert got["n_labelled"] == df.height
        assert got["positive_rate"] == pytest.approx(y.mean(), abs=1e-12)
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
        assert got["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
        assert got["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
        assert got["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
        assert got["log_loss"] == pytest.approx(skm.log_loss(y, score), rel=1e-9)
        assert abs(got["roc_auc"] - skm.roc_auc_score(y, score)) <= got["roc_auc_error_bound"] + 1e-12
        assert abs(got["pr_auc"] - skm.average_precision_score(y, score)) <= got["pr_auc_error_bound"] + 1e-12
    prediction = report["prediction"]
    assert prediction["kind"] == "numeric" and prediction["ks"]["p_value"] is not None


def test_regression_and_multiclass_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    for name, n, shift in (("ref", 4000, 0.0), ("cur", 3000, 0.5)):
        x = rng.normal(shift, 1, n)
        target = 2 * x + rng.normal(0, 0.5, n)
        classes = np.array(["cat", "dog", "eel"])[rng.integers(0, 3, n)]
        guess = np.where(rng.random(n) < 0.7, classes, np.array(["cat", "dog", "eel"])[rng.integers(0, 3, n)])
        pl.DataFrame(
            {"x": x, "score": 2 * x + shift, "target": target, "animal": classes, "guess": guess}
        ).write_parquet(tmp_path / f"{name}.parquet")
    ref, cur = tmp_path / "ref.parquet", tmp_path / "cur.parquet"
    df = pl.read_parquet(cur)

    regression = compare(capsys, ref, cur, "--features", "x", "--prediction", "score", "--label", "target")
    got = regression["performance"]["current"]
    y, p = df["target"].to_numpy(), df["score"].to_numpy()
    assert regression["performance"]["task"] == "regression"
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-9)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)), rel=1e-9)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-9)
    assert got["mean_error"] == pytest.approx(np.mean(p - y), rel=1e-9)
    assert regression["label"]["kind"] == "numeric" and regression["label"]["drift"] is True

    multiclass = compare(capsys, ref, cur, "--features", "x", "--prediction", "guess", "--label", "animal")
    got = multiclass["performance"]["current"]
    y, p = df["animal"].to_numpy(), df["guess"].to_numpy()
    assert multiclass["performance"]["task"] == "multiclass"
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"), abs=1e-12)
    assert got["micro_f1"] == pytest.approx(skm.f1_score(y, p, average="micro"), abs=1e-12)
    assert multiclass["prediction"]["kind"] == "categorical"


def test_stats_over_replayed_events_equals_compare(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every model-quality number from stored pane sketches is the one compare computes."""
    ref_path, cur_path = simulated
    dsn = f"chdb://{tmp_path / 'store'}"
    build_reference(dsn, ref_path)
    assert main(["replay", "--store", dsn, "--file", str(cur_path), "--segments", "region,gender"]) == 0
    capsys.readouterr()
    assert main(["stats", "--store", dsn, "--model", "churn", "--json"]) == 0
    stats = orjson.loads(capsys.readouterr().out)
    files = compare(capsys, ref_path, cur_path, *ROLES)
    for side in ("reference", "current"):  # sums of floats in another order: equal to rounding
        assert stats["performance"][side] == pytest.approx(files["performance"][side], rel=1e-9), side
    for key in ("prediction", "label"):
        for stat in ("psi", "js", "null_rate", "drift"):
            assert stats[key][stat] == pytest.approx(files[key][stat], rel=1e-9), (key, stat)
    for segment in ("region", "gender"):
        assert stats["features"][segment]["psi"] == pytest.approx(files["features"][segment]["psi"], rel=1e-9)


def test_window_metrics_carry_outputs_and_quality_and_rules_accept_them(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from driftline.alerting.config import load
    from driftline.storage.codec import metric_rows

    ref_path, cur_path = simulated
    report = compare(capsys, ref_path, cur_path, *ROLES)
    rows = {(r.feature, r.metric): r.value for r in metric_rows(report, "churn", "v1", 0, 60_000)}
    current = report["performance"]["current"]
    assert rows[("", "accuracy")] == current["accuracy"]
    assert rows[("", "roc_auc")] == current["roc_auc"]
    assert rows[("", "label_positive_rate")] == current["positive_rate"]
    assert rows[("", "prediction_psi")] == report["prediction"]["psi"]
    assert rows[("region", "psi")] == report["features"]["region"]["psi"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "receivers: [{name: log, webhook: {url: 'http://127.0.0.1:9/'}}]\n"
        "rules:\n"
        "  - {name: quality, metric: accuracy, op: '<', threshold: 0.8, receivers: [log]}\n"
        "  - {name: output-drift, metric: prediction_psi, receivers: [log]}\n"
    )
    assert [r.metric for r in load(rules).rules] == ["accuracy", "prediction_psi"]


def test_http_labels_join_later_by_prediction_time(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """POST /v1/labels: labels before and after their predictions, duplicates, unknown ids and
    malformed ones; the stored performance is compare's on the joined rows."""
    from fastapi.testclient import TestClient

    from driftline.api.app import create_app
    from driftline.service import Service
    from driftline.settings import load_settings
    from driftline.simulate import events

    ref_path, cur_path = simulated
    df = pl.read_parquet(cur_path)
    rows = list(events(df))
    settings = load_settings(
        store=f"chdb://{tmp_path / 'store'}",
        references={"churn": str(ref_path)},
        segments=["region", "gender"],
        api_keys={"k": ["ingest", "read", "admin"]},
        http_labels=True,
        http_max_future_ms=10**13,
    )
    key = {"authorization": "Bearer k"}
    labelled = rows[: len(rows) * 3 // 4]

    def label(e: dict) -> dict:
        return {
            "event_id": e["event_id"],
            "model_id": "churn",
            "ts": e["ts"] + 7_200_000,
            "label": e["label"],
        }

    service = Service(settings)
    try:
        with TestClient(create_app(service)) as client:
            early = client.post("/v1/labels", json=[label(e) for e in labelled[:500]], headers=key)
            assert early.json()["accepted"] == 500 and service.http_labels.stats["waiting"] == 500
            for i in range(0, len(rows), 1000):
                batch = [{k: v for k, v in e.items() if k != "label"} for e in rows[i : i + 1000]]
                assert client.post("/v1/events", json=batch, headers=key).status_code == 200
            late = [label(e) for e in labelled[500:]] + [label(e) for e in labelled[600:700]]  # duplicates
            bad = [{"event_id": "x", "model_id": "churn", "ts": "soon", "label": 1}, {"model_id": "churn"}]
            ghost = [{"event_id": "ghost", "model_id": "churn", "ts": 1_767_225_600_000, "label": 0}]
            r = client.post("/v1/labels", json=late + bad + ghost, headers=key)
            assert (r.json()["accepted"], r.json()["rejected"]) == (len(late) + 1, 2)
            service.http_labels.sweep()  # the early ones: their predictions are there now
            service.http_ingest.finish()
            assert client.post("/v1/labels", json=[], headers=key).status_code == 400
    finally:
        service.stop()
    label_of = {e["event_id"]: e["label"] for e in labelled}
    joined = df.with_columns(pl.Series("label", [label_of.get(e) for e in df["event_id"]], dtype=pl.Int64))
    joined.write_parquet(tmp_path / "joined.parquet")
    capsys.readouterr()
    assert main(["stats", "--store", f"chdb://{tmp_path / 'store'}", "--model", "churn", "--json"]) == 0
    stats = orjson.loads(capsys.readouterr().out)
    files = compare(capsys, ref_path, tmp_path / "joined.parquet", *ROLES)
    assert stats["performance"]["current"]["n_labelled"] == len(labelled)
    for side in ("reference", "current"):
        assert stats["performance"][side] == pytest.approx(files["performance"][side], rel=1e-9), side
    assert stats["label"]["psi"] == pytest.approx(files["label"]["psi"], rel=1e-9)
    for attr, fair in files["fairness"].items():  # equal opportunity from the late labels too
        got = stats["fairness"][attr]
        for metric in ("demographic_parity_difference", "equal_opportunity_difference"):
            assert got[metric] == pytest.approx(fair[metric], rel=1e-9, abs=1e-12), (attr, metric)
        assert got["groups"] == fair["groups"]
