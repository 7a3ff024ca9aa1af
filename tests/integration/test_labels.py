"""Delayed labels on their own topic, on a real broker: out of order and hours later in event
time, some before their predictions, duplicates, orphans, malformed ones; SIGKILL mid-stream;
and ``stats`` equals ``compare`` on the exported joined rows."""

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

from driftline.cli import main
from driftline.ingest.producer import EventProducer
from driftline.simulate import Traffic, events, generate
from driftline.storage.labels import LabelStore
from driftline.storage.store import Store

from ..helpers import ROLES, build_reference, write_reference
from .test_stream import START_MS, consume_cmd, dead_letters

HOUR_MS = 3_600_000
MALFORMED = [
    b'{"model_id": "churn", "ts": 1767225600000, "label": 1}',  # no event_id
    b'{"event_id": "x1", "model_id": "churn", "ts": 1767225600000, "label": null}',
    b'{"event_id": "x2", "model_id": "churn", "ts": "yesterday", "label": 0}',
    b'{"event_id": "x3", "model_id": "churn", "ts": 1767225600000, "label": {"a": 1}}',
    b"not json at all",
    b'{"event_id": "x4", "model_id": "nobody", "ts": 1767225600000, "label": 1}',  # unknown model
]


def send(bootstrap: str, topic: str, messages: list[bytes]) -> None:
    producer = EventProducer(bootstrap, topic)
    for i, raw in enumerate(messages):
        producer.send_raw(raw, f"k{i % 5}".encode())
    producer.flush()


def label_event(row: dict, delay_ms: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": row["event_id"],
            "model_id": row["model_id"],
            "ts": row["ts"] + delay_ms,
            "label": row["label"],
        }
    )


def run(cmd: list[str], timeout: float = 300) -> dict[str, int]:
    done = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def test_late_labels_join_once_by_prediction_time_under_sigkill(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions, labels = new_topic(3), new_topic(2, prefix="labels")
    df = generate(Traffic(n=4000, seed=21, start_ms=START_MS, rate=5.0))
    rows = list(df.iter_rows(named=True))
    rng = random.Random(7)
    labelled = rng.sample(range(len(rows)), k=3000)  # a quarter never gets a label
    early, late = labelled[:800], labelled[800:]  # early labels are sent before their predictions
    orphans = [
        orjson.dumps({"event_id": f"ghost-{i}", "model_id": "churn", "ts": START_MS, "label": 1})
        for i in range(40)
    ]
    early_msgs = [label_event(rows[i], rng.randint(1, 6) * HOUR_MS) for i in early] + orphans + MALFORMED
    late_msgs = [label_event(rows[i], rng.randint(1, 48) * HOUR_MS) for i in late]
    late_msgs += [label_event(rows[i], 50 * HOUR_MS) for i in rng.sample(late, 300)]  # duplicates
    rng.shuffle(early_msgs)
    rng.shuffle(late_msgs)

    dsn = f"chdb://{tmp_path / 'store'}"
    ref = write_reference(tmp_path / "ref.parquet")
    build_reference(dsn, ref)
    stripped = [orjson.dumps({k: v for k, v in e.items() if k != "label"}) for e in events(df)]
    horizon = "30s"
    cmd = consume_cmd(kafka_bootstrap, predictions, dsn, "g-labels", "--label-topic", labels,
                      "--label-horizon", horizon, "--flush-interval", "300ms", "--batch-size", "400",
                      "--pane", "1m", "--window", "10m", "--lateness", "0", "--idle", "2s")  # fmt: skip

    # 1. labels first: none has its prediction yet (they wait); then the first half of predictions
    send(kafka_bootstrap, labels, early_msgs)
    first = run([*cmd, "--idle-exit", "4s"])
    assert first["labels_waiting"] == len(early) + len(orphans)
    assert first["labels_rejected"] == len(MALFORMED)
    send(kafka_bootstrap, predictions, stripped[: len(rows) // 2])
    send(kafka_bootstrap, labels, late_msgs[: len(late_msgs) // 2])

    # 2. the rest, with the consumer killed mid-stream (twice), then run to the end
    send(kafka_bootstrap, predictions, stripped[len(rows) // 2 :])
    send(kafka_bootstrap, labels, late_msgs[len(late_msgs) // 2 :])
    for wait in (3.5, 5.5):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(wait)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run([*cmd, "--idle-exit", "6s"])
    time.sleep(31)  # past the horizon: the ghosts are orphans now
    last = run([*cmd, "--idle-exit", "3s"])
    assert last["labels_orphan_labels"] == len(orphans)

    store = Store.open(dsn)
    try:
        stored, joined = LabelStore(store).label_counts("churn")["churn"]
    finally:
        store.close()
    assert (stored, joined) == (len(labelled) + len(orphans), len(labelled))  # duplicates count once
    letters = dead_letters(kafka_bootstrap, labels + ".dlq", len(MALFORMED))
    assert len(letters) == len(MALFORMED)

    # stats over the stored panes == compare on the joined rows (labels by prediction time)
    label_of = {rows[i]["event_id"]: rows[i]["label"] for i in labelled}
    joined_rows = df.with_columns(
        pl.Series("label", [label_of.get(e) for e in df["event_id"]], dtype=pl.Int64)
    )
    joined_rows.write_parquet(tmp_path / "joined.parquet")
    capsys.readouterr()
    assert main(["stats", "--store", dsn, "--model", "churn", "--json"]) == 0
    stats = orjson.loads(capsys.readouterr().out)
    assert main(["compare", "--reference", str(ref), "--current", str(tmp_path / "joined.parquet"),
                 *ROLES, "--json"]) == 0  # fmt: skip
    files = orjson.loads(capsys.readouterr().out)
    assert stats["n_current"] == len(rows)
    for side in ("reference", "current"):  # sums of floats in another order: equal to rounding
        assert stats["performance"][side] == pytest.approx(files["performance"][side], rel=1e-9), side
    assert stats["performance"]["current"]["n_labelled"] == len(labelled)
    assert stats["label"]["psi"] == pytest.approx(files["label"]["psi"], rel=1e-9)
    assert stats["label"]["null_rate"] == pytest.approx(files["label"]["null_rate"], rel=1e-9)
    assert np.isclose(stats["prediction"]["psi"], files["prediction"]["psi"], rtol=1e-9)
    for attr, fair in files["fairness"].items():  # equal opportunity from the late labels too
        assert stats["fairness"][attr]["groups"] == fair["groups"], attr
        eo = fair["equal_opportunity_difference"]
        assert stats["fairness"][attr]["equal_opportunity_difference"] == pytest.approx(eo, rel=1e-9), attr
