"""Labels that arrive on their own topic, hours or days after their predictions.

    predictions consumer --(each flush, before its pane rows)--> predictions table (TTL: horizon)
    label topic -> LabelConsumer -> labels table -> per touched pane: joined sketches -> windows again

A label is joined to its prediction by ``(model_id, event_id)`` and counts in the pane of the
*prediction's* event time (performance by prediction time). Every write is an idempotent upsert
keyed by the event, and a pane's joined sketches are recomputed from the two tables, so a
replayed batch (a crash before the offsets were committed) and a duplicate label both count
once. A label whose prediction is not stored yet waits in the labels table and is joined by a
sweep when it arrives; one still alone after the horizon is an orphan: counted, kept, not joined.
Malformed label events go to ``<label topic><dlq suffix>`` with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message

from driftline import telemetry as prom
from driftline.contract import InvalidEvent, LabelEvent, parse_label
from driftline.detectors.categorical import as_category, dictionary_encode
from driftline.detectors.fairness import to_outcome
from driftline.detectors.profile import Binning, Column, ModelSettings, ModelSketch, bound_segments
from driftline.ingest.batch import Decoded
from driftline.ingest.deadletter import DeadLetterRouter
from driftline.ingest.decode import AnyEvent, Rejected
from driftline.ingest.evaluate import WindowEvaluator
from driftline.ingest.kafka import client_config, log_error
from driftline.ingest.scan import ABSENT, FLOAT, INT, NULL
from driftline.storage.codec import reference_id
from driftline.storage.errors import StoreError
from driftline.storage.labels import JoinedRow, LabelRow, LabelStore, PredictionRow, number
from driftline.storage.store import Store

log = logging.getLogger("driftline.labels")
DEFAULT_HORIZON_MS = 7 * 86_400_000


@dataclass
class LabelConfig:
    bootstrap: str
    topic: str
    group: str  # the predictions' group; labels are read as "<group>.labels"
    pane_ms: int
    horizon_ms: int = DEFAULT_HORIZON_MS
    dlq_suffix: str = ".dlq"
    dlq_spill: Path = Path("dead-letters.jsonl")
    batch_size: int = 5000
    sweep_interval_s: float = 5.0
    kafka: dict[str, object] = field(default_factory=dict)


def prediction_rows(
    decoded: Decoded, values: Sequence[bytes], references: Mapping[str, ModelSketch], pane_ms: int
) -> dict[tuple[str, int], list[PredictionRow]]:
    """Per partition, the accepted predictions of models whose reference has labels (only those
    can be judged on late labels): what the label join needs of each."""
    s = decoded.scanned
    joinable = {
        m: reference_id(r.binning) for m, r in references.items() if r.binning.performance is not None
    }
    out: dict[tuple[str, int], list[PredictionRow]] = {}
    for key, rows in decoded.by_partition.items():
        kept = [int(i) for i in rows.tolist() if s.strings[int(s.model[i])] in joinable]
        if not kept:
            continue
        idx = np.asarray(kept, np.int64)
        names, codes = s._categories(s.pred_kind[idx], s.pred_num[idx], s.pred_str[idx])
        numeric = (s.pred_kind[idx] == INT) | (s.pred_kind[idx] == FLOAT)
        scores = np.where(numeric, s.pred_num[idx], np.nan)
        labelled = (s.label_kind[idx] != ABSENT) & (s.label_kind[idx] != NULL)
        panes = s.ts_ms[idx] - s.ts_ms[idx] % pane_ms
        out[key] = []
        for j, i in enumerate(kept):
            event = decoded.events.get(i)  # read by the contract's decoder: its values, not the scan's
            if event is not None:
                score, text, has_label = (
                    number(event.prediction),
                    as_category(event.prediction) or "",
                    (event.label is not None),
                )
                event_id, segments = event.event_id, event.segments
            else:
                score, text, has_label = float(scores[j]), names[codes[j]] or "", bool(labelled[j])
                event_id, segments = event_id_of(values[i]), s.segments_of(i)
            out[key].append(
                PredictionRow(
                    s.strings[int(s.model[i])],
                    event_id,
                    s.strings[int(s.version[i])],
                    int(panes[j]),
                    score,
                    text,
                    has_label,
                    orjson.dumps(segments).decode(),
                    joinable[s.strings[int(s.model[i])]],
                )
            )
    return out


_ID = b'"event_id":"'


def event_prediction_rows(
    events: Sequence[AnyEvent], references: Mapping[str, ModelSketch], pane_ms: int
) -> list[PredictionRow]:
    """:func:`prediction_rows` of decoded events (pushed ingest)."""
    rows = []
    ids = {m: reference_id(r.binning) for m, r in references.items() if r.binning.performance is not None}
    for e in events:
        if e.model_id not in ids:
            continue
        text = as_category(e.prediction) or ""
        pane = e.ts_ms - e.ts_ms % pane_ms
        segments = orjson.dumps(e.segments).decode()
        score, labelled = number(e.prediction), e.label is not None
        ref = ids[e.model_id]
        rows.append(
            PredictionRow(e.model_id, e.event_id, e.model_version, pane, score, text, labelled, segments, ref)
        )
    return rows


def event_id_of(raw: bytes) -> str:
    """The event_id of a message the scanner accepted: found in the bytes (no escapes in it, the
    common case), else by decoding the message."""
    at = raw.find(_ID)
    if at >= 0 and raw.count(_ID) == 1:  # a feature or segment named event_id: decode instead
        start = at + len(_ID)
        end = raw.find(b'"', start)
        if end > start and b"\\" not in raw[start:end]:
            return raw[start:end].decode()
    return str(orjson.loads(raw)["event_id"])


def _joined(w: LabelRow, version: str, pane: int) -> LabelRow:
    return LabelRow(w.model_id, w.event_id, w.label_num, w.label_text, w.label_ts, version, pane, w.source)


def joined_sketches(
    binning: Binning, rows: Sequence[JoinedRow], settings: ModelSettings, plan: Mapping[str, frozenset[str]]
) -> ModelSketch:
    """The label, performance and fairness (label counts) sketches of joined predictions and
    labels, on the reference's binning (prediction and label as it kinds them); ``settings``
    and ``plan``: what a positive is and which segment groups fairness keeps."""
    prediction: Column
    label: Column
    scores = np.array([r.score for r in rows], np.float64)
    classes = np.array([r.prediction_class for r in rows], dtype=object)
    numbers = np.array([r.label_num for r in rows], np.float64)
    texts = np.array([r.label_text for r in rows], dtype=object)
    prediction = scores if binning.output_kind("prediction") == "numeric" else dictionary_encode(classes)
    label = numbers if binning.output_kind("label") == "numeric" else dictionary_encode(texts)
    # a positive and a positive label as the stream judges them (the contract keeps both one type)
    numeric = not np.isnan(scores).all()
    threshold, positive_class = settings.positive_threshold, settings.positive_class
    positive = to_outcome(scores if numeric else classes, threshold, positive_class)
    # a label is judged by what it is: a number against the threshold, else its text (true, a class)
    outcome = np.where(
        np.isfinite(numbers), to_outcome(numbers, threshold), to_outcome(texts, threshold, positive_class)
    ).astype(np.int8)
    values = [orjson.loads(r.segments) for r in rows]
    attrs = sorted({a for v in values for a in v if a in plan})
    columns = {a: dictionary_encode(np.array([v.get(a) for v in values], dtype=object)) for a in attrs}
    segments, _ = bound_segments(columns, plan)
    return ModelSketch(binning).fold_labels(prediction, label, segments, positive, outcome)


class LabelJoiner:
    """Stores labels and joins them to their predictions (no Kafka: the consumer below and
    ``POST /v1/labels`` feed it)."""

    def __init__(
        self,
        store: Store,
        references: Mapping[str, ModelSketch],
        evaluators: Sequence[WindowEvaluator],
        pane_ms: int,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        name: str = "labels",
    ) -> None:
        """``evaluators``: every one whose windows the joined panes may be in (the stream's, the
        pushed path's); each computes them when they are final for its own producers."""
        self.labels = LabelStore(store)
        self.references = references
        self.evaluators = list(evaluators)
        self.pane_ms = pane_ms
        self.horizon_ms = horizon_ms
        self.name = name
        self.stats: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._orphaned: set[str] = set()

    def add(self, events: Sequence[tuple[LabelEvent, str]]) -> None:
        """Store labels of known models (with where they came from), join what can be joined."""
        latest: dict[tuple[str, str], tuple[LabelEvent, str]] = {}
        for label, source in events:  # a second label for an event in one batch: the later wins
            latest[(label.model_id, label.event_id)] = (label, source)
        by_model: dict[str, list[tuple[LabelEvent, str]]] = defaultdict(list)
        for label, source in latest.values():
            by_model[label.model_id].append((label, source))
        with self._lock:
            for model, items in sorted(by_model.items()):
                known = self.labels.predictions(model, [label.event_id for label, _ in items])
                rows = []
                for label, source in items:
                    version, pane = known.get(label.event_id, ("", -1))[:2]
                    rows.append(
                        LabelRow(model, label.event_id, number(label.label), as_category(label.label) or "",
                                 label.ts_ms, version, pane, source)
                    )  # fmt: skip
                self.labels.write_labels(rows)
                joined = sum(r.pane_start >= 0 for r in rows)
                self.stats["labels"] += len(rows)
                self.stats["joined"] += joined
                self.stats["waiting"] += len(rows) - joined
                prom.LABELS.labels(model, "joined").inc(joined)
                prom.LABELS.labels(model, "waiting").inc(len(rows) - joined)
                self._recompute(model, sorted({r.pane_start for r in rows if r.pane_start >= 0}))

    def sweep(self) -> None:
        """Join the waiting labels whose predictions arrived since; count the orphans."""
        with self._lock:
            by_model: dict[str, list[LabelRow]] = defaultdict(list)
            for w in self.labels.waiting(self.horizon_ms):
                by_model[w.model_id].append(w)
            for model, items in sorted(by_model.items()):
                if model not in self.references:
                    continue
                known = self.labels.predictions(model, [w.event_id for w in items])
                found = [_joined(w, *known[w.event_id][:2]) for w in items if w.event_id in known]
                if found:
                    # the panes first (they join by event_id), then the labels leave the waiting ones:
                    # a crash in between sweeps them again, which writes the same sketches
                    self._recompute(model, sorted({r.pane_start for r in found}))
                    self.labels.write_labels(found)
                    self.stats["joined"] += len(found)
                    prom.LABELS.labels(model, "joined").inc(len(found))
            orphans = self.labels.orphans(self.horizon_ms)
            for model in {*orphans, *self._orphaned}:  # a model's gauge goes back to 0 too
                prom.ORPHAN_LABELS.labels(model).set(orphans.get(model, 0))
            self._orphaned = set(orphans)
            self.stats["orphan_labels"] = sum(orphans.values())

    def _recompute(self, model: str, panes: Sequence[int]) -> None:
        """The touched panes' joined sketches, anew from the stored predictions and labels."""
        reference = self.references.get(model)
        if reference is None or not panes:
            return
        binning = reference.binning
        grouped: dict[tuple[str, int], list[JoinedRow]] = defaultdict(list)
        ref_id = reference_id(binning)
        for r in self.labels.joined(model, panes, ref_id):
            grouped[(r.model_version, r.pane_start)].append(r)
        models = self.evaluators[0].models
        settings, plan = models[model], models.segment_plan(model, binning)
        out = []
        for (version, pane), joined in sorted(grouped.items()):
            sketch = joined_sketches(binning, joined, settings, plan)
            n = len(joined)
            if sketch.performance is not None:
                out.append(("performance", model, version, pane, self.pane_ms, n,
                            sketch.performance.to_bytes(), ref_id))  # fmt: skip
            if "label" in sketch.outputs:
                out.append(("label", model, version, pane, self.pane_ms, n,
                            sketch.outputs["label"].to_bytes(), ref_id))  # fmt: skip
            if sketch.fairness.tables:
                fairness = sketch.fairness.to_bytes()
                out.append(("fairness", model, version, pane, self.pane_ms, n, fairness, ref_id))
        self.labels.write_joined(out)
        for evaluator in self.evaluators:  # the ones with producers: the others hold nothing of it
            if evaluator.active:
                evaluator.changed(
                    [(model, version, pane, True) for version, pane in grouped], None, self.name
                )


class LabelConsumer:
    """The label topic into a :class:`LabelJoiner`: a batch is stored and joined, then its
    offsets committed (a crash before the commit reads it again: the same upserts)."""

    def __init__(
        self,
        config: LabelConfig,
        store: Store,
        references: Mapping[str, ModelSketch],
        evaluator: WindowEvaluator,
        clock: Callable[[], float] = time.time,
        joiner: LabelJoiner | None = None,
    ) -> None:
        """``joiner``: the process's one (labels over HTTP go through it too); by default its own."""
        self.config = config
        self.joiner = joiner or LabelJoiner(store, references, [evaluator], config.pane_ms, config.horizon_ms)
        self.references = references
        self.evaluator = evaluator
        self.clock = clock
        self.stats = self.joiner.stats
        conf = client_config(config.bootstrap, config.kafka) | {"error_cb": log_error}
        self.dlq = DeadLetterRouter(conf, config.dlq_suffix, config.dlq_spill)
        self.consumer = Consumer(
            conf
            | {
                "group.id": f"{config.group}.labels",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self._last_sweep = 0.0

    def run(self, stop: threading.Event, idle_exit_s: float | None = None) -> None:
        """Read labels until ``stop`` (or, with ``idle_exit_s``, nothing arrived for that long)."""
        self.consumer.subscribe([self.config.topic])
        self.evaluator.attach()
        last = self.clock()
        try:
            while not stop.is_set():
                try:
                    msgs = self.consumer.consume(self.config.batch_size, 0.5)
                    msgs = [m for m in msgs if m.error() is None]
                    if msgs:
                        self.handle(msgs)
                        last = self.clock()
                    if self.clock() - self._last_sweep >= self.config.sweep_interval_s:
                        self._last_sweep = self.clock()
                        self.joiner.sweep()
                except (KafkaException, StoreError):
                    # nothing was committed: the batch is read again from the committed offsets
                    log.exception("label step failed; re-reading from the committed offsets")
                    self.stats["recoveries"] += 1
                    self._rewind()
                    stop.wait(1.0)
                if idle_exit_s is not None and self.clock() - last > idle_exit_s:
                    break
            self.joiner.sweep()
        finally:
            self.consumer.close()
            self.dlq.close()
            self.evaluator.detach()

    def handle(self, msgs: list[Message]) -> None:
        """Store a batch of labels, join what can be joined, then commit its offsets."""
        events: list[tuple[LabelEvent, str]] = []
        for m in msgs:
            value, topic, partition, offset = m.value() or b"", m.topic() or "", m.partition(), m.offset()
            try:
                label = parse_label(value)
            except InvalidEvent as exc:
                self.dlq.route(Rejected(value, str(exc), topic, partition or 0, offset or 0, m.key()))
                self.stats["rejected"] += 1
                prom.LABELS.labels("", "rejected").inc()
                continue
            reference = self.references.get(label.model_id)
            if reference is None or reference.binning.performance is None:
                reason = f"model_id: no reference registered for model {label.model_id!r}"
                if reference is not None:
                    reason = (
                        f"model_id: the reference of {label.model_id!r} has no labels (build it with them)"
                    )
                self.dlq.route(Rejected(value, reason, topic, partition or 0, offset or 0, m.key()))
                self.stats["rejected"] += 1
                prom.LABELS.labels("", "rejected").inc()
                continue
            events.append((label, f"{topic}[{partition}]@{offset}"))
        self.joiner.add(events)
        self.dlq.flush()  # acknowledged or spilled before the commit covers them
        self.consumer.commit(asynchronous=False)

    def _rewind(self) -> None:
        """Back to the committed offsets of every assigned partition."""
        try:
            assigned = self.consumer.assignment()
            for tp in self.consumer.committed(assigned, timeout=10):
                tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING  # none committed yet
                self.consumer.seek(tp)
        except KafkaException:
            log.exception("could not rewind the label consumer")
