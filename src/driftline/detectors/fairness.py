"""Fairness sketch: per segment attribute and group, outcome counts that the metrics need.

For each group: n, predicted positives, labelled rows, label positives, true positives.
Positive rate = predicted positives / n; TPR = true positives / label positives.

Groups are bounded: per attribute, the reference's most frequent values are kept and every other
value counts as :data:`~driftline.detectors.categorical.OTHER` (:func:`bound_column`), so a
producer that sends a new value per event cannot grow the sketches, the stored rows or the
metric series.

    >>> import numpy as np
    >>> s = FairnessSketch().update({"region": np.array(["eu", "eu", "us"])},
    ...                             positive=[1, 0, 1], label=[1, 1, -1])
    >>> s.tables["region"].counts("eu")
    {'n': 2, 'positive': 1, 'labelled': 2, 'label_positive': 2, 'true_positive': 1}
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Self

import numpy as np
import numpy.typing as npt

from driftline.detectors import _codec
from driftline.detectors._kernels import fold_outcomes
from driftline.detectors.categorical import OTHER, as_category, dictionary_encode
from driftline.detectors.defaults import DEFAULT_MIN_SUPPORT

COLUMNS = ("n", "positive", "labelled", "label_positive", "true_positive")
# Why a segment entry was not folded as sent: its value is outside the kept ones (folded as
# OTHER), or its attribute is not one the model folds (ignored).
OVERFLOW_VALUE, OVERFLOW_ATTRIBUTE = "value", "attribute"


def to_outcome(
    values: Sequence[object] | npt.ArrayLike,
    threshold: float = 0.5,
    positive_class: str = "1",
) -> np.ndarray:
    """1 / 0 / -1 (missing) per value: scores >= threshold, ``True`` or ``positive_class`` are 1."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiu":
        x = arr.astype(np.float64)
        return np.where(np.isnan(x), -1, x >= threshold).astype(np.int8)
    if arr.dtype.kind == "b":
        return arr.astype(np.int8)
    text = [as_category(v) for v in arr.astype(object).ravel()]
    positive = {positive_class, "true"}
    return np.array([-1 if t is None else int(t in positive) for t in text], np.int8)


def bound_column(
    names: Sequence[str | None], codes: npt.ArrayLike, kept: Collection[str]
) -> tuple[list[str | None], np.ndarray, int]:
    """A dictionary-coded segment column with every value outside ``kept`` replaced by OTHER, and
    how many rows that replaced (missing values stay missing).

    >>> bound_column(["eu", "us", None, "apac"], [0, 1, 2, 3, 1], {"eu"})
    (['eu', '<other>', None], array([0, 1, 2, 1, 1]), 3)
    """
    mapped = [n if n is None or n in kept else OTHER for n in names]
    out = list(dict.fromkeys(mapped))
    index = {n: i for i, n in enumerate(out)}
    lut = np.array([index[m] for m in mapped] or [0], np.int64)
    replaced = np.array([n is not None and n not in kept for n in names] or [False])
    codes = np.asarray(codes, np.int64)
    return out, lut[codes], int(np.count_nonzero(replaced[codes]))


class GroupTable:
    """Counts for the groups of one attribute; groups kept sorted so bytes are deterministic."""

    __slots__ = ("groups", "table")

    def __init__(self, groups: Sequence[str] = (), table: np.ndarray | None = None) -> None:
        self.groups = list(groups)
        self.table = np.zeros((len(self.groups), len(COLUMNS)), np.int64) if table is None else table

    def update_coded(
        self, names: Sequence[str | None], codes: np.ndarray, positive: np.ndarray, label: np.ndarray
    ) -> None:
        present = sorted({n for n in names if n is not None} | set(self.groups))
        if present != self.groups:
            self._reindex(present)
        index = {g: i for i, g in enumerate(self.groups)}
        to_row = np.array([-1 if n is None else index[n] for n in names] or [-1], np.int64)
        fold_outcomes(to_row[codes], positive.astype(np.int64), label.astype(np.int64), self.table)

    def _reindex(self, names: list[str]) -> None:
        table = np.zeros((len(names), len(COLUMNS)), np.int64)
        where = {g: i for i, g in enumerate(names)}
        for i, g in enumerate(self.groups):
            table[where[g]] = self.table[i]
        self.groups, self.table = names, table

    def merge(self, other: GroupTable) -> GroupTable:
        out = GroupTable(self.groups, self.table.copy())
        out._reindex(sorted(set(self.groups) | set(other.groups)))
        where = {g: i for i, g in enumerate(out.groups)}
        for i, g in enumerate(other.groups):
            out.table[where[g]] += other.table[i]
        return out

    def counts(self, group: str) -> dict[str, int]:
        row = self.table[self.groups.index(group)]
        return {c: int(v) for c, v in zip(COLUMNS, row, strict=True)}


