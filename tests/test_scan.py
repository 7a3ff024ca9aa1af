"""The Numba batch scanner against the contract: OK only for events the contract accepts, with the
same values (numbers bit for bit), and the same columns as decode() + to_batch()."""

from __future__ import annotations

import dataclasses
import json
import math
import string
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.contract import MAX_EVENT_BYTES, MAX_TS_MS, Event, InvalidEvent, parse_event
from driftline.detectors.profile import Batch, Binning
from driftline.ingest.decode import decode, to_batch
from driftline.ingest.scan import (
    ABSENT,
    FALLBACK,
    FALSE,
    FLOAT,
    INT,
    OK,
    STR,
    TRUE,
    FeatureNames,
    ScannedBatch,
    scan,
)
from driftline.simulate import CATEGORICAL, NUMERIC_FEATURES, SEGMENTS, Traffic, bad_message, events, generate

NAME_POOL = [
    "age",
    "plan",
    "score",
    "vip",
    "x",
    "ümlaut",
    "名前",
    "emoji😀",
    'a"quote',
    "tab\there",
    "k" * 256,
]
NAMES = FeatureNames.of(NAME_POOL)
# the contract's own fields (its dataclass calls the event time ts_ms; the JSON key is ts)
CONTRACT_FIELDS = tuple("ts" if f.name == "ts_ms" else f.name for f in dataclasses.fields(Event))


class Lit(str):
    """A JSON number literal, written as is."""


def dump(value: Any, sp: str = "", ascii: bool = False) -> str:
    """JSON text with a choice of whitespace and of escaping non-ASCII text."""
    if isinstance(value, Lit):
        return str(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii)
    if isinstance(value, list):
        return "[" + sp + ("," + sp).join(dump(v, sp, ascii) for v in value) + sp + "]"
    items = (json.dumps(k, ensure_ascii=ascii) + sp + ":" + sp + dump(v, sp, ascii) for k, v in value.items())
    return "{" + sp + ("," + sp).join(items) + sp + "}"


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


# -- strategies -------------------------------------------------------------------------------

# Text a JSON encoder writes without escapes (the scanner's fast path), and any text at all.
clean_text = st.text(st.characters(exclude_characters='"\\', min_codepoint=0x20, exclude_categories=["Cs"]))
any_text = st.text()
literals = st.builds(
    lambda sign, whole, frac, exp: Lit(sign + whole + frac + exp),
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.from_regex(r"\A[1-9][0-9]{0,20}\Z")),
    st.one_of(st.just(""), st.from_regex(r"\A\.[0-9]{1,22}\Z")),
    st.one_of(st.just(""), st.from_regex(r"\A[eE][+-]?[0-9]{1,3}\Z")),
)


