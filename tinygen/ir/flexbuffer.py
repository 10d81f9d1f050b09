"""A small, bounds-checked FlexBuffers reader.

Custom operators keep their options as a FlexBuffer in
``Operator.custom_options`` (the TFLite converter writes a map of ints,
floats and bools, e.g. for ``TFLite_Detection_PostProcess``).  This module
reads such buffers without trusting them: every offset, length and width is
checked against the buffer, nesting is limited, and anything malformed raises
:class:`FlexBufferError` (a ValueError) instead of reading out of bounds.

    root = flexbuffer.root(op.custom_options)      # a Ref
    opts = root.as_map()                           # a FlexMap
    n = opts["max_detections"].as_int32()          # missing keys read as null
    if opts["use_regular_nms"].is_null: ...
    flexbuffer.loads(data)                         # -> plain Python objects

Value conversions follow the C++ ``flexbuffers::Reference`` accessors that
TFLM's kernels call (``AsInt32``, ``AsFloat``, ``AsBool``): a null reads as 0,
an int read as float is converted, a float read as int is truncated, a float
read as bool is ``(uint64)value != 0``.  Stricter than the C++ reader on
purpose: strings are not parsed as numbers, floats must be 4 or 8 bytes wide,
map keys must be sorted without duplicates (the lookup is a binary search in
every FlexBuffers reader), and converting a non-finite or out-of-range float
to an integer is an error rather than undefined behaviour.

The format (https://flatbuffers.dev/flexbuffers/): a buffer ends with the
root value, its packed type byte (type << 2 | log2 width) and the root's byte
width.  Scalars are stored inline in their parent's width; strings, vectors
and maps are stored behind an unsigned offset that points backwards from
where it is stored.  A vector of length n with element width w is preceded by
its length (w bytes); an untyped vector is followed by n packed type bytes; a
map is a vector of values preceded by (keys offset, keys width, length), the
keys a typed vector of offsets to NUL-terminated strings.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Iterator

__all__ = ["FlexBufferError", "Ref", "FlexMap", "root", "loads", "read_map"]

MAX_DEPTH = 64           # nesting limit of to_python(): cycles cannot recurse forever


class FlexBufferError(ValueError):
    """The bytes are not a well-formed FlexBuffer (or not the expected kind)."""


# type codes (flexbuffers::Type)
NULL, INT, UINT, FLOAT, KEY, STRING = 0, 1, 2, 3, 4, 5
INDIRECT_INT, INDIRECT_UINT, INDIRECT_FLOAT = 6, 7, 8
MAP, VECTOR = 9, 10
VECTOR_INT, VECTOR_UINT, VECTOR_FLOAT, VECTOR_KEY, VECTOR_STRING_DEPRECATED = 11, 12, 13, 14, 15
VECTOR_INT2, VECTOR_FLOAT4 = 16, 24
BLOB, BOOL, VECTOR_BOOL = 25, 26, 36

TYPE_NAMES = {
    NULL: "null", INT: "int", UINT: "uint", FLOAT: "float", KEY: "key", STRING: "string",
    INDIRECT_INT: "indirect int", INDIRECT_UINT: "indirect uint",
    INDIRECT_FLOAT: "indirect float", MAP: "map", VECTOR: "vector",
    VECTOR_INT: "int vector", VECTOR_UINT: "uint vector", VECTOR_FLOAT: "float vector",
    VECTOR_KEY: "key vector", VECTOR_STRING_DEPRECATED: "string vector",
    16: "int[2]", 17: "uint[2]", 18: "float[2]", 19: "int[3]", 20: "uint[3]",
    21: "float[3]", 22: "int[4]", 23: "uint[4]", 24: "float[4]",
    BLOB: "blob", BOOL: "bool", VECTOR_BOOL: "bool vector",
}

_UINT_FMT = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}
_INT_FMT = {1: "<b", 2: "<h", 4: "<i", 8: "<q"}
_FLOAT_FMT = {4: "<f", 8: "<d"}


# ---------------------------------------------------------------------------
# checked primitive reads

def _check(buf: bytes, pos: int, size: int, what: str) -> None:
    if pos < 0 or size < 0 or pos + size > len(buf):
        raise FlexBufferError(f"{what} at byte {pos} (+{size}) lies outside the "
                              f"{len(buf)}-byte buffer")


def _uint(buf: bytes, pos: int, width: int, what: str = "value") -> int:
    _check(buf, pos, width, what)
    return struct.unpack_from(_UINT_FMT[width], buf, pos)[0]


def _int(buf: bytes, pos: int, width: int, what: str = "value") -> int:
    _check(buf, pos, width, what)
    return struct.unpack_from(_INT_FMT[width], buf, pos)[0]


def _float(buf: bytes, pos: int, width: int, what: str = "float") -> float:
    if width not in _FLOAT_FMT:
        raise FlexBufferError(f"{what} at byte {pos} is {width} byte(s) wide "
                              "(floats are 4 or 8 bytes)")
    _check(buf, pos, width, what)
    return struct.unpack_from(_FLOAT_FMT[width], buf, pos)[0]


def _indirect(buf: bytes, pos: int, width: int, what: str) -> int:
    """Target of the backwards offset stored at pos."""
    off = _uint(buf, pos, width, f"offset of {what}")
    target = pos - off
    if target < 0 or target >= len(buf):
        raise FlexBufferError(f"offset {off} at byte {pos} ({what}) points outside the buffer")
    return target


def _cstring(buf: bytes, pos: int, what: str) -> str:
    _check(buf, pos, 1, what)
    end = buf.find(b"\0", pos)
    if end < 0:
        raise FlexBufferError(f"{what} at byte {pos} is not NUL-terminated")
    try:
        return buf[pos:end].decode("utf-8")
    except UnicodeDecodeError:
        raise FlexBufferError(f"{what} at byte {pos} is not UTF-8") from None


def _to_float32(x: float) -> float:
    """(float)x: round a double to the nearest float32 (overflow -> inf)."""
    if not math.isfinite(x):
        return x
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        # beyond FLT_MAX + half an ulp: IEEE rounding gives infinity
        return math.copysign(math.inf, x)


def _wrap(v: int, bits: int, signed: bool) -> int:
    v &= (1 << bits) - 1
    if signed and v >= 1 << (bits - 1):
        v -= 1 << bits
    return v


# ---------------------------------------------------------------------------
# references

@dataclass(frozen=True)
class Ref:
    """One value in a FlexBuffer (flexbuffers::Reference)."""

    buf: bytes
    pos: int             # where the value (inline) or its offset is stored
    parent_width: int    # width the parent stores it with
    byte_width: int      # width of the pointed-to data (offset types)
    type: int

    @classmethod
    def packed(cls, buf: bytes, pos: int, parent_width: int, packed_type: int) -> "Ref":
        t = packed_type >> 2
        if t not in TYPE_NAMES:
            raise FlexBufferError(f"unknown FlexBuffers type {t} (packed type byte "
                                  f"0x{packed_type:02x}) for the value at byte {pos}")
        return cls(buf, pos, parent_width, 1 << (packed_type & 3), t)

    # ---- kind -------------------------------------------------------------
    @property
    def type_name(self) -> str:
        return TYPE_NAMES[self.type]

    @property
    def is_null(self) -> bool:
        return self.type == NULL

    @property
    def is_map(self) -> bool:
        return self.type == MAP

    def _target(self) -> int:
        return _indirect(self.buf, self.pos, self.parent_width, self.type_name)

    # ---- scalars --------------------------------------------------------
    def _number(self) -> int | float:
        """The stored number (int or float) of a scalar, bool or null."""
        t, b = self.type, self.buf
        if t == NULL:
            return 0
        if t == INT:
            return _int(b, self.pos, self.parent_width)
        if t in (UINT, BOOL):
            return _uint(b, self.pos, self.parent_width)
        if t == FLOAT:
            return _float(b, self.pos, self.parent_width)
        if t == INDIRECT_INT:
            return _int(b, self._target(), self.byte_width)
        if t == INDIRECT_UINT:
            return _uint(b, self._target(), self.byte_width)
        if t == INDIRECT_FLOAT:
            return _float(b, self._target(), self.byte_width)
        raise FlexBufferError(f"a {self.type_name} is not a number")

    def as_int(self) -> int:
        """AsInt64: ints as stored (uints wrap to int64), floats truncated, null 0."""
        v = self._number()
        if isinstance(v, float):
            if not math.isfinite(v) or not -2.0 ** 63 <= v < 2.0 ** 63:
                raise FlexBufferError(f"float {v!r} does not convert to an integer")
            return int(v)
        return _wrap(v, 64, True)

    def as_int32(self) -> int:
        """AsInt32: static_cast<int32_t>(AsInt64())."""
        return _wrap(self.as_int(), 32, True)

    def as_uint(self) -> int:
        """AsUInt64."""
        v = self._number()
        if isinstance(v, float):
            if not math.isfinite(v) or not 0.0 <= v < 2.0 ** 64:
                raise FlexBufferError(f"float {v!r} does not convert to an unsigned integer")
            return int(v)
        return _wrap(v, 64, False)

    def as_double(self) -> float:
        """AsDouble."""
        return float(self._number())

    def as_float(self) -> float:
        """AsFloat: static_cast<float>(AsDouble()), returned as a Python float."""
        return _to_float32(self.as_double())

    def as_bool(self) -> bool:
        """AsBool: a bool's stored value, else AsUInt64() != 0."""
        if self.type == BOOL:
            return _uint(self.buf, self.pos, self.parent_width) != 0
        v = self._number()
        if isinstance(v, float):
            if not math.isfinite(v):
                raise FlexBufferError(f"float {v!r} does not convert to a bool")
            return int(v) != 0          # (uint64_t)v != 0: truncation first
        return v != 0

    # ---- strings ----------------------------------------------------------
    def as_key(self) -> str:
        if self.type != KEY:
            raise FlexBufferError(f"a {self.type_name} is not a key")
        return _cstring(self.buf, self._target(), "key")

    def as_str(self) -> str:
        if self.type == KEY:
            return self.as_key()
        if self.type != STRING:
            raise FlexBufferError(f"a {self.type_name} is not a string")
        data = self._target()
        n = _uint(self.buf, data - self.byte_width, self.byte_width, "string length")
        _check(self.buf, data, n, "string")
        try:
            return self.buf[data:data + n].decode("utf-8")
        except UnicodeDecodeError:
            raise FlexBufferError(f"string at byte {data} is not UTF-8") from None

    def as_blob(self) -> bytes:
        if self.type != BLOB:
            raise FlexBufferError(f"a {self.type_name} is not a blob")
        data = self._target()
        n = _uint(self.buf, data - self.byte_width, self.byte_width, "blob length")
        _check(self.buf, data, n, "blob")
        return bytes(self.buf[data:data + n])

    # ---- containers -------------------------------------------------------
    def as_vector(self) -> list["Ref"]:
        """The elements of any vector kind (untyped, typed, fixed-length)."""
        t, b, w = self.type, self.buf, self.byte_width
        if t not in (VECTOR, MAP) and not (VECTOR_INT <= t <= VECTOR_FLOAT4 or t == VECTOR_BOOL):
            raise FlexBufferError(f"a {self.type_name} is not a vector")
        data = self._target()
        if VECTOR_INT2 <= t <= VECTOR_FLOAT4:
            n = (t - VECTOR_INT2) // 3 + 2
            elem = (t - VECTOR_INT2) % 3 + INT
        else:
            n = _uint(b, data - w, w, "vector length")
            elem = {VECTOR_STRING_DEPRECATED: STRING, VECTOR_BOOL: BOOL}.get(
                t, t - VECTOR_INT + INT)
        _check(b, data, n * w, f"{n}-element {self.type_name}")
        if t in (VECTOR, MAP):
            _check(b, data + n * w, n, "element types of a vector")
            return [Ref.packed(b, data + i * w, w, b[data + n * w + i]) for i in range(n)]
        return [Ref(b, data + i * w, w, 1, elem) for i in range(n)]

    def as_map(self) -> "FlexMap":
        if self.type != MAP:
            raise FlexBufferError(f"a {self.type_name} is not a map")
        return FlexMap(self)

    # ---- everything ---------------------------------------------------------
    def to_python(self, _depth: int = 0) -> Any:
        """None, bool, int, float, str, bytes, list or dict."""
        if _depth > MAX_DEPTH:
            raise FlexBufferError(f"values nest deeper than {MAX_DEPTH} levels")
        t = self.type
        if t == NULL:
            return None
        if t == BOOL:
            return self.as_bool()
        if t in (INT, INDIRECT_INT):
            return self.as_int()
        if t in (UINT, INDIRECT_UINT):
            return self.as_uint()
        if t in (FLOAT, INDIRECT_FLOAT):
            return self.as_double()
        if t in (KEY, STRING):
            return self.as_str()
        if t == BLOB:
            return self.as_blob()
        if t == MAP:
            return {k: v.to_python(_depth + 1) for k, v in self.as_map().items()}
        return [e.to_python(_depth + 1) for e in self.as_vector()]


