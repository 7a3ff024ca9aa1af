"""References are versioned: every save is listed with when it applied; a reference can be built
from a stored range on the CLI; reports say which reference they compared with."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from driftline.cli import main
from driftline.simulate import FILE_DROP, Traffic, generate

from .helpers import ROLES, SEGMENTS, build_reference


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(list(args)) == 0
    out = capsys.readouterr().out
    if out.startswith("{\n"):  # one indented document (stats --json)
        return [orjson.loads(out)]
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


def test_reference_history_range_build_and_reports_name_their_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = tmp_path / "ref.parquet"
    generate(Traffic(n=5000, seed=3)).drop(FILE_DROP).write_parquet(ref)
    events = tmp_path / "events.parquet"
    generate(Traffic(n=3000, seed=4, start_ms=1_767_225_600_000, rate=10.0)).write_parquet(events)
    dsn = f"chdb://{tmp_path / 'store'}"
    assert main(["reference", "list", "--store", dsn, "--model", "churn"]) == 2  # none yet
    build_reference(dsn, ref)
    assert main(["replay", "--store", dsn, "--file", str(events), "--segments", SEGMENTS]) == 0

    first = run_json(capsys, "stats", "--store", dsn, "--model", "churn", "--json")[0]["reference"]
    assert first["source"] == str(ref) and first["created_at"]

    # the first two minutes (panes) of the stored traffic become the reference (on the same bins)
    built = run_json(capsys, "reference", "build", "--store", dsn, "--model", "churn",
                     "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:02:00Z")[0]  # fmt: skip
    assert built["rows"] == 1200 and built["source"].startswith("range 2026-01-01T00:00:00Z")
    history = run_json(capsys, "reference", "list", "--store", dsn, "--model", "churn", "--json")
    assert [h["source"] for h in history] == [str(ref), built["source"]]
    assert history[0]["applied_until"] == history[1]["applied_from"] and history[1]["applied_until"] is None
    assert history[0]["events"] == 5000 and history[1]["events"] == 1200

    # the same two minutes compared with themselves: nothing moved
    report = run_json(capsys, "stats", "--store", dsn, "--model", "churn", "--json",
                      "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:02:00Z")[0]  # fmt: skip
    assert report["reference"]["reference_id"] == built["reference_id"]
    assert report["reference"]["source"] == built["source"]
    assert all(
        f["psi"] == pytest.approx(0.0, abs=1e-12) for f in report["features"].values() if f["psi"] is not None
    )
    assert report["n_reference"] == report["n_current"] == 1200

    assert (
        main(["reference", "build", "--store", dsn, "--model", "churn", "--file", str(ref), "--from", "x"])
        == 2
    )
    assert main(["reference", "build", "--store", dsn, "--model", "churn", *ROLES]) == 2  # neither


def test_api_lists_references(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from driftline.api.app import create_app
    from driftline.service import Service
    from driftline.settings import load_settings

    ref = tmp_path / "ref.parquet"
    generate(Traffic(n=3000, seed=3)).drop(FILE_DROP).write_parquet(ref)
    settings = load_settings(
        store=f"chdb://{tmp_path / 'store'}", references={"churn": str(ref)}, api_keys={"k": ["read"]}
    )
    service = Service(settings)
    try:
        with TestClient(create_app(service)) as client:
            listed = client.get("/v1/models/churn/references", headers={"authorization": "Bearer k"})
            assert listed.status_code == 200
            (only,) = listed.json()
            assert (only["source"], only["events"], only["applied_until"]) == (str(ref), 3000, None)
            missing = client.get("/v1/models/nobody/references", headers={"authorization": "Bearer k"})
            assert missing.status_code == 404
    finally:
        service.stop()


def test_rolling_references_equal_a_reference_built_from_that_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``stats --against previous|trailing|seasonal`` merges the stored panes of that range on the
    model's bins: the same numbers as a reference built from the range (``reference build --from``)."""
    ref = tmp_path / "ref.parquet"
    generate(Traffic(n=5000, seed=3)).drop(FILE_DROP).write_parquet(ref)
    traffic = Traffic(
        n=2400, seed=5, start_ms=1_767_225_600_000, rate=10.0, drift_at=0.5, drift_features=["plan"]
    )
    generate(traffic).write_parquet(tmp_path / "events.parquet")  # 4 minutes; plan drifts at minute 2
    dsn = f"chdb://{tmp_path / 'store'}"
    build_reference(dsn, ref)
    assert (
        main(["replay", "--store", dsn, "--file", str(tmp_path / "events.parquet"), "--segments", SEGMENTS])
        == 0
    )
    window = ["--from", "2026-01-01T00:02:00Z", "--to", "2026-01-01T00:04:00Z"]
    stats = ["stats", "--store", dsn, "--model", "churn", "--json", *window]
    rolling = {
        kind: run_json(capsys, *stats, "--against", kind)[0]
        for kind in ("previous", "trailing:2m", "seasonal:2m")
    }
    assert rolling["previous"]["reference"]["from"] == "2026-01-01T00:00:00.000Z"
    assert main(["reference", "build", "--store", dsn, "--model", "churn",
                 "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:02:00Z"]) == 0  # fmt: skip
    fixed = run_json(capsys, *stats)[0]
    assert fixed["n_reference"] == 1200 and "plan" in fixed["drifted_features"]
    for kind, report in rolling.items():
        assert report["n_reference"] == fixed["n_reference"], kind
        for name, f in fixed["features"].items():
            assert report["features"][name]["psi"] == pytest.approx(f["psi"], rel=1e-12, abs=1e-15), (
                kind,
                name,
            )
        assert report["prediction"]["psi"] == pytest.approx(fixed["prediction"]["psi"], rel=1e-12)
        assert report["performance"] == fixed["performance"], kind
    assert main([*stats, "--against", "yesterday"]) == 2
    from fastapi.testclient import TestClient

    from driftline.api.app import create_app
    from driftline.service import Service
    from driftline.settings import load_settings

    service = Service(load_settings(store=dsn, api_keys={"k": ["read"]}))
    try:
        with TestClient(create_app(service)) as client:
            params = {"from": "2026-01-01T00:02:00Z", "to": "2026-01-01T00:04:00Z", "against": "previous"}
            api = client.get("/v1/models/churn/drift", params=params, headers={"authorization": "Bearer k"})
            assert api.status_code == 200
            assert api.json()["features"]["plan"]["psi"] == pytest.approx(
                rolling["previous"]["features"]["plan"]["psi"]
            )
            bad = client.get(
                "/v1/models/churn/drift",
                params={**params, "against": "soon"},
                headers={"authorization": "Bearer k"},
            )
            assert bad.status_code == 400 and "against" in bad.json()["detail"]
    finally:
        service.stop()
