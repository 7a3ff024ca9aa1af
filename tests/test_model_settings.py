"""A model's segments and settings end to end over HTTP ingest on a real chDB store: segment
cardinality is bounded by the reference, and what ``PUT /v1/models/{id}`` registers is what the
stream folds with, the windows are judged by, the alerts compare with and the API reports."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from driftline.alerting.config import AlertingConfig
from driftline.alerting.engine import AlertEngine, Observation
from driftline.api.app import create_app
from driftline.cli import main
from driftline.contract import Event
from driftline.detectors.fairness import FairnessSketch
from driftline.detectors.profile import Binning, ModelRegistry, ModelSettings, ModelSketch, Thresholds
from driftline.ingest.panes import PaneFolder
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, Traffic, generate
from driftline.storage.codec import reference_from_rows, reference_rows
from driftline.storage.models import ModelStore
from driftline.storage.store import Store

from .test_api import START_MS, assert_problem, auth, traffic

KEYS = {"ingest-key": ["ingest"], "read-key": ["read"], "admin-key": ["admin"]}
OTHER = "<other>"
HOUR = {"from": START_MS, "to": START_MS + 3_600_000}
# A psi rule without a threshold of its own: each model's registered one.
RULES = 'rules:\n  - {name: feature-psi, metric: psi, op: ">"}\n'


@contextlib.contextmanager
def serve(
    tmp_path: Path, rules: str | None = None, **settings: Any
) -> Iterator[tuple[TestClient, Service, pl.DataFrame]]:
    """A service whose models churn and fraud have the simulator's undrifted traffic as reference."""
    reference = generate(Traffic(n=5000, seed=1000)).drop(FILE_DROP)
    path = tmp_path / "ref.parquet"
    reference.write_parquet(path)
    if rules:
        (tmp_path / "rules.yaml").write_text(rules)
        settings["rules"] = str(tmp_path / "rules.yaml")
    service = Service(
        load_settings(
            store=f"chdb://{tmp_path / 'store'}",
            references={"churn": str(path), "fraud": str(path)},
            segments=["region", "gender"],
            api_keys=KEYS,
            pane_ms=60_000,
            window_ms=300_000,
            lateness_ms=0,
            **settings,
        )
    )
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            yield client, service, reference
    finally:
        service.stop()


def overflow(reason: str) -> float:
    return REGISTRY.get_sample_value("driftline_segment_overflow_total", {"reason": reason}) or 0.0


def top(values: list[str], k: int) -> set[str]:
    """The k most frequent values, ties by name: the oracle of the reference's top K."""
    return {v for v, _ in sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0]))[:k]}


def test_segment_cardinality_is_bounded_by_the_reference(tmp_path: Path) -> None:
    with serve(tmp_path, segment_values=2) as (client, service, reference):
        kept = top(reference["region"].to_list(), 2)
        rng = np.random.default_rng(3)
        evs = traffic(1200, seed=4)
        for i, e in enumerate(evs):
            if i % 3 == 0:
                e["segments"]["region"] = f"r{rng.integers(1 << 40)}"  # a new value nearly every time
            e["segments"] |= {f"a{i % 40}": "x", f"b{i}": f"y{i}"}  # attributes the reference lacks
        before = {reason: overflow(reason) for reason in ("value", "attribute")}
        assert client.post("/v1/events", json=evs, headers=auth("ingest-key")).json()["accepted"] == 1200
        service.http_ingest.finish()
        fair = client.get("/v1/models/churn/fairness", params=HOUR, headers=auth("read-key")).json()
        groups = fair["fairness"]["region"]["groups"]
        want = Counter(e["segments"]["region"] if e["segments"]["region"] in kept else OTHER for e in evs)
        assert set(fair["fairness"]) == {"region", "gender"}
        assert {g: v["n"] for g, v in groups.items()} == dict(want)
        assert overflow("value") - before["value"] == sum(e["segments"]["region"] not in kept for e in evs)
        assert overflow("attribute") - before["attribute"] == 2 * len(evs)
        # two metric rows per group and window, whatever was sent: only for the groups kept
        rows = service.store.metrics("churn", metric="positive_rate")
        assert rows and {r.feature for r in rows} <= {
            *(f"region={g}" for g in [*kept, OTHER]),
            "gender=female",
            "gender=male",
        }


def test_registered_settings_drive_stream_windows_alerts_and_api(tmp_path: Path) -> None:
    with serve(tmp_path, RULES) as (client, service, _):
        lenient = {"segments": ["region"], "positive_threshold": 0.8, "thresholds": {"psi": 50.0, "ks": 0.99}}
        strict = {"thresholds": {"psi": 0.01, "ks": 0.01}}
        for model, config in (("churn", lenient), ("fraud", strict)):
            r = client.put(f"/v1/models/{model}", json=config, headers=auth("admin-key"))
            assert r.status_code == 200, r.text
        evs = traffic(1200, seed=5, drift_at=0.0, drift_features=["f00_normal", "plan"])
        for model in ("churn", "fraud"):
            body = [{**e, "model_id": model} for e in evs]
            assert client.post("/v1/events", json=body, headers=auth("ingest-key")).json()["accepted"] == 1200
        service.http_ingest.finish()

        # folded with the registered segments and positive threshold
        fair = client.get("/v1/models/churn/fairness", params=HOUR, headers=auth("read-key")).json()
        assert set(fair["fairness"]) == {"region"}
        for group, g in fair["fairness"]["region"]["groups"].items():
            scores = np.array([e["prediction"] for e in evs if e["segments"]["region"] == group])
            assert g["positive_rate"] == pytest.approx(np.mean(scores >= 0.8), abs=1e-12)
        # windows judged by the registered thresholds: the API and the stored metrics agree
        drift = client.get("/v1/models/churn/drift", params=HOUR, headers=auth("read-key")).json()
        assert drift["thresholds"] == {
            "psi": 50.0,
            "ks": 0.99,
            "psi_alpha": None,
            "ks_alpha": None,
            "dataset_drift": 0.5,
        }
        assert drift["drifted_features"] == []
        assert {r.status for r in service.store.metrics("churn", metric="psi")} == {"ok"}
        strict_psi = service.store.metrics("fraud", metric="psi")
        assert {r.feature for r in strict_psi if r.status == "drift"} >= {"f00_normal", "plan"}
        # the rule without a threshold compares with each model's registered one
        fired = [a for a in service.alert_store.alert_history() if a["state"] == "firing"]
        assert fired and {(a["model"], a["threshold"]) for a in fired} == {("fraud", 0.01)}


