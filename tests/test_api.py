"""The HTTP API with its real dependencies (embedded chDB), router by router, plus auth on every route."""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
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

KEYS = {
    "ingest-key": ["ingest"],
    "other-ingest-key": ["ingest"],
    "read-key": ["read"],
    "admin-key": ["admin"],
}
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
        max_reference_bytes=4 << 20,
    )
    service = Service(settings)
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            yield client, service
    finally:
        service.stop()


def traffic(n: int, seed: int, **kw: Any) -> list[dict[str, Any]]:
    return list(events(generate(Traffic(n=n, seed=seed, **{"start_ms": START_MS, "rate": 10.0, **kw}))))


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
    assert r.status_code == 200 and r.json() == {
        "accepted": 600,
        "rejected": 0,
        "late": 0,
        "staged": 0,
        "errors": [],
    }
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
    # a model without a reference warms up: its event is kept (staged), not refused
    assert (out["accepted"], out["rejected"], out["staged"]) == (2, 2, 1)
    assert [(e["index"], e["field"]) for e in out["errors"]] == [(1, "ts"), (3, "model_id")]
    hopeless = [bad[0], bad[2]]
    body = assert_problem(
        client.post("/v1/events", json=hopeless, headers=auth("ingest-key")), 400, "none of the 2"
    )
    assert len(body["errors"]) == 2
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
    assert_problem(client.get("/v1/models/never-seen", headers=auth("read-key")), 404, "unknown model")


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


# -- issue 14: ingest from several producers, reads, HTTP conformance ---------------------------

DAY_MS = 86_400_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def stored(service: Service, version: str) -> int:
    return sum(r.n for r in service.store.pane_rows("churn", kinds=["events"], model_version=version))


def late_stored(service: Service, version: str) -> int:
    rows = service.store.pane_rows("churn", kinds=["events"], model_version=version)
    return sum(r.n for r in rows if r.late)


def test_idempotency_keys_are_scoped_per_api_key(api: tuple[TestClient, Service]) -> None:
    client, service = api
    first = traffic(5, seed=40, model_version="scoped", start_ms=START_MS + 10 * DAY_MS)
    second = traffic(7, seed=41, model_version="scoped", start_ms=START_MS + 10 * DAY_MS)
    shared = {"idempotency-key": "batch-1"}
    r = client.post("/v1/events", json=first, headers={**auth("ingest-key"), **shared})
    assert r.status_code == 200 and r.json()["accepted"] == 5
    r = client.post("/v1/events", json=second, headers={**auth("other-ingest-key"), **shared})
    assert r.status_code == 200 and r.json()["accepted"] == 7
    assert stored(service, "scoped") == 12  # another client's key is not this client's retry


def test_a_reused_idempotency_key_with_another_body_is_refused(api: tuple[TestClient, Service]) -> None:
    client, service = api
    batch = traffic(6, seed=42, model_version="reused", start_ms=START_MS + 11 * DAY_MS)
    headers = {**auth("ingest-key"), "idempotency-key": "batch-2"}
    first = client.post("/v1/events", json=batch, headers=headers)
    assert first.status_code == 200 and first.json()["accepted"] == 6
    assert_problem(client.post("/v1/events", json=batch[:3], headers=headers), 422, "another request body")
    retry = client.post("/v1/events", json=batch, headers=headers)
    assert retry.status_code == 200 and retry.json() == first.json()
    assert stored(service, "reused") == 6


