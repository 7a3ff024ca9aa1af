"""Realistic, seeded inference traffic: features, scores, labels, latency and segments.

20 numeric features of different shapes (normal, lognormal, exponential, uniform, Poisson
counts with ties), 3 categorical features, two segment attributes, a logistic score with a
Bernoulli label and a lognormal latency. From ``drift_at`` on, chosen features shift (numeric:
+1 standard deviation; categorical: the rarest category becomes the most common) and, if asked,
one segment group's scores drop (a fairness regression).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from driftline.contract import IDENTITY_FIELDS

NUMERIC_SHAPES = ("normal", "lognormal", "exponential", "uniform", "poisson")
CATEGORICAL = {
    "plan": (("free", "basic", "pro", "team", "enterprise"), (0.4, 0.25, 0.2, 0.1, 0.05)),
    "channel": (("web", "ios", "android", "api"), (0.45, 0.25, 0.2, 0.1)),
    "country": (("us", "de", "in", "br", "jp", "fr"), (0.3, 0.15, 0.2, 0.15, 0.1, 0.1)),
}
SEGMENTS = {
    "region": (("north", "south", "east", "west"), (0.3, 0.3, 0.2, 0.2)),
    "gender": (("female", "male"), (0.5, 0.5)),
}
NUMERIC_FEATURES = tuple(f"f{i:02d}_{NUMERIC_SHAPES[i % 5]}" for i in range(20))


@dataclass(frozen=True)
class Traffic:
    n: int
    seed: int = 7
    model_id: str = "churn"
    model_version: str = "v1"
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    rate: float = 1000.0  # events per second of event time
    drift_at: float | None = None  # fraction of the stream after which drift starts
    drift_until: float | None = None  # fraction where it stops (None: to the end)
    drift_features: Sequence[str] = ()
    fairness_regression: str | None = None  # "attribute=group" whose scores drop after drift_at
    missing_rate: float = 0.01
    concept_drift: float = 0.0  # from drift_at on, this share of labels is flipped: the model gets worse


def _numeric(rng: np.random.Generator, shape: str, n: int) -> np.ndarray:
    match shape:
        case "normal":
            return rng.normal(50.0, 10.0, n)
        case "lognormal":
            return rng.lognormal(3.0, 0.5, n)
        case "exponential":
            return rng.exponential(5.0, n)
        case "uniform":
            return rng.uniform(0.0, 1.0, n)
    return rng.poisson(4.0, n).astype(np.float64)


_STD = {"normal": 10.0, "lognormal": 11.0, "exponential": 5.0, "uniform": 0.29, "poisson": 2.0}


def generate(t: Traffic) -> pl.DataFrame:
    """One row per event: ids, event time, features, prediction, label, latency, segments."""
    rng = np.random.default_rng(t.seed)
    n = t.n
    drifted = np.zeros(n, bool)
    if t.drift_at is not None:
        end = n if t.drift_until is None else int(n * t.drift_until)
        drifted[int(n * t.drift_at) : end] = True
    cols: dict[str, object] = {
        "event_id": [f"{t.model_id}-{t.seed}-{i}" for i in range(n)],
        "model_id": [t.model_id] * n,
        "model_version": [t.model_version] * n,
        "ts": t.start_ms + (np.arange(n) * 1000.0 / t.rate).astype(np.int64),
    }
    logit = np.zeros(n)
    for i, name in enumerate(NUMERIC_FEATURES):
        shape = NUMERIC_SHAPES[i % 5]
        x = _numeric(rng, shape, n)
        if name in t.drift_features:
            x = np.where(drifted, x + _STD[shape], x)
        if i < 5:
            logit += (x - x.mean()) / (x.std() or 1.0) * 0.4
        x[rng.random(n) < t.missing_rate] = np.nan
        cols[name] = x
    for name, (values, probs) in CATEGORICAL.items():
        base = rng.choice(len(values), n, p=probs)
        if name in t.drift_features:
            base = np.where(drifted & (rng.random(n) < 0.5), len(values) - 1, base)
        cols[name] = np.asarray(values, dtype=object)[base]
    for name, (values, probs) in SEGMENTS.items():
        cols[name] = np.asarray(values, dtype=object)[rng.choice(len(values), n, p=probs)]
    if t.fairness_regression:
        attr, group = t.fairness_regression.split("=", 1)
        logit = np.where(drifted & (cols[attr] == group), logit - 2.5, logit)
    score = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, n))))
    cols["prediction"] = score
    cols["label"] = (rng.random(n) < np.clip(score * 1.1 - 0.05, 0, 1)).astype(np.int64)
    if t.concept_drift:  # its own stream of numbers: the rest of the traffic stays as it was
        flip = drifted & (np.random.default_rng(t.seed + 7919).random(n) < t.concept_drift)
        cols["label"] = np.where(flip, 1 - cols["label"], cols["label"])
    cols["latency_ms"] = rng.lognormal(np.log(20.0), 0.6, n)
    return pl.DataFrame(cols, strict=False).with_columns([pl.col(c).fill_nan(None) for c in NUMERIC_FEATURES])


FILE_DROP = IDENTITY_FIELDS  # what a reference file can do without


def events(df: pl.DataFrame) -> Iterator[dict[str, object]]:
    """The rows as event-contract dicts (features nested, segments nested)."""
    feature_cols = [*NUMERIC_FEATURES, *CATEGORICAL]
    for row in df.iter_rows(named=True):
        yield {
            "event_id": row["event_id"],
            "model_id": row["model_id"],
            "model_version": row["model_version"],
            "ts": row["ts"],
            "features": {f: row[f] for f in feature_cols},
            "prediction": row["prediction"],
            "label": row["label"],
            "latency_ms": row["latency_ms"],
            "segments": {s: row[s] for s in SEGMENTS},
        }


def bad_message(rng: np.random.Generator, good: bytes) -> tuple[bytes, str]:
    """A malformed variant of a good message, and the field its rejection should name."""
    kind = int(rng.integers(0, 7))
    if kind == 0:
        return good[: len(good) // 2], "$"  # truncated JSON
    if kind == 1:
        return good.replace(b'"prediction":', b'"prediction":{"oops":1},"x":', 1), "prediction"
    if kind == 2:
        return good.replace(b'"ts":', b'"ts":"9999-12-31T00:00:00Z","old_ts":', 1), "ts"
    if kind == 3:
        return b"\xff\xfe" + good[2:], "$"  # not UTF-8
    if kind == 4:
        return good.replace(b'"model_id":', b'"model_id":7,"m":', 1), "model_id"
    if kind == 5:
        return good.replace(b'"latency_ms":', b'"latency_ms":-3,"l":', 1), "latency_ms"
    return good.replace(b'"features":', b'"features":[1,2],"f":', 1), "features"
