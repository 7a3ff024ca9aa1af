"""Stream benchmark: ``driftline consume`` into chDB against a raw confluent-kafka consume loop.

Run from the repository root (needs java 17+ and mvn for ``scripts/kafka-dev``)::

    python -m bench.stream --quick      # 300k events, 2 rounds: a smoke run (2-3 min), JSON to /tmp
    python -m bench.stream              # 2M events, 3 rounds, JSON to bench/results/stream.json

Everything runs against one throw-away broker (``scripts/kafka-dev up --dir <tmp>``, ``down`` in
a ``finally``) and one topic with 2 partitions (the stream-core issue's setup), and every
driftline subprocess runs from a snapshot of ``src/`` taken at the start:

1. Produce N/2 ``driftline.simulate`` events (20 numeric + 3 categorical features, segments,
   prediction, label, latency; chunks of 200k with their own seed and consecutive event times)
   with ``EventProducer`` (lz4, 1 MB batches, acks=all), keyed by ``event_id`` so both partitions
   get events.
2. ``driftline consume --workers 1`` on those N/2 events: a warm-up (Numba cache, page cache),
   then the measured run (peak RSS at N/2). Then produce the other N/2 to the same topic.
3. ``--rounds`` rounds on the N events, each: the raw loop, ``driftline consume --workers 1``,
   ``driftline consume --workers 2``, and the raw loop with ``fetch.queue.backoff.ms=0``
   (informational). Interleaved, so that load drift hits every contender alike.

The raw loop runs in this process: ``Consumer.consume(BATCH, 1.0)`` + ``m.error()`` +
``m.value()`` per message, librdkafka's default fetch settings, a fresh group,
``auto.offset.reset=earliest``, until every event is read; its rate runs from the first batch to
the last. ``driftline consume`` runs as a subprocess into a fresh ``chdb://DIR`` holding the
reference (``driftline reference build``, not timed), with ``--idle-exit 5s``. Its rate is given
two ways: N / (wall - idle exit), the whole process; and N / (exit - idle exit - its first
"assigned" log line), comparable with the raw loop's. CPU seconds come from ``wait4`` and from
polling ``/proc/PID/stat``, peak RSS from ``wait4`` (``ru_maxrss``) and polled ``VmHWM``. After
every run the events stored in chDB are counted; they must equal N. The ratio is driftline
(``--workers 1``, from assignment) / the raw loop of the same round, median over the rounds.

``--profile`` adds one cProfile run of the consumer (in a child, on the main thread).
``python -m bench.report`` puts the summary into README.md and bench/README.md.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._harness import (
    ROOT,
    driftline_cli,
    out_path,
    parser,
    profile_rows,
    role_args,
    snapshot_src,
    stamp,
    write_result,
)

KAFKA_DEV = ROOT / "scripts" / "kafka-dev"
TOPIC = "bench-stream"
PARTITIONS = 2  # the stream-core issue's setup
CHUNK = 200_000
BATCH = 10_000  # consume(BATCH) for the raw loop, --batch-size for driftline
IDLE_EXIT_S = 5
MODEL = "churn"
TARGET_RATIO = 0.5
TARGET_PER_CORE = 300_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Informational only (not the baseline): librdkafka >= 2.4 pauses a partition's fetches for
# fetch.queue.backoff.ms (1000 ms) whenever its local queue is over queued.max.messages.kbytes /
# queued.min.messages, which caps a fast reader; this run shows what the broker could deliver.
UNTHROTTLED = {"fetch.queue.backoff.ms": 0}
ENV = dict(os.environ)  # for every subprocess; PYTHONPATH gets the snapshot of src/ (harness.snapshot_src)
MEASURED = ("numpy", "numba", "orjson", "msgspec", "polars", "confluent-kafka", "chdb")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV)
    if proc.returncode:
        raise RuntimeError(f"{what} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


# --------------------------------------------------------------------------------------------
# broker, topic, events


def produce(bootstrap: str, first: int, n: int, seed: int) -> dict[str, Any]:
    """Events ``first .. first+n`` of the stream: chunks with their own seed, event times go on."""
    import orjson

    from driftline.ingest.producer import EventProducer
    from driftline.simulate import Traffic, events, generate

    producer = EventProducer(bootstrap, TOPIC)  # lz4, batch.size 1 MB, linger 20 ms, acks=all
    t0, nbytes = time.perf_counter(), 0
    for start in range(first, first + n, CHUNK):
        size = min(CHUNK, first + n - start)
        # Traffic's rate is 1000 events/s of event time: event k is at start_ms + k ms
        df = generate(Traffic(n=size, seed=seed + start // CHUNK, start_ms=Traffic.start_ms + start))
        for e in events(df):
            value = orjson.dumps(e)
            nbytes += len(value)
            producer.send_raw(value, str(e["event_id"]).encode())
    delivered = producer.flush(300)
    seconds = time.perf_counter() - t0
    del producer
    gc.collect()  # the producer's delivery callback is a cycle: close its client before the broker goes
    if delivered != n:
        raise RuntimeError(f"delivered {delivered} of {n}")
    return {"events": n, "mean_bytes": nbytes / n, "seconds": seconds, "events_per_s": n / seconds}


def partition_counts(bootstrap: str) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        marks = [c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10) for p in range(PARTITIONS)]
        return [hi - lo for lo, hi in marks]
    finally:
        c.close()


# --------------------------------------------------------------------------------------------
# raw loop (in this process)


def raw_consume(
    bootstrap: str, total: int, group: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    from confluent_kafka import Consumer

    # librdkafka's default fetch settings: only what a consumer group needs is set (``extra``: the
    # informational run without the fetch backoff)
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        **(extra or {}),
    }
    load = os.getloadavg()[0]
    t_create = time.perf_counter()
    c = Consumer(conf)
    c.subscribe([TOPIC])
    n = errors = first_n = 0
    t_first = t_last = cpu_first = cpu_last = 0.0
    try:
        while n < total:
            if time.perf_counter() - t_create > 600:
                raise RuntimeError(f"raw loop: {n} of {total} events in 600 s")
            msgs = c.consume(BATCH, 1.0)
            for m in msgs:
                if m.error() is not None:
                    errors += 1
                    continue
                m.value()
                n += 1
            if msgs:
                t_last = time.perf_counter()
                cpu_last = time.process_time()  # the whole process: librdkafka's threads too
                if not first_n:
                    t_first, cpu_first, first_n = t_last, cpu_last, n
    finally:
        c.close()
    return {
        "group": group,
        "config": conf,
        "events": n,
        "errors": errors,
        "events_per_s": (n - first_n) / (t_last - t_first),
        "events_per_s_including_join": n / (t_last - t_create),
        "events_per_cpu_s": (n - first_n) / (cpu_last - cpu_first),
        "seconds_first_batch_to_last": t_last - t_first,
        "loadavg_1m_before": load,
    }


# --------------------------------------------------------------------------------------------
# driftline consume (a subprocess per run: one embedded chDB per process)


def _proc_sample(pid: int) -> tuple[float, int] | None:
    """(CPU seconds of the whole process, VmHWM kB) from /proc, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)
    return cpu, hwm


