"""Batch decoder: one Numba pass over a batch's concatenated message values -> numpy columns.

The scanner knows the event contract (``driftline.contract``) and proves each message valid
under it while extracting every field. Whatever it cannot prove (malformed JSON, a duplicate
key, an escape in a string whose value is needed, a number outside the exact fast paths, any
contract violation) is marked ``FALLBACK``, and the caller runs ``decode.decode()`` on it, which
either accepts it or names the contract's reason: the scanner never rejects on its own::

    >>> names = FeatureNames.of(["age", "plan"])
    >>> sb = scan([b'{"event_id":"e1","model_id":"churn","ts":1700000000000,'
    ...            b'"features":{"age":41,"plan":"pro","x":null},"prediction":0.83}', b'{"oops"'], names)
    >>> sb.status.tolist(), sb.strings[sb.model[0]], int(sb.ts_ms[0]), sb.feat_num[0].tolist()
    ([0, 1], 'churn', 1700000000000, [41.0, nan])

Python touches each message only to join the values; strings are interned inside the kernel and
decoded once per distinct value; ``ScannedBatch.batch`` builds the detectors' ``Batch`` of any
set of OK rows with numpy, equal to ``decode.to_batch`` of the same events.

Numbers are parsed exactly: Clinger's fast path (at most 15 significant digits, a power of ten
up to 22), else Eisel-Lemire (up to 19 digits), both bit-identical to Python's ``float()``;
anything else falls back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from driftline.contract import (
    MAX_EVENT_BYTES,
    MAX_FEATURES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_TS_MS,
    MIN_TS_MS,
)
from driftline.detectors._kernels import kernel
from driftline.detectors.fairness import OVERFLOW_ATTRIBUTE, to_outcome
from driftline.detectors.profile import NO_SEGMENTS, Batch, Binning, Column, bound_segments

# Message status.
OK = 0
FALLBACK = 1
_RETRY = 2  # internal: a growable table was full; the batch loop grows it and scans the message again

# Value kinds (prediction, label, features). JSON null and an absent key are both 0.
ABSENT = 0
NULL = 0
INT = 1  # integer literal: a Python int once decoded, so str() has no ".0"
FLOAT = 2  # literal with a fraction or an exponent: a Python float
STR = 3
TRUE = 4
FALSE = 5

MAX_DEPTH = 64  # nesting of unknown values (the event object is level 1); deeper -> FALLBACK
MAX_SEGMENTS = 256  # per message, more -> FALLBACK: duplicate names are found by a linear scan
MAX_INT_DIGITS = 15  # integer literals used as values: exact in float64, so str(int) is recoverable
_MAX_DIGITS = 19  # significant digits of any number (< 2**64, as Eisel-Lemire needs)
_VALIDATE, _EXACT, _INTERN = 0, 1, 2  # what a scalar is needed for (see _value)
# Places whose last string id the interning remembers (_intern): the top-level fields by key,
# then each feature column, then the first 64 segment names and values by position.
_SITES_KEYS = 9
_SITES_SEGMENTS = 64

# Top-level keys; bit k of the message's "present" mask is key k.
_KEYS = (
    "event_id",
    "model_id",
    "model_version",
    "ts",
    "features",
    "prediction",
    "label",
    "latency_ms",
    "segments",
)
K_EVENT_ID, K_MODEL_ID, K_MODEL_VERSION, K_TS, K_FEATURES = 0, 1, 2, 3, 4
K_PREDICTION, K_LABEL, K_LATENCY, K_SEGMENTS = 5, 6, 7, 8
_REQUIRED = (1 << K_EVENT_ID) | (1 << K_MODEL_ID) | (1 << K_TS) | (1 << K_FEATURES) | (1 << K_PREDICTION)
_KEY_BYTES = np.frombuffer("".join(_KEYS).encode(), np.uint8)
_KEY_OFFSETS = np.cumsum([0, *(len(k) for k in _KEYS)]).astype(np.int64)
_KEY_HEAD = np.array([int.from_bytes(k.encode()[:8].ljust(8, b"\0"), "little") for k in _KEYS], np.uint64)
_KEY_TAIL = np.array([int.from_bytes(k.encode()[-8:].ljust(8, b"\0"), "little") for k in _KEYS], np.uint64)

# Exact powers of ten: as float64 for Clinger's fast path, as uint64 for runs of digits.
_P10 = np.array([10.0**k for k in range(23)])
_P10_U64 = np.array([10**k for k in range(20)], np.uint64)
_P5_U64 = np.array([5**k for k in range(28)], np.uint64)
_P2 = np.array([2.0**-k for k in range(28)])


def _powers_of_ten_128() -> tuple[np.ndarray, np.ndarray]:
    """128-bit mantissas of 10**e (rounded down) for e in -348..347, as Eisel-Lemire uses them."""
    hi, lo = [], []
    for e in range(-348, 348):
        if e >= 0:
            v = 10**e
            v = v >> (v.bit_length() - 128) if v.bit_length() > 128 else v << (128 - v.bit_length())
        else:
            d = 10**-e
            v = (1 << (127 + d.bit_length())) // d
        hi.append(v >> 64)
        lo.append(v & (2**64 - 1))
    return np.array(hi, np.uint64), np.array(lo, np.uint64)


_POW_HI, _POW_LO = _powers_of_ten_128()

# uint64 constants: numba turns uint64 (op) int64 into float64, so every operand is typed.
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U3 = np.uint64(3)
_U8 = np.uint64(8)
_U9 = np.uint64(9)
_U10 = np.uint64(10)
_U16 = np.uint64(16)
_U29 = np.uint64(29)
_U32 = np.uint64(32)
_U33 = np.uint64(33)
_U52 = np.uint64(52)
_U53 = np.uint64(53)
_U63 = np.uint64(63)
_E8 = np.uint64(100_000_000)
_LOW9 = np.uint64(0x1FF)
_LOW32 = np.uint64(0xFFFFFFFF)
_MANT52 = np.uint64(0xFFFFFFFFFFFFF)
_SIGN = np.uint64(1 << 63)
_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_ZEROS = np.uint64(0x3030303030303030)  # "00000000"
_QUOTES = np.uint64(0x2222222222222222)
_SLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)
_SPACES = np.uint64(0x2020202020202020)
_K46 = np.uint64(0x4646464646464646)
_MASK8 = np.uint64(0x000000FF000000FF)
_MUL1 = np.uint64(0x000F424000000064)  # 100 + (1000000 << 32)
_MUL2 = np.uint64(0x0000271000000001)  # 1 + (10000 << 32)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)

# --------------------------------------------------------------------------------------------
# LLVM operations numba does not expose. The byte-level helpers take the batch buffer as a raw
# address ``p``: a numba call that passes an array spills every field of it (and, with reference
# counting, adds atomic increments), which on a few hundred helper calls per message cost more
# than the parsing. Scalars-only helpers are also cheap to compile, and LLVM inlines the small ones.


def _llvm(fn: Callable[..., Any]) -> Any:
    """numba's ``intrinsic``, typed as Any for mypy: kernels call it without the typing context."""
    return intrinsic(fn)


@_llvm
def _address(typingctx: Any, arr: Any) -> Any:
    """Address of a contiguous array's first element (the caller keeps the array alive)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))

    return types.int64(arr), codegen


@_llvm
def _b(typingctx: Any, p: Any, i: Any) -> Any:
    """The byte at address ``p + i`` (the caller checks the bounds)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.load(builder.inttoptr(builder.add(args[0], args[1]), ir.IntType(8).as_pointer()))

    return types.uint8(types.int64, types.int64), codegen