def normal(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Finite floats without subnormals (Eisel-Lemire leaves those to the fallback)."""
    return st.floats(lo, hi).filter(lambda x: x == 0 or abs(x) > 1e-300)


normal_floats = st.one_of(
    normal(-1e300, 1e300),
    st.sampled_from([0.0, -0.0, 0.1, 1e22, 1e23, 9007199254740993.0, 5e-300, 123456789012345.6]),
)
clean_ints = st.integers(-(10**15) + 1, 10**15 - 1)
offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=23, minutes=59))]
)
moments = st.datetimes(datetime(1970, 3, 1), datetime(2199, 12, 30), timezones=offsets)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    dt = draw(moments)
    frac = draw(st.integers(0, 6))
    text = dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{dt.microsecond:06d}"[: frac + 1] if frac else "")
    off = dt.utcoffset() or timedelta(0)
    if not off and draw(st.booleans()):
        return text + "Z"
    minutes = int(off.total_seconds()) // 60
    return text + f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def targets(
    text: st.SearchStrategy[str], numbers: st.SearchStrategy[Any]
) -> dict[str, st.SearchStrategy[Any]]:
    return {"number": numbers, "str": text, "bool": st.booleans()}


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), clean_ints, normal_floats, any_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(any_text, inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def events_of(draw: st.DrawFn, clean: bool) -> dict[str, Any]:
    """Valid contract events; ``clean`` ones hold nothing the scanner must refuse."""
    text = clean_text if clean else any_text
    ints = clean_ints if clean else st.integers(-(2**63), 2**64 - 1)
    numbers = st.one_of(ints, normal_floats if clean else st.one_of(st.floats(), literals))
    names = st.sampled_from(NAME_POOL[:8]) if clean else st.one_of(st.sampled_from(NAME_POOL), any_text)
    scalars = st.one_of(st.none(), st.booleans(), numbers, text)
    kind = draw(st.sampled_from(["number", "str", "bool"]))
    event: dict[str, Any] = {
        "event_id": draw(text.filter(lambda s: 0 < len(s) <= 128)),
        "model_id": draw(
            st.one_of(st.sampled_from(["churn", "fraud"]), text.filter(lambda s: 0 < len(s) <= 256))
        ),
        "ts": draw(st.one_of(st.integers(0, MAX_TS_MS - 1), normal(0, MAX_TS_MS - 1), rfc3339())),
        "features": draw(st.dictionaries(names, scalars, max_size=8)),
        "prediction": draw(targets(text, numbers)[kind]),
    }
    optional = {
        "model_version": st.one_of(
            st.none(), st.sampled_from(["", "v1"]), text.filter(lambda s: len(s) <= 256)
        ),
        "label": st.one_of(st.none(), targets(text, numbers)[kind]),
        "latency_ms": st.one_of(st.none(), normal(0, 1e6), st.integers(0, 10**6), st.just(-0.0)),
        "segments": st.one_of(st.none(), st.dictionaries(text, text, max_size=3)),
        "extra": json_values,
        "ünknown": json_values,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            event[key] = draw(strategy)
    return {k: event[k] for k in draw(st.permutations(list(event)))}


spacing = st.sampled_from(["", " ", "\n\t "])


# -- checks -----------------------------------------------------------------------------------


def kind_of(value: object) -> int:
    if value is None:
        return ABSENT
    if isinstance(value, bool):
        return TRUE if value else FALSE
    if isinstance(value, int):
        return INT
    return FLOAT if isinstance(value, float) else STR


def check_value(sb: ScannedBatch, kind: int, num: float, sid: int, expected: object, where: str) -> None:
    assert kind == kind_of(expected), where
    if kind in (INT, FLOAT):
        assert bits(num) == bits(float(expected)), (where, num, expected)  # type: ignore[arg-type]
    else:
        assert math.isnan(num), where
    assert (sb.strings[sid] if kind == STR else None) == (expected if kind == STR else None), where


def check_row(sb: ScannedBatch, i: int, e: Event) -> None:
    """Every value the scanner extracted equals the contract's."""
    assert sb.strings[sb.model[i]] == e.model_id
    assert sb.strings[sb.version[i]] == e.model_version
    assert sb.ts_ms[i] == e.ts_ms
    latency = math.nan if e.latency_ms is None else e.latency_ms
    assert bits(sb.latency_ms[i]) == bits(latency)
    check_value(sb, sb.pred_kind[i], sb.pred_num[i], sb.pred_str[i], e.prediction, "prediction")
    check_value(sb, sb.label_kind[i], sb.label_num[i], sb.label_str[i], e.label, "label")
    for f, name in enumerate(sb.names.names):
        got = (sb.feat_kind[i, f], sb.feat_num[i, f], sb.feat_str[i, f])
        check_value(sb, *got, e.features.get(name), f"features.{name}")
    mine = sb.seg_row == i
    segments = {
        sb.strings[n]: sb.strings[v] for n, v in zip(sb.seg_name[mine], sb.seg_value[mine], strict=True)
    }
    assert segments == e.segments


def agrees(raws: list[bytes], names: FeatureNames = NAMES) -> ScannedBatch:
    """Scan ``raws``: every OK message is one the contract accepts, with the same values."""
    sb = scan(raws, names)
    assert sb.status.shape == (len(raws),)
    for i, raw in enumerate(raws):
        if sb.status[i] != OK:
            assert sb.status[i] == FALLBACK
            continue
        try:
            e = parse_event(raw)
        except InvalidEvent as exc:
            raise AssertionError(f"scanner said OK, contract says {exc}: {raw[:300]!r}") from None
        check_row(sb, i, e)
        decode(raw, MAX_EVENT_BYTES)  # the consumer's decoder accepts it too
    return sb


# -- the scanner agrees with the contract ------------------------------------------------------


@given(events_of(clean=True), spacing)
def test_clean_events_take_the_fast_path_with_the_contracts_values(event: dict[str, Any], sp: str) -> None:
    raw = dump(event, sp).encode()
    sb = agrees([raw, orjson.dumps(event)])
    assert sb.status.tolist() == [OK, OK], raw


@given(events_of(clean=False), spacing, st.booleans())
def test_any_event_ok_only_if_the_contract_accepts_it(event: dict[str, Any], sp: str, ascii: bool) -> None:
    agrees([dump(event, sp, ascii).encode()])


# Every field with values of every JSON type (as in test_decode_and_panes, with more of them).
_any = st.one_of(
    json_values, literals, st.sampled_from(["", "2026-01-01T00:00:00Z", "nope", "x" * 129, "y" * 257])
)
_fields = {
    "event_id": st.one_of(st.text(max_size=130), _any),
    "model_id": st.one_of(st.sampled_from(["churn", ""]), _any),
    "model_version": st.one_of(st.just("v1"), _any),
    "ts": st.one_of(
        st.integers(-10, 8_000_000_000_000),
        st.sampled_from(["2026-01-01T00:00:00", "9999-01-01T00:00:00Z"]),
        _any,
    ),
    "features": st.one_of(
        st.dictionaries(st.sampled_from(["", "age", "plan", "zz"]), _any, max_size=4), _any
    ),
    "prediction": st.one_of(st.floats(0, 1), st.sampled_from(["yes", True]), _any),
    "label": st.one_of(st.integers(0, 1), st.sampled_from(["no", False]), _any),
    "latency_ms": st.one_of(st.floats(-1, 100), _any),
    "segments": st.one_of(st.dictionaries(st.sampled_from(["region", ""]), _any, max_size=2), _any),
}


@given(events_of(clean=True), st.sampled_from(["top", "features", "segments"]), st.data())
def test_a_duplicated_key_falls_back(event: dict[str, Any], where: str, data: st.DataObject) -> None:
    """orjson keeps the last of duplicate keys; the scanner leaves that to the contract's decoder.
    (Duplicates of keys whose values it does not use, unknown fields or features, are validated
    and accepted: the last one wins there too, and is not used.)"""
    obj = dict(event)
    if where != "top":
        obj[where] = {**(obj.get(where) or {}), "age": "v"}
    target = obj if where == "top" else obj[where]
    used = [k for k in target if k in {*CONTRACT_FIELDS, *NAMES.names} or where == "segments"]
    key = data.draw(st.sampled_from(used))
    members = [json.dumps(k, ensure_ascii=False) + ":" + dump(v) for k, v in target.items()]
    doubled = "{" + ",".join([*members, members[list(target).index(key)]]) + "}"
    if where != "top":
        items = [
            json.dumps(k, ensure_ascii=False) + ":" + (doubled if k == where else dump(v))
            for k, v in obj.items()
        ]
        doubled = "{" + ",".join(items) + "}"
    raw = doubled.encode()
    parse_event(raw)  # the contract accepts it
    assert agrees([raw]).status[0] == FALLBACK


@given(st.fixed_dictionaries({}, optional=_fields))
def test_wrong_types_and_missing_fields_fall_back(obj: dict[str, object]) -> None:
    raw = dump(obj).encode()
    sb = agrees([raw])
    try:
        parse_event(raw)
    except InvalidEvent:
        assert sb.status[0] == FALLBACK


@given(literals)
def test_number_literals_are_bit_exact_or_fall_back(lit: Lit) -> None:
    base = {"event_id": "e", "model_id": "m", "ts": 0, "features": {}}
    raws = [
        dump({**base, "prediction": lit}).encode(),
        dump({**base, "prediction": 1, "features": {"x": lit, "age": lit}}).encode(),
        dump({**base, "prediction": 1, "latency_ms": lit, "other": [lit, {"a": lit}]}).encode(),
        dump({**base, "prediction": 1, "ts": lit}).encode(),
    ]
    sb = agrees(raws)
    mantissa, _, exp = lit.lstrip("-").lower().partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = len((whole + frac).lstrip("0"))
    if digits <= 15 and (not (frac or exp) or -22 <= int(exp or 0) - len(frac) <= 22):
        assert sb.status[0] == OK, lit  # an integer, or Clinger's fast path: always proven


def test_every_double_round_trips_bit_exact() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**64, 20_000, dtype=np.uint64).view(np.float64)
    values = values[np.isfinite(values) & ((np.abs(values) > 1e-300) | (values == 0))]
    texts = [repr(float(x)) for x in values] + [
        f"{float(x):.{k % 17 + 1}e}" for k, x in enumerate(values[:5000])
    ]
    raws = [
        f'{{"event_id":"e","model_id":"m","ts":0,"features":{{}},"prediction":{t}}}'.encode() for t in texts
    ]
    sb = scan(raws, NAMES)
    assert (sb.status == OK).all()
    assert sb.pred_num.view(np.int64).tolist() == [struct.unpack("<q", bits(float(t)))[0] for t in texts]


