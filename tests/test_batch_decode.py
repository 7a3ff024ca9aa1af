"""A consumed batch through the decode step and the folder, without a broker (confluent-kafka
builds ``Message`` objects directly): the scanned path must store exactly what the contract
path stores, and every rejection must carry the contract's reason."""

from __future__ import annotations

import numpy as np
import orjson
from confluent_kafka import Message
from dashboards.sample import reference_sketch
from hypothesis import given
from hypothesis import strategies as st

from driftline.contract import InvalidEvent
from driftline.detectors.numeric import NumericSketch
from driftline.detectors.profile import ModelSketch
from driftline.ingest.batch import BatchDecoder
from driftline.ingest.decode import decode
from driftline.ingest.panes import PaneFolder, WindowSpec
from driftline.simulate import Traffic, bad_message, events, generate
from driftline.storage.codec import merge_rows

START_MS = 1_767_225_600_000
NOW_S = START_MS / 1000 + 3600
SPEC = WindowSpec(pane_ms=60_000, lateness_ms=30_000)


def messages(values: list[bytes], partitions: list[int]) -> list[Message]:
    offsets: dict[int, int] = {}
    out = []
    for v, p in zip(values, partitions, strict=True):
        offsets[p] = offsets.get(p, -1) + 1
        out.append(Message(topic="t", partition=p, offset=offsets[p], value=v, key=b"k"))
    return out


def traffic(n: int, seed: int) -> list[bytes]:
    return [orjson.dumps(e) for e in events(generate(Traffic(n=n, seed=seed, start_ms=START_MS, rate=20)))]


REFERENCES = {"churn": reference_sketch("churn")}


def test_every_rejection_has_the_contract_reason_and_the_rest_is_accepted_per_partition() -> None:
    rng = np.random.default_rng(3)
    good = traffic(400, seed=1)
    values, expected = [], {}
    for i, raw in enumerate(good):
        if i % 9 == 4:
            raw, _ = bad_message(rng, raw)
        elif i % 31 == 7:
            raw = raw.replace(b'"model_id":"churn"', b'"model_id":"other"')
        elif i % 37 == 11:  # two days ahead of the clock
            raw = orjson.dumps({**orjson.loads(raw), "ts": int(NOW_S * 1000) + 2 * 86_400_000})
        values.append(raw)
        try:
            e = decode(raw, 1 << 20, int(NOW_S * 1000) + 86_400_000)
            if e.model_id not in REFERENCES:
                raise InvalidEvent("model_id", f"no reference registered for model {e.model_id!r}")
        except InvalidEvent as exc:
            expected[i] = str(exc)
    partitions = [i % 3 for i in range(len(values))]
    decoded = BatchDecoder(REFERENCES, 1 << 20, 86_400_000, lambda: NOW_S).decode(
        messages(values, partitions)
    )
    got = {r.partition * 10_000 + r.offset: r.reason for r in decoded.rejected}
    want = {partitions[i] * 10_000 + i // 3: reason for i, reason in expected.items()}
    assert got == want and len(got) > 40
    assert decoded.accepted == len(values) - len(expected)
    assert decoded.per_model == {"churn": decoded.accepted}
    for (_, p), rows in decoded.by_partition.items():
        assert all(partitions[i] == p for i in rows.tolist()) and list(rows) == sorted(rows)
    assert decoded.ranges == {("t", p): (0, len(values) // 3 - (p >= len(values) % 3)) for p in range(3)}


@given(st.integers(0, 2**31), st.integers(1, 4))
def test_the_scanned_path_stores_what_the_contract_path_stores(seed: int, n_partitions: int) -> None:
    rng = np.random.default_rng(seed)
    values = traffic(300, seed=seed % 1000)
    # a few the scanner leaves to the contract parser (escapes) but that are valid
    for i in rng.choice(len(values), 10, replace=False).tolist():
        values[i] = values[i].replace(b'"region":"', b'"region":"\\u0041', 1)
    partitions = rng.integers(0, n_partitions, len(values)).tolist()
    decoded = BatchDecoder(REFERENCES, 1 << 20, None).decode(messages(values, partitions))
    assert not decoded.rejected and decoded.accepted == len(values)
    scanned_path, contract_path = PaneFolder(REFERENCES, SPEC), PaneFolder(REFERENCES, SPEC)
    for key, rows in sorted(decoded.by_partition.items()):
        scanned_path.fold_scanned(key, decoded.scanned, rows, decoded.events)
        contract_path.fold([decode(values[i], 1 << 20) for i in rows.tolist()], key)
    assert scanned_path.late_events == contract_path.late_events
    binning = REFERENCES["churn"].binning
    for key in decoded.by_partition:
        (a_rows, a_panes), (b_rows, b_panes) = scanned_path.take_rows(key), contract_path.take_rows(key)
        assert a_panes == b_panes
        for pane in a_panes:
            a = merge_rows(binning, [r for r in a_rows if (r.pane_start, r.late) == pane[2:]])
            b = merge_rows(binning, [r for r in b_rows if (r.pane_start, r.late) == pane[2:]])
            assert_same_sketch(a, b)


def assert_same_sketch(a: ModelSketch, b: ModelSketch) -> None:
    """Equal counts everywhere; sums may differ in the last bits (they are added in another order)."""
    assert a.n_events == b.n_events
    for name, fa in a.features.items():
        fb = b.features[name]
        assert np.array_equal(fa.counts, fb.counts), name
        assert fa.type_errors == fb.type_errors
        if isinstance(fa, NumericSketch) and isinstance(fb, NumericSketch):
            assert np.array_equal(fa.hits, fb.hits) and fa.n_missing == fb.n_missing
            assert np.allclose(fa.moments, fb.moments, rtol=1e-12, atol=0), name
        else:
            assert fa.unseen == fb.unseen  # type: ignore[union-attr]
    assert np.array_equal(a.latency.counts, b.latency.counts)
    assert np.allclose(a.latency.extremes, b.latency.extremes, rtol=1e-12)
    assert a.fairness.to_bytes() == b.fairness.to_bytes()
