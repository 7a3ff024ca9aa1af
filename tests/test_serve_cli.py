"""`driftline serve` as users run it (a subprocess, SIGTERM to stop), settings errors, CLI help."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from driftline.alerting.config import ConfigError
from driftline.cli import build_parser
from driftline.cli.serve import serve_line
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, Traffic, events, generate

START_MS = 1_767_225_600_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.loopback
def test_serve_ingests_answers_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    ref = tmp_path / "ref.parquet"
    generate(Traffic(n=20_000, seed=1000)).drop(FILE_DROP).write_parquet(ref)
    port = free_port()
    config = tmp_path / "driftline.yaml"
    config.write_text(f"""
service:
  store: chdb://{tmp_path / "store"}
  http_port: {port}
  references: {{churn: {ref}}}
  segments: [region, gender]
  api_keys: {{secret-key: [ingest, read]}}
  pane_ms: 60000
  window_ms: 300000
  lateness_ms: 0
rules:
  - name: psi
    metric: psi
    threshold: 0.2
""")
    env = {**os.environ, "DRIFTLINE_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftline.cli", "serve", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        headers = {"authorization": "Bearer secret-key"}
        evs = list(events(generate(Traffic(n=2000, seed=3, start_ms=START_MS, rate=5.0))))
        r = httpx.post(f"{base}/v1/events", json=evs, headers=headers, timeout=30)
        assert r.status_code == 200 and r.json()["accepted"] == 2000
        span = {"from": START_MS, "to": START_MS + 400_000}  # without them: the last window only
        drift = httpx.get(f"{base}/v1/models/churn/drift", params=span, headers=headers, timeout=30).json()
        assert drift["n_current"] == 2000
        assert httpx.get(f"{base}/v1/models", headers={"authorization": "Bearer nope"}).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().splitlines() == [
        f"driftline serve: listening on http://127.0.0.1:{port} (API docs /docs); HTTP ingest only"
    ]
    # stopped cleanly: the store is released and holds what was acknowledged
    from driftline.storage.store import Store

    store = Store.open(f"chdb://{tmp_path / 'store'}")
    try:
        assert sum(r.n for r in store.pane_rows("churn", kinds=["events"])) == 2000
        assert store.metrics("churn", metric="psi")  # closed panes were evaluated
    finally:
        store.close()


def test_serve_line_names_what_it_consumes() -> None:
    settings = load_settings(bootstrap="kafka:9092", topics=["predictions", "scores"], group="monitor")
    assert serve_line(settings, 8000) == (
        "driftline serve: listening on http://127.0.0.1:8000 (API docs /docs); "
        "consuming predictions,scores from kafka:9092 as group monitor"
    )


def test_serve_refuses_to_start_without_keys_or_open_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from driftline.cli import main

    assert main(["serve", "--store", f"chdb://{tmp_path / 's'}"]) == 2
    assert "no API keys configured" in capsys.readouterr().err


def test_settings_errors_name_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "driftline.yaml"
    config.write_text("service:\n  store: chdb:///x\n  http_port: lots\n")
    with pytest.raises(ConfigError, match=rf"{config}:3: service.http_port: Input should be a valid integer"):
        load_settings(config)
    config.write_text("service:\n  colour: blue\n")
    with pytest.raises(ConfigError, match=rf"{config}:2: service.colour: Extra inputs are not permitted"):
        load_settings(config)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "driftline.yaml"
    config.write_text("service:\n  http_port: 9000\n  group: from-file\n")
    monkeypatch.setenv("DRIFTLINE_HTTP_PORT", "9100")
    monkeypatch.setenv("DRIFTLINE_API_KEYS", orjson.dumps({"k": ["read"]}).decode())
    s = load_settings(config)
    assert (s.http_port, s.group, s.api_keys) == (9100, "from-file", {"k": ["read"]})
    assert "'k'" not in repr(s)  # API keys never print


def test_every_command_has_help_with_an_example() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    names = set(sub.choices)  # type: ignore[union-attr]
    assert names >= {
        "serve",
        "consume",
        "simulate",
        "compare",
        "stats",
        "reference",
        "replay",
        "alerts",
        "silence",
        "demo",
    }
    for name, parser in sub.choices.items():  # type: ignore[union-attr]
        assert "example:" in parser.format_help(), name
