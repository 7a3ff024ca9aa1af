"""Time from the first drifted pane closing to the retraining webhook arriving.

``python -m bench.alert_latency [--runs 5]``: a real Service (embedded chDB, alerting thread with
its production tick of 0.5 s; group_wait does not delay the retrain webhook) receives simulated
traffic whose drift starts mid-way, through the HTTP ingest path. The clock starts when the
window containing the first drifted pane is evaluated (the observer hook, right after its metrics
are stored) and stops when the local webhook sink receives the signed CloudEvent. Results go to
bench/results/alert_latency.json; ``--quick`` is one run, its JSON to the temporary directory.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

from bench._harness import out_path, parser, roles, stamp, write_result
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, Traffic, events, generate
from driftline.storage.rows import MetricRow

START_MS = 1_767_225_600_000


def sink() -> tuple[str, list[float], ThreadingHTTPServer]:
    arrivals: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            arrivals.append(time.perf_counter())
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", arrivals, server


def one_run(root: Path, ref: Path) -> float:
    url, arrivals, server = sink()
    rules = root / "rules.yaml"
    rules.write_text(f"""
receivers:
  - name: retrain
    webhook: {{url: "{url}", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
rules:
  - name: psi
    metric: psi
    features: "f00_normal"
    threshold: 0.2
    retrain: retrain
""")
    first_drift: list[float] = []

    def observe(model: str, version: str, start: int, end: int, rows: list[MetricRow]) -> None:
        if not first_drift and any(
            r.metric == "psi" and r.feature == "f00_normal" and r.value > 0.2 for r in rows
        ):
            first_drift.append(time.perf_counter())

    settings = load_settings(
        store=f"chdb://{root / 'store'}",
        rules=str(rules),
        references={"churn": str(ref)},
        segments=roles()["segments"],
        pane_ms=60_000,
        window_ms=60_000,
        lateness_ms=0,
        open_mode=True,
    )
    service = Service(settings, observer=observe)
    service.start()
    try:
        traffic = Traffic(
            n=6000, seed=5, start_ms=START_MS, rate=10.0, drift_at=0.5, drift_features=["f00_normal"]
        )
        msgs = [orjson.dumps(e) for e in events(generate(traffic))]
        for i in range(0, len(msgs), 500):  # one HTTP request per 50 s of event time
            service.http_ingest.ingest(msgs[i : i + 500])
        deadline = time.monotonic() + 30
        while not arrivals and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        service.stop()
        server.shutdown()
    if not first_drift or not arrivals:
        raise SystemExit("no drift detected or no webhook received")
    return arrivals[0] - first_drift[0]


def main(argv: list[str] | None = None) -> int:
    p = parser("alert_latency", __doc__, "one run")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 1
    result = stamp("alert_latency", argv, "chdb")
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref.parquet"
        generate(Traffic(n=20_000, seed=1000)).drop(FILE_DROP).write_parquet(ref)
        latencies = []
        for i in range(args.runs):
            root = Path(tmp) / f"run{i}"
            root.mkdir()
            latencies.append(one_run(root, ref))
            print(f"run {i}: first drifted window evaluated -> webhook in {latencies[-1] * 1000:.0f} ms")
    result |= {
        "path": "HTTP ingest -> pane close -> window metrics -> alert engine -> outbox -> signed webhook",
        "alert_tick_s": 0.5,
        "runs": args.runs,
        "latency_s": {
            "median": statistics.median(latencies),
            "min": min(latencies),
            "max": max(latencies),
            "all": latencies,
        },
    }
    out = write_result(out_path("alert_latency", args), result)
    print(f"median {result['latency_s']['median'] * 1000:.0f} ms  (written to {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
