"""Categorical feature sketch: exact counts for the reference's top K categories, ``other``, null.

Categories the reference never saw are counted in ``other`` and also by name, up to
``max_unseen`` distinct names, so the report can say *which* new values appeared.

    >>> vocab = Vocabulary.fit(["a", "a", "b", None])
    >>> s = CategoricalSketch(vocab).update(["a", "c", "c", None])
    >>> s.category_counts(), s.n_missing, s.unseen
    ({'a': 1, 'b': 0, '<other>': 2}, 1, {'c': 2})
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Self

import numpy as np
import numpy.typing as npt

from driftline.detectors import _codec
from driftline.detectors._kernels import fold_codes

DEFAULT_TOP_K = 256
DEFAULT_MAX_UNSEEN = 1000
OTHER = "<other>"


# A numeric column is float64 (NaN = missing); a categorical one is (names, codes) as
# produced by dictionary_encode or a columnar dictionary.
Column = np.ndarray | tuple[Sequence[str | None], np.ndarray]


def as_category(value: object) -> str | None:
    """Canonical text of a categorical value: bools as JSON spells them, None stays missing."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def dictionary_encode(values: Sequence[object] | npt.ArrayLike) -> tuple[list[str | None], np.ndarray]:
    """(names, codes) with ``values[j] == names[codes[j]]`` as category text (None = missing).

    Arrays of numbers, bools or fixed-width strings are encoded by numpy without Python per row;
    a list of Python objects needs one pass to canonicalise each value.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "biufU":
        uniques, inverse = np.unique(arr.ravel(), return_inverse=True)
        return [as_category(u) for u in uniques.tolist()], inverse.astype(np.int64)
    cats = [as_category(v) for v in arr.astype(object).ravel()]
    text = np.array([c if c is not None else "" for c in cats], dtype=object)
    uniques, inverse = np.unique(text, return_inverse=True) if len(text) else (text, np.zeros(0, np.int64))
    codes = inverse.astype(np.int64)
    codes[np.array([c is None for c in cats], dtype=bool)] = len(uniques)  # past the uniques: missing
    return [str(u) for u in uniques] + [None], codes


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """The reference's top-K categories, most frequent first (ties by name)."""

    categories: tuple[str, ...]

    @classmethod
    def fit(
        cls,
        reference: Sequence[object] | npt.ArrayLike | tuple[Sequence[str | None], np.ndarray],
        top_k: int = DEFAULT_TOP_K,
    ) -> Vocabulary:
        """From a column of values or its ``(names, codes)`` dictionary encoding."""
        names, codes = reference if isinstance(reference, tuple) else dictionary_encode(reference)
        per_name = np.bincount(np.asarray(codes, np.int64), minlength=len(names))
        counts: Counter[str] = Counter()
        for name, c in zip(names, per_name.tolist(), strict=True):
            if name is not None and c:
                counts[name] += c
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls(tuple(k for k, _ in ranked[:top_k]))

    @cached_property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.categories)}

    @cached_property
    def digest(self) -> bytes:
        return hashlib.sha256(_codec.strings(list(self.categories))).digest()[:16]

    def to_bytes(self) -> bytes:
        return _codec.encode(_codec.KIND_CATEGORICAL, [b"vocabulary", _codec.strings(list(self.categories))])

    @classmethod
    def from_bytes(cls, data: bytes) -> Vocabulary:
        tag, cats = _codec.decode(data, _codec.KIND_CATEGORICAL)
        if tag != b"vocabulary":
            raise _codec.SketchFormatError("these bytes are a categorical sketch, not a vocabulary")
        return cls(tuple(_codec.from_strings(cats)))


