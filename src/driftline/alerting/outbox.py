"""Durable outbox: an append-only journal (JSON lines, fsynced) of everything the pipeline owes.

Records: ``alert`` (an alert handed to the pipeline, so groups survive a restart), ``notified``
(a group was flushed), ``enqueue`` (a notification to send), ``retry`` (next attempt time),
``done`` (sent), ``dead`` (given up), ``cooldown`` (a retraining run was delivered for a model).
On open, and whenever it has grown past twice its compacted size (plus ``compact_min_bytes``),
the journal is rewritten with the live state only, so its size follows what is owed, not the
history. A process killed at any point loses nothing it had written; an entry that was sent but
not yet marked done is sent again with the same idempotency key (``webhook-id``, PagerDuty
``dedup_key``), which receivers use to drop the repeat.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

KEEP_DONE = 50_000
COMPACT_MIN_BYTES = 1 << 20
log = logging.getLogger("driftline.alerting")


@dataclass
class Entry:
    id: str  # idempotency key
    receiver: str
    kind: str  # "group" | "alert" | "retrain"
    payload: dict[str, Any]
    created_at: float
    next_attempt_at: float
    attempts: int = 0
    seq: int = 0  # enqueue order
    stream: str = ""  # entries of one stream are sent in enqueue order ("": the receiver's)


@dataclass
class Journal:
    """State rebuilt from the journal."""

    pending: dict[str, Entry] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # group key -> fingerprint -> alert
    notified: dict[str, tuple[str, float]] = field(default_factory=dict)  # group key -> (state hash, at)
    sent_count: dict[str, int] = field(default_factory=dict)  # group key -> notifications so far
    told: dict[str, set[str]] = field(default_factory=dict)  # group key -> episodes notified as firing
    cooldowns: dict[str, float] = field(default_factory=dict)  # receiver/model -> last retrain
    done: dict[str, None] = field(default_factory=dict)  # ids sent or given up, oldest first
    next_seq: int = 0


class Outbox:
    def __init__(self, path: str | Path, compact_min_bytes: int = COMPACT_MIN_BYTES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.compact_min_bytes = compact_min_bytes
        self._lock = threading.Lock()
        self.state = Journal()
        for rec in self._records():
            self._apply(rec)
        self._file: IO[bytes] | None = None
        self._size = self._compacted_size = 0
        self._compact()

    # -- writes ---------------------------------------------------------------------------------

    def enqueue(self, entry: Entry) -> bool:
        """False if an entry with this idempotency key was already enqueued (or sent)."""
        with self._lock:
            if entry.id in self.state.pending or entry.id in self.state.done:
                return False
            entry.seq = self.state.next_seq
        self._write({"op": "enqueue", **asdict(entry)})
        return True

    def retry(self, entry_id: str, next_attempt_at: float, attempts: int) -> None:
        self._write({"op": "retry", "id": entry_id, "next_attempt_at": next_attempt_at, "attempts": attempts})

    def done(self, entry_id: str, status: str) -> None:
        self._write({"op": "done", "id": entry_id, "status": status})

    def dead(self, entry_id: str, reason: str) -> None:
        """Given up. Unlike a sent entry, the same notification may be enqueued again: a page
        still firing is tried again at its group's next repeat."""
        self._write({"op": "dead", "id": entry_id, "reason": reason})

    def note_alert(self, group: str, alert: dict[str, Any]) -> None:
        self._write({"op": "alert", "group": group, "alert": alert})

    def note_notified(self, group: str, state_hash: str, at: float, sent: list[str], told: list[str]) -> None:
        count = self.state.sent_count.get(group, 0) + 1
        self._write(
            {
                "op": "notified",
                "group": group,
                "hash": state_hash,
                "at": at,
                "sent": sent,
                "told": told,
                "count": count,
            }
        )

    def note_forget(self, group: str, fingerprints: list[str]) -> None:
        """Resolved alerts nobody was told about (silenced, inhibited) leave their group."""
        self._write({"op": "forget", "group": group, "sent": fingerprints})

    def note_cooldown(self, key: str, at: float) -> None:
        self._write({"op": "cooldown", "key": key, "at": at})

    # -- reads ----------------------------------------------------------------------------------

    def due(self, now: float) -> list[Entry]:
        with self._lock:
            return sorted(
                (e for e in self.state.pending.values() if e.next_attempt_at <= now),
                key=lambda e: (e.next_attempt_at, e.seq),
            )

    def in_order(self) -> list[Entry]:
        with self._lock:
            return sorted(self.state.pending.values(), key=lambda e: e.seq)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()

    # -- journal --------------------------------------------------------------------------------

    def _write(self, rec: dict[str, Any]) -> None:
        line = orjson.dumps(rec) + b"\n"
        with self._lock:
            if self._file is None:  # a compaction failed after its rename: append to the new file
                self._file = self.path.open("ab")
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._apply(rec)
            self._size += len(line)
            if self._size > 2 * self._compacted_size + self.compact_min_bytes:
                try:
                    self._compact()
                except OSError as exc:  # housekeeping: the record above is durable already
                    log.warning("outbox journal %s not compacted: %s; retried later", self.path, exc)
                    self._compacted_size = self._size

    def _apply(self, rec: dict[str, Any]) -> None:
        s = self.state
        match rec["op"]:
            case "enqueue":
                fields = {k: v for k, v in rec.items() if k != "op"}
                if rec["id"] not in s.done:
                    s.pending[rec["id"]] = Entry(**fields)
                s.next_seq = max(s.next_seq, fields.get("seq", 0) + 1)
            case "retry":
                if (e := s.pending.get(rec["id"])) is not None:
                    e.next_attempt_at, e.attempts = rec["next_attempt_at"], rec["attempts"]
            case "done":
                s.pending.pop(rec["id"], None)
                s.done[rec["id"]] = None
            case "dead":
                s.pending.pop(rec["id"], None)
            case "alert":
                s.alerts.setdefault(rec["group"], {})[rec["alert"]["fingerprint"]] = rec["alert"]
            case "notified":
                g = rec["group"]
                s.notified[g] = (rec["hash"], rec["at"])
                s.sent_count[g] = rec["count"]
                s.told.setdefault(g, set()).update(rec["told"])
                self._drop_resolved(g, rec["sent"])
            case "forget":
                self._drop_resolved(rec["group"], rec["sent"])
            case "cooldown":
                s.cooldowns[rec["key"]] = max(rec["at"], s.cooldowns.get(rec["key"], 0.0))

    def _drop_resolved(self, group: str, fingerprints: list[str]) -> None:
        alerts = self.state.alerts.get(group, {})
        for fp in fingerprints:
            if alerts.get(fp, {}).get("status") == "resolved":
                self.state.told.get(group, set()).discard(alerts.pop(fp)["episode"])

    def _records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            for line in f:
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a torn last line from a kill mid-write: that record never completed

    def _compact(self) -> None:
        """Rewrite the journal with the live state only (atomic rename), then append to it."""
        s = self.state
        # Done ids only stop a replayed enqueue from sending twice, which happens right after a
        # crash: the newest ones are enough, so neither the journal nor memory grows without bound.
        s.done = dict.fromkeys(list(s.done)[-KEEP_DONE:])
        recs: list[dict[str, Any]] = [{"op": "enqueue", **asdict(e)} for e in s.pending.values()]
        recs += [{"op": "done", "id": i, "status": "compacted"} for i in s.done]
        recs += [
            {"op": "alert", "group": g, "alert": a} for g, alerts in s.alerts.items() for a in alerts.values()
        ]
        recs += [
            {
                "op": "notified",
                "group": g,
                "hash": h,
                "at": at,
                "sent": [],
                "told": sorted(s.told.get(g, ())),
                "count": s.sent_count.get(g, 0),
            }
            for g, (h, at) in s.notified.items()
        ]
        recs += [{"op": "cooldown", "key": k, "at": at} for k, at in s.cooldowns.items()]
        data = b"".join(orjson.dumps(rec) + b"\n" for rec in recs)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        if self._file is not None:  # its file is gone: nothing may be appended to it any more
            self._file.close()
            self._file = None
        self._size = self._compacted_size = len(data)
        directory = os.open(self.path.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._file = self.path.open("ab")
