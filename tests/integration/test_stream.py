"""The stream pipeline on a real broker and a real chDB store: counts, dead letters, crashes,
scale-out, late events, and `driftline stats` == `driftline compare` on the same events."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY

from driftline.cli import main
from driftline.ingest.consumer import ConsumerConfig, StreamConsumer
from driftline.ingest.panes import WindowSpec
from driftline.ingest.producer import EventProducer
from driftline.simulate import FILE_DROP, Traffic, bad_message, events, generate
from driftline.storage.alerts import AlertStore
from driftline.storage.codec import reference_from_rows
from driftline.storage.models import ModelStore
from driftline.storage.store import Store

from ..helpers import ROLES, SEGMENTS, build_reference, write_reference
from ..test_compare_cli import assert_close

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def produce(
    bootstrap: str, topic: str, traffic: Traffic, bad_fraction: float = 0.0, seed: int = 5
) -> tuple[pl.DataFrame, Counter[str]]:
    """Produce the traffic (some messages broken); returns the valid rows and bad counts per field."""
    df = generate(traffic)
    rng = np.random.default_rng(seed)
    producer = EventProducer(bootstrap, topic)
    keep, bad = [], Counter[str]()
    for i, event in enumerate(events(df)):
        raw = orjson.dumps(event)
        if bad_fraction and rng.random() < bad_fraction:
            raw, field = bad_message(rng, raw)
            bad[field] += 1
        else:
            keep.append(i)
        producer.send_raw(raw, f"k{i % 7}".encode())  # spread over partitions
    producer.flush()
    return df[keep], bad


def store_with_reference(dsn: str, ref_path: Path, model: str = "churn") -> Store:
    build_reference(dsn, ref_path, model)
    return Store.open(dsn)


def consume(
    store: Store, bootstrap: str, topic: str, group: str, idle_s: float = 4.0, **spec: int
) -> StreamConsumer:
    rows = store.references()
    refs = {m: reference_from_rows([r for r in rows if r.model_id == m]) for m in {r.model_id for r in rows}}
    config = ConsumerConfig(
        bootstrap, [topic], group, windows=WindowSpec(**spec), flush_interval_s=1.0, session_timeout_ms=6000
    )
    c = StreamConsumer(config, store, refs)
    c.run(threading.Event(), idle_exit_s=idle_s)
    return c


def stored_counts(store: Store, model: str = "churn") -> tuple[int, dict[str, int]]:
    rows = store.pane_rows(model)
    events = sum(r.n for r in rows if r.kind == "events")
    per_feature = Counter[str]()
    for r in rows:
        if r.kind in ("numeric", "categorical"):
            per_feature[r.feature] += r.n
    return events, dict(per_feature)


def dead_letters(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[dict[str, str]]:
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"dlq-{topic}", "auto.offset.reset": "earliest"}
    )
    c.subscribe([topic])
    out: list[dict[str, str]] = []
    deadline = time.time() + timeout_s
    while time.time() < deadline and len(out) < expected:
        for m in c.consume(500, timeout=0.5):
            if m.error() is None:
                out.append({k: v.decode() for k, v in (m.headers() or [])})
    time.sleep(1.0)  # anything beyond the expected count would show up now
    for m in c.consume(500, timeout=1.0):
        if m.error() is None:
            out.append({k: v.decode() for k, v in (m.headers() or [])})
    c.close()
    return out


def test_valid_events_counted_once_and_malformed_dead_lettered(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(3)
    valid, bad = produce(
        kafka_bootstrap, topic, Traffic(n=6000, seed=3, start_ms=START_MS), bad_fraction=0.05
    )
    store = store_with_reference(f"chdb://{tmp_path / 'store'}", write_reference(tmp_path / "ref.parquet"))
    try:
        c = consume(store, kafka_bootstrap, topic, "g-count")
        n_events, per_feature = stored_counts(store)
        assert c.stats["accepted"] == valid.height == n_events
        assert set(per_feature.values()) == {valid.height}  # every feature: one value or a missing per event
        assert c.stats["rejected"] == sum(bad.values()) > 0
        # Offsets committed = everything consumed; stored offsets agree.
        stored = store.stored_offsets("g-count", topic)
        assert sum(end for end, _ in stored.values()) + len(stored) == 6000
    finally:
        store.close()
    letters = dead_letters(kafka_bootstrap, topic + ".dlq", sum(bad.values()))
    assert len(letters) == sum(bad.values())
    got = Counter(h["driftline-error"].split(":")[0] for h in letters)
    assert got == bad
    assert all(
        h["driftline-source-topic"] == topic and int(h["driftline-source-offset"]) >= 0 for h in letters
    )


def test_replayed_flush_is_not_double_counted(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A consumer that stored a flush but crashed before committing resumes after the stored offsets."""
    topic = new_topic(2)
    valid, _ = produce(kafka_bootstrap, topic, Traffic(n=3000, seed=4, start_ms=START_MS))
    store = store_with_reference(f"chdb://{tmp_path / 'store'}", write_reference(tmp_path / "ref.parquet"))
    try:
        consume(store, kafka_bootstrap, topic, "g-replay")
        # Rewind the group's committed offsets to 0: what a crash between the insert and the commit
        # leaves behind. The next member must resume after the offsets stored with the data.
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        rewind = ConsumerGroupTopicPartitions("g-replay", [TopicPartition(topic, p, 0) for p in range(2)])
        admin.alter_consumer_group_offsets([rewind])["g-replay"].result()
        c2 = consume(store, kafka_bootstrap, topic, "g-replay", idle_s=3.0)
        assert c2.stats["accepted"] == 0
        assert stored_counts(store)[0] == valid.height
    finally:
        store.close()