def run_monitored(cmd: list[str], log_dir: Path, name: str) -> dict[str, Any]:
    """Run ``cmd``, polling its CPU time and VmHWM; wall time, exit status and rusage."""
    stderr_path = log_dir / f"{name}.stderr"
    with open(stderr_path, "wb") as err:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, env=ENV)
        samples: list[tuple[float, float]] = []  # (epoch s, cpu s)
        hwm = 0
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if (s := _proc_sample(proc.pid)) is not None:
                samples.append((time.time(), s[0]))
                hwm = max(hwm, s[1])
            time.sleep(0.1)
        ended = time.time()
    stdout = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    return {
        "cmd": cmd,
        "returncode": os.waitstatus_to_exitcode(status),
        "started_epoch_s": t0,
        "ended_epoch_s": ended,
        "wall_s": ended - t0,
        "cpu_s": rusage.ru_utime + rusage.ru_stime,
        "cpu_samples": samples,
        "peak_rss_mb_wait4": rusage.ru_maxrss / 1024,
        "peak_rss_mb_vmhwm_polled": hwm / 1024,
        "stdout": stdout[-2000:],
        "stderr_path": str(stderr_path),
    }


def assigned_epoch(stderr_path: str) -> float | None:
    """Wall time of the first ``assigned`` log line (JSON logs, ``ts`` in UTC)."""
    with open(stderr_path, errors="replace") as f:
        for line in f:
            if '"assigned' in line:
                with contextlib.suppress(ValueError, KeyError):
                    ts = json.loads(line)["ts"]
                    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    return None


