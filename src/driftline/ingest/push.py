"""Events pushed in batches instead of pulled from Kafka: HTTP ``POST /v1/events`` and ``driftline replay``.

Same contract, same panes, same store and window evaluation as the Kafka path. Each call is
stored before it returns (one insert), so an acknowledged request is durable.

* **Producers.** Each producer (an API key over HTTP) has its own event-time watermark, as a Kafka
  partition has: its events are late only against its own traffic, so one client's clock or backlog
  never makes another's events late. A window is final once every producer heard from within the
  idle time has passed it, except that a producer more than the lateness behind the leading one
  holds nothing back (all of them silent: everything seen so far). A producer whose events land in
  panes already final is still on time for itself; the windows containing those panes are computed
  again.
* **Idempotency.** An ``Idempotency-Key`` is scoped to the producer and the models of the request.
  Its first success is remembered (24 h, bounded): a retry with the same body gets that answer
  again without being folded twice; the same key with another body is refused
  (:class:`IdempotencyConflict`). The insert token names the scope, the key *and* the body, so a
  retry after a restart is still stored once, and another body is never dropped as a duplicate.
* **Failures.** A store write that fails leaves nothing behind: the producer's watermark, pane
  state and counters are restored, so the retry is judged exactly as the first attempt was.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from driftline import telemetry as prom
from driftline.contract import MAX_EVENT_BYTES, InvalidEvent
from driftline.detectors.profile import ModelSketch
from driftline.ingest.decode import AnyEvent, decode
from driftline.ingest.evaluate import WindowEvaluator
from driftline.ingest.labels import event_prediction_rows
from driftline.ingest.panes import PaneFolder, PaneKey, WindowSpec
from driftline.ingest.warmup import Bootstrapper, warm_up
from driftline.storage.errors import StoreError
from driftline.storage.labels import LabelStore
from driftline.storage.rows import PaneRow
from driftline.storage.store import Store
from driftline.storage.warmup import staged_row

log = logging.getLogger("driftline.ingest")
IDEMPOTENCY_TTL_S = 86_400.0
IDEMPOTENCY_MAX_KEYS = 100_000


@dataclass
class IngestResult:
    accepted: int = 0
    late: int = 0
    staged: int = 0  # of the accepted: of models warming up, kept until their reference is fitted
    errors: list[dict[str, object]] = field(default_factory=list)  # {"index", "field", "reason"}


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was used before, in the same scope, with a different body."""


@dataclass(frozen=True)
class _Reply:
    digest: str
    at: float
    result: IngestResult