@given(st.lists(rfc3339(), min_size=1, max_size=20))
def test_rfc3339_times_match_parse_ts(texts: list[str]) -> None:
    raws = [
        orjson.dumps({"event_id": "e", "model_id": "m", "ts": t, "features": {}, "prediction": 1})
        for t in texts
    ]
    sb = agrees(raws)
    assert (sb.status == OK).all(), [t for t, s in zip(texts, sb.status, strict=True) if s != OK]


def test_rfc3339_boundaries() -> None:
    texts = [
        "1970-02-18T12:00:00Z",  # before 2**22 s: falls back (still the contract's value if OK)
        "2024-02-29T23:59:59.999999+00:00",
        "2199-12-31T23:59:59.999999Z",
        "2200-01-01T00:00:00Z",  # out of range
        "2026-02-29T00:00:00Z",  # no such day
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:60Z",
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00.1234567Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00+0100",
        "2026-01-01t00:00:00z",
    ]
    raws = [
        orjson.dumps({"event_id": "e", "model_id": "m", "ts": t, "features": {}, "prediction": 1})
        for t in texts
    ]
    sb = agrees(raws)
    assert sb.status.tolist() == [FALLBACK, OK, OK] + [FALLBACK] * 11


# -- adversarial messages ---------------------------------------------------------------------