def test_a_failed_store_write_leaves_no_trace(
    api: tuple[TestClient, Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    from driftline.storage.errors import StoreError

    client, service = api
    t = START_MS + 12 * DAY_MS
    ahead = traffic(5, seed=43, model_version="rollback", start_ms=t + 600_000)
    behind = traffic(5, seed=44, model_version="rollback", start_ms=t)
    real = service.store.write_flush

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise StoreError("injected: ClickHouse is down")

    monkeypatch.setattr(service.store, "write_flush", refuse)
    assert_problem(
        client.post("/v1/events", json=ahead, headers=auth("ingest-key")), 503, "nothing was stored"
    )
    monkeypatch.setattr(service.store, "write_flush", real)
    # The refused batch did not move event time: ten minutes older events are not late.
    r = client.post("/v1/events", json=behind, headers=auth("ingest-key"))
    assert r.status_code == 200 and r.json()["late"] == 0
    r = client.post("/v1/events", json=ahead, headers=auth("ingest-key"))  # the retry
    assert r.status_code == 200 and r.json()["accepted"] == 5
    assert (stored(service, "rollback"), late_stored(service, "rollback")) == (10, 0)


def test_each_api_key_has_its_own_event_time(api: tuple[TestClient, Service]) -> None:
    client, service = api
    t = START_MS + 13 * DAY_MS
    ahead = traffic(5, seed=45, model_version="producers", start_ms=t + 3_600_000)
    behind = traffic(5, seed=46, model_version="producers", start_ms=t)
    assert client.post("/v1/events", json=ahead, headers=auth("ingest-key")).json()["late"] == 0
    # Another client an hour behind is on time for its own traffic (lateness is 0 here).
    assert client.post("/v1/events", json=behind, headers=auth("other-ingest-key")).json()["late"] == 0
    assert late_stored(service, "producers") == 0


def test_events_far_ahead_of_the_clock_are_rejected_over_http(api: tuple[TestClient, Service]) -> None:
    import time

    client, service = api
    now = int(time.time() * 1000)
    soon, later = traffic(2, seed=47, model_version="future", start_ms=now + 60_000)
    later["ts"] = now + service.settings.http_max_future_ms + 600_000
    r = client.post("/v1/events", json=[soon, later], headers=auth("other-ingest-key"))
    assert r.status_code == 200
    assert (r.json()["accepted"], [e["field"] for e in r.json()["errors"]]) == (1, ["ts"])


def test_reads_default_to_the_last_window(api: tuple[TestClient, Service]) -> None:
    client, service = api
    t = START_MS + 14 * DAY_MS
    evs = traffic(1200, seed=48, model_version="recent", start_ms=t)  # 10/s: two minutes
    assert client.post("/v1/events", json=evs, headers=auth("ingest-key")).json()["accepted"] == 1200
    window_ms, end = service.settings.window_ms, t + 120_000  # the newest pane ends at t + 2 min
    for route in ("drift", "latency", "fairness"):
        r = client.get(f"/v1/models/churn/{route}", params={"version": "recent"}, headers=auth("read-key"))
        assert r.status_code == 200, r.text
        span = r.json()["range"]
        assert (span["from"], span["to"]) == (iso(end - window_ms), iso(end)), route
    drift = client.get("/v1/models/churn/drift", params={"version": "recent"}, headers=auth("read-key"))
    assert drift.json()["n_current"] == 1200
    only_to = client.get(
        "/v1/models/churn/drift", params={"version": "recent", "to": t + 60_000}, headers=auth("read-key")
    ).json()
    assert only_to["n_current"] == 600 and only_to["range"]["from"] == iso(t + 60_000 - window_ms)


def test_reads_longer_than_the_cap_are_refused(api: tuple[TestClient, Service]) -> None:
    client, service = api
    cap = service.settings.max_range_ms
    for route in ("drift", "latency", "fairness"):
        assert_problem(
            client.get(
                f"/v1/models/churn/{route}",
                params={"from": START_MS, "to": START_MS + cap + 60_000},
                headers=auth("read-key"),
            ),
            400,
            "max_range_ms",
        )
    r = client.get(
        "/v1/models/churn/drift", params={"from": START_MS, "to": START_MS + cap}, headers=auth("read-key")
    )
    assert r.status_code == 200


def test_the_reference_body_is_bounded(api: tuple[TestClient, Service]) -> None:
    client, service = api
    limit = service.settings.max_reference_bytes
    csv = {**auth("admin-key"), "content-type": "text/csv"}
    declared = client.put("/v1/models/fraud/reference", content=b"a,b\n" * (limit // 4 + 1), headers=csv)
    assert_problem(declared, 413, f"above the {limit}-byte limit")
    chunks = iter([b"a,b\n" * 65536] * (limit // (4 * 65536) + 1))  # chunked: no Content-Length
    assert_problem(client.put("/v1/models/fraud/reference", content=chunks, headers=csv), 413, "limit")
    json_range = {**auth("admin-key"), "content-type": "application/json"}
    body = b" " * (64 << 10) + b'{"from": 0, "to": 1}'
    assert_problem(client.put("/v1/models/churn/reference", content=body, headers=json_range), 413, "limit")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_the_authorization_scheme_is_case_insensitive(api: tuple[TestClient, Service], scheme: str) -> None:
    client, _ = api
    r = client.get("/v1/models", headers={"authorization": f"{scheme} read-key"})
    assert r.status_code == 200, r.text
    assert_problem(
        client.get("/v1/models", headers={"authorization": f"{scheme} nope"}), 401, "unknown API key"
    )
    assert_problem(client.get("/v1/models", headers={"authorization": "Basic cmVhZC1rZXk="}), 401, "missing")


def test_405_says_which_methods_are_allowed(api: tuple[TestClient, Service]) -> None:
    client, _ = api
    spec = client.get("/openapi.json").json()["paths"]
    for template, ops in spec.items():
        path = re.sub(r"\{[^}]+\}", "x", template)
        documented = {m.upper() for m in ops}
        for method in {"GET", "PUT", "POST", "DELETE", "PATCH"} - documented:
            r = client.request(method, path, headers=auth("admin-key"))
            assert_problem(r, 405, "Method Not Allowed")
            assert set(r.headers["allow"].split(", ")) == documented, (method, template)


def test_openapi_documents_the_status_codes_the_server_sends(api: tuple[TestClient, Service]) -> None:
    client, _ = api
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if op.get("parameters") or op.get("requestBody"):
                assert "400" in codes, (method, path)
            if path.startswith("/v1"):
                assert {"401", "403", "503"} <= codes, (method, path)
                assert op["security"], (method, path)
            if "{" in path:  # an id that names nothing, or a path the router does not know
                assert "404" in codes, (method, path)
            for code, response in op["responses"].items():
                if code >= "400":
                    assert response["content"] == {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }, (method, path, code)
    assert "422" in spec["paths"]["/v1/events"]["post"]["responses"]
    assert "413" in spec["paths"]["/v1/models/{model_id}/reference"]["put"]["responses"]
    # what the server sends for a bad parameter is what the schema says: 400, not 422
    r = client.get("/v1/alerts/history", params={"limit": 0}, headers=auth("read-key"))
    assert_problem(r, 400, "limit")