class PushIngest:
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
        keep_predictions_ms: int | None = None,
        bootstrapper: Bootstrapper | None = None,
    ) -> None:
        """``keep_predictions_ms``: labels are joined later (label topic, ``POST /v1/labels``):
        keep each prediction this long. ``bootstrapper``: events of a model without a reference are
        kept (staged in the request's insert) until it fits one; none: they are rejected."""
        self.store = store
        # live views: newly stored references and registrations apply
        self.references = references
        self.spec = spec
        self.evaluator = evaluator
        self.source = source
        self.clock = clock
        self.max_event_bytes = max_event_bytes
        self.max_future_ms = max_future_ms  # None for backfills of any period
        self.keep_predictions_ms = keep_predictions_ms
        self._folders: dict[str, PaneFolder] = {}  # per producer
        self._heard: dict[str, float] = {}  # producer -> wall clock of its last stored request
        self._final: int | None = None  # event time up to here is final for every active producer
        self._replies: OrderedDict[tuple[str, tuple[str, ...], str], _Reply] = OrderedDict()
        self._lock = threading.Lock()
        self.bootstrapper = bootstrapper

    def ingest(
        self, messages: Sequence[bytes], idempotency_key: str | None = None, producer: str | None = None
    ) -> IngestResult:
        """Validate, fold and store a batch from ``producer`` (default: the source); rejected events
        are reported, the rest stored. Raises IdempotencyConflict, or StoreError with nothing kept."""
        producer = producer or self.source
        result = IngestResult()
        events: list[AnyEvent] = []
        staged: dict[str, list[tuple[AnyEvent, bytes]]] = {}  # models warming up
        horizon = None if self.max_future_ms is None else int(self.clock() * 1000) + self.max_future_ms
        for i, raw in enumerate(messages):
            try:
                e = decode(raw, self.max_event_bytes, horizon)
                if e.model_id in self.references:
                    events.append(e)
                    continue
                model = e.model_id
                refused = (
                    self.bootstrapper.refusal(model)
                    if self.bootstrapper
                    else f"no reference registered for model {model!r}"
                )
                if refused is not None:
                    raise InvalidEvent("model_id", refused)
                staged.setdefault(model, []).append((e, raw))
            except InvalidEvent as exc:
                result.errors.append({"index": i, "field": exc.field, "reason": exc.reason})
        if result.errors:
            prom.EVENTS.labels("", "rejected").inc(len(result.errors))
        if not events and not staged:
            return result
        models = tuple(sorted({e.model_id for e in events} | set(staged)))
        digest = _digest(messages)
        scope = None if idempotency_key is None else (producer, models, idempotency_key)
        with self._lock:
            now = self.clock()
            if scope is not None and (reply := self._reply(scope, now)) is not None:
                if reply.digest != digest:
                    raise IdempotencyConflict(
                        f"Idempotency-Key {idempotency_key!r} was used for another request body "
                        "(same API key and models): use a new key for new events"
                    )
                return reply.result
            if producer not in self._folders:
                self._folders[producer] = PaneFolder(self.references, self.spec, self.evaluator.models)
            folder = self._folders[producer]
            final_before = self._final_ms(now)
            saved = copy.deepcopy(folder.watermark), folder.late_events, folder.pending_events
            token = _token(self.source, scope, digest) if scope else f"{self.source}:{uuid.uuid4().hex}"
            try:
                folder.fold(events, producer)
                rows, panes = folder.take_rows(producer)
                rows += _staged_rows(token, staged)
                if staged:  # their event time moves the producer on (a warm-up range ends by it)
                    newest = max(e.ts_ms for pairs in staged.values() for e, _ in pairs)
                    folder.watermark.observe(producer, newest)
                with prom.STORE_WRITE_SECONDS.time():
                    self.store.write_flush(self.source, rows, None, token=token)
                if self.keep_predictions_ms:
                    self._keep_predictions(events)
            except Exception as exc:
                folder.state.pop(producer, None)
                folder.watermark, folder.late_events, folder.pending_events = saved
                if isinstance(exc, StoreError):
                    prom.STORE_ERRORS.labels("flush").inc()
                raise
            self._heard[producer] = now
            prom.PANES_FLUSHED.inc(len(rows))
            result.staged = sum(map(len, staged.values()))
            result.accepted = len(events) + result.staged
            if staged and self.bootstrapper is not None:
                self.bootstrapper.staged(self.source)
            result.late = folder.late_events - saved[1]
            self.evaluator.changed(_for_evaluation(panes, final_before, self.spec), self._final_ms(now))
            if scope is not None:
                self._remember(scope, _Reply(digest, now, result))
            self._evaluate()
        for model, n in Counter(e.model_id for e in events).items():
            prom.EVENTS.labels(model, "accepted").inc(n)
        if result.staged:
            prom.EVENTS.labels("", "staged").inc(result.staged)
        if result.late:
            prom.EVENTS.labels("", "late").inc(result.late)
        return result

    def _keep_predictions(self, events: Sequence[AnyEvent]) -> None:
        """After the panes: a prediction is never joined unless its event was counted. The events
        are stored and acknowledged either way: should this write fail, their labels will not
        join (they end as orphans, counted) rather than the request being retried and counted twice."""
        kept = event_prediction_rows(events, self.references, self.spec.pane_ms)
        try:
            LabelStore(self.store).write_predictions(kept, self.keep_predictions_ms or 0)
        except StoreError as exc:
            prom.STORE_ERRORS.labels("predictions").inc()
            log.error("%d predictions not kept for their labels: %s", len(kept), exc)

    def finish(self) -> None:
        """Evaluate every window now (the end of a backfill: no later events will come)."""
        self.warm_up()
        self.evaluator.close_all()
        self._evaluate()

    def tick(self) -> None:
        """Let producers that went quiet stop holding windows back; fit the references of models
        done warming up and fold their staged events; evaluate what became due (and windows a
        failed store write left queued)."""
        self.warm_up()
        with self._lock:
            final = self._final_ms(self.clock())
        self.evaluator.changed((), final)
        self._evaluate()

    def warm_up(self) -> None:
        """Fit the references of models done warming up and fold their staged events (each staged
        row in its own insert, named by it: see ``ingest/warmup.py``)."""
        if self.bootstrapper is None:
            return
        with self._lock:
            final = self._final_ms(self.clock())
        panes = warm_up(self.bootstrapper, self.source, final)
        if panes:
            with self._lock:
                final = self._final_ms(self.clock())
            self.evaluator.changed(_for_evaluation(panes, final, self.spec), final)

    def _final_ms(self, now: float) -> int | None:
        """Event time final for evaluation: the min over the producers heard from within the idle
        time of their watermarks, but at most ``lateness`` behind the leading one (a client far
        behind, or feeding old events, does not hold every window back); all quiet: the max.
        Never moves backwards."""
        marks = {p: f.watermark.current() for p, f in self._folders.items()}
        known = {p: m for p, m in marks.items() if m is not None}
        active = [m for p, m in known.items() if now - self._heard.get(p, now) < self.spec.idle_ms / 1000]
        if active:
            value: int | None = max(min(active), max(active) - self.spec.lateness_ms)
        else:
            value = max(known.values(), default=None)
        if value is not None and (self._final is None or value > self._final):
            self._final = value
        return self._final

    def _reply(self, scope: tuple[str, tuple[str, ...], str], now: float) -> _Reply | None:
        reply = self._replies.get(scope)
        if reply is not None and now - reply.at >= IDEMPOTENCY_TTL_S:
            del self._replies[scope]
            return None
        return reply

    def _remember(self, scope: tuple[str, tuple[str, ...], str], reply: _Reply) -> None:
        self._replies[scope] = reply
        self._replies.move_to_end(scope)
        while len(self._replies) > IDEMPOTENCY_MAX_KEYS:
            self._replies.popitem(last=False)  # the oldest: its retries are still stored once (token)

    def _evaluate(self) -> None:
        try:
            self.evaluator.evaluate_due()
        except StoreError as exc:  # stays queued: the next call retries
            log.warning("window evaluation deferred (%s)", exc)


