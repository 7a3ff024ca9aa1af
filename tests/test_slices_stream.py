"""Slices in the stream: each slice's panes, references and window metrics are stored under its
slice id; ``stats --by`` equals ``compare --by`` on the same rows; rules with ``by`` alert per
slice and rules without do not see slices."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from driftline.alerting.config import Rule
from driftline.cli import main
from driftline.detectors.slice_ids import parse_slice_id, slice_id
from driftline.ingest.files import replay_messages
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, Traffic, generate

from .helpers import ROLES, SEGMENTS


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("slices")
    generate(Traffic(n=8000, seed=41)).drop(FILE_DROP).write_parquet(d / "ref.parquet")
    current = Traffic(
        n=6000, seed=42, drift_at=0.0, drift_features=["f00_normal"], fairness_regression="region=south"
    )
    generate(current).write_parquet(d / "cur.parquet")
    return d / "ref.parquet", d / "cur.parquet"


def test_slice_ids_round_trip() -> None:
    assert parse_slice_id(slice_id("churn", "region", "south")) == ("churn", "region", "south")
    assert parse_slice_id(slice_id("m", "plan", "<other>")) == ("m", "plan", "<other>")
    assert parse_slice_id("churn") is None and parse_slice_id("[x=y]") is None


def test_stream_slices_equal_compare_by(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur = files
    settings = load_settings(
        store=f"chdb://{tmp_path / 'store'}",
        references={"churn": str(ref)},
        segments=SEGMENTS.split(","),
        slices=["region"],
        pane_ms=600_000,
        window_ms=3_600_000,
    )
    service = Service(settings)
    try:
        assert any(parse_slice_id(m) == ("churn", "region", "south") for m in service.references)
        totals = service.replay(replay_messages(str(cur), SEGMENTS.split(","), None), 1000)
        assert totals["accepted"] == 6000
        stored = {r.model_id for r in service.store.metrics(slice_id("churn", "region", "south"))}
        assert stored == {slice_id("churn", "region", "south")}  # window metrics per slice
    finally:
        service.stop()
    capsys.readouterr()
    dsn = f"chdb://{tmp_path / 'store'}"
    assert main(["stats", "--store", dsn, "--model", "churn", "--by", "region", "--json"]) == 0
    stats = orjson.loads(capsys.readouterr().out)["slices"]["region"]
    assert (
        main(["compare", "--reference", str(ref), "--current", str(cur), *ROLES, "--by", "region", "--json"])
        == 0
    )
    files_report = orjson.loads(capsys.readouterr().out)["slices"]["region"]
    assert set(stats) == set(files_report)
    for value, expected in files_report.items():
        got = stats[value]
        assert (got["n_reference"], got["n_current"], got["judged"]) == (
            expected["n_reference"],
            expected["n_current"],
            expected["judged"],
        )
        for name, f in expected["features"].items():
            assert got["features"][name]["psi"] == pytest.approx(f["psi"], rel=1e-9, abs=1e-12), (value, name)
        assert got["prediction"]["psi"] == pytest.approx(expected["prediction"]["psi"], rel=1e-9)
        for side in ("reference", "current"):
            assert got["performance"][side] == pytest.approx(expected["performance"][side], rel=1e-9)
    assert "f00_normal" in stats["south"]["drifted_features"]
    assert main(["stats", "--store", dsn, "--model", "churn", "--by", "plan"]) == 2  # no such slices stored


def test_rules_see_slices_only_with_by() -> None:
    whole = Rule(name="r", metric="psi", receivers=["x"])
    by_region = Rule(name="r", metric="psi", receivers=["x"], by=["region"], model="churn")
    south = slice_id("churn", "region", "south")
    assert whole.matches("churn", "f00_normal") and not whole.matches(south, "f00_normal")
    assert by_region.matches(south, "f00_normal") and not by_region.matches("churn", "f00_normal")
    assert not by_region.matches(slice_id("churn", "plan", "pro"), "f00_normal")
    assert not by_region.matches(slice_id("fraud", "region", "south"), "f00_normal")