def realistic(n: int, seed: int = 3) -> list[bytes]:
    return [orjson.dumps(e) for e in events(generate(Traffic(n=n, seed=seed)))]


ODD = dump(
    {
        "ünknown": [{"a": [1.5e-3, None, True, {"\\": "\u2028"}]}, 'x\\"y'],
        "event_id": "é-😀",
        "model_id": "名前",
        "ts": "2026-05-01T10:20:30.25-02:30",
        "features": {"age": -0.0, "plan": "ümlaut", "vip": False, "x": None, "zz": "\u0001"},
        "prediction": "yes",
        "label": "no",
        "latency_ms": 0,
        "segments": {"région": "nörd"},
    },
    sp=" ",
).encode()


def test_every_truncation_and_byte_substitution() -> None:
    for good in [realistic(1)[0], ODD]:
        assert agrees([good]).status[0] == OK
        prefixes = [good[:k] for k in range(len(good))]
        assert (agrees(prefixes).status == FALLBACK).all()
        subs = [
            good[:k] + bytes([b]) + good[k + 1 :]
            for k in range(len(good))
            for b in b'"\\0}],:-. x\x80\xff\x00'
        ]
        agrees(subs)


@given(st.data())
def test_random_byte_flips(data: st.DataObject) -> None:
    good = data.draw(st.sampled_from([*realistic(3), ODD]))
    raw = bytearray(good)
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    agrees([bytes(raw)])


class _Kind:
    """Stands in for the numpy Generator so ``bad_message`` makes one chosen kind."""

    def __init__(self, kind: int) -> None:
        self.kind = kind

    def integers(self, low: int, high: int) -> int:
        return self.kind


@pytest.mark.parametrize("kind", range(7))
def test_simulated_bad_messages_fall_back_to_the_contracts_reason(kind: int) -> None:
    good = realistic(5)
    bad, field = bad_message(_Kind(kind), good[2])  # type: ignore[arg-type]
    sb = agrees([*good[:2], bad, *good[3:]])
    assert sb.status.tolist() == [OK, OK, FALLBACK, OK, OK]
    with pytest.raises(InvalidEvent) as info:
        decode(bad, MAX_EVENT_BYTES)
    assert info.value.field == field


