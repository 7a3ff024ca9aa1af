"""The outbox journal stays bounded while the process runs, and what it replays is what was owed."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from driftline.alerting.outbox import Entry, Outbox


def work(outbox: Outbox, i: int) -> None:
    """Round i of what a long receiver outage writes: retries of what is owed, alerts that come and go."""
    group = f"pd|churn|rule-{i % 3}"
    alert = {"fingerprint": f"fp-{i % 5}", "episode": f"ep-{i}", "status": "firing", "n": i}
    outbox.note_alert(group, alert)
    outbox.note_notified(group, f"hash-{i}", float(i), [], [alert["episode"]])
    outbox.note_alert(group, alert | {"status": "resolved"})
    outbox.note_notified(group, f"hash-{i}-r", float(i), [alert["fingerprint"]], [])
    if i % 10 == 0:  # a notification every ten rounds
        entry = Entry(f"e-{i}", "pd", "alert", {"alert": alert}, float(i), float(i), stream=f"pd|ep-{i}")
        assert outbox.enqueue(entry)
        if i >= 10:  # the one before is settled: every third one dies, the others are sent
            (outbox.dead if i % 30 == 0 else outbox.done)(f"e-{i - 10}", "settled")
    outbox.retry(f"e-{i - i % 10}", float(i + 1), i % 10 + 1)
    outbox.note_cooldown(f"retrain|model-{i % 4}", float(i))


def snapshot(outbox: Outbox) -> dict[str, object]:
    s = outbox.state
    return {
        "pending": {k: asdict(e) for k, e in s.pending.items()},
        "alerts": s.alerts,
        "notified": s.notified,
        "sent_count": s.sent_count,
        "told": s.told,
        "cooldowns": s.cooldowns,
        "done": list(s.done),
        "next_seq": s.next_seq,
    }


def test_the_journal_is_compacted_while_running_and_replays_what_the_whole_history_does(
    tmp_path: Path,
) -> None:
    bounded = Outbox(tmp_path / "bounded.jsonl", compact_min_bytes=16_384)
    whole = Outbox(tmp_path / "whole.jsonl", compact_min_bytes=1 << 40)  # the oracle: never compacted
    largest = 0
    for i in range(500):
        for outbox in (bounded, whole):
            work(outbox, i)
        largest = max(largest, bounded.path.stat().st_size)
    assert whole.path.stat().st_size > 250_000  # the history ...
    assert largest < 40_000  # ... and the journal: twice its compacted size plus 16 KiB at most
    live = snapshot(bounded)
    assert live == snapshot(whole)
    for outbox in (bounded, whole):
        outbox.close()
    # A restart replays both journals to the state the process had.
    assert snapshot(Outbox(tmp_path / "bounded.jsonl")) == snapshot(Outbox(tmp_path / "whole.jsonl")) == live
