"""``driftline demo``: the whole product in one process, in seconds, on embedded chDB.

Starts the service (HTTP API + alerting) on a fresh store, runs a local sink that plays Slack,
PagerDuty and a retraining endpoint, feeds 20 minutes of simulated traffic through
``POST /v1/events`` — drift in two features, a fairness regression in one region and a concept
shift (the model gets worse) from the middle on — then, as ground truth comes later in
production, the labels through ``POST /v1/labels``, two hours later in event time. It prints the
windows as they close and every notification the sink receives, and exits 0 only if the expected
alerts fired (the accuracy drop once the labels are in) and the retraining webhook arrived
exactly once.
It ends by writing the HTML report of the traffic and printing its path (in the working
directory when kept, else in the system's temporary directory). A temporary working directory is
removed at exit unless asked to keep it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console

from driftline import query
from driftline.api.server import server as api_server
from driftline.contract import format_ts
from driftline.ingest.kafka import client_config
from driftline.ingest.producer import EventProducer
from driftline.report_html import render_report
from driftline.report_text import stdout_console
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, Traffic, events, generate
from driftline.storage.rows import MetricRow

DRIFTED = ("f00_normal", "f01_lognormal")
SECRET = "whsec_" + "ZHJpZnRsaW5lLWRlbW8tc2VjcmV0LWtleQ=="
PANE_S, EVENTS_PER_PANE, PANES = 60, 600, 20
LABEL_DELAY_MS = 2 * 3_600_000


@dataclass
class Sink:
    """Records what receivers would get; answers like Slack (ok), PagerDuty (202) and a webhook."""

    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    console: Console | None = None

    def start(self) -> str:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.record(self.path, orjson.loads(body))
                status, reply = (
                    (202, b'{"status":"success"}') if self.path.startswith("/pagerduty") else (200, b"ok")
                )
                self.send_response(status)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, path: str, body: dict[str, Any]) -> None:
        self.received.append((path, body))
        if self.console is None:
            return
        if path.startswith("/slack"):
            text = body["text"]  # one line per message: a long one is cut, visibly
            self.console.print(f"  [magenta]slack[/]      {text if len(text) <= 110 else text[:109] + '…'}")
        elif path.startswith("/pagerduty"):
            summary = body.get("payload", {}).get("summary", "")
            self.console.print(
                f"  [red]pagerduty[/]  {body['event_action']} {body['dedup_key'][:12]}… {summary}"
            )
        else:
            self.console.print(f"  [cyan]retrain[/]    {body['type']} for model {body['data']['model']}")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _rules(sink: str) -> str:
    return f"""
receivers:
  - name: slack
    slack: {{webhook_url: "{sink}/slack/T000/B000/demo", grafana_url: "http://localhost:3000"}}
  - name: oncall
    pagerduty: {{routing_key: DEMO0ROUTING0KEY, url: "{sink}/pagerduty/v2/enqueue"}}
  - name: retrain
    webhook: {{url: "{sink}/retrain", secret: "{SECRET}", cooldown: 24h}}
rules:
  - name: feature-drift
    metric: psi
    threshold: 0.2
    severity: critical
    receivers: [slack, oncall]
    retrain: retrain
    annotations: {{summary: "PSI of {{feature}} on {{model}} is {{value:.2f}} (> {{threshold}})"}}
  - name: model-quality
    metric: accuracy
    op: "<"
    threshold: 0.6
    severity: warning
    receivers: [slack]
    annotations: {{summary: "accuracy of {{model}} is {{value:.2f}} (< 0.6) on the labelled events"}}
  - name: disparate-impact
    metric: disparate_impact
    op: "<"
    threshold: 0.8
    severity: error
    receivers: [slack]
    annotations: {{summary: "disparate impact by {{feature}} on {{model}} is {{value:.2f}} (< 0.8)"}}