BASE = '"event_id":"e","model_id":"m","ts":1767225600000,"prediction":0.5'


def msg(body: str) -> bytes:
    return ("{" + BASE + "," + body + "}").encode()


FALLBACKS = {
    "duplicate top-level key": msg('"features":{},"ts":5'),
    "duplicate feature": msg('"features":{"age":1,"plan":"a","age":2}'),
    "duplicate segment": msg('"features":{},"segments":{"g":"a","g":"b"}'),
    "escape in model_id": b'{"event_id":"e","model_id":"\\u006d","ts":0,"features":{},"prediction":1}',
    "escape in a top-level key": b'{"event_id":"e","model_\\u0069d":"m","ts":0,"features":{},"prediction":1}',
    "escape in a feature name": msg('"features":{"a\\u0067e":1}'),
    "escape in a categorical value": msg('"features":{"plan":"pr\\u006f"}'),
    "escape in a segment": msg('"features":{},"segments":{"g":"\\n"}'),
    "escape in the prediction": b'{"event_id":"e","model_id":"m","ts":0,"features":{},"prediction":"\\"y"}',
    "escape in event_id": b'{"event_id":"\\u0065","model_id":"m","ts":0,"features":{},"prediction":1}',
    "16-digit integer": msg('"features":{"age":1234567890123456}'),
    "20 significant digits": msg('"features":{"age":1.2345678901234567890}'),
    "overflow": msg('"features":{"zz":1e400}'),
    "subnormal": msg('"features":{"age":1e-310}'),
    "huge exponent": msg('"features":{"age":0.1e-999999999999}'),
    "nesting beyond 64": msg('"features":{},"deep":' + "[" * 64 + "]" * 64),
    "lone surrogate in an unknown value": msg('"features":{},"x":"\\ud800"'),
    "raw control character": msg('"features":{},"x":"a\tb"'),
    "invalid UTF-8": msg('"features":{},"x":"') + b'\xc3\x28"}',
    "overlong UTF-8": msg('"features":{},"x":"') + b'\xc0\xaf"}',
    "UTF-8 surrogate": msg('"features":{},"x":"') + b'\xed\xa0\x80"}',
    "trailing comma": msg('"features":{"age":1,}'),
    "leading zero": msg('"features":{"age":01}'),
    "NaN literal": msg('"features":{"age":NaN}'),
    "trailing bytes": msg('"features":{}') + b" x",
    "label kind mismatch": msg('"features":{},"label":"yes"'),
    "prediction null": b'{"event_id":"e","model_id":"m","ts":0,"features":{},"prediction":null}',
    "feature is an array": msg('"features":{"age":[1]}'),
    "empty feature name": msg('"features":{"":1}'),
    "feature name of 257 characters": msg('"features":{"' + "é" * 257 + '":1}'),
    "event_id of 129 characters": b'{"event_id":"'
    + "é".encode() * 129
    + b'","model_id":"m","ts":0,"features":{},"prediction":1}',
    "more than 4096 features": msg('"features":{' + ",".join(f'"f{i}":1' for i in range(4097)) + "}"),
    "more than 256 segments": msg(
        '"features":{},"segments":{' + ",".join(f'"s{i}":"v"' for i in range(257)) + "}"
    ),
    "latency is a bool": msg('"features":{},"latency_ms":true'),
    "negative latency": msg('"features":{},"latency_ms":-1e-300'),
    "ts is null": b'{"event_id":"e","model_id":"m","ts":null,"features":{},"prediction":1}',
    "ts far in the past": b'{"event_id":"e","model_id":"m","ts":-1,"features":{},"prediction":1}',
    "ts as a float out of range": b'{"event_id":"e","model_id":"m","ts":7.3e12,"features":{},"prediction":1}',
    "top level is an array": b"[1]",
    "empty": b"",
}


@pytest.mark.parametrize("raw", FALLBACKS.values(), ids=FALLBACKS.keys())
def test_what_the_scanner_cannot_prove_falls_back(raw: bytes) -> None:
    assert agrees([raw]).status[0] == FALLBACK


