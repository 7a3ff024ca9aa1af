"""The HTTP API with its real dependencies (embedded chDB), router by router, plus auth on every route."""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from driftline.api.app import create_app
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, Traffic, events, generate

KEYS = {"ingest-key": ["ingest"], "read-key": ["read"], "admin-key": ["admin"]}
START_MS = 1_767_225_600_000
PUBLIC = {"/healthz", "/readyz", "/metrics"}  # infrastructure probes and the Prometheus scrape
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Service]]:
    root = tmp_path_factory.mktemp("api")
    ref = root / "ref.parquet"
    generate(Traffic(n=20_000, seed=1000)).drop(FILE_DROP).write_parquet(ref)
    settings = load_settings(
        store=f"chdb://{root / 'store'}",
        references={"churn": str(ref)},
        segments=["region", "gender"],
        api_keys=KEYS,
        pane_ms=60_000,
        window_ms=300_000,
        lateness_ms=0,
    )
    service = Service(settings)
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            yield client, service
    finally:
        service.stop()


def traffic(n: int, seed: int, **kw: Any) -> list[dict[str, Any]]:
    return list(events(generate(Traffic(n=n, seed=seed, start_ms=START_MS, rate=10.0, **kw))))


def assert_problem(r: Any, status: int, text: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and text in body["detail"], body
    return body


def test_ingest_json_array_and_ndjson(api: tuple[TestClient, Service]) -> None:
    client, _ = api
    evs = traffic(1200, seed=1, drift_at=0.5, drift_features=["f00_normal"])
    r = client.post("/v1/events", json=evs[:600], headers=auth("ingest-key"))
    assert r.status_code == 200 and r.json() == {"accepted": 600, "rejected": 0, "late": 0, "errors": []}
    body = b"\n".join(orjson.dumps(e) for e in evs[600:])
    r = client.post(
        "/v1/events", content=body, headers={**auth("ingest-key"), "content-type": "application/x-ndjson"}
    )
    assert r.status_code == 200 and r.json()["accepted"] == 600


def test_ingest_reports_each_bad_event(api: tuple[TestClient, Service]) -> None:
    client, _ = api
    good = traffic(3, seed=2, model_version="side")
    bad = [{**good[0], "ts": "9999-01-01T00:00:00Z"}, {**good[1], "model_id": "nobody"}, {"event_id": "x"}]
    r = client.post("/v1/events", json=[good[2], *bad], headers=auth("ingest-key"))
    assert r.status_code == 200
    out = r.json()
    assert (out["accepted"], out["rejected"]) == (1, 3)
    assert [(e["index"], e["field"]) for e in out["errors"]] == [(1, "ts"), (2, "model_id"), (3, "model_id")]
    body = assert_problem(
        client.post("/v1/events", json=bad, headers=auth("ingest-key")), 400, "none of the 3"
    )
    assert len(body["errors"]) == 3
    assert_problem(client.post("/v1/events", content=b"{nope", headers=auth("ingest-key")), 400, "not JSON")
    assert_problem(client.post("/v1/events", json=[], headers=auth("ingest-key")), 400, "non-empty")


def test_ingest_size_limit_and_idempotency(api: tuple[TestClient, Service]) -> None:
    client, service = api
    huge = b"[" + b" " * (service.settings.max_request_bytes + 1) + b"]"
    assert_problem(client.post("/v1/events", content=huge, headers=auth("ingest-key")), 413, "above the")
    ev = traffic(5, seed=3, model_version="idem")
    for _ in range(2):
        r = client.post("/v1/events", json=ev, headers={**auth("ingest-key"), "idempotency-key": "req-42"})
        assert r.json()["accepted"] == 5
    rows = service.store.pane_rows("churn", kinds=["events"], model_version="idem")
    assert sum(r.n for r in rows) == 5  # the retry was stored once


def test_drift_latency_fairness_and_metrics(api: tuple[TestClient, Service]) -> None:
    client, _ = api
    r = client.get(
        "/v1/models/churn/drift",
        params={"from": START_MS, "to": START_MS + 120_000, "version": "v1"},
        headers=auth("read-key"),
    )
    assert r.status_code == 200
    report = r.json()
    assert report["n_current"] == 1200 and report["range"]["panes"] == 2
    assert report["range"]["from"] == "2026-01-01T00:00:00.000Z"
    assert report["range"]["to"] == "2026-01-01T00:02:00.000Z"
    assert set(report["features"]) >= {"f00_normal", "plan"}
    lat = client.get("/v1/models/churn/latency", headers=auth("read-key")).json()
    assert lat["latency"]["count"] > 0 and lat["latency"]["p99"] >= lat["latency"]["p50"]
    fair = client.get("/v1/models/churn/fairness", headers=auth("read-key")).json()
    assert set(fair["fairness"]) == {"region", "gender"}
    series = client.get(
        "/v1/models/churn/metrics",
        params={"metric": "psi", "feature": "f00_normal"},
        headers=auth("read-key"),
    ).json()
    points = series["series"]["f00_normal"]
    assert len(points) >= 1 and all(p["t"] > START_MS for p in points)
    assert_problem(
        client.get("/v1/models/churn/drift", params={"from": "yesterday"}, headers=auth("read-key")),
        400,
        "from:",
    )
    assert_problem(client.get("/v1/models/nobody/drift", headers=auth("read-key")), 404, "no reference")


def test_models_register_and_references(api: tuple[TestClient, Service], tmp_path: Path) -> None:
    client, _ = api
    r = client.put(
        "/v1/models/fraud", json={"owner": "risk", "thresholds": {"psi": 0.3}}, headers=auth("admin-key")
    )
    assert r.status_code == 200 and r.json()["config"]["thresholds"]["psi"] == 0.3
    assert_problem(
        client.put("/v1/models/fraud", json={"owner": 3, "bogus": 1}, headers=auth("admin-key")), 400, "owner"
    )
    models = {m["model_id"]: m for m in client.get("/v1/models", headers=auth("read-key")).json()}
    assert models["fraud"]["reference"] is None and models["churn"]["reference"]["rows"] == 20_000
    frame = generate(Traffic(n=3000, seed=9, model_id="fraud")).drop(FILE_DROP)
    buf = io.BytesIO()
    frame.write_csv(buf)
    r = client.put(
        "/v1/models/fraud/reference",
        content=buf.getvalue(),
        params={
            "segments": "region,gender",
            "prediction": "prediction",
            "label": "label",
            "latency": "latency_ms",
        },
        headers={**auth("admin-key"), "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["reference"]["features"]["plan"] == "categorical"
    r = client.put(
        "/v1/models/churn/reference",
        json={"from": START_MS, "to": START_MS + 60_000},
        headers=auth("admin-key"),
    )
    # the first minute: 600 events of v1, plus the 1 + 5 of the ingest tests (all versions)
    assert r.status_code == 200 and r.json()["reference"]["rows"] == 606
    assert_problem(
        client.put(
            "/v1/models/fraud/reference",
            content=b"a,b\n",
            headers={**auth("admin-key"), "content-type": "text/csv"},
        ),
        400,
        "no rows",
    )
    assert_problem(
        client.put(
            "/v1/models/fraud/reference",
            content=b"x",
            headers={**auth("admin-key"), "content-type": "image/png"},
        ),
        415,
        "send the file",
    )
    assert_problem(client.get("/v1/models/nobody", headers=auth("read-key")), 404, "unknown model")


def test_alerts_and_silences(api: tuple[TestClient, Service]) -> None:
    client, _ = api
    assert client.get("/v1/alerts", headers=auth("read-key")).json() == []
    assert_problem(client.get("/v1/alerts/abc", headers=auth("read-key")), 404, "no alert")
    r = client.post(
        "/v1/silences",
        json={"matchers": {"model": "churn"}, "duration_s": 600, "comment": "deploy"},
        headers=auth("admin-key"),
    )
    assert r.status_code == 201 and r.json()["active"] is True
    assert RFC3339.fullmatch(r.json()["starts_at"]) and RFC3339.fullmatch(r.json()["ends_at"])
    sid = r.json()["id"]
    listed = client.get("/v1/silences", headers=auth("read-key")).json()
    assert [s["id"] for s in listed if s["active"]] == [sid]
    assert client.delete(f"/v1/silences/{sid}", headers=auth("admin-key")).json()["active"] is False
    assert not any(s["active"] for s in client.get("/v1/silences", headers=auth("read-key")).json())
    assert_problem(client.delete("/v1/silences/nope", headers=auth("admin-key")), 404, "no silence")
    assert_problem(
        client.post("/v1/silences", json={"matchers": {}}, headers=auth("admin-key")), 400, "matchers"
    )


def test_alert_times_are_rfc3339_and_window_bounds_epoch_ms(api: tuple[TestClient, Service]) -> None:
    from driftline.alerting.config import AlertingConfig
    from driftline.alerting.engine import AlertEngine, Observation

    client, service = api
    cfg = AlertingConfig.model_validate({"rules": [{"name": "r", "metric": "psi", "threshold": 0.2}]})
    engine = AlertEngine(cfg, log=service.alert_store)
    end = START_MS + 60_000
    engine.evaluate([Observation("timed", "v", "x", "psi", 0.5, None, START_MS, end)], START_MS / 1000 + 100)
    engine.flush_log()
    (alert,) = [a for a in client.get("/v1/alerts", headers=auth("read-key")).json() if a["model"] == "timed"]
    assert alert["starts_at"] == "2026-01-01T00:01:40.000Z" and alert["ends_at"] is None
    assert (alert["window_start"], alert["window_end"]) == (START_MS, end)
    history = client.get("/v1/alerts/history", params={"model": "timed"}, headers=auth("read-key")).json()
    assert history[0]["starts_at"] == alert["starts_at"] and RFC3339.fullmatch(history[0]["at"])


def test_health_ready_and_metrics_pass_promtool(api: tuple[TestClient, Service]) -> None:
    client, _ = api
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"store": "ok"}}
    text = client.get("/metrics").text
    assert 'driftline_events_total{model="churn",outcome="accepted"}' in text
    assert "driftline_http_request_seconds_bucket" in text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def _flatten(routes: list[Any]) -> Iterator[Any]:
    for r in routes:
        inner = getattr(r, "original_router", None)  # included routers (FastAPI >= 0.16x wraps them)
        if inner is not None:
            yield from _flatten(inner.routes)
        else:
            yield r


def _scoped_routes(client: TestClient) -> list[tuple[str, str, str]]:
    out = []
    for route in _flatten(client.app.routes):  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute) or route.path in PUBLIC:
            continue
        scopes = [
            d.call.__name__.removeprefix("require_")
            for d in route.dependant.dependencies
            if d.call.__name__.startswith("require_")
        ]
        assert len(scopes) == 1, f"{route.path} must require exactly one scope"
        for method in route.methods:
            out.append(
                (
                    method,
                    route.path.replace("{model_id}", "churn")
                    .replace("{fingerprint}", "f")
                    .replace("{silence_id}", "s"),
                    scopes[0],
                )
            )
    return out


def test_every_route_enforces_its_scope(api: tuple[TestClient, Service]) -> None:
    client, _ = api
    routes = _scoped_routes(client)
    assert len(routes) >= 14
    for method, path, scope in routes:
        assert_problem(client.request(method, path), 401, "missing API key")
        assert_problem(client.request(method, path, headers=auth("wrong")), 401, "unknown API key")
        other = next(k for k, s in KEYS.items() if scope not in s and "admin" not in s)
        r = client.request(method, path, headers=auth(other))
        assert_problem(r, 403, f"lacks the {scope!r} scope")
        assert client.request(method, path, headers={"x-api-key": "admin-key"}).status_code != 401


def test_openapi_is_complete(api: tuple[TestClient, Service]) -> None:
    client, _ = api
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/events", "/v1/models/{model_id}/drift", "/v1/silences", "/metrics"} <= set(paths)
    post = paths["/v1/events"]["post"]
    assert post["requestBody"]["content"]["application/json"]["example"][0]["model_id"] == "churn"
    for path, ops in paths.items():
        for op in ops.values():
            assert op.get("summary"), f"{path} has no summary"
    assert pl is not None
