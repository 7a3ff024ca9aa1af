"""The README's instrumenting guide as a new user reads it: the contract table lists exactly the
contract's fields, its examples pass the contract, the producer snippet runs (a fake librdkafka
producer), the HTTP walk-through runs as written, and no link leaves the repository."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from driftline.api.routers import ingest
from driftline.contract import Event, InvalidEvent, parse_event, validate_event
from driftline.ingest import producer
from driftline.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# the contract's own fields (its dataclass calls the event time ts_ms; the JSON key is ts)
CONTRACT_FIELDS = ["ts" if f.name == "ts_ms" else f.name for f in dataclasses.fields(Event)]


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


GUIDE = section("Instrumenting a model")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE, re.DOTALL)


def curl_events() -> list[Any]:
    (walkthrough,) = blocks("bash")
    body = re.search(r"-d '(.*?)'", walkthrough, re.DOTALL)
    assert body, "the curl command has no -d body"
    events: list[Any] = orjson.loads(body.group(1))
    return events


def test_the_table_lists_exactly_the_contract_fields_and_which_are_required() -> None:
    rows = [line.split("|")[1:-1] for line in GUIDE.splitlines() if line.startswith("| `")]
    table = {cells[0].strip().strip("`"): cells[2].strip() for cells in rows}
    assert sorted(table) == sorted(CONTRACT_FIELDS)
    full = curl_events()[0] | {"label": 1}
    assert set(full) == set(CONTRACT_FIELDS)
    for name, required in table.items():
        try:
            validate_event({k: v for k, v in full.items() if k != name})
            refused = False
        except InvalidEvent as exc:
            assert (exc.field, exc.reason) == (name, "required field is missing")
            refused = True
        assert refused == (required == "yes"), name


def test_the_curl_request_is_a_valid_batch_for_a_key_the_config_gives_the_ingest_scope(
    tmp_path: Path,
) -> None:
    for event in curl_events():
        validate_event(event)
    (walkthrough,) = blocks("bash")
    assert "/v1/events" in {route.path for route in ingest.router.routes}  # type: ignore[attr-defined]
    key = re.search(r"curl [^\n]*/v1/events -H 'Authorization: Bearer ([\w-]+)'", walkthrough)
    config = re.search(r"<<'YAML'\n(.*?)\nYAML\n", walkthrough, re.DOTALL)
    assert key and config
    path = tmp_path / "driftline.yaml"
    path.write_text(config.group(1))
    assert "ingest" in load_settings(path).api_keys[key.group(1)]


class FakeProducer:
    """librdkafka's producer, in memory: every message is delivered at flush."""

    sent: ClassVar[list[tuple[str, bytes, bytes | None]]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        assert "bootstrap.servers" in config
        self._callbacks: list[Any] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        self.sent.append((topic, value, key))
        self._callbacks.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for callback in self._callbacks:
            callback(None, None)
        return 0


def test_the_producer_snippet_sends_a_valid_event(monkeypatch: pytest.MonkeyPatch) -> None:
    (snippet,) = blocks("python")
    monkeypatch.setattr(producer, "Producer", FakeProducer)
    monkeypatch.setattr(FakeProducer, "sent", [])
    inference = {"request_id": "r-1", "features": {"age": 41, "plan": "pro"}, "score": 0.8}
    exec(compile(snippet, "README.md", "exec"), inference | {"latency_ms": 12.5, "region": "north"})
    ((topic, value, key),) = FakeProducer.sent
    event = parse_event(value)
    assert (topic, key, event.event_id, event.prediction) == ("predictions", b"churn", "r-1", 0.8)


def test_no_link_leaves_the_repository() -> None:
    for doc in (ROOT / "README.md", ROOT / "docs" / "configuration.md"):
        text = doc.read_text()
        assert "../" not in text, doc
        for target in re.findall(r"\]\(([^)#]+)", text):
            if re.match(r"https?://", target):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{doc.name}: {target}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.loopback
def test_the_http_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """The bash block in a fresh directory, on a free port, with `driftline` this source tree."""
    (walkthrough,) = blocks("bash")
    port = free_port()
    script = walkthrough.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace(
        "  api_keys:", f"  http_port: {port}\n  api_keys:"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "driftline"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m driftline.cli "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    # a failing step must not leave the server running
    script = "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script + "wait\n"
    proc = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = re.search(r"^# (\{\"accepted\".*\})$", walkthrough, re.MULTILINE)
    assert expected and expected.group(1) in proc.stdout
    assert re.search(r'"n_current":\s*1\b', proc.stdout), proc.stdout[-3000:]
