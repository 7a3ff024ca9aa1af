"""The label tables at scale and at their edges: long lookups, waiting labels within the horizon,
the newest label wins, event ids found in the bytes only when unambiguous."""

from __future__ import annotations

import time

import orjson

from driftline.detectors.profile import ModelRegistry, ModelSettings
from driftline.ingest.labels import event_id_of
from driftline.storage.labels import LabelRow, LabelStore, PredictionRow
from driftline.storage.store import Store

from .helpers import write_reference


def test_lookups_of_many_ids_and_the_newest_label(store: Store) -> None:
    labels = LabelStore(store)
    ids = [f"event-{i:06d}-" + "x" * 60 for i in range(5000)]  # far beyond one query's text limit
    labels.write_predictions([PredictionRow("m", e, "v1", 60_000, 0.5, "0.5", False) for e in ids], 3_600_000)
    assert len(labels.predictions("m", ids)) == 5000
    late = LabelRow("m", ids[0], 1.0, "1", label_ts=2_000)
    early = LabelRow("m", ids[0], 0.0, "0", label_ts=1_000)
    labels.write_labels([late])
    labels.write_labels([early])  # replayed after the newer one: the newer stays
    assert [w.label_text for w in labels.waiting(3_600_000)] == ["1"]
    time.sleep(0.05)
    assert labels.waiting(10) == []  # older than the horizon: an orphan, no longer swept
    assert labels.orphans(10) == {"m": 1}


def test_event_id_from_the_bytes_only_when_unambiguous() -> None:
    plain = orjson.dumps({"event_id": "e1", "model_id": "m", "features": {"a": 1}})
    assert event_id_of(plain) == "e1"
    tricky = orjson.dumps({"features": {"event_id": "x"}, "event_id": "e2", "model_id": "m"})
    assert event_id_of(tricky) == "e2"
    escaped = orjson.dumps({"event_id": 'e"3', "model_id": "m"})
    assert event_id_of(escaped) == 'e"3'


def test_slice_attributes_are_folded_even_when_registered_segments_leave_them_out(tmp_path) -> None:
    from driftline.ingest.files import TableSpec, load_reference

    ref = write_reference(tmp_path / "ref.parquet", n=2000)
    sketch, _ = load_reference(
        ref, TableSpec(segments=["region", "gender"], prediction="prediction"), 100, 10
    )
    models = ModelRegistry()
    models["churn"] = ModelSettings(segments=("gender",), slices=("region",))
    assert set(models.segment_plan("churn", sketch.binning)) == {"region", "gender"}
