"""A small, bounds-checked FlatBuffers reader.

The generated FlatBuffers Python code trusts its input: a truncated or hostile
.tflite makes it read past the end or loop forever.  tinygen reads untrusted
model files, so every offset here is checked and a bad one raises
FlatbufferError, which the IR turns into a one-line user error.
"""

from __future__ import annotations

import struct


class FlatbufferError(ValueError):
    pass


_SCALAR = {
    "b": 1, "B": 1, "?": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8,
    "f": 4, "d": 8,
}


class Buffer:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.size = len(data)

    def check(self, offset: int, length: int, what: str) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FlatbufferError(
                f"{what} at byte {offset} (+{length}) lies outside the {self.size}-byte file")

    def scalar(self, fmt: str, offset: int, what: str = "value"):
        self.check(offset, _SCALAR[fmt], what)
        return struct.unpack_from("<" + fmt, self.data, offset)[0]

    def root(self) -> "Table":
        if self.size < 8:
            raise FlatbufferError(f"file is only {self.size} bytes")
        return Table(self, self.scalar("I", 0, "root offset"), "root table")


class Table:
    """One table: reads fields by their schema index."""

    def __init__(self, buf: Buffer, pos: int, what: str):
        self.buf = buf
        self.pos = pos
        self.what = what
        vt_rel = buf.scalar("i", pos, f"{what} vtable offset")
        self.vtable = pos - vt_rel
        self.vt_size = buf.scalar("H", self.vtable, f"{what} vtable")
        if self.vt_size < 4 or self.vt_size % 2:
            raise FlatbufferError(f"{what} has a malformed vtable")
        buf.check(self.vtable, self.vt_size, f"{what} vtable")
        self.obj_size = buf.scalar("H", self.vtable + 2, f"{what} vtable")
        buf.check(pos, self.obj_size, what)

    def _field_pos(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry >= self.vt_size:
            return None
        rel = self.buf.scalar("H", self.vtable + entry)
        if rel == 0:
            return None
        if rel >= self.obj_size:
            raise FlatbufferError(f"{self.what} field {index} lies outside its table")
        return self.pos + rel

    def has(self, index: int) -> bool:
        return self._field_pos(index) is not None

    def scalar(self, index: int, fmt: str, default=0):
        p = self._field_pos(index)
        if p is None:
            return default
        return self.buf.scalar(fmt, p, f"{self.what} field {index}")

    def _indirect(self, index: int) -> int | None:
        p = self._field_pos(index)
        if p is None:
            return None
        return p + self.buf.scalar("I", p, f"{self.what} field {index}")

    def table(self, index: int, what: str) -> "Table | None":
        p = self._indirect(index)
        return None if p is None else Table(self.buf, p, what)

    def _vector(self, index: int, elem_size: int, what: str) -> tuple[int, int] | None:
        p = self._indirect(index)
        if p is None:
            return None
        n = self.buf.scalar("I", p, f"{what} length")
        self.buf.check(p + 4, n * elem_size, what)
        return p + 4, n

    def string(self, index: int, default: str | None = None) -> str | None:
        v = self._vector(index, 1, f"{self.what} string")
        if v is None:
            return default
        start, n = v
        return bytes(self.buf.data[start:start + n]).decode("utf-8", errors="replace")

    def bytes(self, index: int) -> bytes | None:
        v = self._vector(index, 1, f"{self.what} byte vector")
        if v is None:
            return None
        start, n = v
        return bytes(self.buf.data[start:start + n])

    def scalars(self, index: int, fmt: str) -> list | None:
        size = _SCALAR[fmt]
        v = self._vector(index, size, f"{self.what} vector")
        if v is None:
            return None
        start, n = v
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf.data, start))

    def tables(self, index: int, what: str) -> list["Table"]:
        v = self._vector(index, 4, f"{what} list")
        if v is None:
            return []
        start, n = v
        out = []
        for i in range(n):
            at = start + 4 * i
            out.append(Table(self.buf, at + self.buf.scalar("I", at), f"{what} {i}"))
        return out