OKS = {
    "whitespace everywhere": b' \n{ "event_id" : "e" ,\t"model_id":"m" , "ts" : 0 , "features" : { } ,'
    b' "prediction" : 1 } \r\n',
    "escapes in values that are only validated": msg(
        '"features":{"zz":"\\u00e9\\n\\ud83d\\ude00"},"x":["\\/"]'
    ),
    "unicode everywhere": msg('"features":{"名前":"値","emoji😀":1},"segments":{"région":"nörd"}'),
    "negative zero": msg('"features":{"age":-0.0,"score":-0,"x":-0e5},"latency_ms":-0.0'),
    "nulls": msg(
        '"model_version":null,"label":null,"latency_ms":null,"segments":null,"features":{"age":null}'
    ),
    "a feature name of 256 characters": msg('"features":{"' + "é" * 256 + '":1}'),
    "nesting of 63 levels": msg('"features":{},"deep":' + "[" * 63 + "]" * 63),
    "unknown features of every scalar kind": msg(
        '"features":{"a":1,"b":"s","c":true,"d":null,"e":1234567890123456789}'
    ),
    "a float ts": b'{"event_id":"e","model_id":"m","ts":1767225600000.75,"features":{},"prediction":1}',
}


@pytest.mark.parametrize("raw", OKS.values(), ids=OKS.keys())
def test_what_the_scanner_proves(raw: bytes) -> None:
    assert agrees([raw]).status[0] == OK


def test_duplicate_keys_fall_back_although_the_contract_keeps_the_last() -> None:
    for name in ("duplicate top-level key", "duplicate feature", "duplicate segment"):
        parse_event(FALLBACKS[name])  # accepted by the contract...
        assert scan([FALLBACKS[name]], NAMES).status[0] == FALLBACK  # ...decided by decode()


def test_none_oversized_and_empty_batches() -> None:
    raw = msg('"features":{}')
    sb = scan([None, raw, b"", raw], NAMES, max_bytes=len(raw))
    assert sb.status.tolist() == [FALLBACK, OK, FALLBACK, OK]
    assert scan([raw], NAMES, max_bytes=len(raw) - 1).status.tolist() == [FALLBACK]
    empty = scan([], NAMES)
    assert empty.n == 0 and empty.strings == [""]


def test_names_that_need_escapes_or_break_the_contract() -> None:
    names = FeatureNames.of(["k" * 257, "a\ud800", "tab\there", "ok"])
    raws = [
        msg('"features":{"' + "k" * 257 + '":1,"ok":2}'),  # the contract refuses the name
        msg('"features":{"tab\\there":1,"ok":2}'),  # the value is needed, the name is escaped
        msg('"features":{"ok":2,"a\\ud800":3}'),  # not JSON orjson accepts
        msg('"features":{"ok":2}'),
    ]
    assert agrees(raws, names).status.tolist() == [FALLBACK, FALLBACK, FALLBACK, OK]


def test_threads_scan_at_once() -> None:
    """The kernel holds no shared state and releases the GIL: consumer threads scan in parallel."""
    raws = realistic(500)
    names = FeatureNames.of([*NUMERIC_FEATURES, *CATEGORICAL])
    one = scan(raws, names)
    with ThreadPoolExecutor(4) as pool:
        many = list(pool.map(lambda _: scan(raws, names), range(8)))
    for sb in many:
        assert sb.strings == one.strings
        assert np.array_equal(sb.feat_num, one.feat_num, equal_nan=True)
        assert np.array_equal(sb.seg_value, one.seg_value) and np.array_equal(sb.status, one.status)


def test_realistic_traffic_takes_the_fast_path() -> None:
    raws = realistic(2000)
    names = FeatureNames.of([*NUMERIC_FEATURES, *CATEGORICAL])
    sb = agrees(raws, names)
    assert np.mean(sb.status == OK) >= 0.99