@_llvm
def _load64(typingctx: Any, p: Any, i: Any) -> Any:
    """The 8 bytes at ``p + i`` as a little-endian uint64, unaligned (the caller checks bounds)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = builder.inttoptr(builder.add(args[0], args[1]), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    return types.uint64(types.int64, types.int64), codegen


@_llvm
def _umul128(typingctx: Any, a: Any, b: Any) -> Any:
    """(high, low) 64-bit halves of the 128-bit product a * b."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i128 = ir.IntType(128)
        prod = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        hi = builder.trunc(builder.lshr(prod, ir.Constant(i128, 64)), ir.IntType(64))
        return context.make_tuple(builder, signature.return_type, (hi, builder.trunc(prod, ir.IntType(64))))

    return sig, codegen


@_llvm
def _clz(typingctx: Any, x: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 0))

    return types.int64(types.uint64), codegen


@_llvm
def _ctz(typingctx: Any, x: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return types.int64(types.uint64), codegen


@_llvm
def _from_bits(typingctx: Any, x: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


# --------------------------------------------------------------------------------------------
# Kernel helpers. Each returns a position >= 0, or -1 (not proven: FALLBACK) or -2 (RETRY).

# The helpers allocate nothing, so they run without numba's reference counting. The few that
# take arrays (the tables) and sit on the hot path are inlined by numba itself.
_OPTIONS: dict[str, Any] = {"nogil": True, "cache": True, "error_model": "numpy", "_nrt": False}
_helper = njit(**_OPTIONS)
_inline = njit(**_OPTIONS, inline="always")


@_helper
def _ws(p: int, pos: int, end: int) -> int:
    while pos < end:
        c = _b(p, pos)
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        pos += 1
    return pos


@_helper
def _colon(p: int, pos: int, end: int) -> int:
    """Past the ``:`` after a key (and the whitespace around it), at the value."""
    pos = _ws(p, pos, end)
    if pos >= end or _b(p, pos) != 58:
        return -1
    pos = _ws(p, pos + 1, end)
    return pos if pos < end else -1


@_helper
def _after_value(p: int, pos: int, end: int, close: int) -> tuple[int, bool]:
    """After a member's value: (position of the next key, more members follow) or (-1, False)."""
    pos = _ws(p, pos, end)
    if pos >= end:
        return -1, False
    c = _b(p, pos)
    if c == 44:
        return _ws(p, pos + 1, end), True
    if c == close:
        return pos + 1, False
    return -1, False


@_helper
def _hex4(p: int, pos: int, end: int) -> int:
    if pos + 4 > end:
        return -1
    v = 0
    for i in range(pos, pos + 4):
        c = _b(p, i)
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        else:
            return -1
        v = v * 16 + d
    return v


@_helper
def _escape(p: int, pos: int, end: int) -> int:
    """Validate the escape after a backslash at ``pos - 1``; lone surrogates are refused, as
    orjson refuses them."""
    if pos >= end:
        return -1
    c = _b(p, pos)
    if c == 34 or c == 92 or c == 47 or c == 98 or c == 102 or c == 110 or c == 114 or c == 116:
        return pos + 1
    if c != 117:  # u
        return -1
    cp = _hex4(p, pos + 1, end)
    pos += 5
    if cp < 0 or 0xDC00 <= cp <= 0xDFFF:
        return -1
    if 0xD800 <= cp <= 0xDBFF:
        if pos + 1 >= end or _b(p, pos) != 92 or _b(p, pos + 1) != 117:
            return -1
        low = _hex4(p, pos + 2, end)
        if not 0xDC00 <= low <= 0xDFFF:
            return -1
        pos += 6
    return pos


@_helper
def _utf8(p: int, pos: int, end: int, c: int) -> int:
    """Position after the multi-byte UTF-8 sequence led by ``c`` at ``pos``; -1 unless it is valid
    UTF-8 (no overlong forms, surrogates or code points above U+10FFFF)."""
    if c < 0xC2 or c > 0xF4:
        return -1
    if c < 0xE0:
        return pos + 2 if pos + 1 < end and 0x80 <= _b(p, pos + 1) <= 0xBF else -1
    lo = 0x80
    hi = 0xBF
    if c < 0xF0:
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:
            hi = 0x9F
        if pos + 2 < end and lo <= _b(p, pos + 1) <= hi and 0x80 <= _b(p, pos + 2) <= 0xBF:
            return pos + 3
        return -1
    if c == 0xF0:
        lo = 0x90
    elif c == 0xF4:
        hi = 0x8F
    if (
        pos + 3 < end
        and lo <= _b(p, pos + 1) <= hi
        and 0x80 <= _b(p, pos + 2) <= 0xBF
        and 0x80 <= _b(p, pos + 3) <= 0xBF
    ):
        return pos + 4
    return -1


@_inline
def _special(v: np.uint64) -> np.uint64:
    """Nonzero if one of the 8 bytes of ``v`` is a quote, a backslash, below 0x20 or above 0x7F;
    its lowest set bit is then in the first such byte (later ones may be flagged falsely)."""
    q = v ^ _QUOTES
    s = v ^ _SLASHES
    return (((q - _ONES) & ~q) | ((s - _ONES) & ~s) | ((v - _SPACES) & ~v) | v) & _HIGHS


@_helper
def _string(p: int, pos: int, end: int) -> tuple[int, int, bool]:
    """Scan a string whose opening quote is at ``pos - 1``: (position after the closing quote or
    -1, length in code points as Python counts it, whether it holds an escape)."""
    n = 0
    esc = False
    while pos < end:
        if pos + 8 <= end:  # plain ASCII 8 bytes at a time, then straight to the first other byte
            special = _special(_load64(p, pos))
            if special == _U0:
                pos += 8
                n += 8
                continue
            k = _ctz(special) >> 3
            pos += k
            n += k
        c = _b(p, pos)
        if c == 34:
            return pos + 1, n, esc
        if c == 92:
            esc = True
            pos = _escape(p, pos + 1, end)
            if pos < 0:
                return -1, n, esc
        elif c < 0x20:
            return -1, n, esc
        elif c < 0x80:
            pos += 1
        else:
            pos = _utf8(p, pos, end, c)
            if pos < 0:
                return -1, n, esc
        n += 1
    return -1, n, esc


@_helper
def _hash(p: int, start: int, stop: int) -> np.uint64:
    """Hash of the bytes [start, stop) at ``p``, one multiply per 8 bytes; murmur3's finaliser
    then mixes the low bits the tables index with."""
    h = np.uint64(stop - start) * _GOLDEN
    i = start
    while i + 8 <= stop:
        h = (h ^ _load64(p, i)) * _GOLDEN
        h ^= h >> _U29
        i += 8
    if i < stop:
        w = _U0
        if stop - start >= 8:
            w = _load64(p, stop - 8)  # the last 8 bytes, overlapping ones already mixed
        else:
            for j in range(i, stop):
                w = (w << _U8) | np.uint64(_b(p, j))
        h = (h ^ w) * _GOLDEN
        h ^= h >> _U29
    h ^= h >> _U33
    h *= _FMIX1
    h ^= h >> _U33
    h *= _FMIX2
    return h ^ (h >> _U33)


@_inline
def _same(a: int, b: int, n: int) -> bool:
    """Whether the n bytes at addresses a and b are equal."""
    i = 0
    while i + 8 <= n:
        if _load64(a, i) != _load64(b, i):
            return False
        i += 8
    while i < n:
        if _b(a, i) != _b(b, i):
            return False
        i += 1
    return True


@_inline
def _eisel_lemire(m: np.uint64, e10: int, neg: bool) -> tuple[float, bool]:
    """m * 10**e10 correctly rounded (0 < m < 10**19), or ok=False where the algorithm cannot
    decide, and for subnormal or overflowing results. Lemire, "Number Parsing at a Gigabyte per
    Second" (2021), in the form of Go's strconv.eiselLemire64."""
    if e10 < -348 or e10 > 347:
        return 0.0, False
    clz = _clz(m)
    man = m << np.uint64(clz)
    exp2 = ((217706 * e10) >> 16) + 64 + 1023 - clz
    x_hi, x_lo = _umul128(man, _POW_HI[e10 + 348])
    if x_hi & _LOW9 == _LOW9 and x_lo + man < man:
        y_hi, y_lo = _umul128(man, _POW_LO[e10 + 348])
        merged_hi = x_hi
        merged_lo = x_lo + y_hi
        if merged_lo < x_lo:
            merged_hi += _U1
        if merged_hi & _LOW9 == _LOW9 and merged_lo + _U1 == _U0 and y_lo + man < man:
            return 0.0, False
        x_hi = merged_hi
        x_lo = merged_lo
    msb = x_hi >> _U63
    mant = x_hi >> (msb + _U9)
    exp2 -= 1 - np.int64(msb)
    if x_lo == _U0 and x_hi & _LOW9 == _U0 and mant & _U3 == _U1:
        return 0.0, False  # exactly half-way: needs the full decimal
    mant += mant & _U1
    mant = mant >> _U1
    if mant >> _U53 > _U0:
        mant = mant >> _U1
        exp2 += 1
    if exp2 <= 0 or exp2 >= 0x7FF:
        return 0.0, False
    bits = (np.uint64(exp2) << _U52) | (mant & _MANT52)
    return _from_bits(bits | _SIGN if neg else bits), True


@_inline
def _parse8(v: np.uint64) -> np.uint64:
    """The value of 8 ASCII digits, the first one in the lowest byte (SWAR, as simdjson)."""
    v = v - _ZEROS
    v = v * _U10 + (v >> _U8)
    return (((v & _MASK8) * _MUL1 + ((v >> _U16) & _MASK8) * _MUL2) >> _U32) & _LOW32


@_inline
def _digit_run(p: int, pos: int, end: int, m: np.uint64) -> tuple[int, np.uint64, int]:
    """Append the digits at ``pos`` to ``m`` (wrapping beyond 19 digits, which callers refuse),
    up to 8 per step: a run of k < 8 is shifted up and padded with leading "0"s."""
    first = pos
    while pos + 8 <= end:
        v = _load64(p, pos)
        stop = ((v + _K46) | (v - _ZEROS)) & _HIGHS  # exact up to the first non-digit
        if stop == _U0:
            m = m * _E8 + _parse8(v)
            pos += 8
            continue
        k = _ctz(stop) >> 3
        if k > 0:
            m = m * _P10_U64[k] + _parse8((v << np.uint64(64 - 8 * k)) | (_ZEROS >> np.uint64(8 * k)))
            pos += k
        return pos, m, pos - first
    while pos < end:
        d = _b(p, pos) - 48
        if d < 0 or d > 9:
            break
        m = m * _U10 + np.uint64(d)
        pos += 1
    return pos, m, pos - first


@_helper
def _number(p: int, pos: int, end: int) -> tuple[int, int, float, int]:
    """The JSON number at ``pos``: (end position or -1, INT or FLOAT, value, significant digits).
    The value is bit-identical to Python's float() of the literal (an int literal's float is
    exact up to 15 digits); -1 where that cannot be proven: too many digits, overflow, underflow."""
    neg = _b(p, pos) == 45
    if neg:
        pos += 1
        if pos >= end:
            return -1, 0, 0.0, 0
    c = _b(p, pos)
    m = _U0
    nd = 0  # significant digits
    dexp = 0  # value = m * 10**dexp
    if c == 48:
        pos += 1
    elif 49 <= c <= 57:
        pos, m, nd = _digit_run(p, pos, end, m)
    else:
        return -1, 0, 0.0, 0
    kind = INT
    if pos < end and _b(p, pos) == 46:  # .
        kind = FLOAT
        pos += 1
        first = pos
        if nd == 0:  # "0.000123": leading zeros are not significant
            while pos < end and _b(p, pos) == 48:
                pos += 1
        zeros = pos - first
        pos, m, k = _digit_run(p, pos, end, m)
        if zeros + k == 0:
            return -1, 0, 0.0, 0
        nd += k
        dexp = -(zeros + k)
    if pos < end and (_b(p, pos) == 101 or _b(p, pos) == 69):  # e E
        kind = FLOAT
        pos += 1
        eneg = False
        if pos < end and (_b(p, pos) == 43 or _b(p, pos) == 45):
            eneg = _b(p, pos) == 45
            pos += 1
        first = pos
        e = 0
        while pos < end:
            d = _b(p, pos) - 48
            if d < 0 or d > 9:
                break
            if e < 100_000:  # saturate: anything this far out is refused below
                e = e * 10 + d
            pos += 1
        if pos == first:
            return -1, 0, 0.0, 0
        dexp += -e if eneg else e
    if nd > _MAX_DIGITS:
        return -1, 0, 0.0, 0
    if kind == INT:
        v = np.float64(m)  # "-0" is the int 0: no negative zero
        return pos, INT, (-v if neg and m != _U0 else v), nd
    if m == _U0:
        return pos, FLOAT, (-0.0 if neg else 0.0), nd
    if nd <= 15 and -22 <= dexp <= 22:
        # Clinger: m and 10**|dexp| are exact doubles, so one IEEE operation rounds correctly.
        v = np.float64(m) * _P10[dexp] if dexp >= 0 else np.float64(m) / _P10[-dexp]
        return pos, FLOAT, (-v if neg else v), nd
    v, ok = _eisel_lemire(m, dexp, neg)
    if ok:
        return pos, FLOAT, v, nd
    # Eisel-Lemire cannot decide values exactly half-way or exactly representable in some cases.
    while nd > 15 and m % _U10 == _U0:  # "100000000000000.0": trailing zeros, back to Clinger
        m = m // _U10
        nd -= 1
        dexp += 1
    if nd <= 15 and -22 <= dexp <= 22:
        v = np.float64(m) * _P10[dexp] if dexp >= 0 else np.float64(m) / _P10[-dexp]
    elif dexp >= 0 and nd + dexp <= 19:  # an integer below 2**64: one rounding, by the CPU
        v = np.float64(m * _P10_U64[dexp])
    elif dexp > 22 and nd + dexp - 22 <= 15:  # 1e23: m * 10**(dexp - 22) still exact, then one rounding
        v = np.float64(m * _P10_U64[dexp - 22]) * _P10[22]
    elif -27 <= dexp < 0 and m % _P5_U64[-dexp] == _U0:
        # "2913287212328237.5": m / 10**k = (m / 5**k) / 2**k, one rounding then an exact scaling
        v = np.float64(m // _P5_U64[-dexp]) * _P2[-dexp]
    else:
        return -1, 0, 0.0, 0
    return pos, FLOAT, (-v if neg else v), nd


@_helper
def _literal(p: int, pos: int, end: int) -> tuple[int, int]:
    """true / false / null at ``pos``: (end position or -1, kind)."""
    c = _b(p, pos)
    if (
        c == 116
        and pos + 4 <= end
        and _b(p, pos + 1) == 114
        and _b(p, pos + 2) == 117
        and _b(p, pos + 3) == 101
    ):
        return pos + 4, TRUE
    if (
        c == 102
        and pos + 5 <= end
        and _b(p, pos + 1) == 97
        and _b(p, pos + 2) == 108
        and _b(p, pos + 3) == 115
        and _b(p, pos + 4) == 101
    ):
        return pos + 5, FALSE
    if (
        c == 110
        and pos + 4 <= end
        and _b(p, pos + 1) == 117
        and _b(p, pos + 2) == 108
        and _b(p, pos + 3) == 108
    ):
        return pos + 4, NULL
    return -1, 0


@_helper
def _member_key(p: int, pos: int, end: int) -> int:
    """Skip ``"key":`` of an object member; returns the position of its value."""
    if pos >= end or _b(p, pos) != 34:
        return -1
    pos, _, _ = _string(p, pos + 1, end)
    return -1 if pos < 0 else _colon(p, pos, end)


@_helper
def _skip(p: int, pos: int, end: int, stack: np.ndarray) -> int:
    """Validate the JSON value at ``pos`` as orjson would accept it; returns its end."""
    depth = 0
    while True:
        if pos >= end:
            return -1
        c = _b(p, pos)
        if c == 123 or c == 91:  # { [
            if depth >= stack.shape[0]:
                return -1  # nested deeper than MAX_DEPTH, counting the event object
            pos = _ws(p, pos + 1, end)
            if pos < end and _b(p, pos) == c + 2:  # } ]
                pos += 1
            else:
                stack[depth] = c
                depth += 1
                if c == 123:
                    pos = _member_key(p, pos, end)
                    if pos < 0:
                        return -1
                continue
        elif c == 34:
            pos, _, _ = _string(p, pos + 1, end)
        elif c == 45 or 48 <= c <= 57:
            pos, _, _, _ = _number(p, pos, end)  # also refuses what orjson refuses: 1e400
        else:
            pos, _ = _literal(p, pos, end)
        if pos < 0:
            return -1
        while True:  # after a complete value: close containers, or go to the next element
            if depth == 0:
                return pos
            pos = _ws(p, pos, end)
            if pos >= end:
                return -1
            c = _b(p, pos)
            if c == 44:  # ,
                pos = _ws(p, pos + 1, end)
                if stack[depth - 1] == 123:
                    pos = _member_key(p, pos, end)
                    if pos < 0:
                        return -1
                break
            if c != stack[depth - 1] + 2:
                return -1
            depth -= 1
            pos += 1


@_inline
def _intern(p: int, start: int, stop: int, strtab: tuple, counts: np.ndarray, site: int) -> int:
    """Id of the string at [start, stop) (raw UTF-8, no escapes): equal bytes, equal id. Returns
    -2 when a new string would fill the table past half (the batch loop grows it).

    ``site`` (or -1) names where the string is in the message (model_id, a feature, the k-th
    segment): the id last seen there is compared first, which saves the hash when it repeats."""
    slots, hashes, starts, lens, last = strtab
    n = stop - start
    if site >= 0:
        sid = last[site]
        if sid >= 0 and lens[sid] == n and _same(p + starts[sid], p + start, n):
            return sid
    h = _hash(p, start, stop)
    mask = slots.shape[0] - 1
    j = np.int64(h & np.uint64(mask))
    while True:
        k = slots[j]
        if k == 0:
            sid = counts[0]
            if 2 * (sid + 1) > slots.shape[0]:
                counts[3] = 1
                return -2
            slots[j] = sid + 1
            hashes[sid] = h
            starts[sid] = start
            lens[sid] = n
            counts[0] = sid + 1
            if site >= 0:
                last[site] = sid
            return sid
        sid = k - 1
        if hashes[sid] == h and lens[sid] == n and _same(p + starts[sid], p + start, n):
            if site >= 0:
                last[site] = sid
            return sid
        j = (j + 1) & mask


@_inline
def _value(
    p: int, pos: int, end: int, strtab: tuple, counts: np.ndarray, need: int, site: int
) -> tuple[int, int, float, int, int, bool]:
    """A scalar or null: (end position, kind, number or NaN, string id or -1, a string's length in
    code points, whether it holds an escape). ``need``: _VALIDATE only checks it is JSON that
    orjson accepts; _EXACT also refuses integer literals beyond 15 digits (float() and str() of
    them are exact only up to there); _INTERN also gives a string an id, refusing escapes.
    Arrays and objects are refused (-1)."""
    c = _b(p, pos)
    if c == 34:
        start = pos + 1
        pos, nchars, esc = _string(p, start, end)
        if pos < 0 or (need == _INTERN and esc):
            return -1, 0, np.nan, -1, 0, esc
        sid = -1
        if need == _INTERN:
            sid = _intern(p, start, pos - 1, strtab, counts, site)
            if sid < 0:
                return sid, 0, np.nan, -1, 0, esc
        return pos, STR, np.nan, sid, nchars, esc
    if c == 45 or 48 <= c <= 57:
        pos, kind, v, nd = _number(p, pos, end)
        if pos < 0 or (need != _VALIDATE and kind == INT and nd > MAX_INT_DIGITS):
            return -1, 0, np.nan, -1, 0, False
        return pos, kind, v, -1, 0, False
    pos, kind = _literal(p, pos, end)
    return pos, kind, np.nan, -1, 0, False


@_helper
def _lookup(p: int, start: int, stop: int, table: tuple, names: int) -> int:
    """Column of the feature named by the bytes [start, stop), or -1 (``names``: address of the
    names' bytes)."""
    slots, hashes, _, offsets, _ = table
    h = _hash(p, start, stop)
    n = stop - start
    mask = slots.shape[0] - 1
    j = np.int64(h & np.uint64(mask))
    while True:
        k = slots[j]
        if k == 0:
            return -1
        f = k - 1
        s = offsets[f]
        if hashes[f] == h and offsets[f + 1] - s == n and _same(names + s, p + start, n):
            return f
        j = (j + 1) & mask


@_helper
def _features(
    p: int,
    pos: int,
    end: int,
    row: int,
    table: tuple,
    names: int,
    kinds: np.ndarray,
    nums: np.ndarray,
    sids: np.ndarray,
    seen: np.ndarray,
    order: np.ndarray,
    strtab: tuple,
    counts: np.ndarray,
) -> int:
    """The features object at ``pos`` (its ``{``): named columns filled, the others validated."""
    offsets = table[3]
    plain = table[4]
    pos = _ws(p, pos + 1, end)
    if pos < end and _b(p, pos) == 125:
        return pos + 1
    stamp = counts[2]  # one per scan attempt: a feature seen twice in one is a duplicate key
    entries = 0
    more = True
    while more:
        if pos >= end or _b(p, pos) != 34 or entries >= MAX_FEATURES:
            return -1
        start = pos + 1
        # Producers write the features in the same order: try the name seen here last time. A
        # plain name (nothing to escape, 1 to 256 characters) followed by a quote is the key.
        f = order[entries]
        if f >= 0 and plain[f]:
            n = offsets[f + 1] - offsets[f]
            if start + n < end and _b(p, start + n) == 34 and _same(names + offsets[f], p + start, n):
                pos = start + n + 1
            else:
                f = -2
        else:
            f = -2
        if f == -2:
            pos, nchars, esc = _string(p, start, end)
            if pos < 0 or esc or nchars == 0 or nchars > MAX_NAME_CHARS:
                return -1
            f = _lookup(p, start, pos - 1, table, names)
            order[entries] = f
        entries += 1
        pos = _colon(p, pos, end)
        if pos < 0:
            return -1
        c = _b(p, pos)
        if c == 45 or 48 <= c <= 57:  # most features are numbers
            pos, kind, v, nd = _number(p, pos, end)
            if pos < 0 or (f >= 0 and kind == INT and nd > MAX_INT_DIGITS):
                return -1
            sid = -1
        else:
            need = _INTERN if f >= 0 else _VALIDATE
            pos, kind, v, sid, _, _ = _value(p, pos, end, strtab, counts, need, _SITES_KEYS + f)
            if pos < 0:
                return pos
        if f >= 0:
            if seen[f] == stamp:
                return -1
            seen[f] = stamp
            kinds[row, f] = kind
            nums[row, f] = v
            sids[row, f] = sid
        pos, more = _after_value(p, pos, end, 125)
        if pos < 0:
            return -1
    return pos


@_helper
def _segments(p: int, pos: int, end: int, row: int, segs: tuple, strtab: tuple, counts: np.ndarray) -> int:
    """The segments object at ``pos`` (its ``{``): string values only, appended as (row, name, value)."""
    seg_row, seg_name, seg_value = segs
    first = counts[1]
    pos = _ws(p, pos + 1, end)
    if pos < end and _b(p, pos) == 125:
        return pos + 1
    more = True
    while more:
        if pos >= end or _b(p, pos) != 34:
            return -1
        start = pos + 1
        pos, _, esc = _string(p, start, end)
        if pos < 0 or esc:
            return -1
        entry = counts[1] - first
        site = strtab[4].shape[0] - 2 * (_SITES_SEGMENTS - entry) if entry < _SITES_SEGMENTS else -1
        name = _intern(p, start, pos - 1, strtab, counts, site)
        if name < 0:
            return name
        pos = _colon(p, pos, end)
        if pos < 0 or _b(p, pos) != 34:
            return -1
        start = pos + 1
        pos, _, esc = _string(p, start, end)
        if pos < 0 or esc:
            return -1
        value = _intern(p, start, pos - 1, strtab, counts, site + 1 if site >= 0 else -1)
        if value < 0:
            return value
        k = counts[1]
        if k - first >= MAX_SEGMENTS:
            return -1
        for i in range(first, k):
            if seg_name[i] == name:
                return -1
        if k >= seg_row.shape[0]:
            counts[3] = 2
            return -2
        seg_row[k] = row
        seg_name[k] = name
        seg_value[k] = value
        counts[1] = k + 1
        pos, more = _after_value(p, pos, end, 125)
        if pos < 0:
            return -1
    return pos


@_helper
def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), y >= 1."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@_helper
def _digits(p: int, pos: int, n: int) -> int:
    v = 0
    for i in range(pos, pos + n):
        d = _b(p, i) - 48
        if d < 0 or d > 9:
            return -1
        v = v * 10 + d
    return v


@_helper
def _rfc3339(p: int, s: int, e: int) -> int:
    """Epoch ms of the text [s, e) if it is ``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)``, exactly
    as contract.parse_ts computes it (floor(datetime.fromisoformat(t).timestamp() * 1000)); -1
    for any other text."""
    if e - s < 20 or _b(p, s + 4) != 45 or _b(p, s + 7) != 45 or _b(p, s + 10) != 84:
        return -1
    if _b(p, s + 13) != 58 or _b(p, s + 16) != 58:
        return -1
    year = _digits(p, s, 4)
    month = _digits(p, s + 5, 2)
    day = _digits(p, s + 8, 2)
    hour = _digits(p, s + 11, 2)
    minute = _digits(p, s + 14, 2)
    second = _digits(p, s + 17, 2)
    if year < 1 or not 1 <= month <= 12 or day < 1 or not 0 <= hour <= 23:
        return -1
    if not 0 <= minute <= 59 or not 0 <= second <= 59:
        return -1
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if month == 2:
        days_in_month = 29 if leap else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        days_in_month = 30
    else:
        days_in_month = 31
    if day > days_in_month:
        return -1
    i = s + 19
    us = 0
    if _b(p, i) == 46:  # a fraction of 1 to 6 digits, as microseconds
        i += 1
        nf = 0
        while i < e and nf < 7 and 48 <= _b(p, i) <= 57:
            us = us * 10 + (_b(p, i) - 48)
            nf += 1
            i += 1
        if nf == 0 or nf > 6:
            return -1
        for _ in range(6 - nf):
            us *= 10
    offset = 0
    if i == e - 1 and _b(p, i) == 90:  # Z
        offset = 0
    elif i == e - 6 and (_b(p, i) == 43 or _b(p, i) == 45) and _b(p, i + 3) == 58:
        oh = _digits(p, i + 1, 2)
        om = _digits(p, i + 4, 2)
        if not 0 <= oh <= 23 or not 0 <= om <= 59:
            return -1
        offset = (oh * 3600 + om * 60) * (1 if _b(p, i) == 43 else -1)
    else:
        return -1
    secs = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
    # Python's timestamp() is the correctly rounded (secs * 10**6 + us) / 10**6. For secs >= 2**22
    # (from 1970-02-18 on) secs + us / 1e6 rounds to the same double: the quotient is exact or at
    # least 2**-31 / 10**6 away from a rounding boundary, far more than the error of us / 1e6.
    if secs < 1 << 22:
        return -1
    t = np.float64(secs) + np.float64(us) / 1e6
    return math.floor(t * 1000.0)


@_inline
def _is_key(p: int, start: int, end: int, k: int) -> bool:
    """Whether the key starting at ``start`` is exactly the contract field k (its bytes, then the
    closing quote), compared 8 bytes at a time: the first 8 and the last 8, which may overlap."""
    n = _KEY_OFFSETS[k + 1] - _KEY_OFFSETS[k]
    if start + n >= end or _b(p, start + n) != 34:
        return False
    if n >= 8:
        return _load64(p, start) == _KEY_HEAD[k] and _load64(p, start + n - 8) == _KEY_TAIL[k]
    return _same(_address(_KEY_BYTES) + _KEY_OFFSETS[k], p + start, n)


@_inline
def _known_key(p: int, start: int, end: int) -> tuple[int, int]:
    """(the contract field the key at ``start`` names, the position after its closing quote), or
    (-1, -1) for any other key. The fields are plain ASCII: equal bytes are the only spelling
    without escapes."""
    if start >= end:
        return -1, -1
    c = _b(p, start)
    k = -1
    k2 = -1
    if c == 101:  # e
        k = K_EVENT_ID
    elif c == 109:  # m
        k = K_MODEL_ID
        k2 = K_MODEL_VERSION
    elif c == 116:  # t
        k = K_TS
    elif c == 102:  # f
        k = K_FEATURES
    elif c == 112:  # p
        k = K_PREDICTION
    elif c == 108:  # l
        k = K_LABEL
        k2 = K_LATENCY
    elif c == 115:  # s
        k = K_SEGMENTS
    if k >= 0 and _is_key(p, start, end, k):
        return k, start + _KEY_OFFSETS[k + 1] - _KEY_OFFSETS[k] + 1
    if k2 >= 0 and _is_key(p, start, end, k2):
        return k2, start + _KEY_OFFSETS[k2 + 1] - _KEY_OFFSETS[k2] + 1
    return -1, -1


@_helper
def _class(kind: int) -> int:
    """The contract's target kinds: bool, str, number."""
    if kind in (TRUE, FALSE):
        return 1
    return 2 if kind == STR else 3


@_inline
def _field(
    p: int,
    start: int,
    stop: int,
    key: int,
    kind: int,
    v: float,
    sid: int,
    nchars: int,
    esc: bool,
    row: int,
    out: tuple,
) -> bool:
    """Check a scalar top-level field against the contract and store it; False: FALLBACK.
    A string value's bytes are [start, stop)."""
    _, model, version, ts, latency, pk, pn, ps, lk, ln, ls, _, _, _ = out
    if key == K_EVENT_ID:
        return kind == STR and not esc and 0 < nchars <= MAX_ID_CHARS
    if key in (K_MODEL_ID, K_MODEL_VERSION):
        if key == K_MODEL_VERSION and kind == NULL:
            return True  # stays ""
        if kind != STR or nchars > MAX_NAME_CHARS or (nchars == 0 and key == K_MODEL_ID):
            return False
        if key == K_MODEL_ID:
            model[row] = sid
        else:
            version[row] = sid
        return True
    if key == K_TS:
        if kind == STR:
            ms = -1 if esc else _rfc3339(p, start, stop)
        elif kind == INT:
            ms = np.int64(v)  # exact: at most 15 digits
        elif kind == FLOAT and MIN_TS_MS <= v < MAX_TS_MS:  # floor(v) < MAX <=> v < MAX, an integer
            ms = np.int64(np.floor(v))
        else:
            return False
        if not MIN_TS_MS <= ms < MAX_TS_MS:
            return False
        ts[row] = ms
        return True
    if key in (K_PREDICTION, K_LABEL):
        if key == K_PREDICTION:
            if kind == NULL:
                return False  # required
            pk[row] = kind
            pn[row] = v
            ps[row] = sid
        else:
            lk[row] = kind
            ln[row] = v
            ls[row] = sid
        return True
    if key == K_LATENCY:
        if kind == NULL:
            return True
        if (kind != INT and kind != FLOAT) or v < 0:  # -0.0 passes, as in the contract
            return False
        latency[row] = v
        return True
    return kind == NULL  # segments that are not an object: null is {}


@_helper
def _reset_row(row: int, out: tuple) -> None:
    """Defaults of a row (the batch starts with them; a FALLBACK row gets them back)."""
    _, model, version, ts, latency, pk, pn, ps, lk, ln, ls, fk, fnum, fstr = out
    model[row] = -1
    version[row] = 0
    ts[row] = 0
    latency[row] = np.nan
    pk[row] = ABSENT
    pn[row] = np.nan
    ps[row] = -1
    lk[row] = ABSENT
    ln[row] = np.nan
    ls[row] = -1
    for f in range(fk.shape[1]):
        fk[row, f] = ABSENT
        fnum[row, f] = np.nan
        fstr[row, f] = -1


@_inline
def _scan_message(
    p: int,
    pos: int,
    end: int,
    row: int,
    table: tuple,
    names: int,
    out: tuple,
    segs: tuple,
    strtab: tuple,
    counts: np.ndarray,
    stack: np.ndarray,
    seen: np.ndarray,
    order: np.ndarray,
) -> int:
    """One message -> its row of ``out``: OK, FALLBACK or _RETRY."""
    fk, fnum, fstr = out[11], out[12], out[13]
    pos = _ws(p, pos, end)
    if pos >= end or _b(p, pos) != 123:
        return FALLBACK
    pos = _ws(p, pos + 1, end)
    present = 0
    more = pos >= end or _b(p, pos) != 125
    if not more:
        pos += 1
    while more:
        if pos >= end or _b(p, pos) != 34:
            return FALLBACK
        start = pos + 1
        key, pos = _known_key(p, start, end)
        if key < 0:  # another key: its value is only validated (an escaped key could spell a field)
            pos, _, esc = _string(p, start, end)
            if pos < 0 or esc:
                return FALLBACK
        pos = _colon(p, pos, end)
        if pos < 0:
            return FALLBACK
        if key >= 0:
            if present & (1 << key):
                return FALLBACK  # a duplicate key: orjson keeps the last one
            present |= 1 << key
        c = _b(p, pos)
        if key == K_FEATURES:
            if c != 123:
                return FALLBACK
            pos = _features(p, pos, end, row, table, names, fk, fnum, fstr, seen, order, strtab, counts)
        elif key == K_SEGMENTS and c == 123:
            pos = _segments(p, pos, end, row, segs, strtab, counts)
        elif key < 0:
            pos = _skip(p, pos, end, stack)  # unknown keys are allowed; their values must be JSON
        else:  # one scalar parser for every other field
            start = pos + 1
            need = _INTERN if key in (K_MODEL_ID, K_MODEL_VERSION, K_PREDICTION, K_LABEL) else _EXACT
            pos, kind, v, sid, nchars, esc = _value(p, pos, end, strtab, counts, need, key)
            if pos >= 0 and not _field(p, start, pos - 1, key, kind, v, sid, nchars, esc, row, out):
                return FALLBACK
        if pos < 0:
            return _RETRY if pos == -2 else FALLBACK
        pos, more = _after_value(p, pos, end, 125)
        if pos < 0:
            return FALLBACK
    if _ws(p, pos, end) != end or present & _REQUIRED != _REQUIRED:
        return FALLBACK
    lk, pk = out[8], out[5]
    if lk[row] != ABSENT and _class(lk[row]) != _class(pk[row]):
        return FALLBACK  # the label's kind must match the prediction's
    return OK


@_helper
def _scan_rows(
    p: int,
    offsets: np.ndarray,
    row: int,
    max_bytes: int,
    table: tuple,
    names: int,
    out: tuple,
    segs: tuple,
    strtab: tuple,
    counts: np.ndarray,
    stack: np.ndarray,
    seen: np.ndarray,
    order: np.ndarray,
) -> int:
    """Scan the messages from ``row`` on; returns the number of rows, or the row that found a
    table full (``counts[3]`` says which) to be scanned again once the caller has grown it."""
    status = out[0]
    n = offsets.shape[0] - 1
    while row < n:
        start = offsets[row]
        end = offsets[row + 1]
        r = FALLBACK  # empty or too large: decode() names the reason
        if 0 < end - start <= max_bytes:
            first_segment = counts[1]
            counts[2] += 1
            counts[3] = 0
            r = _scan_message(p, start, end, row, table, names, out, segs, strtab, counts, stack, seen, order)
            if r != OK:
                counts[1] = first_segment  # drop the message's segment entries
                _reset_row(row, out)
                if r == _RETRY:
                    return row
        status[row] = r
        row += 1
    return n


@kernel
def _grow(a: np.ndarray) -> np.ndarray:
    b = np.empty(2 * a.shape[0], a.dtype)
    for i in range(a.shape[0]):
        b[i] = a[i]
    return b


@kernel
def _rehash(strtab: tuple, n: int) -> tuple:
    slots, hashes, starts, lens, last = strtab
    slots = np.zeros(2 * slots.shape[0], np.int32)
    mask = slots.shape[0] - 1
    for sid in range(n):
        j = np.int64(hashes[sid] & np.uint64(mask))
        while slots[j] != 0:
            j = (j + 1) & mask
        slots[j] = sid + 1
    return slots, _grow(hashes), _grow(starts), _grow(lens), last


@kernel
def _scan_batch(buf: np.ndarray, offsets: np.ndarray, max_bytes: int, table: tuple) -> tuple:
    """Columns of every message (see ScannedBatch), the segment entries, and the spans of the
    interned strings."""
    n = offsets.shape[0] - 1
    n_features = table[3].shape[0] - 1
    out = (
        np.empty(n, np.uint8),  # status
        np.full(n, -1, np.int32),  # model
        np.zeros(n, np.int32),  # version: "" is id 0
        np.zeros(n, np.int64),  # ts_ms
        np.full(n, np.nan),  # latency_ms
        np.zeros(n, np.int8),  # prediction kind, number, string
        np.full(n, np.nan),
        np.full(n, -1, np.int32),
        np.zeros(n, np.int8),  # label kind, number, string
        np.full(n, np.nan),
        np.full(n, -1, np.int32),
        # features: [n, F] in column-major order, so batch() reads each feature's column contiguously
        np.zeros((n_features, n), np.int8).T,
        np.full((n_features, n), np.nan).T,
        np.full((n_features, n), -1, np.int32).T,
    )
    segs = (np.empty(1024, np.int32), np.empty(1024, np.int32), np.empty(1024, np.int32))
    strtab = (
        np.zeros(1024, np.int32),  # open addressing: id + 1, 0 = empty
        np.empty(512, np.uint64),  # per id: hash, start, length
        np.empty(512, np.int64),
        np.empty(512, np.int32),
        np.full(_SITES_KEYS + n_features + 2 * _SITES_SEGMENTS, -1, np.int64),  # see _intern
    )
    counts = np.zeros(4, np.int64)  # strings, segment entries, scan attempt, which table is full
    p = _address(buf)
    _intern(p, 0, 0, strtab, counts, -1)  # id 0 is "": model_version absent or null
    stack = np.empty(MAX_DEPTH - 1, np.uint8)
    seen = np.full(max(n_features, 1), -1, np.int64)
    order = np.full(MAX_FEATURES, -1, np.int32)  # the column of each feature of the last message
    names = _address(table[2])
    row = np.int64(0)  # not the literal 0, for which numba would compile _scan_rows once more
    while True:
        row = _scan_rows(
            p, offsets, row, max_bytes, table, names, out, segs, strtab, counts, stack, seen, order
        )
        if row >= n:
            break
        if counts[3] == 1:
            strtab = _rehash(strtab, counts[0])
        else:
            segs = (_grow(segs[0]), _grow(segs[1]), _grow(segs[2]))
    k = counts[1]
    m = counts[0]
    return (
        out,
        segs[0][:k].copy(),
        segs[1][:k].copy(),
        segs[2][:k].copy(),
        strtab[2][:m].copy(),
        strtab[3][:m].copy(),
    )


@kernel
def _build_table(name_bytes: np.ndarray, offsets: np.ndarray, capacity: int) -> tuple:
    n = offsets.shape[0] - 1
    slots = np.zeros(capacity, np.int32)
    hashes = np.empty(n, np.uint64)
    p = _address(name_bytes)
    for f in range(n):
        h = _hash(p, offsets[f], offsets[f + 1])
        hashes[f] = h
        j = np.int64(h & np.uint64(capacity - 1))
        while slots[j] != 0:
            j = (j + 1) & (capacity - 1)
        slots[j] = f + 1
    return slots, hashes


@kernel
def _codes(ids: np.ndarray, n_strings: int) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary codes of a column of string ids (-1 = missing): (distinct ids in first-seen
    order, each row's index into them)."""
    slot = np.full(n_strings + 1, -1, np.int64)
    uniq = np.empty(min(ids.shape[0], n_strings + 1), np.int64)
    codes = np.empty(ids.shape[0], np.int64)
    n = 0
    for j in range(ids.shape[0]):
        i = ids[j] + 1  # missing -> 0
        if slot[i] < 0:
            slot[i] = n
            uniq[n] = ids[j]
            n += 1
        codes[j] = slot[i]
    return uniq[:n], codes


@kernel
def _segment_columns(
    rows: np.ndarray, runs: np.ndarray, seg_name: np.ndarray, seg_value: np.ndarray, slot: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """A column of value ids (-1: the row has no such segment) of ``rows`` per folded attribute
    (``slot``: string id -> its column, -1 for an attribute not folded), whether each occurs in
    ``rows``, and how many segment entries of ``rows`` name an attribute not folded."""
    n = int(slot.max()) + 1 if slot.shape[0] else 0
    columns = np.full((n, rows.shape[0]), -1, np.int64)
    present = np.zeros(n, np.bool_)
    ignored = 0
    for j in range(rows.shape[0]):
        for e in range(runs[rows[j]], runs[rows[j] + 1]):
            k = slot[seg_name[e]]
            if k < 0:
                ignored += 1
            else:
                columns[k, j] = seg_value[e]
                present[k] = True
    return columns, present, ignored


# --------------------------------------------------------------------------------------------
# Python side


def _plain(name: str) -> bool:
    """Whether a JSON key spelling ``name`` is its UTF-8 bytes as they are (nothing to escape) and
    the contract allows it (at most 256 characters): the scanner then matches it without a scan."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return len(name) <= MAX_NAME_CHARS and json.dumps(name, ensure_ascii=False)[1:-1] == name


@dataclass(frozen=True, eq=False)
class FeatureNames:
    """The feature names the scanner extracts into columns (sorted; column f is ``names[f]``),
    with the kernel's lookup table: open addressing over the names' UTF-8 bytes, verified byte by
    byte. Build it once per set of references and reuse it."""

    names: tuple[str, ...]
    _table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]

    @classmethod
    def of(cls, names: Iterable[str]) -> FeatureNames:
        ordered = tuple(sorted(set(names)))
        if any(not isinstance(n, str) or not n for n in ordered):
            raise ValueError("feature names must be non-empty strings")
        encoded = [n.encode("utf-8", "surrogatepass") for n in ordered]  # a lone surrogate never matches
        name_bytes = np.frombuffer(b"".join(encoded) or b"\0", np.uint8)
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        capacity = 1 << max(4, (2 * len(ordered)).bit_length())  # load factor <= 1/2
        slots, hashes = _build_table(name_bytes, offsets, capacity)
        plain = np.array([_plain(n) for n in ordered], np.uint8)
        return cls(ordered, (slots, hashes, name_bytes, offsets, plain))

    @cached_property
    def column(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True, eq=False)
class ScannedBatch:
    """Columns of a scanned batch, one entry per message (``feat_*`` are [n, F] for the F names).

    Rows whose ``status`` is FALLBACK hold defaults: kinds ABSENT, numbers NaN, string ids -1.
    ``*_num`` is NaN unless the kind is INT or FLOAT; ``*_str`` is -1 unless it is STR.
    """

    names: FeatureNames
    status: np.ndarray  # uint8: OK / FALLBACK
    model: np.ndarray  # int32 ids into strings
    version: np.ndarray  # int32; model_version absent or null -> the id of ""
    ts_ms: np.ndarray  # int64
    latency_ms: np.ndarray  # float64, NaN = absent or null
    pred_kind: np.ndarray  # int8
    pred_num: np.ndarray  # float64
    pred_str: np.ndarray  # int32
    label_kind: np.ndarray
    label_num: np.ndarray
    label_str: np.ndarray
    feat_kind: np.ndarray  # int8 [n, F]
    feat_num: np.ndarray  # float64 [n, F]
    feat_str: np.ndarray  # int32 [n, F]
    seg_row: np.ndarray  # int32, one entry per segment of each OK message
    seg_name: np.ndarray  # int32 ids
    seg_value: np.ndarray  # int32 ids
    strings: list[str]

    @property
    def n(self) -> int:
        return int(self.status.shape[0])

    def batch(
        self,
        rows: np.ndarray,
        binning: Binning,
        positive_threshold: float = 0.5,
        positive_class: str = "1",
        segments: Mapping[str, frozenset[str]] = NO_SEGMENTS,
    ) -> Batch:
        """The detectors' Batch of the OK messages at ``rows`` (in that order), equal to
        ``decode.to_batch`` of those messages' decoded events. Numpy per column and Python per
        distinct string, not per row."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (self.status[rows] != OK).any():
            raise ValueError("batch() takes OK rows only; decode() the others")
        features: dict[str, Column] = {}
        type_errors: dict[str, int] = {}
        for name in binning.numeric:
            f = self._column(name)
            features[name] = self.feat_num[:, f].take(rows)  # NaN unless INT/FLOAT
            type_errors[name] = int(np.count_nonzero(self.feat_kind[:, f].take(rows) >= STR))  # text, bools
        for name in binning.categorical:
            f = self._column(name)
            features[name] = self._categories(
                self.feat_kind[:, f].take(rows),
                self.feat_num[:, f].take(rows),
                self.feat_str[:, f].take(rows),
            )
        columns, overflow = self._segments(rows, segments)
        return Batch(
            n=len(rows),
            features=features,
            type_errors=type_errors,
            latency_ms=self.latency_ms[rows],
            segments=columns,
            segment_overflow=overflow,
            positive=self._outcome(
                self.pred_kind[rows],
                self.pred_num[rows],
                self.pred_str[rows],
                positive_threshold,
                positive_class,
            ),
            label=self._outcome(
                self.label_kind[rows],
                self.label_num[rows],
                self.label_str[rows],
                positive_threshold,
                positive_class,
            ),
            outputs=self._outputs(rows, binning),
        )

    def _outputs(self, rows: np.ndarray, binning: Binning) -> dict[str, Column]:
        """The prediction and label columns as ``decode.to_batch`` builds them."""
        out: dict[str, Column] = {}
        for role, (kind, num, sid) in (
            ("prediction", (self.pred_kind, self.pred_num, self.pred_str)),
            ("label", (self.label_kind, self.label_num, self.label_str)),
        ):
            wanted = binning.output_kind(role)
            if wanted == "numeric":
                k = kind.take(rows)
                out[role] = np.where((k == INT) | (k == FLOAT), num.take(rows), np.nan)
            elif wanted == "categorical":
                out[role] = self._categories(kind.take(rows), num.take(rows), sid.take(rows))
        return out

    def segments_of(self, row: int) -> dict[str, str]:
        """The segments of one OK message, as sent."""
        runs, strings = self._segment_runs, self.strings
        return {
            strings[int(self.seg_name[k])]: strings[int(self.seg_value[k])]
            for k in range(runs[row], runs[row + 1])
        }

    @cached_property
    def _segment_runs(self) -> np.ndarray:
        """Index of each row's first segment entry (and the end of the last row's)."""
        return np.searchsorted(self.seg_row, np.arange(self.n + 1), "left")

    def _column(self, name: str) -> int:
        try:
            return self.names.column[name]
        except KeyError:
            raise ValueError(f"feature {name!r} is not in the scanner's FeatureNames") from None

    def _text_codes(self, ids: np.ndarray) -> tuple[list[str | None], np.ndarray]:
        """(names, codes) of a column of string ids (-1 = missing)."""
        uniq, codes = _codes(ids, len(self.strings))
        strings = self.strings
        return [strings[i] if i >= 0 else None for i in uniq.tolist()], codes

    def _categories(
        self, kind: np.ndarray, num: np.ndarray, sid: np.ndarray
    ) -> tuple[list[str | None], np.ndarray]:
        """Category text as ``as_category`` spells it: bools "true"/"false", numbers str(int) or
        str(float); texts equal across kinds ("1" and 1) share one code."""
        if not ((kind == STR) | (kind == ABSENT)).all():
            return _unify(_spelled(kind, num, sid, self.strings))
        return self._text_codes(np.where(kind == STR, sid, -1))

    @cached_property
    def _string_ids(self) -> dict[str, int]:
        return {text: i for i, text in enumerate(self.strings)}

    def _segments(
        self, rows: np.ndarray, plan: Mapping[str, frozenset[str]]
    ) -> tuple[dict[str, Column], dict[str, int]]:
        """Segment columns and overflow as to_batch: the plan's attributes present in these rows,
        sorted by name; no column is built for an attribute the plan does not fold."""
        attrs = sorted(plan)
        slot = np.full(len(self.strings), -1, np.int64)
        for k, attr in enumerate(attrs):
            sid = self._string_ids.get(attr)
            if sid is not None:
                slot[sid] = k
        columns, present, ignored = _segment_columns(
            rows, self._segment_runs, self.seg_name, self.seg_value, slot
        )
        coded = {attrs[k]: self._text_codes(columns[k]) for k in np.flatnonzero(present).tolist()}
        out, overflow = bound_segments(coded, plan)
        if ignored:
            overflow[OVERFLOW_ATTRIBUTE] = ignored
        return out, overflow

    def _outcome(
        self, kind: np.ndarray, num: np.ndarray, sid: np.ndarray, threshold: float, positive_class: str
    ) -> np.ndarray:
        """1 / 0 / -1 as to_batch: numbers against the threshold when every value is a number (or
        missing), else each value's category text against {positive_class, "true"}."""
        if ((kind == INT) | (kind == FLOAT) | (kind == ABSENT)).all():
            return to_outcome(num, threshold)
        names, codes = _spelled(kind, num, sid, self.strings)
        positive = {positive_class, "true"}
        flags = np.array([-1 if t is None else int(t in positive) for t in names], np.int8)
        return flags[codes]


def _spelled(
    kind: np.ndarray, num: np.ndarray, sid: np.ndarray, strings: list[str]
) -> tuple[list[str | None], np.ndarray]:
    """(texts, codes) of a mixed column: one Python text per distinct (kind, value), not per row.
    Floats are told apart by their bits: -0.0 spells "-0.0", 0.0 spells "0.0"."""
    key = np.zeros(len(kind), np.int64)  # texts[0]: missing
    texts: list[str | None] = [None]
    base = 1
    for k, spell in (
        (STR, lambda u: [strings[i] for i in u]),
        (INT, lambda u: [str(int(x)) for x in np.asarray(u, np.int64).view(np.float64).tolist()]),
        (FLOAT, lambda u: [str(x) for x in np.asarray(u, np.int64).view(np.float64).tolist()]),
    ):
        mask = kind == k
        if mask.any():
            values = sid[mask].astype(np.int64) if k == STR else num[mask].view(np.int64)
            uniq, inverse = np.unique(values, return_inverse=True)
            key[mask] = base + inverse.reshape(-1)
            texts += spell(uniq.tolist())
            base += len(uniq)
    for k, text in ((TRUE, "true"), (FALSE, "false")):
        mask = kind == k
        if mask.any():
            key[mask] = base
            texts.append(text)
            base += 1
    return texts, key


def _unify(column: tuple[list[str | None], np.ndarray]) -> tuple[list[str | None], np.ndarray]:
    """Merge codes whose texts are equal (a "true" string and a true bool are one category)."""
    texts, codes = column
    index: dict[str | None, int] = {}
    remap = np.array([index.setdefault(t, len(index)) for t in texts], np.int64)
    return list(index), remap[codes]


def scan(
    values: Sequence[bytes | None], names: FeatureNames, max_bytes: int = MAX_EVENT_BYTES
) -> ScannedBatch:
    """Scan a batch of message values: per message, OK with its columns, or FALLBACK (None,
    empty or above ``max_bytes`` included) for ``decode.decode()`` to accept or reject.

    Releases the GIL while scanning. Dense feature columns cost 13 bytes per message and name."""
    try:
        joined = b"".join(values)  # type: ignore[arg-type]
        lengths = np.fromiter(map(len, values), np.int64, len(values))  # type: ignore[arg-type]
    except TypeError:  # None values (tombstones)
        filled = [b"" if v is None else v for v in values]
        joined = b"".join(filled)
        lengths = np.fromiter(map(len, filled), np.int64, len(filled))
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buf = np.frombuffer(joined, np.uint8) if joined else np.zeros(1, np.uint8)
    columns, seg_row, seg_name, seg_value, starts, lens = _scan_batch(buf, offsets, max_bytes, names._table)
    strings = [joined[s : s + n].decode() for s, n in zip(starts.tolist(), lens.tolist(), strict=True)]
    return ScannedBatch(names, *columns, seg_row, seg_name, seg_value, strings)  # type: ignore[call-arg]