class FlexMap:
    """A FlexBuffers map: sorted keys, one value each."""

    def __init__(self, ref: Ref):
        b, w = ref.buf, ref.byte_width
        values = ref._target()
        keys_at = values - 3 * w
        keys = _indirect(b, keys_at, w, "map keys")
        keys_width = _uint(b, keys_at + w, w, "width of map keys")
        if keys_width not in _UINT_FMT:
            raise FlexBufferError(f"map keys have width {keys_width} (must be 1, 2, 4 or 8)")
        n_keys = _uint(b, keys - keys_width, keys_width, "number of map keys")
        self._values = ref.as_vector()
        if n_keys != len(self._values):
            raise FlexBufferError(f"map has {n_keys} keys but {len(self._values)} values")
        _check(b, keys, n_keys * keys_width, "map keys")
        names: list[str] = []
        for i in range(n_keys):
            key = Ref(b, keys + i * keys_width, keys_width, 1, KEY).as_key()
            if names and key.encode() <= names[-1].encode():
                raise FlexBufferError(f"map keys are not sorted or repeat ('{names[-1]}' "
                                      f"then '{key}')")
            names.append(key)
        self._keys = names
        self._index = {k: i for i, k in enumerate(names)}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def keys(self) -> list[str]:
        return list(self._keys)

    def __getitem__(self, key: str) -> Ref:
        """The value, or a null reference for a missing key (as flexbuffers::Map does)."""
        i = self._index.get(key)
        if i is None:
            return Ref(b"", 0, 1, 1, NULL)
        return self._values[i]

    def items(self) -> list[tuple[str, Ref]]:
        return list(zip(self._keys, self._values))


def root(data: bytes) -> Ref:
    """The root value of a FlexBuffer."""
    buf = bytes(data)
    if len(buf) < 3:
        raise FlexBufferError(f"a FlexBuffer needs at least 3 bytes, got {len(buf)}")
    width = buf[-1]
    if width not in _UINT_FMT:
        raise FlexBufferError(f"root byte width {width} (must be 1, 2, 4 or 8)")
    pos = len(buf) - 2 - width
    _check(buf, pos, width, "root value")
    return Ref.packed(buf, pos, width, buf[-2])


def loads(data: bytes) -> Any:
    """The whole buffer as Python objects (dict/list/str/bytes/int/float/bool/None)."""
    return root(data).to_python()


def read_map(data: bytes) -> FlexMap:
    """The root map (custom operator options); FlexBufferError if the root is not a map."""
    r = root(data)
    if not r.is_map:
        raise FlexBufferError(f"the options are a {r.type_name}, not a map")
    return r.as_map()
