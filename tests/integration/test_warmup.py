"""A model that starts emitting before anyone built its reference, on a real broker: its events
are kept in the store, a reference is fitted on its first N events by event time, and then every
event is folded exactly once, across SIGKILLs during the warm-up."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from confluent_kafka import Consumer, TopicPartition

from driftline.ingest.files import load_event_reference
from driftline.ingest.producer import EventProducer
from driftline.simulate import FILE_DROP, SEGMENTS, Traffic, events, generate
from driftline.storage.codec import reference_from_rows, reference_id
from driftline.storage.store import Store
from driftline.storage.warmup import WarmupStore

from ..helpers import write_reference
from .test_stream import START_MS, consume_cmd, dead_letters, store_with_reference, stored_counts

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
FLAGS = ["--flush-interval", "300ms", "--batch-size", "500", "--segments", ",".join(SEGMENTS)]


def produce_rows(bootstrap: str, topic: str, df: pl.DataFrame) -> None:
    producer = EventProducer(bootstrap, topic)
    for i, event in enumerate(events(df)):
        producer.send_raw(orjson.dumps(event), f"k{i % 7}".encode())  # spread over partitions
    producer.flush()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Offsets the group committed, summed (asked as a non-member: it joins nothing)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    except Exception:  # the coordinator is not there yet
        return 0
    finally:
        c.close()
    return sum(max(tp.offset, 0) for tp in tps)


def first_n(df: pl.DataFrame, n: int) -> pl.DataFrame:
    """The first n events by event time, with n moved to where the n-th and the next differ."""
    ordered = df.sort("ts")
    ts = ordered["ts"].to_numpy()
    while ts[n - 1] == ts[n]:
        n += 1
    return ordered.head(n)


def oracle_reference(df: pl.DataFrame, path: Path) -> object:
    """The reference ``reference build`` would fit on these rows, read from a file."""
    df.drop(FILE_DROP).write_parquet(path)
    return load_event_reference(path, SEGMENTS)


def test_a_new_model_bootstraps_its_reference_from_its_first_events_and_counts_each_once(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(3)
    df = generate(Traffic(n=9_000, seed=21, start_ms=START_MS, rate=200))
    warm = first_n(df, 3_000)
    produce_rows(kafka_bootstrap, topic, df)
    dsn = f"chdb://{tmp_path / 'store'}"
    run = subprocess.run(
        consume_cmd(
            kafka_bootstrap,
            topic,
            dsn,
            "g-warm",
            *FLAGS,
            "--warmup-events",
            str(warm.height),
            "--idle-exit",
            "6s",
        ),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    totals = orjson.loads(run.stdout.strip().splitlines()[-1])
    assert totals["rejected"] == 0 and totals["accepted"] == df.height
    store = Store.open(dsn)
    try:
        n_events, per_feature = stored_counts(store)
        versions = store.reference_versions("churn")
        reference = reference_from_rows(store.references("churn"))
        left = WarmupStore(store).staged_counts()
    finally:
        store.close()
    assert n_events == df.height  # every event folded, the warm-up's too, none twice
    assert set(per_feature.values()) == {df.height}
    assert left == {}  # nothing staged is left unfolded
    assert len(versions) == 1 and versions[0]["events"] == warm.height
    assert versions[0]["source"].startswith(f"bootstrap: first {warm.height} events")
    # the same bins and counts as a reference built from a file of those events
    oracle = oracle_reference(warm, tmp_path / "first.parquet")
    assert reference_id(reference.binning) == reference_id(oracle.binning)
    assert reference.n_events == oracle.n_events == warm.height
    for name, sketch in oracle.features.items():
        assert np.array_equal(reference.features[name].counts, sketch.counts), name


def test_with_warmup_off_a_model_without_reference_is_dead_lettered(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(1)
    dsn = f"chdb://{tmp_path / 'store'}"
    # no reference at all and warm-up off: nothing to do, said at once
    refused = subprocess.run(
        consume_cmd(kafka_bootstrap, topic, dsn, "g-off", "--warmup-events", "0", "--idle-exit", "3s"),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "warm-up is off" in refused.stderr
    store_with_reference(dsn, write_reference(tmp_path / "ref.parquet")).close()
    produce_rows(kafka_bootstrap, topic, generate(Traffic(n=40, seed=22, start_ms=START_MS)))
    produce_rows(
        kafka_bootstrap, topic, generate(Traffic(n=10, seed=23, start_ms=START_MS, model_id="other"))
    )
    run = subprocess.run(
        consume_cmd(kafka_bootstrap, topic, dsn, "g-off", "--warmup-events", "0", "--idle-exit", "4s"),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    letters = dead_letters(kafka_bootstrap, topic + ".dlq", 10)
    assert [h["driftline-error"] for h in letters] == [
        "model_id: no reference registered for model 'other'"
    ] * 10
    store = Store.open(dsn)
    try:
        assert stored_counts(store)[0] == 40 and stored_counts(store, "other")[0] == 0
    finally:
        store.close()


@pytest.mark.parametrize("seed", [3])
def test_sigkill_during_the_warmup_loses_and_double_counts_nothing(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, seed: int
) -> None:
    topic = new_topic(3)
    df = generate(Traffic(n=30_000, seed=seed, start_ms=START_MS, rate=500))
    warm = first_n(df, 20_000)
    dsn = f"chdb://{tmp_path / 'store'}"
    cmd = consume_cmd(kafka_bootstrap, topic, dsn, "g-warm-kill", *FLAGS, "--warmup-events", str(warm.height))
    # half the warm-up's events, all stored (staged and committed), then kill -9 mid-warm-up
    produce_rows(kafka_bootstrap, topic, df.head(10_000))
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while committed(kafka_bootstrap, "g-warm-kill", topic, 3) < 10_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store.open(dsn)
    try:
        assert WarmupStore(store).staged_counts() == {"churn": 10_000} and not store.references("churn")
    finally:
        store.close()
    produce_rows(kafka_bootstrap, topic, df.slice(10_000))
    rng = random.Random(seed)
    for _ in range(3):  # then at the fit, during the drain, after
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 5.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = subprocess.run([*cmd, "--idle-exit", "8s"], env=ENV, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    store = Store.open(dsn)
    try:
        n_events, per_feature = stored_counts(store)
        versions = store.reference_versions("churn")
        left = WarmupStore(store).staged_counts()
    finally:
        store.close()
    assert n_events == df.height
    assert set(per_feature.values()) == {df.height}
    assert left == {}
    assert len(versions) == 1 and versions[0]["events"] == warm.height
