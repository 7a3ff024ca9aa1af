"""Versioned, deterministic byte format shared by every sketch.

Layout: ``b"DLSK"``, format version (u8), sketch kind (u8), then a zlib-compressed body of
named fields. The same sketch always gives the same bytes (fixed field order, little-endian
arrays, fixed compression level), so stored panes can be compared and deduplicated by content.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

MAGIC = b"DLSK"
FORMAT_VERSION = 1
KIND_NUMERIC, KIND_CATEGORICAL, KIND_LATENCY, KIND_FAIRNESS = 1, 2, 3, 4
KIND_PERFORMANCE = 5


class SketchFormatError(ValueError):
    """Bytes that are not a sketch of the expected kind and version."""


def encode(kind: int, fields: list[bytes]) -> bytes:
    body = b"".join(struct.pack("<Q", len(f)) + f for f in fields)
    return MAGIC + struct.pack("<BB", FORMAT_VERSION, kind) + zlib.compress(body, 6)


def decode(data: bytes, kind: int) -> list[bytes]:
    if len(data) < 6 or data[:4] != MAGIC:
        raise SketchFormatError("not a driftline sketch (bad magic)")
    version, got_kind = struct.unpack_from("<BB", data, 4)
    if version != FORMAT_VERSION:
        raise SketchFormatError(f"sketch format version {version}, this build reads {FORMAT_VERSION}")
    if got_kind != kind:
        raise SketchFormatError(f"sketch kind {got_kind}, expected {kind}")
    try:
        body = zlib.decompress(data[6:])
    except zlib.error as exc:
        raise SketchFormatError(f"corrupt sketch body: {exc}") from None
    fields, pos = [], 0
    while pos < len(body):
        (size,) = struct.unpack_from("<Q", body, pos)
        fields.append(body[pos + 8 : pos + 8 + size])
        pos += 8 + size
    return fields


def sketch_kind(data: bytes) -> int:
    """The kind byte of encoded bytes (bins and sketches of a kind share it)."""
    if len(data) < 6 or data[:4] != MAGIC:
        raise SketchFormatError("not a driftline sketch (bad magic)")
    return data[5]


def decode_sketch(data: bytes, kind: int, digest: bytes, binning: str) -> list[bytes]:
    """The fields after the tag and digest of a sketch folded on ``digest`` (its bins/vocabulary)."""
    tag, got, *fields = decode(data, kind)
    if tag != b"sketch":
        raise SketchFormatError(f"these bytes are {binning}, not a sketch")
    if got != digest:
        raise ValueError(f"sketch was built on other {binning} than the one given")
    return fields


def i64(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<i8").tobytes()


def f64(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def from_i64(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<i8").astype(np.int64)


def from_f64(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f8").astype(np.float64)


def strings(values: list[str]) -> bytes:
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()


def from_strings(b: bytes) -> list[str]:
    return list(json.loads(b))
