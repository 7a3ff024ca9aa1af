"""One conformance suite over every sketch: merge laws, parts == whole, serialisation, empty input."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.detectors._codec import SketchFormatError
from driftline.detectors.categorical import CategoricalSketch, Vocabulary
from driftline.detectors.fairness import FairnessSketch
from driftline.detectors.latency import LatencySketch
from driftline.detectors.numeric import NumericBins, NumericSketch

BINS = NumericBins.fit(np.random.default_rng(0).normal(0, 10, 5000), bins=100)
VOCAB = Vocabulary.fit(["a", "a", "b", "c"])

floats = st.one_of(st.floats(-50, 50, allow_nan=False), st.just(math.nan), st.sampled_from([0.0, -1.5, 3.25]))
words = st.one_of(st.sampled_from(["a", "b", "c", "d", "e"]), st.none())


@dataclass
class Kind:
    name: str
    new: Callable[[], Any]
    rows: st.SearchStrategy[Any]
    fold: Callable[[Any, list[Any]], Any]
    load: Callable[[bytes], Any]


def _fold_fairness(s: FairnessSketch, rows: list[tuple[str | None, int, int]]) -> FairnessSketch:
    if not rows:
        return s
    seg, pos, lab = zip(*rows, strict=True)
    return s.update({"g": np.array(seg, dtype=object)}, np.array(pos), np.array(lab))


KINDS = [
    Kind(
        "numeric",
        lambda: NumericSketch(BINS),
        floats,
        lambda s, rows: s.update(np.array(rows, dtype=float)),
        lambda b: NumericSketch.from_bytes(b, BINS),
    ),
    Kind(
        "categorical",
        lambda: CategoricalSketch(VOCAB),
        words,
        lambda s, rows: s.update(np.array(rows, dtype=object)),
        lambda b: CategoricalSketch.from_bytes(b, VOCAB),
    ),
    Kind(
        "latency",
        LatencySketch,
        st.floats(0, 1e5, allow_nan=False),
        lambda s, rows: s.update(np.array(rows, dtype=float)),
        LatencySketch.from_bytes,
    ),
    Kind(
        "fairness",
        FairnessSketch,
        st.tuples(words, st.integers(0, 1), st.integers(-1, 1)),
        _fold_fairness,
        FairnessSketch.from_bytes,
    ),
]


def state(s: Any) -> Any:
    """Comparable content: exact for counts, floats rounded (float sums are not associative)."""
    if isinstance(s, NumericSketch):
        return (
            s.counts.tolist(),
            s.hits.tolist(),
            s.n_missing,
            s.type_errors,
            [round(float(v), 6) if math.isfinite(v) else v for v in s.moments],
        )
    if isinstance(s, LatencySketch):
        return (
            s.counts.tolist(),
            s.n_invalid,
            [round(float(v), 6) if math.isfinite(v) else v for v in s.extremes],
        )
    return s.to_bytes()


def sketch(kind: Kind, rows: list[Any]) -> Any:
    return kind.fold(kind.new(), rows)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_merge_is_commutative(kind: Kind) -> None:
    @given(st.lists(kind.rows, max_size=60), st.lists(kind.rows, max_size=60))
    def check(a: list[Any], b: list[Any]) -> None:
        x, y = sketch(kind, a), sketch(kind, b)
        assert state(x.merge(y)) == state(y.merge(x))

    check()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_merge_is_associative(kind: Kind) -> None:
    @given(
        st.lists(kind.rows, max_size=40), st.lists(kind.rows, max_size=40), st.lists(kind.rows, max_size=40)
    )
    def check(a: list[Any], b: list[Any], c: list[Any]) -> None:
        x, y, z = sketch(kind, a), sketch(kind, b), sketch(kind, c)
        assert state(x.merge(y).merge(z)) == state(x.merge(y.merge(z)))

    check()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_merging_parts_equals_sketch_of_the_whole(kind: Kind) -> None:
    @given(st.lists(kind.rows, max_size=120), st.data())
    def check(rows: list[Any], data: st.DataObject) -> None:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=4)))
        parts = [rows[i:j] for i, j in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
        merged = kind.new()
        for part in parts:
            merged = merged.merge(sketch(kind, part))
        assert state(merged) == state(sketch(kind, rows))

    check()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_bytes_round_trip_and_are_deterministic(kind: Kind) -> None:
    @given(st.lists(kind.rows, max_size=80))
    def check(rows: list[Any]) -> None:
        s = sketch(kind, rows)
        data = s.to_bytes()
        back = kind.load(data)
        assert back.to_bytes() == data
        assert sketch(kind, rows).to_bytes() == data

    check()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_empty_input_is_identity(kind: Kind) -> None:
    s = sketch(kind, [])
    assert state(s) == state(kind.new())
    assert state(s.merge(kind.new())) == state(kind.new())


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_corrupt_or_foreign_bytes_are_refused(kind: Kind) -> None:
    with pytest.raises(SketchFormatError):
        kind.load(b"not a sketch at all")
    other = LatencySketch() if kind.name != "latency" else FairnessSketch()
    with pytest.raises(SketchFormatError):
        kind.load(other.to_bytes())


def test_sketches_on_other_bins_do_not_merge() -> None:
    other = NumericBins.fit(np.arange(1000.0), bins=100)
    with pytest.raises(ValueError, match="different reference bins"):
        NumericSketch(BINS).merge(NumericSketch(other))
    with pytest.raises(ValueError, match="other reference bins"):
        NumericSketch.from_bytes(NumericSketch(BINS).to_bytes(), other)
    assert NumericBins.from_bytes(BINS.to_bytes()).digest == BINS.digest
    assert Vocabulary.from_bytes(VOCAB.to_bytes()).categories == VOCAB.categories