def test_growing_tables_and_many_names() -> None:
    """More distinct strings (512) and segment entries (1024) than the tables start with, and a
    name table of 5000 features, most of them absent from each message."""
    names = FeatureNames.of([f"feature_{i:05d}_x" for i in range(5000)])
    evs: list[dict[str, Any]] = [
        {
            "event_id": f"e{i}",
            "model_id": f"model-{i}",
            "ts": i,
            "features": {f"feature_{(i * 7 + j) % 5000:05d}_x": f"v{i}-{j}" for j in range(5)},
            "prediction": 1,
            "segments": {f"s{j}": f"g{i % 50}" for j in range(3)},
        }
        for i in range(800)
    ]
    sb = scan([orjson.dumps(e) for e in evs], names)
    assert (sb.status == OK).all()
    assert len(sb.strings) == 1 + 800 * 6 + 3 + 50 and len(sb.seg_row) == 2400
    for i, e in enumerate(evs):
        assert sb.strings[sb.model[i]] == e["model_id"]
        present = np.flatnonzero(sb.feat_kind[i] == STR)
        got = {names.names[f]: sb.strings[sb.feat_str[i, f]] for f in present.tolist()}
        assert got == e["features"]
        mine = sb.seg_row == i
        assert [sb.strings[v] for v in sb.seg_value[mine]] == list(e["segments"].values())


# -- ScannedBatch.batch equals to_batch ---------------------------------------------------------

NUMERIC = ["age", "score", "名前"]
CATEGORIES = ["plan", "vip", "ümlaut"]
BINNING = Binning.fit(
    {
        **{n: np.arange(10.0) for n in NUMERIC},
        **{c: np.array(["a", "b", "true"] * 3, dtype=object) for c in CATEGORIES},
    },
    {**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(CATEGORIES, "categorical")},
    10,
    5,
    outputs={"prediction": np.linspace(0, 1, 10), "label": (["0", "1"], np.array([0, 1] * 5))},
)
# the other way round: class predictions, a numeric target
SWAPPED = replace(
    BINNING, outputs={"prediction": BINNING.outputs["label"], "label": BINNING.outputs["prediction"]}
)
feature_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, -0.0, 0.0, 1.0, 2.5]),
    st.sampled_from(["a", "b", "1", "true", "1.0", "0.0", "é"]),
)


@st.composite
def batch_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["number", "str", "bool"]))
    prediction = {
        "number": st.one_of(st.integers(0, 1), normal(0, 1)),
        "str": st.sampled_from(["1", "0", "true", "x"]),
        "bool": st.booleans(),
    }[kind]
    event: dict[str, Any] = {
        "event_id": "e",
        "model_id": draw(st.sampled_from(["m1", "m2"])),
        "ts": 0,
        "features": draw(st.dictionaries(st.sampled_from([*NUMERIC, *CATEGORIES, "other"]), feature_values)),
        "prediction": draw(prediction),
    }
    if draw(st.booleans()):
        event["model_version"] = draw(st.sampled_from(["v1", "", None]))
    if draw(st.booleans()):
        event["label"] = draw(st.one_of(st.none(), prediction))
    if draw(st.booleans()):
        event["latency_ms"] = draw(st.one_of(st.none(), normal(0, 100), st.integers(0, 9)))
    if draw(st.booleans()):
        event["segments"] = draw(
            st.dictionaries(st.sampled_from(["region", "gender", "ü"]), st.sampled_from(["a", "b", "é"]))
        )
    return event


def column_values(column: Any) -> Any:
    if isinstance(column, tuple):
        names, codes = column
        assert len(set(names)) == len(names), "category names must be distinct"
        return [names[c] for c in np.asarray(codes).tolist()]
    assert column.dtype == np.float64
    return column.view(np.int64).tolist()  # bit for bit: -0.0 is not 0.0, NaN is NaN


def assert_same_batch(got: Batch, want: Batch) -> None:
    assert got.n == want.n
    assert list(got.features) == list(want.features)
    for name, column in want.features.items():
        assert column_values(got.features[name]) == column_values(column), name
    assert got.type_errors == want.type_errors
    assert got.latency_ms is not None and want.latency_ms is not None
    assert column_values(got.latency_ms) == column_values(want.latency_ms)
    assert list(got.segments) == list(want.segments)
    for name, column in want.segments.items():
        assert column_values(got.segments[name]) == column_values(column), name
    assert got.segment_overflow == want.segment_overflow
    for attr in ("positive", "label"):
        a, b = getattr(got, attr), getattr(want, attr)
        assert a.dtype == b.dtype == np.int8 and a.tolist() == b.tolist(), attr
    assert list(got.outputs) == list(want.outputs)
    for role, column in want.outputs.items():
        assert column_values(got.outputs[role]) == column_values(column), role


