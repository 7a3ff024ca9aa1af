"""`driftline demo --kafka`: the same story through a real broker started by scripts/kafka-dev."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from ..helpers import cli


def test_demo_through_kafka(tmp_path: Path) -> None:
    done = cli("demo", "--kafka", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    counts = orjson.loads(done.stdout.split("notifications received ")[1].splitlines()[0])
    assert counts["retrain"] == 1 and counts["pagerduty"] == 2
    # librdkafka's own lines (%LEVEL|time|FAC|client| ...) go through the logger, not straight to stderr,
    # and its warnings while the fresh broker loads are not shown
    assert not re.search(r"^%\d\|", done.stderr, re.M), done.stderr[-3000:]
    assert "driftline.kafka.librdkafka" not in done.stderr, done.stderr[-3000:]
