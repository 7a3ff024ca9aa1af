"""`driftline demo --kafka`: the same story through a real broker started by scripts/kafka-dev."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
from rich.console import Console

from driftline import demo


def test_demo_through_kafka(tmp_path: Path) -> None:
    out = io.StringIO()
    assert demo.run(str(tmp_path), console=Console(file=out, width=200), kafka=True) == 0
    counts = orjson.loads(out.getvalue().split("notifications received ")[1].splitlines()[0])
    assert counts["retrain"] == 1 and counts["pagerduty"] == 2
