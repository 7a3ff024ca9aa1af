"""Drift metrics of windows, computed from every stored partial once the window is final.

The evaluator keeps the set of windows to (re)compute: the window ending at each pane a flush
touched, every already computed window that contains a pane late events were added to, and, at
start, every window whose stored panes changed after its metrics were computed (or that has none:
a predecessor crashed before evaluating it). A window is computed only once event time up to its
end is final *and stored* for every member that shares the evaluator (the group members of one
process: each window is computed once, not once per member), on its own thread, so a burst of
evaluations never blocks the poll loop.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from driftline import telemetry as prom
from driftline.detectors.profile import ModelRegistry, ModelSketch, drift_report
from driftline.detectors.slice_ids import parse_slice_id
from driftline.detectors.windows import rolling_range
from driftline.ingest.panes import WindowSpec
from driftline.storage.codec import merge_rows, metric_rows, pick_reference, stored_reference
from driftline.storage.errors import StoreError
from driftline.storage.rows import MetricRow
from driftline.storage.store import Store

log = logging.getLogger("driftline.windows")
OnWindow = Callable[[str, str, int, int, list[MetricRow]], None]
Window = tuple[str, str, int]  # model, version, window end
ChangedPane = tuple[str, str, int, bool]  # model, version, pane start, late
CATCH_UP_HORIZON_MS = 7 * 86_400_000
NEVER = -(2**62)


class WindowEvaluator:
    def __init__(
        self,
        store: Store,
        references: Mapping[str, ModelSketch],
        spec: WindowSpec,
        models: ModelRegistry,
        on_window: OnWindow | None = None,
        name: str = "",
    ) -> None:
        """``models``: each model's registered settings; its thresholds judge its windows and the
        folders that feed this evaluator fold with it."""
        self.store = store
        self.references = references
        self._versions: dict[tuple[str, str], ModelSketch | None] = {}  # replaced references, by id
        self.spec = spec
        self.models = models
        self.on_window = on_window
        self.name = name
        self.evaluated = 0
        self._pending: set[Window] = set()
        self._late: dict[tuple[str, str], set[int]] = {}  # late panes not yet mapped to windows
        self._finals: dict[str, int] = {}  # per member: event time up to here is final and stored
        self._departed: dict[str, int] = {}  # the last of members that read nothing any more
        self._closed = False
        self._wake = threading.Condition()
        self._catch_up = False
        self._members = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what changed (any thread) --------------------------------------------------------------

    def changed(self, panes: Iterable[ChangedPane], final_ms: int | None, member: str = "") -> None:
        """A flush was stored: these panes changed; for ``member``, event time up to ``final_ms``
        is final and stored."""
        with self._wake:
            for model, version, start, late in panes:
                if late:
                    self._late.setdefault((model, version), set()).add(start)
                else:
                    self._pending.add((model, version, start + self.spec.pane_ms))
            if final_ms is not None:
                self._departed.pop(member, None)
                if final_ms > self._finals.get(member, NEVER):
                    self._finals[member] = final_ms
            self._wake.notify()

    def withdraw(self, member: str, stopping: bool = False) -> None:
        """``member`` reads nothing any more: it lost its partitions (it holds nothing back), or it
        is stopping (when no member reads any more, what the stopped ones had stored is final)."""
        with self._wake:
            final = self._finals.pop(member, None)
            if stopping and final is not None:
                self._departed[member] = final
            self._wake.notify()

    def close_all(self) -> None:
        """No more events will come (the end of a replay): every window is final."""
        with self._wake:
            self._closed = True
            self._wake.notify()

    @property
    def final_ms(self) -> int:
        if self._closed:
            return 2**62
        return min(self._finals.values() or self._departed.values(), default=NEVER)

    # -- the evaluation thread, shared by the members that attach ------------------------------

    def attach(self) -> None:
        with self._wake:
            self._members += 1
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name=f"{self.name or 'windows'}-eval", daemon=True
                )
                self._thread.start()

    def detach(self) -> None:
        """The last member to leave stops the thread and computes what is due now (a later
        process catches up on the rest)."""
        with self._wake:
            self._members -= 1
            last, thread = self._members == 0, self._thread
            if last:
                self._thread = None
                self._stop.set()
                self._wake.notify()
        if last and thread is not None:
            thread.join()
            try:
                self.evaluate_due()
            except StoreError as exc:
                log.warning("windows left for the next start's catch-up (%s)", exc)

    def request_catch_up(self) -> None:
        with self._wake:
            self._catch_up = True
            self._wake.notify()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._catch_up:
                try:
                    self.catch_up()
                    self._catch_up = False
                except StoreError as exc:
                    log.warning("catch-up deferred (%s)", exc)
            self.run_once(self._stop)

    def catch_up(self, horizon_ms: int = CATCH_UP_HORIZON_MS) -> None:
        """Queue every window whose panes changed after it was computed, or that was never
        computed (panes within ``horizon_ms`` of the newest stored pane)."""
        changes = self.store.pane_changes(horizon_ms)
        if not changes:
            return
        computed = self.store.windows_computed(self.spec.window_ms, min(c[2] for c in changes) - 1)
        stale = _stale_windows(changes, computed, self.spec.pane_ms, self.spec.window_ms)
        log.info("catch-up: %d windows to compute", len(stale))
        with self._wake:
            self._pending.update(stale)
            self._wake.notify()

    @property
    def active(self) -> bool:
        """Members are attached, or some producer (an HTTP client) told it what is final: it will
        compute what it is given (an evaluator of no traffic would only pile it up)."""
        with self._wake:
            return self._members > 0 or bool(self._finals or self._departed) or self._closed

    @property
    def due(self) -> int:
        """Queued windows that are final already (the others wait for event time to pass them)."""
        with self._wake:
            final = self.final_ms
            return sum(w[2] <= final for w in self._pending) + sum(map(len, self._late.values()))

    @property
    def pending(self) -> int:
        with self._wake:
            return len(self._pending) + sum(map(len, self._late.values()))

    # -- evaluation ---------------------------------------------------------------------------

    def run_once(self, stop: threading.Event, wait_s: float = 0.5) -> None:
        """One turn of the evaluation thread: wait for news (at most ``wait_s``), compute what is due."""
        with self._wake:
            self._wake.wait(wait_s)
        try:
            self.evaluate_due()
        except StoreError as exc:
            log.warning("window evaluation deferred (%s)", exc)
            stop.wait(1.0)
        except Exception:  # never let the thread die: the windows stay queued
            log.exception("window evaluation failed")
            stop.wait(1.0)

    def evaluate_due(self) -> int:
        """Compute every due window now; returns how many. Raises StoreError, leaving the rest queued."""
        self._map_late()
        with self._wake:
            final = self.final_ms
            due = sorted(w for w in self._pending if w[2] <= final)
        done = 0
        for window in due:
            try:
                self._evaluate(*window)
            except StoreError:
                prom.STORE_ERRORS.labels("metrics").inc()
                raise
            with self._wake:
                self._pending.discard(window)
            done += 1
        if self.name:
            prom.WINDOWS_PENDING.labels(self.name).set(self.pending)
        return done

    def _map_late(self) -> None:
        """Late panes -> the windows that contain them: those already computed, plus the one that
        ends with the pane (so every pane with events ends a window)."""
        with self._wake:
            late, self._late = self._late, {}
        try:
            for (model, version), starts in late.items():
                lo, hi = min(starts), max(starts) + self.spec.window_ms
                ends = self.store.windows_computed(self.spec.window_ms, lo, hi, model, version)
                windows = {
                    (model, version, e)
                    for (_, _, e) in ends
                    if any(e - self.spec.window_ms <= s < e for s in starts)
                }
                windows |= {(model, version, s + self.spec.pane_ms) for s in starts}
                with self._wake:
                    self._pending |= windows
        except StoreError:
            with self._wake:  # put them back: mapped at the next attempt
                for key, starts in late.items():
                    self._late.setdefault(key, set()).update(starts)
            raise

    def _evaluate(self, model: str, version: str, end: int) -> None:
        reference = self.references.get(model)
        if reference is None:
            return  # the model's reference was removed: nothing to compare with
        begin = end - self.spec.window_ms
        read_at = datetime.now(UTC)
        rows = self.store.pane_rows(model, begin, end, model_version=version)
        counts: Counter[str] = Counter()
        for r in rows:
            if r.kind == "events":
                counts[r.reference_id] += r.n
        reference, _ = pick_reference(reference, counts, lambda r: self._version(model, r))
        settings = self.models[model]
        thresholds = settings.thresholds
        if settings.against is not None:  # a rolling reference: stored panes on the same bins
            lo, hi = rolling_range(settings.against, begin, end)
            earlier = self.store.pane_rows(model, lo, hi, model_version=version)
            reference = merge_rows(reference.binning, earlier)
        report = drift_report(reference, merge_rows(reference.binning, rows), thresholds)
        window = metric_rows(report, model, version, begin, end)
        # a slice (or a rolling reference) with too few events on either side is stored but not
        # judged (nor alerted on): the first windows of a model have no previous one
        judged = (parse_slice_id(model) is None and settings.against is None) or (
            min(report["n_reference"], report["n_current"]) >= thresholds.min_support
        )
        if not judged:
            window = [replace(r, status="insufficient") for r in window]
        self.store.write_metrics(window, computed_at=read_at)
        self.evaluated += 1
        prom.WINDOWS_EVALUATED.labels(model).inc()
        for r in window:
            if r.metric in prom.GAUGED_METRICS and r.feature:
                prom.DRIFT_VALUE.labels(model, r.feature, r.metric).set(r.value)
        if self.on_window is not None and judged:
            try:
                self.on_window(model, version, begin, end, window)
            except Exception:  # the metrics are stored; alerting's own failure must not stop ingest
                log.exception("window hook failed for %s [%d, %d)", model, begin, end)

    def _version(self, model: str, ref_id: str) -> ModelSketch | None:
        """A replaced reference of the model (its panes' bins), loaded once."""
        key = (model, ref_id)
        if key not in self._versions:
            self._versions[key] = stored_reference(self.store, model, ref_id)
        return self._versions[key]


def _stale_windows(
    changes: list[tuple[str, str, int, int]], computed: Mapping[Window, int], pane_ms: int, window_ms: int
) -> set[Window]:
    """Windows ending at each pane with events whose newest pane write is newer than their metrics.

    ``changes`` is sorted by (model, version, pane start); a deque keeps the sliding maximum of
    the write times over the panes each window covers.
    """
    stale: set[Window] = set()
    i = 0
    while i < len(changes):
        model, version = changes[i][0], changes[i][1]
        j = i
        while j < len(changes) and changes[j][:2] == (model, version):
            j += 1
        group = changes[i:j]
        newest: deque[tuple[int, int]] = deque()  # (pane start, write time), write times decreasing
        for _, _, start, written in group:
            while newest and newest[-1][1] <= written:
                newest.pop()
            newest.append((start, written))
            end = start + pane_ms
            while newest[0][0] < end - window_ms:
                newest.popleft()
            done = computed.get((model, version, end))
            if done is None or done < newest[0][1]:
                stale.add((model, version, end))
        i = j
    return stale