def _staged_rows(token: str, staged: Mapping[str, list[tuple[AnyEvent, bytes]]]) -> list[PaneRow]:
    """One staged row per model, named by the request's insert token (unique, and the same on a
    retry of the same request, which is then stored once)."""
    rows = []
    for model, pairs in sorted(staged.items()):
        ident = int(hashlib.sha256(f"{token}|{model}".encode()).hexdigest()[:15], 16)
        rows.append(staged_row(model, min(e.ts_ms for e, _ in pairs), (ident, ident), [r for _, r in pairs]))
    return rows


def _digest(messages: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(len(m).to_bytes(8, "little"))
        h.update(m)
    return h.hexdigest()


def _token(source: str, scope: tuple[str, tuple[str, ...], str], digest: str) -> str:
    producer, models, key = scope
    named = "\x00".join((source, producer, *models, key, digest)).encode()
    return f"{source}:{hashlib.sha256(named).hexdigest()[:32]}"


def _for_evaluation(panes: list[PaneKey], final_ms: int | None, spec: WindowSpec) -> list[PaneKey]:
    """Panes already final for the other producers change windows that may be computed: the
    evaluator treats them as late panes (every window containing them is computed again)."""
    if final_ms is None:
        return panes
    return [(m, v, s, late or s + spec.pane_ms <= final_ms) for m, v, s, late in panes]