# Segment plans: none folded, one attribute with part of its values, values nobody sends.
PLANS = [
    {},
    {"region": frozenset({"a", "é"})},
    {"gender": frozenset({"b"}), "ü": frozenset({"a", "b", "é"}), "absent": frozenset({"a"})},
]


@given(
    st.lists(batch_events(), max_size=30),
    st.sampled_from([("1", 0.5), ("true", 0.0), ("false", 1.0), ("x", 0.7)]),
    st.sampled_from(PLANS),
)
def test_batch_equals_to_batch_per_model(
    evs: list[dict[str, Any]], outcome: tuple[str, float], plan: dict[str, frozenset[str]]
) -> None:
    positive_class, threshold = outcome
    raws = [orjson.dumps(e) for e in evs]
    sb = agrees(raws)
    assert (sb.status == OK).all(), [r for r, s in zip(raws, sb.status, strict=True) if s != OK]
    for model in ("m1", "m2"):
        rows = np.flatnonzero([e["model_id"] == model for e in evs])
        decoded = [decode(raws[i], MAX_EVENT_BYTES) for i in rows]
        for binning in (BINNING, SWAPPED):
            got = sb.batch(rows, binning, threshold, positive_class, plan)
            assert_same_batch(got, to_batch(decoded, binning, threshold, positive_class, plan))
        # the oracle: every segment entry is kept, folded as <other> or ignored
        entries = [(a, v) for i in rows for a, v in (evs[i].get("segments") or {}).items()]
        overflow = {
            "value": sum(a in plan and v not in plan[a] for a, v in entries),
            "attribute": sum(a not in plan for a, _ in entries),
        }
        assert got.segment_overflow == {k: n for k, n in overflow.items() if n}
        assert list(got.segments) == sorted({a for a, _ in entries} & set(plan))


def test_batch_of_realistic_traffic_equals_to_batch() -> None:
    df = generate(Traffic(n=3000, seed=5))
    columns: dict[str, Any] = {n: df[n].to_numpy() for n in NUMERIC_FEATURES}
    binning = Binning.fit(
        columns | {c: df[c].to_list() for c in CATEGORICAL},
        {**dict.fromkeys(NUMERIC_FEATURES, "numeric"), **dict.fromkeys(CATEGORICAL, "categorical")},
    )
    raws = [orjson.dumps(e) for e in events(df)]
    sb = scan(raws, FeatureNames.of([*NUMERIC_FEATURES, *CATEGORICAL, "unused"]))
    plan = {"region": frozenset({"north", "east"}), "gender": frozenset({"female", "male"})}
    for rows in (np.arange(0, 3000, 3), np.arange(1, 3000, 3)[::-1], np.arange(0)):
        decoded = [decode(raws[i], MAX_EVENT_BYTES) for i in rows]
        assert_same_batch(sb.batch(rows, binning, segments=plan), to_batch(decoded, binning, segments=plan))
    batch = sb.batch(np.arange(10), binning, segments=plan)
    assert set(batch.segments) == set(SEGMENTS)
    assert set(batch.segments["region"][0]) <= {"north", "east", "<other>"}  # type: ignore[arg-type]


def test_batch_refuses_fallback_rows_and_unknown_features() -> None:
    sb = scan([msg('"features":{}'), b"{"], NAMES)
    with pytest.raises(ValueError, match="OK rows only"):
        sb.batch(np.array([0, 1]), BINNING)
    other = Binning.fit({"nope": np.arange(5.0)}, {"nope": "numeric"}, 5, 5)
    with pytest.raises(ValueError, match="not in the scanner's FeatureNames"):
        sb.batch(np.array([0]), other)


def test_string_ids_are_interned() -> None:
    raws = [msg('"features":{"plan":"pro"},"segments":{"plan":"pro"},"model_version":"pro"')] * 3
    sb = scan(raws, NAMES)
    pro = sb.strings.index("pro")
    assert sb.strings.count("pro") == 1 and (sb.version == pro).all() and (sb.seg_value == pro).all()
    assert set(string.ascii_letters) >= set("".join(sb.strings))