class FairnessSketch:
    """One :class:`GroupTable` per segment attribute."""

    __slots__ = ("tables",)

    def __init__(self) -> None:
        self.tables: dict[str, GroupTable] = {}

    def update(
        self,
        segments: Mapping[str, Sequence[object] | npt.ArrayLike | tuple[Sequence[str | None], np.ndarray]],
        positive: npt.ArrayLike,
        label: npt.ArrayLike,
    ) -> Self:
        """Fold rows: per attribute a column of group values, or ``(names, codes)`` as from
        :func:`dictionary_encode`; ``positive`` 0/1 (-1 = no prediction, skipped); ``label``
        1 / 0 / -1 (not known). See :func:`to_outcome`."""
        pos = np.asarray(positive, np.int64)
        lab = np.asarray(label, np.int64)
        keep = pos >= 0
        for attr, column in segments.items():
            names, codes = column if isinstance(column, tuple) else dictionary_encode(column)
            table = self.tables.setdefault(attr, GroupTable())
            table.update_coded(names, np.asarray(codes)[keep], pos[keep], lab[keep])
        return self

    def label_counts(self) -> Self:
        """Keep only what labels add (labelled, label positive, true positive): for labels joined
        after their predictions, whose events and predicted positives were counted already."""
        for t in self.tables.values():
            t.table[:, :2] = 0  # COLUMNS: n, positive
        return self

    def merge(self, other: FairnessSketch) -> FairnessSketch:
        out = FairnessSketch()
        for attr in sorted(set(self.tables) | set(other.tables)):
            a, b = self.tables.get(attr, GroupTable()), other.tables.get(attr, GroupTable())
            out.tables[attr] = a.merge(b)
        return out

    def to_bytes(self) -> bytes:
        fields: list[bytes] = []
        for attr in sorted(self.tables):
            t = self.tables[attr]
            fields += [_codec.strings([attr, *t.groups]), _codec.i64(t.table.ravel())]
        return _codec.encode(_codec.KIND_FAIRNESS, fields)

    @classmethod
    def from_bytes(cls, data: bytes) -> FairnessSketch:
        fields = _codec.decode(data, _codec.KIND_FAIRNESS)
        s = cls()
        for names, table in zip(fields[::2], fields[1::2], strict=True):
            attr, *groups = _codec.from_strings(names)
            s.tables[attr] = GroupTable(groups, _codec.from_i64(table).reshape(len(groups), len(COLUMNS)))
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FairnessSketch) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]


def fairness_metrics(table: GroupTable, min_support: int = DEFAULT_MIN_SUPPORT) -> dict[str, object]:
    """Positive rate and TPR per group, and the gaps between groups with at least ``min_support`` rows.

    Demographic parity difference = max − min positive rate; disparate impact = min / max
    positive rate; equal opportunity difference = max − min TPR (groups with label positives).
    Groups below the support are reported with ``"excluded": true`` and left out of the gaps.
    """
    groups: dict[str, dict[str, object]] = {}
    rates, tprs = [], []
    for name, row in zip(table.groups, table.table, strict=True):
        n, pos, _labelled, label_pos, tp = (int(v) for v in row)
        rate = pos / n if n else None
        tpr = tp / label_pos if label_pos else None
        excluded = n < min_support
        groups[name] = {"n": n, "positive_rate": rate, "tpr": tpr, "excluded": excluded}
        if not excluded and rate is not None:
            rates.append(rate)
            if tpr is not None:
                tprs.append(tpr)
    return {
        "groups": groups,
        "demographic_parity_difference": max(rates) - min(rates) if len(rates) >= 2 else None,
        "disparate_impact": min(rates) / max(rates) if len(rates) >= 2 and max(rates) > 0 else None,
        "equal_opportunity_difference": max(tprs) - min(tprs) if len(tprs) >= 2 else None,
    }
