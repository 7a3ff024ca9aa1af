"""Stream benchmark: driftline's Kafka consumer into chDB against a raw confluent-kafka loop.

Run from the repository root (needs java 17+ and mvn for ``scripts/kafka-dev``)::

    python -m bench.stream --quick      # 200k events
    python -m bench.stream              # 2M events

Steps, all on one throw-away broker (``scripts/kafka-dev up --dir <tmp>``; ``down`` in a
``finally``):

1. Produce ``--events`` events (``driftline.simulate`` traffic, chunks of 200k with their own
   seed and consecutive event times) to a 6-partition topic with ``EventProducer`` (lz4, 1 MB
   batches, acks=all, idempotent), keyed by ``event_id`` so the events spread over the
   partitions; the same for a topic of half as many events, and one of ``--profile-events``.
2. Build the reference (``simulate.generate(Traffic(n=50_000, seed=1000))`` without the id and
   time columns) with ``driftline reference build --store chdb://DIR ...``; every consumer run
   below stores it into its own fresh chDB directory first (not timed).
3. Raw baseline, in this process: ``Consumer.consume(10000, 1.0)`` + ``m.error()`` +
   ``m.value()`` per message, a fresh group with ``auto.offset.reset=earliest``, until every
   message is read; ``--raw-repeat`` runs (median) of each of three fetch configurations
   (``RAW_CONFIGS``: librdkafka defaults; driftline's consumer settings, i.e. 16 MB
   ``fetch.message.max.bytes``; the same plus ``fetch.queue.backoff.ms=0``). The fastest is the
   baseline: with driftline's settings librdkafka stalls a fast reader (see ``RAW_CONFIGS``).
4. driftline: ``python -m driftline.cli consume --bootstrap B --topic T --group G
   --store chdb://DIR --idle-exit 5s --batch-size 10000`` as a subprocess, first once on the
   profile topic as a warm-up (Numba cache, page cache), then on the half and the full topic.
   Its rate is given two ways: events / (wall time - idle exit), the whole process (start-up,
   imports, chDB open, group join, final flush included); and events / (time from its
   "assigned" log line to exit - idle exit), comparable with the raw loop's rate from its
   first batch to its last. Peak RSS from ``wait4`` (``ru_maxrss``) and from polling
   ``/proc/PID/status`` (VmHWM). The events the store holds afterwards are counted.
5. Where the time goes: the consumer in-process (a child ``python -m bench.stream _profile``)
   on the profile topic, once with wall-clock timers wrapped around decode, to_batch, the
   sketch update, fold, the store write and window evaluation (low overhead), once under
   cProfile (top entries by cumulative time).

``--out`` (default ``bench/results/stream.json``) gets machine info, parameters and results.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "stream.json"
KAFKA_DEV = ROOT / "scripts" / "kafka-dev"
PARTITIONS = 6
CHUNK = 200_000
IDLE_EXIT_S = 5
BATCH_SIZE = 10_000
MODEL = "churn"
REFERENCE_ARGS = [
    "--segments",
    "region,gender",
    "--prediction",
    "prediction",
    "--label",
    "label",
    "--latency",
    "latency_ms",
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --------------------------------------------------------------------------------------------
# broker and topics


def kafka_up(state_dir: Path) -> str:
    proc = subprocess.run([str(KAFKA_DEV), "up", "--dir", str(state_dir)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"kafka-dev up failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    last = proc.stdout.strip().splitlines()[-1]
    if not last.startswith("BOOTSTRAP="):
        raise RuntimeError(f"kafka-dev up printed {last!r}")
    return last.removeprefix("BOOTSTRAP=")


def kafka_down(state_dir: Path) -> None:
    proc = subprocess.run([str(KAFKA_DEV), "down", "--dir", str(state_dir)], capture_output=True, text=True)
    if proc.returncode:
        print(f"kafka-dev down failed ({proc.returncode}): {proc.stderr[-2000:]}", file=sys.stderr)


def create_topics(admin: Any, names: list[str]) -> None:
    from confluent_kafka.admin import NewTopic

    futures = admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    for fut in futures.values():
        fut.result(timeout=60)


def produce(bootstrap: str, topic: str, n: int, seed: int) -> dict[str, Any]:
    """``n`` simulator events in chunks (own seed, consecutive event times), keyed by event_id."""
    import orjson

    from driftline.ingest.producer import EventProducer
    from driftline.simulate import Traffic, events, generate

    producer = EventProducer(bootstrap, topic)  # lz4, 1 MB batches, acks=all, idempotent
    t0 = time.perf_counter()
    nbytes = 0
    for k, start in enumerate(range(0, n, CHUNK)):
        df = generate(Traffic(n=min(CHUNK, n - start), seed=seed + k, start_ms=Traffic.start_ms + start))
        for e in events(df):
            value = orjson.dumps(e)
            nbytes += len(value)
            producer.send_raw(value, str(e["event_id"]).encode())
        del df
    delivered = producer.flush(300)
    seconds = time.perf_counter() - t0
    if delivered != n:
        raise RuntimeError(f"{topic}: delivered {delivered} of {n}")
    return {
        "topic": topic,
        "events": n,
        "mean_bytes": nbytes / n,
        "seconds": seconds,
        "events_per_s": n / seconds,
        "note": "includes generating the events (polars rows -> dicts) and orjson.dumps",
    }


def topic_counts(bootstrap: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        out = {}
        for p in range(PARTITIONS):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out[p] = hi - lo
        return out
    finally:
        c.close()


# --------------------------------------------------------------------------------------------
# raw baseline


# Fetch settings of the raw loop. driftline's consumer sets fetch.message.max.bytes = 16 MB and
# leaves the rest at librdkafka's defaults; with 6 partitions x 16 MB the local queue
# (queued.max.messages.kbytes, 64 MB) overflows, and librdkafka >= 2.4 then postpones each
# partition's next fetch by fetch.queue.backoff.ms (default 1000 ms): a fast reader stalls.
RAW_CONFIGS: dict[str, dict[str, Any]] = {
    "tuned": {"fetch.message.max.bytes": 16 << 20, "fetch.queue.backoff.ms": 0},
    "driftline_fetch_settings": {"fetch.message.max.bytes": 16 << 20},
    "librdkafka_defaults": {},
}


def raw_consume(
    bootstrap: str, topic: str, total: int, group: str, extra: dict[str, Any], timeout_s: float = 600
) -> dict[str, Any]:
    from confluent_kafka import Consumer

    t_create = time.perf_counter()
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10_000,
            **extra,
        }
    )
    c.subscribe([topic])
    n = errors = nbytes = 0
    first_batch = 0
    t_first = t_last = None
    try:
        while n < total:
            if time.perf_counter() - t_create > timeout_s:
                raise RuntimeError(f"raw loop: read {n} of {total} in {timeout_s} s")
            msgs = c.consume(BATCH_SIZE, 1.0)
            for m in msgs:
                if m.error() is not None:
                    errors += 1
                    continue
                v = m.value()
                n += 1
                nbytes += len(v) if v else 0
            if msgs:
                t_last = time.perf_counter()
                if t_first is None:
                    t_first, first_batch = t_last, n
    finally:
        c.close()
    assert t_first is not None and t_last is not None
    steady = t_last - t_first
    whole = t_last - t_create
    return {
        "group": group,
        "config": extra,
        "events": n,
        "errors": errors,
        "bytes": nbytes,
        "seconds_first_batch_to_last": steady,
        "seconds_from_consumer_creation": whole,
        "events_per_s": (n - first_batch) / steady,
        "events_per_s_including_join": n / whole,
        "mb_per_s": nbytes / steady / 1e6,
    }


# --------------------------------------------------------------------------------------------
# driftline consumer as a subprocess


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0])  # kB
    except OSError:
        pass
    return out


def run_monitored(
    cmd: list[str], log_dir: Path, name: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``cmd``; wall time, exit status, rusage (peak RSS, CPU) and an RSS timeline."""
    stdout_path, stderr_path = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        t0_wall = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env)
        samples: list[tuple[float, int]] = []
        hwm = 0
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            st = _proc_status(proc.pid)
            if "VmRSS" in st:
                samples.append((round(time.perf_counter() - t0, 2), st["VmRSS"]))
                hwm = max(hwm, st.get("VmHWM", 0))
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        t_end_wall = time.time()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "cmd": cmd,
        "returncode": proc.returncode,
        "wall_s": wall,
        "started_epoch_s": t0_wall,
        "ended_epoch_s": t_end_wall,
        "peak_rss_mb_wait4": rusage.ru_maxrss / 1024,
        "peak_rss_mb_vmhwm_polled": hwm / 1024,
        "cpu_user_s": rusage.ru_utime,
        "cpu_sys_s": rusage.ru_stime,
        "rss_timeline_mb": [(t, round(kb / 1024, 1)) for t, kb in samples[:: max(1, len(samples) // 60)]],
        "stdout": stdout_path.read_text(errors="replace")[-4000:],
        "stderr_tail": stderr_path.read_text(errors="replace")[-4000:],
        "stderr_path": str(stderr_path),
    }


def _assigned_epoch(stderr_path: str) -> float | None:
    """Wall time of the consumer's first ``assigned`` log line (JSON logs, UTC, ms)."""
    with open(stderr_path, errors="replace") as f:
        for line in f:
            if '"assigned' in line:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                ts = datetime.strptime(doc["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
                return ts.timestamp()
    return None


def stored_events(store_dir: Path) -> dict[str, int]:
    code = (
        "import json, sys\n"
        "from driftline.storage.store import Store\n"
        f"s = Store.open('chdb://{store_dir}')\n"
        f"rows = s.pane_rows({MODEL!r}, kinds=('events',))\n"
        "print(json.dumps({'events': sum(r.n for r in rows), 'late_events': sum(r.n for r in rows if r.late),"
        " 'event_rows': len(rows)}))\n"
        "s.close()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        return {"error": proc.stderr[-1000:]}  # type: ignore[dict-item]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build_store(store_dir: Path, ref_path: Path) -> dict[str, Any]:
    """``driftline reference build`` into a new chDB directory (a chDB directory cannot be copied)."""
    cmd = [
        sys.executable,
        "-m",
        "driftline.cli",
        "reference",
        "build",
        "--store",
        f"chdb://{store_dir}",
        "--model",
        MODEL,
        "--file",
        str(ref_path),
        *REFERENCE_ARGS,
    ]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"reference build failed:\n{proc.stderr[-3000:]}")
    return {
        "cmd": cmd,
        "seconds": time.perf_counter() - t,
        "output": json.loads(proc.stdout.strip().splitlines()[-1]),
    }


def driftline_consume(
    bootstrap: str, topic: str, total: int, group: str, ref_path: Path, work: Path, name: str
) -> dict[str, Any]:
    store_dir = work / f"store-{name}"
    build_store(store_dir, ref_path)
    cmd = [
        sys.executable,
        "-m",
        "driftline.cli",
        "--log-level",
        "INFO",
        "consume",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--store",
        f"chdb://{store_dir}",
        "--idle-exit",
        f"{IDLE_EXIT_S}s",
        "--batch-size",
        str(BATCH_SIZE),
    ]
    load_before = loadavg()
    r = run_monitored(cmd, work, name)
    r["loadavg_before"], r["loadavg_after"] = load_before, loadavg()
    if r["returncode"]:
        raise RuntimeError(f"{name}: driftline consume exited {r['returncode']}:\n{r['stderr_tail']}")
    totals = json.loads(r["stdout"].strip().splitlines()[-1])
    r["totals"] = totals
    busy = r["wall_s"] - IDLE_EXIT_S
    r["wall_minus_idle_s"] = busy
    r["events_per_s_wall_minus_idle"] = total / busy
    assigned = _assigned_epoch(r["stderr_path"])
    if assigned is not None:
        r["startup_to_assigned_s"] = assigned - r["started_epoch_s"]
        r["assigned_to_done_s"] = r["ended_epoch_s"] - IDLE_EXIT_S - assigned
        r["events_per_s_from_assigned"] = total / r["assigned_to_done_s"]
    r["cpu_s_per_million_events"] = (r["cpu_user_s"] + r["cpu_sys_s"]) / total * 1e6
    r["store"] = stored_events(store_dir)
    r["complete"] = totals.get("accepted") == total and r["store"].get("events") == total
    shutil.rmtree(store_dir, ignore_errors=True)
    return r


# --------------------------------------------------------------------------------------------
# profile worker (child process: one chDB directory per process)


class _Timers:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner: Any, attr: str, key: str) -> None:
        fn = getattr(owner, attr)
        seconds, calls = self.seconds, self.calls

        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                seconds[key] += time.perf_counter() - t
                calls[key] += 1

        setattr(owner, attr, timed)


PROFILE_KEYS = {
    "handle": "StreamConsumer._handle: one consumed batch (per-message loop, decode, fold)",
    "decode": "decode(): orjson.loads + contract.validate_event, per message",
    "fold": "PaneFolder.fold: group by pane, to_batch, sketch update",
    "to_batch": "decode.to_batch: events -> numpy columns",
    "sketch_update": "ModelSketch.update: Numba fold of the columns",
    "flush": "StreamConsumer.flush: serialise panes, store write, commit, window evaluation",
    "take_rows": "PaneFolder.take_rows: sketches -> rows (to_bytes)",
    "store_write": "Store.write_flush: one chDB insert per flush",
    "evaluate_windows": "_evaluate_closed_panes: read window rows, merge, drift_report, write metrics",
    "consume_with_messages": "Consumer.consume calls that returned messages",
    "consume_empty": "Consumer.consume calls that returned nothing (incl. the idle-exit wait)",
}


def profile_worker(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stream _profile")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--mode", choices=["timers", "cprofile"], required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    from itertools import groupby

    import confluent_kafka

    import driftline.ingest.consumer as consumer_mod
    import driftline.ingest.panes as panes_mod
    from driftline.detectors.profile import ModelSketch
    from driftline.ingest.consumer import ConsumerConfig, StreamConsumer
    from driftline.ingest.panes import PaneFolder
    from driftline.storage.codec import reference_from_rows
    from driftline.storage.store import Store

    store = Store.open(args.store)
    references = {
        m: reference_from_rows(list(g)) for m, g in groupby(store.references(), key=lambda r: r.model_id)
    }
    timers = _Timers()

    class TimedConsumer(confluent_kafka.Consumer):  # type: ignore[misc]
        def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
            t = time.perf_counter()
            msgs = super().consume(num_messages, timeout)
            key = "consume_with_messages" if msgs else "consume_empty"
            timers.seconds[key] += time.perf_counter() - t
            timers.calls[key] += 1
            return msgs

    if args.mode == "timers":
        consumer_mod.Consumer = TimedConsumer  # type: ignore[misc]
        timers.wrap(consumer_mod, "decode", "decode")
        timers.wrap(panes_mod, "to_batch", "to_batch")
        timers.wrap(ModelSketch, "update", "sketch_update")
        timers.wrap(PaneFolder, "fold", "fold")
        timers.wrap(PaneFolder, "take_rows", "take_rows")
        timers.wrap(StreamConsumer, "_handle", "handle")
        timers.wrap(StreamConsumer, "flush", "flush")
        timers.wrap(StreamConsumer, "_evaluate_closed_panes", "evaluate_windows")
        timers.wrap(Store, "write_flush", "store_write")

    config = ConsumerConfig(
        bootstrap=args.bootstrap, topics=[args.topic], group=args.group, batch_size=BATCH_SIZE
    )
    member = StreamConsumer(config, store, references)
    stop = threading.Event()
    prof = cProfile.Profile() if args.mode == "cprofile" else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    member.run(stop, idle_exit_s=IDLE_EXIT_S)
    if prof:
        prof.disable()
    total_s = time.perf_counter() - t0
    store.close()
    out: dict[str, Any] = {"mode": args.mode, "run_s": total_s, "stats": dict(member.stats)}
    if prof:
        prof.dump_stats(args.out + ".prof")
        out["top_cumulative"] = _top_entries(prof, "cumulative", 30)
        out["top_tottime"] = _top_entries(prof, "tottime", 20)
    else:
        out["seconds"] = dict(timers.seconds)
        out["calls"] = dict(timers.calls)
    Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


def _top_entries(prof: cProfile.Profile, key: str, n: int) -> list[dict[str, Any]]:
    st = pstats.Stats(prof, stream=io.StringIO())
    st.sort_stats(key)
    rows = []
    for func in st.fcn_list[:n]:  # type: ignore[attr-defined]
        _cc, nc, tt, ct, _ = st.stats[func]  # type: ignore[attr-defined]
        filename, line, name = func
        short = re.sub(r".*/site-packages/", "", filename)
        short = re.sub(r".*/src/driftline/", "driftline/", short)
        short = re.sub(r".*/lib/python3\.\d+/", "", short)
        rows.append({"function": f"{short}:{line}({name})", "calls": nc, "tottime_s": tt, "cumtime_s": ct})
    return rows


def run_profile(
    bootstrap: str, topic: str, mode: str, ref_path: Path, work: Path, name: str
) -> dict[str, Any]:
    store_dir = work / f"store-{name}"
    build_store(store_dir, ref_path)
    out = work / f"{name}.json"
    cmd = [
        sys.executable,
        "-m",
        "bench.stream",
        "_profile",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        f"bench-profile-{mode}",
        "--store",
        f"chdb://{store_dir}",
        "--mode",
        mode,
        "--out",
        str(out),
    ]
    r = run_monitored(cmd, work, name)
    if r["returncode"]:
        raise RuntimeError(f"profile {mode} exited {r['returncode']}:\n{r['stderr_tail']}")
    result = json.loads(out.read_text())
    result["process_wall_s"] = r["wall_s"]
    result["peak_rss_mb"] = r["peak_rss_mb_wait4"]
    shutil.rmtree(store_dir, ignore_errors=True)
    return result


def summarise_timers(t: dict[str, Any], events: int) -> dict[str, Any]:
    s = t["seconds"]
    busy = t["run_s"] - s.get("consume_empty", 0.0)
    rows = {}
    for key, what in PROFILE_KEYS.items():
        sec = s.get(key, 0.0)
        rows[key] = {
            "what": what,
            "seconds": sec,
            "fraction_of_busy": sec / busy if busy and key != "consume_empty" else None,
            "us_per_event": sec / events * 1e6,
            "calls": t["calls"].get(key, 0),
        }
    handle = s.get("handle", 0.0)
    rows["per_message_loop_other"] = {
        "what": "_handle minus decode and fold: m.error/topic/partition/offset/value, offset ranges, lists",
        "seconds": handle - s.get("decode", 0.0) - s.get("fold", 0.0),
    }
    rows["fold_other"] = {
        "what": "fold minus to_batch and sketch update: per-event pane grouping, watermarks",
        "seconds": s.get("fold", 0.0) - s.get("to_batch", 0.0) - s.get("sketch_update", 0.0),
    }
    for key in ("per_message_loop_other", "fold_other"):
        rows[key]["fraction_of_busy"] = rows[key]["seconds"] / busy if busy else None
        rows[key]["us_per_event"] = rows[key]["seconds"] / events * 1e6
    return {
        "run_s": t["run_s"],
        "busy_s": busy,
        "events_per_s_busy": events / busy if busy else None,
        "note": "busy = run() wall time minus the consume() calls that returned nothing (start-up wait"
        " for the assignment and the idle-exit tail)",
        "stages": rows,
    }


# --------------------------------------------------------------------------------------------
# main


def code_version() -> dict[str, Any]:
    from bench.decode import code_version as version

    return version()


def machine() -> dict[str, Any]:
    from bench.decode import machine_info

    info = machine_info()
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    except OSError:
        java = None
    info["java"] = java
    pom = (ROOT / "scripts" / "kafka-pom.xml").read_text()
    m = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom)
    info["kafka_broker"] = m.group(1) if m else None
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--quick", action="store_true", help="--events 200000")
    p.add_argument("--profile-events", type=int, default=200_000)
    p.add_argument("--raw-repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, stores)")
    args = p.parse_args(argv)
    if args.quick:
        args.events = 200_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="driftline-bench-stream-"))
    kafka_dir = work / "kafka"
    result: dict[str, Any] = {
        "benchmark": "bench.stream",
        "command": "python -m " + " ".join(["bench.stream", *(sys.argv[1:] if argv is None else argv)]),
        "started_utc": started.isoformat(),
        "machine": machine(),
        "code": code_version(),
        "parameters": {
            "events": args.events,
            "half_events": args.events // 2,
            "profile_events": args.profile_events,
            "partitions": PARTITIONS,
            "batch_size": BATCH_SIZE,
            "idle_exit_s": IDLE_EXIT_S,
            "raw_repeat": args.raw_repeat,
            "producer": "driftline EventProducer: lz4, batch.size 1 MB, linger 20 ms, acks=all,"
            " idempotent; key = event_id (spreads over the 6 partitions)",
            "consumer_cli_defaults": "flush every 5 s, pane 60 s, window 1 h, lateness 5 min, 1 worker",
        },
    }
    log(f"work dir {work}")
    try:
        from confluent_kafka.admin import AdminClient

        t = time.perf_counter()
        bootstrap = kafka_up(kafka_dir)
        result["broker"] = {"bootstrap": bootstrap, "up_s": time.perf_counter() - t}
        log(f"broker up at {bootstrap}")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = {"full": ("bench-full", args.events), "half": ("bench-half", args.events // 2)}
        if args.profile_events != args.events:
            topics["profile"] = ("bench-profile", args.profile_events)
        create_topics(admin, [name for name, _ in topics.values()])
        produced = {}
        for i, (key, (topic, n)) in enumerate(topics.items()):
            produced[key] = produce(bootstrap, topic, n, args.seed + 1000 * i)
            produced[key]["partition_counts"] = topic_counts(bootstrap, topic)
            log(
                f"produced {n:,} to {topic} at {produced[key]['events_per_s']:,.0f}/s "
                f"({produced[key]['mean_bytes']:.0f} B mean)"
            )
        if "profile" not in topics:
            topics["profile"] = topics["full"]
        result["produced"] = produced

        # the reference file; every consumer run stores it into its own fresh chDB directory
        from driftline.simulate import FILE_DROP, Traffic, generate

        ref_path = work / "reference.parquet"
        generate(Traffic(n=50_000, seed=1000)).drop(FILE_DROP).write_parquet(ref_path)
        result["reference"] = build_store(work / "store-check", ref_path)
        shutil.rmtree(work / "store-check", ignore_errors=True)
        log(f"reference stored in {result['reference']['seconds']:.1f} s")

        # raw baseline: each fetch configuration --raw-repeat times, interleaved
        full_topic, n_full = topics["full"]
        half_topic, n_half = topics["half"]
        raw_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in RAW_CONFIGS}
        for i in range(args.raw_repeat):
            for conf_name, extra in RAW_CONFIGS.items():
                load_before = loadavg()
                r = raw_consume(bootstrap, full_topic, n_full, f"bench-raw-{conf_name}-{i}", extra)
                r["loadavg_before"], r["loadavg_after"] = load_before, loadavg()
                raw_runs[conf_name].append(r)
                log(
                    f"raw loop {conf_name} {i + 1}: {r['events_per_s']:,.0f} events/s "
                    f"({r['events_per_s_including_join']:,.0f}/s including the group join)"
                )
        raw: dict[str, Any] = {
            "what": "Consumer.consume(10000, 1.0) + m.error() + m.value() per message, fresh group, earliest",
            "configs": {
                name: {
                    "config": RAW_CONFIGS[name],
                    "runs": runs,
                    "events_per_s_median": statistics.median(r["events_per_s"] for r in runs),
                    "events_per_s_including_join_median": statistics.median(
                        r["events_per_s_including_join"] for r in runs
                    ),
                }
                for name, runs in raw_runs.items()
            },
        }
        raw["baseline"] = best = max(raw["configs"], key=lambda k: raw["configs"][k]["events_per_s_median"])
        raw["events_per_s_median"] = raw["configs"][best]["events_per_s_median"]
        raw["events_per_s_including_join_median"] = raw["configs"][best]["events_per_s_including_join_median"]
        raw["half_topic"] = raw_consume(bootstrap, half_topic, n_half, "bench-raw-half", RAW_CONFIGS[best])
        result["raw"] = raw

        # driftline consumer
        prof_topic, n_prof = topics["profile"]
        dl: dict[str, Any] = {}
        log("driftline warm-up run (profile topic)")
        dl["warmup"] = driftline_consume(
            bootstrap, prof_topic, n_prof, "bench-dl-warmup", ref_path, work, "dl-warmup"
        )
        for key, (topic, n) in (("half", topics["half"]), ("full", topics["full"])):
            log(f"driftline consume {topic} ({n:,} events)")
            dl[key] = r = driftline_consume(
                bootstrap, topic, n, f"bench-dl-{key}", ref_path, work, f"dl-{key}"
            )
            log(
                f"  {r['events_per_s_wall_minus_idle']:,.0f} events/s (wall - idle), "
                f"{r.get('events_per_s_from_assigned', 0):,.0f}/s from assignment; peak RSS "
                f"{r['peak_rss_mb_wait4']:.0f} MB; complete={r['complete']}"
            )
        result["driftline"] = dl

        full = dl["full"]
        rss_ratio = full["peak_rss_mb_wait4"] / dl["half"]["peak_rss_mb_wait4"]
        result["summary"] = {
            "raw_baseline_config": raw["baseline"],
            "raw_events_per_s": raw["events_per_s_median"],
            "raw_events_per_s_by_config": {k: v["events_per_s_median"] for k, v in raw["configs"].items()},
            "driftline_events_per_s_from_assigned": full.get("events_per_s_from_assigned"),
            "driftline_events_per_s_wall_minus_idle": full["events_per_s_wall_minus_idle"],
            "ratio_steady": (full.get("events_per_s_from_assigned") or 0) / raw["events_per_s_median"],
            "ratio_steady_vs_raw_with_driftline_fetch_settings": (full.get("events_per_s_from_assigned") or 0)
            / raw["configs"]["driftline_fetch_settings"]["events_per_s_median"],
            "ratio_whole_process_vs_raw_including_join": full["events_per_s_wall_minus_idle"]
            / raw["events_per_s_including_join_median"],
            "ratio_target": 0.5,
            "peak_rss_mb_half": dl["half"]["peak_rss_mb_wait4"],
            "peak_rss_mb_full": full["peak_rss_mb_wait4"],
            "rss_full_over_half": rss_ratio,
            "rss_flat_within_10pct": abs(rss_ratio - 1) <= 0.10,
            "all_events_stored": all(dl[k]["complete"] for k in ("half", "full")),
            "late_events_full": full["store"].get("late_events"),
            "windows_evaluated_full": full["totals"].get("windows_evaluated"),
        }

        # the raw loop once more, after the driftline runs (drift in machine load shows here)
        r = raw_consume(bootstrap, full_topic, n_full, "bench-raw-after", RAW_CONFIGS[raw["baseline"]])
        raw["after_driftline"] = r
        log(f"raw loop after the driftline runs: {r['events_per_s']:,.0f} events/s")

        # where the time goes
        log(f"profile: timers on {prof_topic}")
        timers = run_profile(bootstrap, prof_topic, "timers", ref_path, work, "profile-timers")
        log("profile: cProfile")
        cprof = run_profile(bootstrap, prof_topic, "cprofile", ref_path, work, "profile-cprofile")
        profile: dict[str, Any] = {
            "topic": prof_topic,
            "events": n_prof,
            "timers": summarise_timers(timers, n_prof) | {"stats": timers["stats"]},
            "cprofile": cprof,
        }
        if args.events != n_prof:
            log(f"profile: timers on {full_topic}")
            t_full = run_profile(bootstrap, full_topic, "timers", ref_path, work, "profile-timers-full")
            profile["timers_full_topic"] = summarise_timers(t_full, n_full) | {
                "topic": full_topic,
                "events": n_full,
                "stats": t_full["stats"],
            }
        result["profile"] = profile
    finally:
        with contextlib.suppress(Exception):
            kafka_down(kafka_dir)
            log("broker down")
        result["finished_utc"] = datetime.now(UTC).isoformat()
        result["loadavg_at_end"] = loadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_summary(result)
    print(f"\nJSON written to {args.out}")
    return 0


def print_summary(r: dict[str, Any]) -> None:
    s = r.get("summary")
    if not s:
        return
    p = r["parameters"]
    print()
    print(
        f"{p['events']:,} events, {p['partitions']} partitions, batch {p['batch_size']:,}, "
        f"{r['produced']['full']['mean_bytes']:.0f} B/event"
    )
    for name, rate in s["raw_events_per_s_by_config"].items():
        mark = "  <- baseline" if name == s["raw_baseline_config"] else ""
        print(f"raw loop, {name:<26}{rate:>12,.0f} events/s (median, first batch to last){mark}")
    print(
        f"driftline consume -> chDB       {s['driftline_events_per_s_from_assigned']:>12,.0f} events/s "
        f"(assignment to last stored)"
    )
    print(
        f"driftline consume, whole process{s['driftline_events_per_s_wall_minus_idle']:>12,.0f} events/s "
        f"(wall time - {p['idle_exit_s']} s idle exit)"
    )
    print(f"ratio driftline / raw           {s['ratio_steady']:>12.3f}   (target >= {s['ratio_target']})")
    print(
        f"peak RSS  N/2: {s['peak_rss_mb_half']:.0f} MB   N: {s['peak_rss_mb_full']:.0f} MB   "
        f"ratio {s['rss_full_over_half']:.2f} (flat within 10%: {s['rss_flat_within_10pct']})"
    )
    print(
        f"all events stored: {s['all_events_stored']}; of them stored as late: {s['late_events_full']:,};"
        f" windows evaluated: {s['windows_evaluated_full']}"
    )
    prof = r.get("profile")
    if not prof:
        return
    tables = [(prof["topic"], prof["events"], prof["timers"])]
    if "timers_full_topic" in prof:
        t = prof["timers_full_topic"]
        tables.append((t["topic"], t["events"], t))
    for topic, events, t in tables:
        print(
            f"\nwhere the time goes ({topic}, {events:,} events, busy {t['busy_s']:.2f} s,"
            f" {t['events_per_s_busy']:,.0f} events/s busy; wall-clock timers):"
        )
        for key, row in t["stages"].items():
            if row.get("fraction_of_busy") is not None:
                print(
                    f"  {key:<24} {row['seconds']:>7.2f} s  {row['fraction_of_busy']:>6.1%}"
                    f"  {row['us_per_event']:>6.2f} us/event"
                )
    print(f"\ncProfile ({prof['topic']}), top cumulative:")
    for row in prof["cprofile"]["top_cumulative"][:22]:
        print(f"  {row['cumtime_s']:>7.2f} s  {row['calls']:>9}  {row['function']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_profile":
        raise SystemExit(profile_worker(sys.argv[2:]))
    raise SystemExit(main())