def build_store(store_dir: Path, ref_path: Path) -> None:
    """A fresh chDB directory holding the reference (a chDB directory cannot be copied)."""
    args = ["reference", "build", "--store", f"chdb://{store_dir}", "--model", MODEL, "--file", str(ref_path)]
    sh(driftline_cli(*args, *role_args()), "driftline reference build")


def stored_events(store_dir: Path) -> dict[str, int]:
    code = (
        "import json\nfrom driftline.storage.store import Store\n"
        f"s = Store.open('chdb://{store_dir}')\nrows = s.pane_rows({MODEL!r}, kinds=('events',))\n"
        "print(json.dumps({'events': sum(r.n for r in rows), 'late': sum(r.n for r in rows if r.late)}))\n"
        "s.close()\n"
    )
    return json.loads(sh([sys.executable, "-c", code], "counting stored events").splitlines()[-1])


def driftline_consume(
    bootstrap: str, total: int, workers: int, ref_path: Path, work: Path, name: str
) -> dict[str, Any]:
    store_dir = work / f"store-{name}"
    build_store(store_dir, ref_path)
    cmd = driftline_cli("--log-level", "INFO", "consume", "--bootstrap", bootstrap, "--topic", TOPIC)
    cmd += ["--group", f"bench-{name}", "--store", f"chdb://{store_dir}", "--idle-exit", f"{IDLE_EXIT_S}s"]
    cmd += ["--batch-size", str(BATCH), "--workers", str(workers)]
    load = os.getloadavg()[0]
    r = run_monitored(cmd, work, name)
    if r["returncode"]:
        tail = Path(r["stderr_path"]).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name}: driftline consume exited {r['returncode']}:\n{tail}")
    r["loadavg_1m_before"] = load
    r["workers"] = workers
    r["totals"] = json.loads(r["stdout"].strip().splitlines()[-1])
    r["events_per_s_wall_minus_idle"] = total / (r["wall_s"] - IDLE_EXIT_S)
    r["events_per_cpu_s_whole_process"] = total / r["cpu_s"]
    assigned = assigned_epoch(r["stderr_path"])
    if assigned is None:
        raise RuntimeError(f"{name}: no 'assigned' log line in {r['stderr_path']}")
    r["startup_to_assigned_s"] = assigned - r["started_epoch_s"]
    r["assigned_to_done_s"] = r["ended_epoch_s"] - IDLE_EXIT_S - assigned
    r["events_per_s_from_assigned"] = total / r["assigned_to_done_s"]
    # CPU from the last sample before the assignment to the exit (the idle tail included)
    samples = r.pop("cpu_samples")
    k = bisect.bisect_right([t for t, _ in samples], assigned) - 1
    r["cpu_s_from_assigned"] = r["cpu_s"] - (samples[k][1] if k >= 0 else 0.0)
    r["events_per_cpu_s_from_assigned"] = total / r["cpu_s_from_assigned"]
    r["stored"] = stored_events(store_dir)
    r["complete"] = r["totals"].get("accepted") == total and r["stored"]["events"] == total
    shutil.rmtree(store_dir, ignore_errors=True)
    log(
        f"  {name}: {r['events_per_s_from_assigned']:,.0f} events/s from assignment, "
        f"{r['events_per_s_wall_minus_idle']:,.0f}/s wall - idle, "
        f"{r['events_per_cpu_s_from_assigned']:,.0f}/CPU-s; peak RSS {r['peak_rss_mb_wait4']:.0f} MB; "
        f"stored {r['stored']['events']:,}"
    )
    return r