def test_stats_over_stream_equals_compare_on_exported_files(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(3)
    traffic = Traffic(
        n=8000,
        seed=9,
        start_ms=START_MS,
        rate=10.0,
        drift_at=0.5,
        drift_features=["f00_normal", "plan"],
        fairness_regression="region=south",
    )
    valid, _ = produce(kafka_bootstrap, topic, traffic, bad_fraction=0.02)
    ref_path = write_reference(tmp_path / "ref.parquet")
    dsn = f"chdb://{tmp_path / 'store'}"
    store = store_with_reference(dsn, ref_path)
    try:
        consume(store, kafka_bootstrap, topic, "g-stats", pane_ms=60_000, window_ms=600_000, lateness_ms=0)
        metrics = store.metrics("churn", metric="psi", feature="f00_normal")
    finally:
        store.close()
    assert metrics, "closed panes produce drift_metrics rows"
    assert metrics[-1].status == "drift"
    capsys.readouterr()
    assert main(["stats", "--store", dsn, "--model", "churn", "--json"]) == 0
    stats = orjson.loads(capsys.readouterr().out)
    cur_path = tmp_path / "current.parquet"
    valid.drop(FILE_DROP).write_parquet(cur_path)
    assert (
        main(
            [
                "compare",
                "--reference",
                str(ref_path),
                "--current",
                str(cur_path),
                *ROLES,
                "--json",
            ]
        )
        == 0
    )
    compare = orjson.loads(capsys.readouterr().out)
    assert stats["n_current"] == valid.height
    assert stats["late_events"] == 0
    for key in ("n_reference", "n_current", "features", "drifted_features", "latency", "fairness"):
        assert_close(stats[key], compare[key], key)


def test_late_events_go_to_correction_sketches(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(1)
    dsn = f"chdb://{tmp_path / 'store'}"
    store = store_with_reference(dsn, write_reference(tmp_path / "ref.parquet"))
    try:
        # 10 minutes of traffic, then events from minute 0..1 arriving after the watermark moved on:
        # within lateness (2 min) for minute 8, beyond it for minute 0.
        produce(kafka_bootstrap, topic, Traffic(n=600, seed=1, start_ms=START_MS, rate=1.0))
        consume(store, kafka_bootstrap, topic, "g-late", pane_ms=60_000, lateness_ms=120_000, idle_s=3.0)
        produce(
            kafka_bootstrap, topic, Traffic(n=30, seed=2, start_ms=START_MS + 8 * 60_000 + 5_000, rate=1.0)
        )
        produce(kafka_bootstrap, topic, Traffic(n=20, seed=3, start_ms=START_MS + 5_000, rate=1.0))
        c = consume(store, kafka_bootstrap, topic, "g-late", pane_ms=60_000, lateness_ms=120_000, idle_s=3.0)
        rows = store.pane_rows("churn", kinds=["events"])
    finally:
        store.close()
    # The restarted consumer starts with no watermark; its own first batch sets it.
    assert c.stats["accepted"] == 50
    late = {r.pane_start: r.n for r in rows if r.late}
    assert late == {START_MS: 20}
    assert sum(r.n for r in rows) == 650
    capsys.readouterr()
    assert main(["stats", "--store", dsn, "--model", "churn", "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["late_events"] == 20 and report["n_current"] == 650


def consume_cmd(bootstrap: str, topic: str, dsn: str, group: str, *extra: str) -> list[str]:
    """``driftline consume`` as a subprocess, with static membership (a restart takes its partitions back)."""
    return [sys.executable, "-m", "driftline.cli", "consume", "--bootstrap", bootstrap, "--topic", topic,
            "--group", group, "--store", dsn, "--instance-id", f"{group}-member", *extra]  # fmt: skip


def _consumer_cmd(
    bootstrap: str, topic: str, dsn: str, group: str, idle_exit: str | None = None
) -> list[str]:
    extra = ["--flush-interval", "300ms", "--batch-size", "500"]
    return consume_cmd(
        bootstrap, topic, dsn, group, *extra, *(["--idle-exit", idle_exit] if idle_exit else [])
    )


def test_sigkill_at_random_points_loses_and_double_counts_nothing(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(3)
    valid, _ = produce(
        kafka_bootstrap, topic, Traffic(n=40_000, seed=11, start_ms=START_MS), bad_fraction=0.01
    )
    dsn = f"chdb://{tmp_path / 'store'}"
    store_with_reference(dsn, write_reference(tmp_path / "ref.parquet")).close()
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(4):
        proc = subprocess.Popen(
            _consumer_cmd(kafka_bootstrap, topic, dsn, "g-crash"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(3.0, 7.0))  # start-up is ~2-3 s: kills land before, during and after flushes
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = subprocess.run(
        _consumer_cmd(kafka_bootstrap, topic, dsn, "g-crash", idle_exit="8s"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr[-2000:]
    store = Store.open(dsn)
    try:
        n_events, per_feature = stored_counts(store)
    finally:
        store.close()
    assert n_events == valid.height
    assert set(per_feature.values()) == {valid.height}


def test_three_consumers_with_rebalance_match_one(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(6)
    traffic = Traffic(n=12_000, seed=21, start_ms=START_MS, drift_at=0.5, drift_features=["f03_uniform"])
    produce(kafka_bootstrap, topic, traffic)
    ref_path = write_reference(tmp_path / "ref.parquet")
    reports = []
    for name, members in (("one", 1), ("three", 3)):
        dsn = f"chdb://{tmp_path / name}"
        store = store_with_reference(dsn, ref_path)
        try:
            rows = store.references()
            refs = {"churn": reference_from_rows(rows)}
            config = ConsumerConfig(
                kafka_bootstrap,
                [topic],
                f"g-{name}",
                flush_interval_s=0.5,
                batch_size=300,
                session_timeout_ms=6000,
            )
            stop = threading.Event()
            consumers = [StreamConsumer(config, store, refs) for _ in range(members)]
            threads = [threading.Thread(target=c.run, args=(stop, 6.0)) for c in consumers]
            threads[0].start()
            time.sleep(1.5)  # the later members join mid-way: a rebalance while consuming
            for t in threads[1:]:
                t.start()
            for t in threads:
                t.join(timeout=120)
            assert sum(c.stats["accepted"] for c in consumers) >= 12_000
        finally:
            store.close()
        capsys.readouterr()
        assert main(["stats", "--store", dsn, "--model", "churn", "--json"]) == 0
        reports.append(orjson.loads(capsys.readouterr().out))
    one, three = reports
    assert one["n_current"] == three["n_current"] == 12_000
    for key in ("features", "latency", "fairness", "drifted_features"):
        assert_close(one[key], three[key], key)


def test_simulate_cli_produces_valid_and_malformed(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(3)
    ref = tmp_path / "ref.parquet"
    assert (
        main(
            [
                "simulate",
                "--bootstrap",
                kafka_bootstrap,
                "--topic",
                topic,
                "--model",
                "fraud",
                "--events",
                "3000",
                "--bad-fraction",
                "0.1",
                "--drift-at",
                "0.5",
                "--reference-out",
                str(ref),
                "--start",
                "2026-01-01T00:00:00Z",
            ]
        )
        == 0
    )
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["delivered"] == 3000 and summary["valid"] + summary["malformed"] == 3000
    assert 200 < summary["malformed"] < 400
    dsn = f"chdb://{tmp_path / 'store'}"
    assert (
        main(
            [
                "consume",
                "--bootstrap",
                kafka_bootstrap,
                "--topic",
                topic,
                "--group",
                "g-sim",
                "--store",
                dsn,
                "--reference",
                f"fraud={ref}",
                "--segments",
                SEGMENTS,
                "--idle-exit",
                "4s",
            ]
        )
        == 0
    )
    totals = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (totals["accepted"], totals["rejected"]) == (summary["valid"], summary["malformed"])
    store = Store.open(dsn)
    try:
        assert stored_counts(store, "fraud")[0] == summary["valid"]
    finally:
        store.close()


def produce_events(bootstrap: str, topic: str, evs: list[dict[str, Any]]) -> None:
    producer = EventProducer(bootstrap, topic)
    for i, e in enumerate(evs):
        producer.send_raw(orjson.dumps(e), f"k{i % 7}".encode())
    producer.flush()


def consume_cli(bootstrap: str, topic: str, dsn: str, group: str, *extra: str) -> None:
    args = ["consume", "--bootstrap", bootstrap, "--topic", topic, "--group", group, "--store", dsn]
    assert main([*args, *extra, "--idle-exit", "4s"]) == 0


def stats_json(dsn: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["stats", "--store", dsn, "--model", "churn", "--json"]) == 0
    report: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    return report


def overflow(reason: str) -> float:
    return REGISTRY.get_sample_value("driftline_segment_overflow_total", {"reason": reason}) or 0.0


def test_consume_honours_segments(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``consume --segments`` names the reference's segment columns: they are not fitted as features
    (only their mix is compared, as a segment)."""
    topic = new_topic(2)
    reference = generate(Traffic(n=20_000, seed=1000)).drop(FILE_DROP)
    tiers = np.random.default_rng(1).choice(["gold", "silver"], reference.height)
    ref = tmp_path / "ref.parquet"
    reference.with_columns(tier=pl.Series(tiers)).write_parquet(ref)
    evs = list(events(generate(Traffic(n=3000, seed=2, start_ms=START_MS))))
    for i, e in enumerate(evs):
        e["segments"]["tier"] = "gold" if i % 3 else "silver"  # type: ignore[index]
    produce_events(kafka_bootstrap, topic, evs)
    dsn = f"chdb://{tmp_path / 'store'}"
    segments = ["--segments", "region,gender,tier"]
    consume_cli(kafka_bootstrap, topic, dsn, "g-segments", "--reference", f"churn={ref}", *segments)
    report = stats_json(dsn, capsys)
    assert report["features"]["tier"]["role"] == "segment" and report["drifted_features"] == []
    tier = {g: v["n"] for g, v in report["fairness"]["tier"]["groups"].items()}
    assert tier == {"gold": 2000, "silver": 1000}


def test_consumer_uses_the_registered_settings(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What PUT /v1/models/{id} stored is what a consumer folds with, judges windows by and what its
    alert rules compare with; ``driftline stats`` reports the same."""
    topic = new_topic(2)
    dsn = f"chdb://{tmp_path / 'store'}"
    store = store_with_reference(dsn, write_reference(tmp_path / "ref.parquet"))
    registered = {"segments": ["gender"], "positive_threshold": 0.7, "thresholds": {"psi": 40.0, "ks": 0.95}}
    ModelStore(store).save("churn", registered)
    store.close()
    traffic = Traffic(n=4000, seed=8, start_ms=START_MS, rate=10.0, drift_at=0.0, drift_features=["plan"])
    valid, _ = produce(kafka_bootstrap, topic, traffic)
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: feature-psi, metric: psi}\n")  # the model's threshold
    windows = ["--window", "10m", "--lateness", "0s", "--rules", str(rules)]
    consume_cli(kafka_bootstrap, topic, dsn, "g-registered", *windows)
    store = Store.open(dsn)
    try:
        psi = store.metrics("churn", metric="psi")
        alerts = AlertStore(store).alert_history("churn")
    finally:
        store.close()
    assert psi and {r.status for r in psi} == {"ok"} and alerts == []
    report = stats_json(dsn, capsys)
    assert {k: report["thresholds"][k] for k in ("psi", "ks")} == {"psi": 40.0, "ks": 0.95}
    assert report["drifted_features"] == []
    assert set(report["fairness"]) == {"gender"}
    for group, g in report["fairness"]["gender"]["groups"].items():
        scores = valid.filter(pl.col("gender") == group)["prediction"].to_numpy()
        assert g["positive_rate"] == pytest.approx(np.mean(scores >= 0.7), abs=1e-12)


def test_segment_cardinality_is_bounded(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hostile segments (a new value in every fourth event, hundreds of attributes) fold into the
    reference's top values and attributes; the rest is counted, on the scanner's path and the
    contract parser's."""
    topic = new_topic(3)
    dsn = f"chdb://{tmp_path / 'store'}"
    ref = write_reference(tmp_path / "ref.parquet")
    store_with_reference(dsn, ref).close()
    counts = Counter(pl.read_parquet(ref)["region"].to_list())
    kept = {v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:2]}
    rng = np.random.default_rng(12)
    evs = list(events(generate(Traffic(n=6000, seed=12, start_ms=START_MS))))
    sent: list[dict[str, str]] = []
    for i, e in enumerate(evs):
        segments = {**e["segments"], f"k{i % 300}": "v"}  # type: ignore[dict-item]
        if i % 4 == 0:
            segments["region"] = f"r{rng.integers(1 << 40)}"
        if i % 50 == 0:  # more than the scanner takes: the contract parser's path
            segments |= {f"x{j}": "v" for j in range(300)}
        e["segments"] = segments
        sent.append(segments)
    produce_events(kafka_bootstrap, topic, evs)
    before = {reason: overflow(reason) for reason in ("value", "attribute")}
    consume_cli(kafka_bootstrap, topic, dsn, "g-hostile", "--segment-values", "2")
    regions = [segments["region"] for segments in sent]
    assert overflow("value") - before["value"] == sum(r not in kept for r in regions)
    assert overflow("attribute") - before["attribute"] == sum(len(segments) - 2 for segments in sent)
    report = stats_json(dsn, capsys)
    assert set(report["fairness"]) == {"region", "gender"}
    want = Counter(r if r in kept else "<other>" for r in regions)
    assert {g: v["n"] for g, v in report["fairness"]["region"]["groups"].items()} == dict(want)