def test_registration_is_validated(tmp_path: Path) -> None:
    with serve(tmp_path, segment_attributes=2) as (client, _, _):
        for bad, text in (
            ({"segments": ["region", "gender", "plan"]}, "above the limit of 2"),
            ({"segments": ["region", "region"]}, "region"),
            ({"segments": [""]}, "segments"),
            ({"positive_class": ""}, "positive_class"),
        ):
            assert_problem(client.put("/v1/models/churn", json=bad, headers=auth("admin-key")), 400, text)
        ok = client.put("/v1/models/churn", json={"segments": ["region"]}, headers=auth("admin-key"))
        assert ok.status_code == 200 and ok.json()["config"]["segments"] == ["region"]


def test_reference_upload_takes_the_registered_segments(tmp_path: Path) -> None:
    with serve(tmp_path) as (client, _, reference):
        r = client.put("/v1/models/new", json={"segments": ["region"]}, headers=auth("admin-key"))
        assert r.status_code == 200, r.text
        csv = reference.write_csv().encode()
        r = client.put(
            "/v1/models/new/reference",
            content=csv,
            params={"prediction": "prediction"},
            headers={**auth("admin-key"), "content-type": "text/csv"},
        )
        assert r.status_code == 200, r.text
        summary = r.json()["reference"]
        assert "region" not in summary["features"] and summary["features"]["gender"] == "categorical"
        assert {a: set(v) for a, v in summary["segments"].items()} == {"region": set(reference["region"])}


def test_rules_without_a_threshold_take_the_models() -> None:
    config = AlertingConfig.model_validate(
        {"rules": [{"name": "psi", "metric": "psi"}, {"name": "ks", "metric": "ks", "threshold": 0.5}]}
    )
    models = ModelRegistry()
    models["strict"] = ModelSettings(Thresholds(psi=0.05, ks=0.9))
    engine = AlertEngine(config, models=models)
    obs = [
        Observation(model, "v1", "age", metric, value, None, 0, 60_000)
        for model in ("strict", "unregistered")
        for metric, value in (("psi", 0.1), ("ks", 0.3))
    ]
    # psi 0.1: above strict's 0.05, below the default 0.2; ks 0.3: below the rule's own 0.5
    fired = {(a.model, a.rule, a.threshold) for a in engine.evaluate(obs, now=60.0)}
    assert fired == {("strict", "psi", 0.05)}


def test_a_reference_without_segment_values_folds_none_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    binning = Binning.fit({"x": np.arange(100.0)}, {"x": "numeric"}, 10, 10)  # no segment columns
    folder = PaneFolder({"m": ModelSketch(binning)})
    events = [
        Event(f"e{i}", "m", 1000 * i, {"x": float(i)}, 0.9, segments={"region": "eu", "tier": "gold"})
        for i in range(10)
    ]
    before = overflow("attribute")
    with caplog.at_level(logging.WARNING, logger="driftline.ingest"):
        folder.fold(events[:5], "p")
        folder.fold(events[5:], "p")
    assert overflow("attribute") - before == 20
    assert [r.getMessage() for r in caplog.records] == [
        "model 'm': no segment attribute of its events is folded (its reference has values of: none; "
        "registered: none); build its reference with the segment columns"
    ]
    rows, _ = folder.take_rows("p")
    fairness = [r for r in rows if r.kind == "fairness"]
    assert fairness and all(not FairnessSketch.from_bytes(r.sketch).tables for r in fairness)


def test_the_newest_reference_comes_without_an_older_ones_segments(store: Store) -> None:
    binning = Binning.fit(
        {"x": np.arange(100.0)}, {"x": "numeric"}, 10, 10, segments={"region": ["eu"], "tier": ["gold"]}
    )
    store.save_reference(reference_rows("m", ModelSketch(binning), "first"))
    # the same bins (so the same reference_id), one segment attribute fewer
    narrower = Binning(binning.numeric, binning.categorical, {"region": binning.segments["region"]})
    store.save_reference(reference_rows("m", ModelSketch(narrower), "second"))
    reference = reference_from_rows(store.references("m"))
    assert {a: v.categories for a, v in reference.binning.segments.items()} == {"region": ("eu",)}


def test_reference_build_takes_the_registered_segments(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    ref = tmp_path / "ref.parquet"
    generate(Traffic(n=2000, seed=1000)).drop(FILE_DROP).write_parquet(ref)
    store = Store.open(dsn)
    ModelStore(store).save("churn", {"segments": ["gender"]})
    store.close()
    build = ["reference", "build", "--store", dsn, "--model", "churn", "--file", str(ref)]
    assert main([*build, "--prediction", "prediction"]) == 0
    store = Store.open(dsn)
    try:
        binning = reference_from_rows(store.references("churn")).binning
    finally:
        store.close()
    assert set(binning.segments) == {"gender"}
    assert "gender" not in binning.features and binning.kind("region") == "categorical"