# --------------------------------------------------------------------------------------------
# optional: cProfile of the consumer (child process, member on the main thread)


def profile_worker(argv: list[str]) -> int:
    import cProfile
    import pstats
    import threading

    from driftline.ingest.consumer import ConsumerConfig, StreamConsumer
    from driftline.query import load_references
    from driftline.storage.store import Store

    bootstrap, store_dsn, out = argv
    store = Store.open(store_dsn)
    config = ConsumerConfig(bootstrap=bootstrap, topics=[TOPIC], group="bench-profile", batch_size=BATCH)
    member = StreamConsumer(config, store, load_references(store))
    prof = cProfile.Profile()
    prof.runcall(member.run, threading.Event(), IDLE_EXIT_S)
    store.close()
    st = pstats.Stats(prof)
    doc = {
        "stats": dict(member.stats),
        "top_cumulative": profile_rows(st, "cumtime", 25),
        "top_tottime": profile_rows(st, "tottime", 25),
    }
    Path(out).write_text(json.dumps(doc))
    return 0


def run_profile(bootstrap: str, ref_path: Path, work: Path) -> dict[str, Any]:
    store_dir, out = work / "store-profile", work / "profile.json"
    build_store(store_dir, ref_path)
    sh(
        [sys.executable, "-m", "bench.stream", "_profile", bootstrap, f"chdb://{store_dir}", str(out)],
        "profile",
    )
    shutil.rmtree(store_dir, ignore_errors=True)
    return json.loads(out.read_text()) | {
        "note": "StreamConsumer.run on the main thread under cProfile; window evaluation runs in its own"
        " thread and is not in these figures"
    }


# --------------------------------------------------------------------------------------------
# main


def java() -> str | None:
    """``java -version``'s first line: the broker's JVM."""
    with contextlib.suppress(OSError, IndexError):
        return subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return None


def librdkafka() -> str | None:
    with contextlib.suppress(ImportError):
        import confluent_kafka

        return str(confluent_kafka.libversion()[0])
    return None


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    rounds = result["rounds"]
    raw = [r["raw"] for r in rounds]
    one = [r["driftline_workers_1"] for r in rounds]
    two = [r["driftline_workers_2"] for r in rounds]
    at_half = result["driftline_half"]
    rss_full = max(r["peak_rss_mb_wait4"] for r in one)
    ratios = [d["events_per_s_from_assigned"] / a["events_per_s"] for a, d in zip(raw, one, strict=True)]
    per_core = median(one, "events_per_cpu_s_from_assigned")
    ratio = statistics.median(ratios)
    return {
        "events": result["parameters"]["events"],
        "partitions": PARTITIONS,
        "mean_bytes": result["produced"]["mean_bytes"],
        "rounds": len(rounds),
        "raw_events_per_s": median(raw, "events_per_s"),
        "raw_events_per_cpu_s": median(raw, "events_per_cpu_s"),
        "driftline_events_per_s_from_assigned": median(one, "events_per_s_from_assigned"),
        "driftline_events_per_s_wall_minus_idle": median(one, "events_per_s_wall_minus_idle"),
        "driftline_events_per_cpu_s_from_assigned": per_core,
        "ratio_per_round": ratios,
        "ratio": ratio,
        "ratio_target": TARGET_RATIO,
        "ratio_met": ratio >= TARGET_RATIO,
        "per_core_target": TARGET_PER_CORE,
        "per_core_met": per_core >= TARGET_PER_CORE,
        "raw_backoff_0_events_per_s": median([r["raw_backoff_0"] for r in rounds], "events_per_s"),
        "workers_2_events_per_s_from_assigned": median(two, "events_per_s_from_assigned"),
        "workers_2_events_per_s_wall_minus_idle": median(two, "events_per_s_wall_minus_idle"),
        "workers_2_over_1": median(two, "events_per_s_from_assigned")
        / median(one, "events_per_s_from_assigned"),
        "peak_rss_mb_half": at_half["peak_rss_mb_wait4"],
        "peak_rss_mb_full": rss_full,
        "peak_rss_mb_full_workers_2": max(r["peak_rss_mb_wait4"] for r in two),
        "rss_full_over_half": rss_full / at_half["peak_rss_mb_wait4"],
        "rss_flat_within_10pct": abs(rss_full / at_half["peak_rss_mb_wait4"] - 1) <= 0.10,
        "all_events_stored": all(r["complete"] for r in [*one, *two, at_half]),
        "late_events_workers_1": [r["stored"]["late"] for r in one],
    }


