"""One consumed batch -> accepted rows per partition + rejected messages with their reasons.

Per message, Python only takes the value, partition and offset; the Numba scanner decodes the
whole batch into columns. Messages the scanner cannot prove valid go through the contract's
decoder, which either accepts them (their time and model are written into the scanned columns,
their event kept for the fold) or names the reason for the dead-letter topic.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import Message

from driftline.contract import InvalidEvent
from driftline.detectors.profile import ModelSketch
from driftline.ingest.decode import AnyEvent, Rejected, decode
from driftline.ingest.scan import OK, FeatureNames, ScannedBatch, scan

Partition = tuple[str, int]


@dataclass
class Decoded:
    scanned: ScannedBatch
    by_partition: dict[Partition, np.ndarray]  # accepted rows of each partition, in offset order
    events: dict[int, AnyEvent]  # accepted rows the contract's decoder read
    ranges: dict[Partition, tuple[int, int]]  # first and last offset read per partition
    rejected: list[Rejected] = field(default_factory=list)
    per_model: Counter[str] = field(default_factory=Counter)
    values: list[bytes] = field(default_factory=list)  # the messages, for what the scan does not keep
    # rows of models without a reference that warm up, per partition and model, in offset order
    staged: dict[Partition, dict[str, np.ndarray]] = field(default_factory=dict)
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_staged(self) -> int:
        return sum(len(r) for by_model in self.staged.values() for r in by_model.values())

    @property
    def accepted(self) -> int:
        return sum(len(r) for r in self.by_partition.values())


class BatchDecoder:
    def __init__(
        self,
        references: Mapping[str, ModelSketch],
        max_bytes: int,
        max_future_ms: int | None,
        clock: Callable[[], float] = time.time,
        warmup: Callable[[str], str | None] | None = None,
    ) -> None:
        """``warmup``: why an event of a model without a reference is dead-lettered, None when the
        model warms up instead (its events are staged, see ``ingest/warmup.py``)."""
        self.references = references
        self.warmup = warmup
        self.max_bytes = max_bytes
        self.max_future_ms = max_future_ms
        self.clock = clock
        self._names: tuple[tuple[str, ...], FeatureNames] | None = None

    def feature_names(self) -> FeatureNames:
        """Every feature any reference knows (rebuilt when references change)."""
        wanted = tuple(sorted({f for r in list(self.references.values()) for f in r.binning.features}))
        if self._names is None or self._names[0] != wanted:
            self._names = (wanted, FeatureNames.of(list(wanted)))
        return self._names[1]

    def decode(self, msgs: list[Message]) -> Decoded:
        n = len(msgs)
        # map() over the unbound methods keeps the per-message work in C
        values = list(map(Message.value, msgs))
        if None in values:  # a tombstone: the contract's decoder names it
            values = [v or b"" for v in values]
        partitions = np.fromiter(map(Message.partition, msgs), np.int64, n)
        offsets = np.fromiter(map(Message.offset, msgs), np.int64, n)
        topics = list(map(Message.topic, msgs))
        scanned = scan(values, self.feature_names(), self.max_bytes)
        horizon = None if self.max_future_ms is None else int(self.clock() * 1000) + self.max_future_ms
        ok = scanned.status == OK
        reasons: dict[int, str] = {}
        events: dict[int, AnyEvent] = {}
        if horizon is not None:
            for i in np.flatnonzero(ok & (scanned.ts_ms > horizon)).tolist():
                ts = int(scanned.ts_ms[i])
                reasons[i] = f"ts: {ts} ms is too far in the future (more than the allowed clock skew)"
        slow = np.flatnonzero(~ok).tolist()
        if slow:
            index = {s: k for k, s in enumerate(scanned.strings)}

            def intern(s: str) -> int:
                if s not in index:
                    index[s] = len(scanned.strings)
                    scanned.strings.append(s)
                return index[s]

            for i in slow:
                try:
                    e = decode(msgs[i].value(), self.max_bytes, horizon)
                except InvalidEvent as exc:
                    reasons[i] = str(exc)
                    continue
                events[i] = e
                scanned.ts_ms[i] = e.ts_ms
                scanned.model[i] = intern(e.model_id)
                scanned.version[i] = intern(e.model_version)
        accepted = ok.copy()
        accepted[list(events)] = True
        accepted[list(reasons)] = False
        known = np.array([s in self.references for s in scanned.strings] or [False])
        staged = np.zeros(n, bool)
        for i in np.flatnonzero(accepted & ~known[np.where(accepted, scanned.model, 0)]).tolist():
            model = scanned.strings[int(scanned.model[i])]
            refused = self.warmup(model) if self.warmup else f"no reference registered for model {model!r}"
            if refused is None:
                staged[i] = True
            else:
                reasons[i] = f"model_id: {refused}"
            accepted[i] = False
            events.pop(i, None)
        rejected = [
            Rejected(values[i], reasons[i], topics[i], int(partitions[i]), int(offsets[i]), msgs[i].key())
            for i in sorted(reasons)
        ]
        by_partition: dict[Partition, np.ndarray] = {}
        staging: dict[Partition, dict[str, np.ndarray]] = {}
        ranges: dict[Partition, tuple[int, int]] = {}
        for t in sorted(set(topics)):
            in_topic = np.array([x == t for x in topics]) if len(set(topics)) > 1 else np.ones(n, bool)
            for p in np.unique(partitions[in_topic]).tolist():
                mine = in_topic & (partitions == p)
                ranges[(t, p)] = (int(offsets[mine][0]), int(offsets[mine][-1]))
                by_partition[(t, p)] = np.flatnonzero(mine & accepted)
                if staged.any():
                    by_model: dict[str, list[int]] = {}
                    for i in np.flatnonzero(mine & staged).tolist():
                        by_model.setdefault(scanned.strings[int(scanned.model[i])], []).append(i)
                    if by_model:
                        staging[(t, p)] = {m: np.asarray(r, np.int64) for m, r in by_model.items()}
        models = np.bincount(scanned.model[accepted], minlength=len(scanned.strings))
        per_model = Counter({scanned.strings[k]: int(c) for k, c in enumerate(models.tolist()) if c})
        return Decoded(scanned, by_partition, events, ranges, rejected, per_model, values, staging, offsets)
