"""Events that arrive without Kafka (HTTP ``POST /v1/events``, ``driftline replay``).

Same contract, same panes, same store and window evaluation as the Kafka path. Each call is
stored before it returns (one insert), so an acknowledged request is durable; its insert token
is the caller's ``Idempotency-Key`` when given, so a retried request is stored once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from driftline import metrics as prom
from driftline.contract import MAX_EVENT_BYTES, InvalidEvent
from driftline.detectors.profile import ModelSketch
from driftline.ingest.decode import AnyEvent, decode
from driftline.ingest.evaluate import WindowEvaluator
from driftline.ingest.panes import PaneFolder, WindowSpec
from driftline.storage.store import Store, StoreError

log = logging.getLogger("driftline.ingest")


@dataclass
class IngestResult:
    accepted: int = 0
    late: int = 0
    errors: list[dict[str, object]] = field(default_factory=list)  # {"index", "field", "reason"}


class DirectIngest:
    def __init__(
        self,
        store: Store,
        references: Mapping[str, ModelSketch],
        spec: WindowSpec,
        evaluator: WindowEvaluator,
        source: str = "http",
        clock: Callable[[], float] = time.time,
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_future_ms: int | None = 86_400_000,
    ) -> None:
        self.store = store
        self.references = references
        # live views: newly stored references and registrations apply
        self.folder = PaneFolder(references, spec, evaluator.models)
        self.evaluator = evaluator
        self.source = source
        self.clock = clock
        self.max_event_bytes = max_event_bytes
        self.max_future_ms = max_future_ms  # None for backfills of any period
        self._lock = threading.Lock()

    def ingest(self, messages: Sequence[bytes], idempotency_key: str | None = None) -> IngestResult:
        """Validate, fold and store a batch; rejected events are reported, the rest stored."""
        result = IngestResult()
        events: list[AnyEvent] = []
        horizon = None if self.max_future_ms is None else int(self.clock() * 1000) + self.max_future_ms
        for i, raw in enumerate(messages):
            try:
                e = decode(raw, self.max_event_bytes, horizon)
                if e.model_id not in self.references:
                    raise InvalidEvent("model_id", f"no reference registered for model {e.model_id!r}")
                events.append(e)
            except InvalidEvent as exc:
                result.errors.append({"index": i, "field": exc.field, "reason": exc.reason})
        if result.errors:
            prom.EVENTS.labels("", "rejected").inc(len(result.errors))
        if not events:
            return result
        with self._lock:
            late_before = self.folder.late_events
            self.folder.fold(events, self.source)
            rows, panes = self.folder.take_rows(self.source)
            token = (
                f"{self.source}:{idempotency_key}" if idempotency_key else f"{self.source}:{uuid.uuid4().hex}"
            )
            try:
                with prom.STORE_WRITE_SECONDS.time():
                    self.store.write_flush(self.source, rows, None, token=token)
            except Exception:
                # Nothing was stored; the caller retries. The watermark has already seen these event
                # times, so a retry of old panes lands in their correction sketches (still counted).
                prom.STORE_ERRORS.labels("flush").inc()
                raise
            prom.PANES_FLUSHED.inc(len(rows))
            result.accepted = len(events)
            result.late = self.folder.late_events - late_before
            self.evaluator.changed(panes, self.folder.watermark.current())
            self._evaluate()
        for model, n in Counter(e.model_id for e in events).items():
            prom.EVENTS.labels(model, "accepted").inc(n)
        if result.late:
            prom.EVENTS.labels("", "late").inc(result.late)
        return result

    def finish(self) -> None:
        """Evaluate every window now (the end of a backfill: no later events will come)."""
        self.evaluator.close_all()
        self._evaluate()

    def tick(self) -> None:
        """Evaluate what became due (windows a failed store write left queued)."""
        self._evaluate()

    def _evaluate(self) -> None:
        try:
            self.evaluator.evaluate_due()
        except StoreError as exc:  # stays queued: the next call retries
            log.warning("window evaluation deferred (%s)", exc)