grouping: {{group_wait: 1s, group_interval: 5s, repeat_interval: 4h}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _workdir(workdir: str | None, keep: bool) -> Iterator[Path]:
    """The user's directory (never removed), or a temporary one removed at exit unless ``keep``."""
    if workdir:
        root = Path(workdir)
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    root = Path(tempfile.mkdtemp(prefix="driftline-demo-"))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def run(
    workdir: str | None = None,
    keep_running: bool = False,
    console: Console | None = None,
    kafka: bool = False,
    keep: bool = False,
) -> int:
    out = console or stdout_console()
    with _workdir(workdir, keep) as root:
        return _run(root, keep_running, out, kafka, kept=bool(workdir) or keep)


def _run(root: Path, keep_running: bool, out: Console, kafka: bool, kept: bool) -> int:
    sink = Sink(console=out)
    sink_url = sink.start()
    (root / "driftline.yaml").write_text(_rules(sink_url))
    reference = root / "reference.parquet"
    generate(Traffic(n=30_000, seed=1000)).drop(FILE_DROP).write_parquet(reference)
    key = secrets.token_urlsafe(16)
    port = _free_port()
    bootstrap = _start_kafka(root, out) if kafka else None
    settings = load_settings(
        bootstrap=bootstrap,
        topics=["demo-predictions"],
        flush_interval_ms=500,
        store=f"chdb://{root / 'store'}",
        rules=str(root / "driftline.yaml"),
        http_port=port,
        references={"churn": str(reference)},
        segments=["region", "gender"],
        api_keys={key: ["ingest", "read", "admin"]},
        pane_ms=PANE_S * 1000,
        window_ms=5 * PANE_S * 1000,
        lateness_ms=0,
        idle_ms=2000,
        http_labels=True,
        public_base_url=f"http://127.0.0.1:{port}",  # notifications link the HTML report
    )
    windows: list[tuple[int, dict[str, float]]] = []

    def show(model: str, version: str, start: int, end: int, rows: list[MetricRow]) -> None:
        vals = {f"{r.metric}:{r.feature}": r.value for r in rows}
        windows.append((end, vals))
        drift = "  ".join(f"PSI {f}={vals.get(f'psi:{f}', float('nan')):.2f}" for f in DRIFTED)
        di = vals.get("disparate_impact:region", float("nan"))
        quality = f"  accuracy={vals['accuracy:']:.2f}" if "accuracy:" in vals else ""
        out.print(
            f"[dim]window ending {format_ts(end)}[/]  {drift}  "
            f"disparate impact(region)={di:.2f}  events={int(vals.get('events:', 0))}{quality}"
        )

    out.print(
        f"[bold]driftline demo[/] — store {root / 'store'}, API http://127.0.0.1:{port}, sink {sink_url}"
    )
    service = Service(settings, observer=show)
    server = api_server(service, "127.0.0.1", port, log_level="warning")
    threading.Thread(target=server.run, daemon=True).start()
    service.start()
    try:
        _wait_until(lambda: server.started, 30)
        fed = _feed(f"http://127.0.0.1:{port}", key, out, bootstrap)
        out.print("[dim]traffic done; waiting for the last windows and notifications…[/]")
        ok = _wait_until(lambda: not _expected(service, sink) and _drained(service), 90)
        _summary(out, service, sink, root if kept else None, port, key)
        page = _write_report(service, fed, root if kept else None)
        out.print(f"\n[bold]HTML report[/] {page}")
        problems = _expected(service, sink)
        for p in problems:
            out.print(f"[red]expected but missing:[/] {p}")
        if keep_running:
            out.print("serving until Ctrl-C …")
            while True:
                time.sleep(1)
        return 0 if ok and not problems else 1
    finally:
        server.should_exit = True
        service.stop()
        sink.stop()
        if bootstrap:
            subprocess.run([str(KAFKA_DEV), "down", "--dir", str(root / "kafka")], capture_output=True)


KAFKA_DEV = Path(__file__).resolve().parents[2] / "scripts" / "kafka-dev"


def _start_kafka(root: Path, out: Console) -> str:
    """A real broker from scripts/kafka-dev (a source checkout with Java and Maven)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    if not KAFKA_DEV.exists():
        raise SystemExit("--kafka needs scripts/kafka-dev from a source checkout of driftline")
    out.print("[dim]starting a Kafka broker with scripts/kafka-dev …[/]")
    done = subprocess.run(
        [str(KAFKA_DEV), "up", "--dir", str(root / "kafka")], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"scripts/kafka-dev failed:\n{done.stderr[-2000:]}")
    bootstrap = done.stdout.strip().splitlines()[-1].removeprefix("BOOTSTRAP=")
    librdkafka = logging.getLogger("driftline.kafka.librdkafka")
    if librdkafka.getEffectiveLevel() >= logging.WARNING:  # no detail asked for (--log-level INFO shows it)
        librdkafka.setLevel(logging.ERROR)  # retries while the fresh broker loads are expected, not news
    admin = AdminClient(client_config(bootstrap, {}))  # librdkafka's logs through our logger
    for fut in admin.create_topics([NewTopic("demo-predictions", 3, 1)]).values():
        try:
            fut.result()
        except Exception as exc:  # an earlier run in the same --dir created it
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return bootstrap


def _write_report(service: Service, fed: tuple[int, int], root: Path | None) -> Path:
    """The HTML report of the traffic fed (``stats --html``): in the kept working directory, else
    beside it in the temporary directory (the working directory is removed at exit)."""
    comparison = query.compare_range(
        service.store,
        service.references["churn"],
        "churn",
        *fed,
        None,
        service.model_settings["churn"].thresholds,
    )
    page = render_report(comparison, "Drift report: churn (driftline demo)", [("model", "churn")])
    if root is None:
        fd, name = tempfile.mkstemp(prefix="driftline-report-", suffix=".html")
        os.close(fd)
        path = Path(name)
    else:
        path = root / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _feed(api: str, key: str, out: Console, bootstrap: str | None = None) -> tuple[int, int]:
    """Sends the traffic and its labels; the event-time range it covers."""
    n = EVENTS_PER_PANE * PANES
    start = (int(time.time()) // PANE_S - PANES - 1) * PANE_S * 1000
    traffic = Traffic(
        n=n,
        seed=7,
        start_ms=start,
        rate=EVENTS_PER_PANE / PANE_S,
        drift_at=0.5,
        drift_features=DRIFTED,
        fairness_regression="region=south",
        concept_drift=0.4,
    )
    rows = list(events(generate(traffic)))
    labels = [
        {
            "event_id": e["event_id"],
            "model_id": e["model_id"],
            "ts": e["ts"] + LABEL_DELAY_MS,
            "label": e["label"],
        }
        for e in rows
    ]
    rows = [{k: v for k, v in e.items() if k != "label"} for e in rows]  # ground truth comes later
    if bootstrap:
        producer = EventProducer(bootstrap, "demo-predictions")
        for i, e in enumerate(rows):
            producer.send(e)
            if i == n // 2:
                out.print(
                    "[yellow]>>> drift starts: f00_normal, f01_lognormal shift; region=south scores drop[/]"
                )
        producer.flush()
        _send_labels(api, key, out, labels)
        return start, start + PANES * PANE_S * 1000
    headers = {"authorization": f"Bearer {key}", "content-type": "application/x-ndjson"}
    with httpx.Client(timeout=30) as client:
        for i in range(0, n, EVENTS_PER_PANE):
            body = b"\n".join(orjson.dumps(e) for e in rows[i : i + EVENTS_PER_PANE])
            r = client.post(f"{api}/v1/events", content=body, headers=headers)
            r.raise_for_status()
            if i == n // 2:
                out.print(
                    "[yellow]>>> drift starts: f00_normal, f01_lognormal shift; region=south scores drop[/]"
                )
    _send_labels(api, key, out, labels)
    return start, start + PANES * PANE_S * 1000


def _send_labels(api: str, key: str, out: Console, labels: list[dict[str, Any]]) -> None:
    out.print(f"[yellow]>>> the labels arrive, {LABEL_DELAY_MS // 3_600_000} h after their predictions[/]")
    headers = {"authorization": f"Bearer {key}", "content-type": "application/x-ndjson"}
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(labels), 2000):
            body = b"\n".join(orjson.dumps(x) for x in labels[i : i + 2000])
            client.post(f"{api}/v1/labels", content=body, headers=headers).raise_for_status()


def _expected(service: Service, sink: Sink) -> list[str]:
    fired = {
        (a.rule, a.feature)
        for a in (service.alerting.fired if service.alerting else [])
        if a.status == "firing"
    }
    missing = [f"feature-drift on {f}" for f in DRIFTED if ("feature-drift", f) not in fired]
    if ("disparate-impact", "region") not in fired:
        missing.append("disparate-impact on region")
    slack = [b.get("text", "") for p, b in sink.received if p.startswith("/slack")]
    if ("model-quality", "") not in fired or not any("model-quality" in t for t in slack):
        missing.append("model-quality (accuracy) on Slack once the labels arrived")
    retrains = [b for p, b in sink.received if p.startswith("/retrain")]
    if len(retrains) != 1:
        missing.append(f"exactly one retraining webhook (got {len(retrains)})")
    if not any(p.startswith("/pagerduty") for p, _ in sink.received):
        missing.append("a PagerDuty trigger")
    return missing


def _drained(service: Service) -> bool:
    """Every final window evaluated, every notification delivered."""
    idle = service.evaluator.due == 0
    return idle and (service.alerting is None or not service.alerting.outbox.in_order())


def _wait_until(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def _summary(out: Console, service: Service, sink: Sink, root: Path | None, port: int, key: str) -> None:
    """``root``: the kept working directory, None when it is removed at exit."""
    alerts = service.alerting.fired if service.alerting else []
    out.print("\n[bold]alerts[/]")
    for a in alerts:
        out.print(
            f"  {a.status:8} {a.severity:8} {a.rule:17} {a.feature or '(model)':14} value={a.value:.3f}"
        )
    kinds = [p.split("/")[1] for p, _ in sink.received]
    out.print(
        f"\n[bold]notifications received[/] {json.dumps({k: kinds.count(k) for k in sorted(set(kinds))})}"
    )
    out.print("\n[bold]explore[/]")
    if root is None:
        out.print("  the temporary store is removed at exit: run with --keep or --dir DIR to explore it")
    else:
        out.print(f"  driftline stats --store chdb://{root / 'store'} --model churn")
        out.print(f"  driftline alerts --store chdb://{root / 'store'} --model churn")
    out.print(
        f"  (with --keep-running) curl -H 'Authorization: Bearer {key}' "
        f"http://127.0.0.1:{port}/v1/models/churn/drift"
    )
