"""`driftline demo` end to end (the README's main command), and replay through the same path."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from driftline import demo
from driftline.cli import build_parser, main
from driftline.simulate import FILE_DROP, Traffic, events, generate
from driftline.storage.store import Store

from .helpers import build_reference, cli

pytestmark = pytest.mark.loopback


def test_demo_fires_the_expected_alerts(tmp_path: Path) -> None:
    out = io.StringIO()
    assert demo.run(str(tmp_path), console=Console(file=out, width=200)) == 0
    text = out.getvalue()
    assert "drift starts" in text
    assert "pagerduty  trigger" in text and "retrain    io.driftline.retrain.firing" in text
    counts = orjson.loads(text.split("notifications received ")[1].splitlines()[0])
    assert counts["retrain"] == 1 and counts["pagerduty"] == 2 and counts["slack"] >= 2
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    try:
        psi = store.metrics("churn", metric="psi", feature="f00_normal")
    finally:
        store.close()
    assert psi[0].status == "ok" and psi[-1].status == "drift"
    # it ends by writing the HTML report of the traffic and printing where
    page = Path(text.split("HTML report")[1].split()[0])
    html = page.read_text()
    assert page.is_file() and 'id="report-data"' in html and 'id="feature-f00_normal"' in html
    assert "DRIFT" in html


def test_demo_piped_is_not_wrapped_and_removes_its_temp_dir(tmp_path: Path) -> None:
    done = cli("demo", TMPDIR=str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("driftline demo — store ") and ", sink http://127.0.0.1:" in lines[0]
    assert max(map(len, lines)) > 80  # rich would have wrapped these at 80 columns
    assert any(line.strip().startswith("the temporary store is removed at exit") for line in lines)
    assert not list(tmp_path.glob("driftline-demo-*"))


def test_demo_keeps_its_dir_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_parser().parse_args(["demo", "--keep"]).keep is True
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with demo._workdir(None, keep=True) as kept, demo._workdir(None, keep=False) as removed:
        assert kept.is_dir() and removed.is_dir()
    with demo._workdir(str(tmp_path / "mine"), keep=False) as mine:  # the user's --dir: never removed
        pass
    assert kept.is_dir() and not removed.exists() and mine.is_dir()


def test_replay_backfills_with_event_time_windows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "ref.parquet"
    generate(Traffic(n=20_000, seed=1000)).drop(FILE_DROP).write_parquet(ref)
    traffic = Traffic(n=3000, seed=4, rate=5.0, drift_at=0.5, drift_features=["f00_normal"])
    lines = [orjson.dumps(e) for e in events(generate(traffic))]
    lines.insert(10, b'{"event_id": "broken"')
    (tmp_path / "events.ndjson").write_bytes(b"\n".join(reversed(lines)))  # out of order: replay sorts
    dsn = f"chdb://{tmp_path / 'store'}"
    build_reference(dsn, ref)
    capsys.readouterr()
    assert (
        main(
            ["replay", "--store", dsn, "--file", str(tmp_path / "events.ndjson"), "--window", "5m", "--json"]
        )
        == 0
    )
    totals = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert totals == {"accepted": 3000, "rejected": 1, "late": 0, "windows_evaluated": 10}
    assert main(["stats", "--store", dsn, "--model", "churn", "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["n_current"] == 3000 and "f00_normal" in report["drifted_features"]