class CategoricalSketch:
    """``counts`` = [one per vocabulary category..., other, missing]."""

    __slots__ = ("counts", "max_unseen", "type_errors", "unseen", "unseen_untracked", "vocabulary")

    def __init__(self, vocabulary: Vocabulary, max_unseen: int = DEFAULT_MAX_UNSEEN) -> None:
        self.vocabulary = vocabulary
        self.counts = np.zeros(len(vocabulary.categories) + 2, np.int64)
        self.unseen: dict[str, int] = {}
        self.unseen_untracked = 0  # unseen values beyond max_unseen distinct names
        self.max_unseen = max_unseen
        self.type_errors = 0

    def update(self, values: Sequence[object] | npt.ArrayLike) -> Self:
        """Fold a column of values (None = missing). Returns self."""
        return self.update_coded(*dictionary_encode(values))

    def update_coded(self, names: Sequence[str | None], codes: npt.ArrayLike) -> Self:
        """Fold dictionary-encoded values: row j has value ``names[codes[j]]`` (None = missing).

        This is the fast path for columnar inputs (polars/Arrow dictionaries): Python touches
        each distinct value once, the kernel touches each row.
        """
        k = len(self.vocabulary.categories)
        index = self.vocabulary.index
        to_slot = np.array([-1 if n is None else index.get(n, k) for n in names] or [-1], np.int64)
        rows = to_slot[np.asarray(codes, dtype=np.int64)]
        fold_codes(rows, self.counts)
        unseen = [i for i, n in enumerate(names) if n is not None and n not in index]
        if unseen:
            per_name = np.bincount(np.asarray(codes, dtype=np.int64), minlength=len(names))
            self._note_unseen({str(names[i]): int(per_name[i]) for i in unseen if per_name[i]})
        return self

    def _note_unseen(self, new: dict[str, int]) -> None:
        for name, c in new.items():
            if name in self.unseen or len(self.unseen) < self.max_unseen:
                self.unseen[name] = self.unseen.get(name, 0) + c
            else:
                self.unseen_untracked += c

    def merge(self, other: CategoricalSketch) -> CategoricalSketch:
        if other.vocabulary.digest != self.vocabulary.digest:
            raise ValueError("cannot merge categorical sketches with different vocabularies")
        out = CategoricalSketch(self.vocabulary, self.max_unseen)
        out.counts = self.counts + other.counts
        out.type_errors = self.type_errors + other.type_errors
        # Keep the most frequent names (ties by name) so the result is independent of merge order.
        both = Counter(self.unseen) + Counter(other.unseen)
        ranked = sorted(both.items(), key=lambda kv: (-kv[1], kv[0]))
        out.unseen = dict(ranked[: self.max_unseen])
        dropped = sum(c for _, c in ranked[self.max_unseen :])
        out.unseen_untracked = self.unseen_untracked + other.unseen_untracked + dropped
        return out

    @property
    def n(self) -> int:
        return int(self.counts[:-1].sum())

    @property
    def n_missing(self) -> int:
        return int(self.counts[-1])

    def category_counts(self) -> dict[str, int]:
        names = [*self.vocabulary.categories, OTHER]
        return {n: int(c) for n, c in zip(names, self.counts[:-1], strict=True)}

    def top_unseen(self, limit: int = 20) -> list[tuple[str, int]]:
        return sorted(self.unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    def to_bytes(self) -> bytes:
        names = sorted(self.unseen)
        return _codec.encode(
            _codec.KIND_CATEGORICAL,
            [
                b"sketch",
                self.vocabulary.digest,
                _codec.i64(self.counts),
                _codec.strings(names),
                _codec.i64(np.array([self.unseen[n] for n in names], np.int64)),
                _codec.i64(np.array([self.unseen_untracked, self.type_errors, self.max_unseen])),
            ],
        )

    @classmethod
    def from_bytes(cls, data: bytes, vocabulary: Vocabulary) -> CategoricalSketch:
        fields = _codec.decode_sketch(data, _codec.KIND_CATEGORICAL, vocabulary.digest, "vocabulary")
        counts, names, unseen, scalars = fields
        untracked, type_errors, max_unseen = (int(v) for v in _codec.from_i64(scalars))
        s = cls(vocabulary, max_unseen)
        s.counts = _codec.from_i64(counts)
        s.unseen = dict(
            zip(_codec.from_strings(names), (int(c) for c in _codec.from_i64(unseen)), strict=True)
        )
        s.unseen_untracked, s.type_errors = untracked, type_errors
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CategoricalSketch) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]