def print_summary(s: dict[str, Any]) -> None:
    print(
        f"\n{s['events']:,} events of {s['mean_bytes']:.0f} B, {s['partitions']} partitions,"
        f" {s['rounds']} rounds"
    )
    print(f"raw loop (librdkafka defaults)      {s['raw_events_per_s']:>10,.0f} events/s (median)")
    print(
        f"raw loop, fetch.queue.backoff.ms=0  {s['raw_backoff_0_events_per_s']:>10,.0f} events/s"
        " (informational)"
    )
    print(f"driftline consume, from assignment  {s['driftline_events_per_s_from_assigned']:>10,.0f} events/s")
    print(
        f"driftline consume, wall - idle      {s['driftline_events_per_s_wall_minus_idle']:>10,.0f} events/s"
    )
    print(
        f"driftline per CPU-second            {s['driftline_events_per_cpu_s_from_assigned']:>10,.0f}"
        f"            (target >= {s['per_core_target']:,}: {'met' if s['per_core_met'] else 'NOT met'})"
    )
    rounds = ", ".join(f"{x:.2f}" for x in s["ratio_per_round"])
    print(
        f"ratio driftline / raw               {s['ratio']:>10.2f}   rounds {rounds}"
        f" (target >= {s['ratio_target']}: {'met' if s['ratio_met'] else 'NOT met'})"
    )
    print(
        f"--workers 2, from assignment        {s['workers_2_events_per_s_from_assigned']:>10,.0f} events/s"
        f"   ({s['workers_2_over_1']:.2f}x --workers 1)"
    )
    print(
        f"peak RSS N/2 {s['peak_rss_mb_half']:.0f} MB, N {s['peak_rss_mb_full']:.0f} MB: ratio"
        f" {s['rss_full_over_half']:.2f} (flat within 10%: {s['rss_flat_within_10pct']})"
    )
    print(f"every run stored exactly the produced events: {s['all_events_stored']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser("stream", __doc__, "--events 300000 --rounds 2")
    p.add_argument("--events", type=int, default=2_000_000, help="N (half of them for the RSS run at N/2)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of raw, --workers 1, --workers 2")
    p.add_argument("--profile", action="store_true", help="add a cProfile run of the consumer")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.rounds = 300_000, 2
    args.out = out_path("stream", args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="driftline-bench-stream-"))
    n, half = args.events, args.events // 2
    result: dict[str, Any] = stamp("stream", argv, *MEASURED)
    result["parameters"] = {
        "events": n,
        "half_events": half,
        "partitions": PARTITIONS,
        "batch": BATCH,
        "idle_exit_s": IDLE_EXIT_S,
        "rounds": args.rounds,
        "producer": "EventProducer: lz4, batch.size 1 MB, linger 20 ms, acks=all, idempotent; key event_id",
        "consumer": "driftline CLI defaults otherwise: flush every 5 s, pane 60 s, window 1 h,"
        " lateness 5 min",
    }
    result["versions"]["librdkafka"] = librdkafka()
    result["machine"]["java"] = java()
    result["code"] = {"src_sha256_measured": snapshot_src(work, ENV)}
    log(f"work dir {work}; commit {result['commit']}; measuring a snapshot of src/ in it")
    kafka_dir = work / "kafka"
    try:
        from confluent_kafka.admin import AdminClient, NewTopic

        up = sh([str(KAFKA_DEV), "up", "--dir", str(kafka_dir)], "kafka-dev up")
        bootstrap = up.strip().splitlines()[-1].removeprefix("BOOTSTRAP=")
        log(f"broker up at {bootstrap}")
        admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the topic exists
        for fut in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
            fut.result(timeout=60)

        from driftline.simulate import FILE_DROP, Traffic, generate

        ref_path = work / "reference.parquet"
        generate(Traffic(n=50_000, seed=1000)).drop(FILE_DROP).write_parquet(ref_path)

        first = produce(bootstrap, 0, half, args.seed)
        log(f"produced {half:,} events at {first['events_per_s']:,.0f}/s ({first['mean_bytes']:.0f} B mean)")
        log(f"driftline at N/2 = {half:,} events: warm-up, then measured")
        result["driftline_warmup"] = driftline_consume(bootstrap, half, 1, ref_path, work, "dl-warmup")
        result["driftline_half"] = driftline_consume(bootstrap, half, 1, ref_path, work, "dl-half")

        second = produce(bootstrap, half, n - half, args.seed)
        counts = partition_counts(bootstrap)
        log(f"produced {n - half:,} more; partitions hold {counts}")
        if sum(counts) != n or min(counts) == 0:
            raise RuntimeError(f"partitions hold {counts}, expected {n:,} over all {PARTITIONS}")
        secs = first["seconds"] + second["seconds"]
        result["produced"] = {
            "events": n,
            "partition_counts": counts,
            "mean_bytes": (first["mean_bytes"] * half + second["mean_bytes"] * (n - half)) / n,
            "events_per_s": n / secs,
            "note": "the producer rate includes generating the events and orjson.dumps",
        }

        result["rounds"] = []
        for i in range(args.rounds):
            log(f"round {i + 1} of {args.rounds} on {n:,} events")
            raw = raw_consume(bootstrap, n, f"bench-raw-{i}")
            log(f"  raw loop: {raw['events_per_s']:,.0f} events/s, {raw['events_per_cpu_s']:,.0f}/CPU-s")
            one = driftline_consume(bootstrap, n, 1, ref_path, work, f"dl-w1-{i}")
            two = driftline_consume(bootstrap, n, 2, ref_path, work, f"dl-w2-{i}")
            fast = raw_consume(bootstrap, n, f"bench-raw-backoff0-{i}", UNTHROTTLED)
            log(f"  raw loop, fetch.queue.backoff.ms=0: {fast['events_per_s']:,.0f} events/s")
            result["rounds"].append(
                {"raw": raw, "driftline_workers_1": one, "driftline_workers_2": two, "raw_backoff_0": fast}
            )
        if args.profile:
            log("cProfile run")
            result["profile"] = run_profile(bootstrap, ref_path, work)
        result["summary"] = summarise(result)
    finally:
        with contextlib.suppress(Exception):
            sh([str(KAFKA_DEV), "down", "--dir", str(kafka_dir)], "kafka-dev down")
            log("broker down")
        failed = "summary" not in result  # a failed run keeps its logs and never replaces a result
        write_result(work / "stream.failed.json" if failed else args.out, result)
        if args.keep or failed:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_summary(result["summary"])
    if "profile" in result:
        print("\ncProfile, top cumulative:")
        for row in result["profile"]["top_cumulative"][:20]:
            print(f"  {row['cumtime_s']:>7.2f} s  {row['calls']:>9}  {row['function']}")
    print(f"\nJSON written to {args.out}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_profile"]:
        raise SystemExit(profile_worker(sys.argv[2:]))
    raise SystemExit(main())
