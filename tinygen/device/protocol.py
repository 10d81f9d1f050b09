"""Host side of the tinygen serial protocol (specification: docs/protocol.md).

A frame on the wire is ``00 | COBS(header | payload | CRC-32) | 00``; the header
is ``version u8, type u8, seq u16, session u32, length u32`` (little-endian) and
the CRC-32 is zlib's, over header and payload.

:class:`DeviceClient` runs the exchange over any pyserial-like object (``read``,
``write`` and a settable ``timeout``): a handshake (:meth:`info`)
that opens a session, chunked input upload plus INVOKE (:meth:`infer`), and
RESET_STATE (:meth:`reset_state`).  Every wait has a deadline and every retry a
bound.  A call either returns what the device answered to *this* request or
raises a :class:`ProtocolError`; it never returns a result from a broken,
stale or half-done exchange.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import secrets
import struct
import time
import zlib
from typing import Any, Sequence

import numpy as np

from tinygen.errors import TinygenError

PROTOCOL_VERSION = 1
PROTOCOL_MINOR = 1

CMD_INFO = 0x01
CMD_INPUT_CHUNK = 0x02
CMD_INVOKE = 0x03
CMD_RESET_STATE = 0x04
CMD_READ_OUTPUT = 0x05
CMD_READ_PROFILE = 0x06  # optional: firmware built with --profile (INFO flags bit 2)
REPLY_FLAG = 0x80
MSG_BOOT = 0xF0
MSG_ERROR = 0xFF

COMMAND_NAMES = {
    CMD_INFO: "INFO",
    CMD_INPUT_CHUNK: "INPUT_CHUNK",
    CMD_INVOKE: "INVOKE",
    CMD_RESET_STATE: "RESET_STATE",
    CMD_READ_OUTPUT: "READ_OUTPUT",
    CMD_READ_PROFILE: "READ_PROFILE",
}

ERR_UNKNOWN_COMMAND = 1
ERR_BAD_LENGTH = 2
ERR_BAD_CRC = 3
ERR_FRAME = 4
ERR_VERSION = 5
ERR_SESSION = 6
ERR_MODEL = 7
ERR_INPUT_INDEX = 8
ERR_INPUT_SIZE = 9
ERR_INPUT_OFFSET = 10
ERR_INPUT_INCOMPLETE = 11
ERR_OUTPUT_INDEX = 12
ERR_OUTPUT_RANGE = 13
ERR_NO_OUTPUT = 14

ERROR_NAMES = {
    ERR_UNKNOWN_COMMAND: "UNKNOWN_COMMAND",
    ERR_BAD_LENGTH: "BAD_LENGTH",
    ERR_BAD_CRC: "BAD_CRC",
    ERR_FRAME: "FRAME",
    ERR_VERSION: "VERSION",
    ERR_SESSION: "SESSION",
    ERR_MODEL: "MODEL",
    ERR_INPUT_INDEX: "INPUT_INDEX",
    ERR_INPUT_SIZE: "INPUT_SIZE",
    ERR_INPUT_OFFSET: "INPUT_OFFSET",
    ERR_INPUT_INCOMPLETE: "INPUT_INCOMPLETE",
    ERR_OUTPUT_INDEX: "OUTPUT_INDEX",
    ERR_OUTPUT_RANGE: "OUTPUT_RANGE",
    ERR_NO_OUTPUT: "NO_OUTPUT",
}

# Model status codes the device firmware itself produces (tg_protocol.h).
STATUS_BAD_MODEL_INFO = -1001
STATUS_NULL_BUFFER = -1002
STATUS_NOT_STARTED = -1003

COUNTER_UNITS = {0: "cycles", 1: "instructions"}

# TFLite TensorType codes (as in tg_model_api.h) -> numpy dtypes.
DTYPES = {
    0: np.dtype(np.float32),
    1: np.dtype(np.float16),
    2: np.dtype(np.int32),
    3: np.dtype(np.uint8),
    4: np.dtype(np.int64),
    6: np.dtype(np.bool_),
    7: np.dtype(np.int16),
    9: np.dtype(np.int8),
    10: np.dtype(np.float64),
    12: np.dtype(np.uint64),
    15: np.dtype(np.uint32),
    16: np.dtype(np.uint16),
}

HEADER = struct.Struct("<BBHII")
CRC = struct.Struct("<I")
HEADER_BYTES = HEADER.size  # 12
CRC_BYTES = CRC.size  # 4
ARGS = struct.Struct("<B3xI")  # INPUT_CHUNK arguments and reply, READ_OUTPUT reply
READ_ARGS = struct.Struct("<B3xII")
PROFILE_ARGS = struct.Struct("<II")  # READ_PROFILE request: first, count; reply: slots, first
INVOKE_ARGS = struct.Struct("<I")
ERROR = struct.Struct("<BBxxI")
BOOT = struct.Struct("<BBBxi")
INFO_FIXED = struct.Struct("<BBBBiII32sBBBB")
TENSOR_FIXED = struct.Struct("<BBxxIfi")
INFO_TAIL = struct.Struct("<IB")  # minor 1: arena bytes used, error text length
RESULT_FIXED = struct.Struct("<QBBBx")
RESULT_INLINE = 0x01

DEFAULT_MAX_FRAME = 16 << 20  # decoded bytes the reader accepts in one frame
_READ_BATCH = 1 << 16


# --------------------------------------------------------------------------
# errors


class ProtocolError(TinygenError):
    """The exchange with the device failed; no result was produced."""


class FrameError(ProtocolError):
    """Bytes between two delimiters that are not a valid frame; ``data``
    holds them when a FrameReader found them."""

    def __init__(self, message: str, data: bytes = b""):
        super().__init__(message)
        self.data = data


class DeviceTimeout(ProtocolError):
    """The device did not answer within the timeout, retries included."""


class DeviceReset(ProtocolError):
    """The device restarted since the handshake: its state (inputs, model
    state of stateful models) is gone.  Call :meth:`DeviceClient.info` to
    start a new session."""


class VersionMismatch(ProtocolError):
    """The firmware speaks another major version of the protocol."""


class DeviceError(ProtocolError):
    """The device received the request intact and refused or failed it."""

    def __init__(self, code: int, detail: int, command: int):
        self.code = code
        self.detail = detail
        self.command = command
        self.name = ERROR_NAMES.get(code, f"ERROR_{code}")
        super().__init__(_device_error_message(code, detail, command))


class InputMismatch(TinygenError, ValueError):
    """The arrays given to infer() do not match the device's input tensors."""


def _signed32(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


def _device_error_message(code: int, detail: int, command: int) -> str:
    cmd = COMMAND_NAMES.get(command, f"command 0x{command:02x}")
    if code == ERR_MODEL:
        status = _signed32(detail)
        if status == STATUS_BAD_MODEL_INFO:
            why = "the generated model description is unusable (too many inputs or rank > 6)"
        elif status == STATUS_NULL_BUFFER:
            why = "the model returned no buffer for a tensor"
        elif status == STATUS_NOT_STARTED:
            why = "the firmware never started the model (tg_proto_start not called)"
        else:
            why = f"the model returned status {status}"
        return f"device model error during {cmd}: {why}; check the firmware build (arena size, op support)"
    messages = {
        ERR_UNKNOWN_COMMAND: f"device does not know {cmd}: the firmware is older than this tinygen; rebuild and flash it",
        ERR_BAD_LENGTH: f"device rejected the length of {cmd} (limit {detail}): host and firmware disagree on the protocol; rebuild and flash",
        ERR_BAD_CRC: f"device received {cmd} corrupted (bad CRC): check the cable and baud rate",
        ERR_FRAME: f"device received {cmd} corrupted (framing): check the cable and baud rate",
        ERR_VERSION: f"device speaks protocol version {detail}, this tinygen {PROTOCOL_VERSION}: rebuild and flash the firmware",
        ERR_SESSION: f"device refused {cmd}: it was reset since the handshake",
        ERR_INPUT_INDEX: f"device has only {detail} input tensors: the firmware was built for another model",
        ERR_INPUT_SIZE: f"input does not fit the device tensor of {detail} bytes: the firmware was built for another model",
        ERR_INPUT_OFFSET: f"device lost part of the input (it holds {detail} bytes)",
        ERR_INPUT_INCOMPLETE: f"device ran out of input: input {detail} was not complete at INVOKE",
        ERR_OUTPUT_INDEX: f"device has only {detail} output tensors: the firmware was built for another model",
        ERR_OUTPUT_RANGE: f"read beyond the device's output tensor of {detail} bytes: the firmware was built for another model",
        ERR_NO_OUTPUT: "device has no inference result to read (it was reset or the run failed)",
    }
    return messages.get(code, f"device error {code} (detail {detail}) for {cmd}")


# --------------------------------------------------------------------------
# framing


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode data (the result holds no zero byte).

    Canonical COBS: blocks end at every zero and after 254 non-zero bytes, and
    data that ends with a full 254-byte block gets no empty block after it.
    The device encoder (tg_protocol.c) cuts at the same places, so both
    produce the same bytes for the same frame."""
    out = bytearray()
    segments = bytes(data).split(b"\0")
    last = len(segments) - 1
    for k, segment in enumerate(segments):
        view = memoryview(segment)
        i, n = 0, len(segment)
        while n - i >= 254:
            out.append(0xFF)
            out += view[i : i + 254]
            i += 254
        if k == last and n and i == n:
            break
        out.append(n - i + 1)
        out += view[i:]
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; raises FrameError on malformed input."""
    data = bytes(data)
    if b"\0" in data:
        raise FrameError("zero byte inside a COBS frame")
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        j = i + code
        if j > n:
            raise FrameError("COBS block runs past the end of the frame (truncated frame)")
        out += data[i + 1 : j]
        i = j
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


@dataclasses.dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    session: int
    payload: bytes
    version: int = PROTOCOL_VERSION


def frame_bytes(ftype: int, seq: int, session: int, payload: bytes = b"",
                version: int = PROTOCOL_VERSION) -> bytes:
    """The decoded form of a frame: header, payload, CRC-32."""
    body = HEADER.pack(version, ftype, seq, session, len(payload)) + bytes(payload)
    return body + CRC.pack(zlib.crc32(body))


def encode_frame(ftype: int, seq: int, session: int, payload: bytes = b"",
                 version: int = PROTOCOL_VERSION) -> bytes:
    """A frame as sent on the wire, delimiters included."""
    return b"\0" + cobs_encode(frame_bytes(ftype, seq, session, payload, version)) + b"\0"


def decode_frame(body: bytes) -> Frame:
    """Decode the bytes between two delimiters; raises FrameError."""
    raw = cobs_decode(body)
    if len(raw) < HEADER_BYTES + CRC_BYTES:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than a header")
    version, ftype, seq, session, length = HEADER.unpack_from(raw)
    if len(raw) != HEADER_BYTES + length + CRC_BYTES:
        raise FrameError(f"frame length field says {length} payload bytes, "
                         f"the frame holds {len(raw) - HEADER_BYTES - CRC_BYTES}")
    (crc,) = CRC.unpack_from(raw, len(raw) - CRC_BYTES)
    if zlib.crc32(memoryview(raw)[:-CRC_BYTES]) != crc:
        raise FrameError("frame CRC mismatch")
    return Frame(ftype, seq, session, raw[HEADER_BYTES:-CRC_BYTES], version)


class FrameReader:
    """Cuts a byte stream at zero bytes into frames.

    feed() returns, in order, a Frame for every valid frame and a FrameError
    for every non-empty run of bytes that is not one (noise, truncation, bad
    CRC).  A run longer than max_frame is dropped up to the next delimiter."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        self.max_encoded = max_frame + max_frame // 254 + 2
        self._buf = bytearray()
        self._discarding = False

    @property
    def pending(self) -> bytes:
        """Bytes received since the last delimiter."""
        return bytes(self._buf)

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        data = bytes(data)
        start = 0
        while True:
            end = data.find(b"\0", start)
            if end < 0:
                if not self._discarding:
                    self._buf += data[start:]
                    if len(self._buf) > self.max_encoded:
                        self._buf.clear()
                        self._discarding = True
                        out.append(FrameError(f"frame longer than {self.max_encoded} bytes dropped"))
                return out
            if self._discarding:
                self._discarding = False
            else:
                self._buf += data[start:end]
                if self._buf:
                    try:
                        out.append(decode_frame(self._buf))
                    except FrameError as exc:
                        exc.data = bytes(self._buf)
                        out.append(exc)
                    self._buf.clear()
            start = end + 1


# --------------------------------------------------------------------------
# what the device tells


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    protocol_version: int
    protocol_minor: int
    board: str
    runtime: str
    signature: str  # SHA-256 of the .tflite, hex
    arena_bytes: int
    counter_unit: str  # "cycles" or "instructions"
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_chunk: int
    model_status: int  # 0 when tg_model_init succeeded
    big_endian: bool = False
    profile: bool = False  # built with per-operator timing (READ_PROFILE)
    arena_used: int | None = None  # bytes the runtime uses (minor >= 1)
    model_error: str = ""  # why tg_model_init failed, from the firmware (minor >= 1)

    @property
    def model_ready(self) -> bool:
        return self.model_status == 0


@dataclasses.dataclass(frozen=True)
class BootInfo:
    protocol_version: int
    protocol_minor: int
    model_status: int

    @property
    def model_ready(self) -> bool:
        return self.model_status == 0


@dataclasses.dataclass
class InferenceResult:
    outputs: list[np.ndarray]
    counter: int  # counter delta of tg_model_run
    counter_unit: str


@dataclasses.dataclass
class LinkStats:
    requests: int = 0
    retransmissions: int = 0
    bad_frames: int = 0  # corrupt or noise runs received
    stale_frames: int = 0  # valid frames that answered no current request
    boots: int = 0


def _counter_unit(code: int) -> str:
    return COUNTER_UNITS.get(code, f"unit{code}")


def parse_boot(payload: bytes) -> BootInfo:
    if len(payload) < BOOT.size:
        raise ProtocolError(f"BOOT frame of {len(payload)} bytes is too short")
    major, minor, _flags, status = BOOT.unpack_from(payload)
    return BootInfo(major, minor, status)


def parse_info(payload: bytes) -> DeviceInfo:
    """Decode an INFO reply payload (trailing bytes, from newer minors, are ignored)."""
    try:
        (major, minor, flags, unit, status, arena, max_chunk, signature,
         n_in, n_out, board_len, runtime_len) = INFO_FIXED.unpack_from(payload)
        pos = INFO_FIXED.size
        board = payload[pos : pos + board_len].decode("utf-8", "replace")
        pos += board_len
        runtime = payload[pos : pos + runtime_len].decode("utf-8", "replace")
        pos += runtime_len
        if pos > len(payload):
            raise struct.error("strings run past the end")
        big_endian = bool(flags & 2)
        tensors = []
        for k in range(n_in + n_out):
            dtype_code, rank, nbytes, scale, zero_point = TENSOR_FIXED.unpack_from(payload, pos)
            pos += TENSOR_FIXED.size
            shape = struct.unpack_from(f"<{rank}i", payload, pos)
            pos += 4 * rank
            index = k if k < n_in else k - n_in
            kind = "input" if k < n_in else "output"
            if dtype_code not in DTYPES:
                raise ProtocolError(f"device reported {kind} {index} with unsupported dtype code {dtype_code}")
            dtype = DTYPES[dtype_code].newbyteorder(">" if big_endian else "<")
            if any(d < 0 for d in shape) or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != nbytes:
                raise ProtocolError(f"device reported {kind} {index} of shape {shape} {dtype} "
                                    f"but {nbytes} bytes: corrupt model description in the firmware")
            tensors.append(TensorInfo(index, tuple(shape), dtype, float(scale), zero_point, nbytes))
        arena_used, model_error = None, ""
        if minor >= 1 and major == PROTOCOL_VERSION:
            arena_used, error_len = INFO_TAIL.unpack_from(payload, pos)
            pos += INFO_TAIL.size
            if pos + error_len > len(payload):
                raise struct.error("error text runs past the end")
            model_error = payload[pos : pos + error_len].decode("utf-8", "replace")
            model_error = "".join(c if c.isprintable() else "?" for c in model_error)
    except struct.error as exc:
        raise ProtocolError(f"INFO reply is truncated ({len(payload)} bytes): {exc}") from None
    return DeviceInfo(
        protocol_version=major,
        protocol_minor=minor,
        board=board,
        runtime=runtime,
        signature=signature.hex(),
        arena_bytes=arena,
        counter_unit=_counter_unit(unit),
        inputs=tuple(tensors[:n_in]),
        outputs=tuple(tensors[n_in:]),
        max_chunk=max_chunk,
        model_status=status,
        big_endian=big_endian,
        profile=bool(flags & 4),
        arena_used=arena_used,
        model_error=model_error,
    )


# --------------------------------------------------------------------------
# the client


class _Retry(Exception):
    """Internal: the current attempt failed in a way a retransmission may fix."""


class DeviceClient:
    """Talks to a tinygen firmware over a pyserial-compatible port.

    The port needs read(n), write(data) and a settable timeout (seconds;
    0 = return at once with what is there), as pyserial's ports have.

    timeout: seconds to wait for the reply to one request (INVOKE uses
    invoke_timeout); retries: retransmissions of a request after a timeout or
    a corrupted exchange, before giving up; chunk_size: INPUT_CHUNK data bytes
    per frame (capped by what the device announces); baudrate: used to extend
    the timeouts by the time the bytes take on the line (None: read it from
    the port; 0: no allowance, for socket links)."""

    def __init__(self, port: Any, *, timeout: float = 2.0, invoke_timeout: float = 120.0,
                 retries: int = 3, chunk_size: int = 4096, poll_interval: float = 0.02,
                 baudrate: int | None = None):
        if retries < 0 or timeout <= 0 or invoke_timeout <= 0 or chunk_size <= 0:
            raise ValueError("timeouts and chunk_size must be positive, retries >= 0")
        self.port = port
        self.timeout = timeout
        self.invoke_timeout = invoke_timeout
        self.retries = retries
        self.chunk_size = chunk_size
        self.poll_interval = poll_interval
        if baudrate is None:
            baudrate = getattr(port, "baudrate", 0)
        self._byte_time = 10.0 / baudrate if isinstance(baudrate, (int, float)) and baudrate > 0 else 0.0
        self.stats = LinkStats()
        self.boot: BootInfo | None = None  # the last BOOT frame seen
        self._reader = FrameReader()
        self._items: collections.deque[Frame | FrameError] = collections.deque()
        self._seq = secrets.randbelow(0xFFFF) + 1
        self._session: int | None = None
        self._info: DeviceInfo | None = None
        self._reset_seen = False
        self._noise = b""  # the last bytes received that were not a frame

    # -- opening and closing ------------------------------------------------

    @classmethod
    def open(cls, url: str, baud: int = 115200, **kwargs: Any) -> "DeviceClient":
        """Open a serial port or any pyserial URL (socket://host:port, rfc2217://...)."""
        import serial

        try:
            # exclusive: a port another program holds is refused at once
            # (both would otherwise read the same tty, each getting part of
            # the other's bytes); URL transports ignore it.
            port = serial.serial_for_url(url, baudrate=baud, timeout=kwargs.get("poll_interval", 0.02),
                                         exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ProtocolError(f"cannot open {url}: {exc}") from None
        if url.startswith("socket://"):
            kwargs.setdefault("baudrate", 0)  # no line: bytes take no time
        return cls(port, **kwargs)

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> "DeviceClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public operations --------------------------------------------------

    def info(self, refresh: bool = False) -> DeviceInfo:
        """Handshake (a new session) unless one is open; returns the device's
        description.  This is also how a session is restarted after DeviceReset."""
        if self._info is not None and self._session is not None and not refresh:
            return self._info
        token = secrets.randbits(32) or 1
        self._session = None
        frame = self._transact(CMD_INFO, b"", token=token, handshake=True)
        info = parse_info(frame.payload)
        if info.protocol_version != PROTOCOL_VERSION:
            raise VersionMismatch(f"device speaks protocol version {info.protocol_version}, "
                                  f"this tinygen {PROTOCOL_VERSION}: rebuild and flash the firmware")
        self._session = token
        self._info = info
        self._reset_seen = False
        return info

    def infer(self, inputs: Sequence[np.ndarray]) -> InferenceResult:
        """Send all input tensors, run one inference, return all outputs and
        the counter delta of the inference."""
        info = self._current_info()
        blobs = self._input_bytes(inputs, info)
        frame = None
        for attempt in range(2):
            for index, blob in enumerate(blobs):
                self._upload(index, blob, info)
            try:
                # Outputs up to chunk_size bytes in all come with the reply;
                # larger ones are read in chunks, each retried on its own.
                frame = self._transact(CMD_INVOKE, INVOKE_ARGS.pack(min(self.chunk_size, 0xFFFFFFFF)),
                                       timeout=self.invoke_timeout,
                                       reply_bytes=self.chunk_size + 4 * len(info.outputs))
                break
            except DeviceError as exc:
                # A damaged chunk whose index byte was hit wrote into (and
                # so lowered the mark of) an input already sent: send all
                # of the input once more.
                if exc.code != ERR_INPUT_INCOMPLETE or attempt:
                    raise
        assert frame is not None
        return self._result(frame.payload, info)

    def reset_state(self) -> None:
        """Put a stateful model's state back to what init left (tg_model_reset)."""
        self._current_info()
        frame = self._transact(CMD_RESET_STATE, b"")
        if frame.payload:
            raise ProtocolError("RESET_STATE reply carries unexpected data")

    def read_profile(self) -> list[int]:
        """Per-operator counter deltas of the last inference, indexed by
        operator (0 for operators that run no code), in the INVOKE counter's
        unit.  Only firmware built with ``--profile`` has them
        (``info().profile``); others raise DeviceError UNKNOWN_COMMAND."""
        info = self._current_info()
        if not info.profile:
            raise ProtocolError("the firmware was built without per-operator profiling "
                                "(tinygen build --profile)")
        values: list[int] = []
        slots = None
        while slots is None or len(values) < slots:
            want = max(1, min(self.chunk_size, info.max_chunk or self.chunk_size) // 4)
            frame = self._transact(CMD_READ_PROFILE, PROFILE_ARGS.pack(len(values), want),
                                   reply_bytes=8 + 4 * want)
            payload = frame.payload
            if len(payload) < PROFILE_ARGS.size or (len(payload) - PROFILE_ARGS.size) % 4:
                raise ProtocolError("READ_PROFILE reply has the wrong size")
            got_slots, first = PROFILE_ARGS.unpack_from(payload)
            n = (len(payload) - PROFILE_ARGS.size) // 4
            if first != len(values) or (slots is not None and got_slots != slots) or \
                    first + n > got_slots or (n == 0 and first < got_slots):
                raise ProtocolError("READ_PROFILE reply does not match the request")
            slots = got_slots
            values.extend(struct.unpack_from(f"<{n}I", payload, PROFILE_ARGS.size))
        return values

    def wait_boot(self, timeout: float) -> BootInfo:
        """Wait for the BOOT frame a device sends when it starts (after a
        flash or reset).  Ends any open session."""
        deadline = time.monotonic() + timeout
        while True:
            while self._items:
                item = self._items.popleft()
                if isinstance(item, Frame) and item.type == MSG_BOOT:
                    self._note_boot(item)
                    self._session = None
                    return self.boot  # type: ignore[return-value]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeout(f"no BOOT frame from the device within {timeout:g} s: "
                                    "is the firmware running and the port right?")
            self._read(remaining)

    # -- internals ----------------------------------------------------------

    def _current_info(self) -> DeviceInfo:
        if self._reset_seen:
            raise DeviceReset("device was reset earlier in this session: call info() to start a new one")
        return self.info()

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFF + 1  # 1..65535; 0 is the BOOT frame's
        return self._seq

    def _read(self, timeout: float) -> None:
        """Wait up to min(timeout, poll_interval) seconds for a byte, then take
        everything already received without waiting further."""
        port = self.port
        try:
            if timeout > 0:
                port.timeout = min(timeout, self.poll_interval)
                data = port.read(1)
            else:
                data = b"\x01"  # skip the wait
            if data:
                port.timeout = 0
                while len(data) < _READ_BATCH:
                    more = port.read(_READ_BATCH)
                    if not more:
                        break
                    data += more
                if timeout <= 0:
                    data = data[1:]
        except Exception as exc:  # pyserial raises SerialException, sockets OSError
            raise ProtocolError(f"serial link lost: {exc}; did the board or emulator stop?") from None
        if data:
            self._items.extend(self._reader.feed(data))

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
            flush = getattr(self.port, "flush", None)
            if flush is not None:
                flush()
        except Exception as exc:
            raise ProtocolError(f"serial link lost while writing: {exc}; did the board or emulator stop?") from None

    def _note_boot(self, frame: Frame) -> None:
        self.stats.boots += 1
        try:
            self.boot = parse_boot(frame.payload)
        except ProtocolError:
            self.boot = BootInfo(frame.version, 0, 0)

    def _device_reset(self, why: str) -> DeviceReset:
        self._session = None
        self._reset_seen = True
        return DeviceReset(f"device was reset ({why}): its inputs and model state are gone; "
                           "call info() to start a new session")

    def _drain(self) -> None:
        """Before a request: consume what is pending; a BOOT frame means reset."""
        self._read(0)
        while self._items:
            item = self._items.popleft()
            if isinstance(item, FrameError):
                self._bad_frame(item)
            elif item.type == MSG_BOOT:
                self._note_boot(item)
                if self._session is not None:
                    raise self._device_reset("it announced a new boot")
            else:
                self.stats.stale_frames += 1

    def _transact(self, ftype: int, payload: bytes, *, timeout: float | None = None,
                  token: int | None = None, handshake: bool = False,
                  reply_bytes: int = 64) -> Frame:
        name = COMMAND_NAMES[ftype]
        if token is None:
            token = self._session
            if token is None:
                raise ProtocolError(f"{name} needs a session: call info() first")
        self._drain()
        seq = self._next_seq()
        wire = encode_frame(ftype, seq, token, payload)
        wait = (timeout or self.timeout) + self._byte_time * (len(wire) + reply_bytes)
        self.stats.requests += 1
        problem = "no reply"
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retransmissions += 1
            self._write(wire)
            try:
                reply = self._await(ftype, seq, token, handshake, time.monotonic() + wait)
                self._noise = b""
                return reply
            except _Retry as why:
                problem = str(why)
        printed = self._device_text()
        if problem == "no reply":
            if printed:
                raise DeviceTimeout(f"no reply to {name} after {self.retries + 1} attempts of {wait:.3g} s; "
                                    f"the device printed {printed!r}")
            raise DeviceTimeout(f"no reply to {name} after {self.retries + 1} attempts of {wait:.3g} s: "
                                "is the board running tinygen firmware on this port and baud rate?")
        raise ProtocolError(f"{name} failed {self.retries + 1} times ({problem}): "
                            "the serial link is unreliable; check the cable and baud rate"
                            + (f"; the device printed {printed!r}" if printed else ""))

    def _bad_frame(self, error: FrameError) -> None:
        self.stats.bad_frames += 1
        self._noise = (self._noise + error.data)[-512:]

    def _device_text(self) -> str:
        """Text the device printed instead of frames (a fault report, a boot
        ROM banner): its runs of 4+ printable characters, the last 200."""
        raw = (self._noise + self._reader.pending).decode("latin-1")
        runs = re.findall(r"[ -~]{4,}", raw)
        return " ".join(run.strip() for run in runs)[-200:]

    def _await(self, ftype: int, seq: int, token: int, handshake: bool, deadline: float) -> Frame:
        name = COMMAND_NAMES[ftype]
        damaged = None
        while True:
            while self._items:
                item = self._items.popleft()
                if isinstance(item, FrameError):
                    # Most likely our reply, damaged: ask again once everything
                    # received so far has been looked at (one burst of noise
                    # with zero bytes in it makes several bad runs, which
                    # must not use up several retries; the good reply may
                    # be among them).
                    self._bad_frame(item)
                    damaged = damaged or item
                    continue
                if item.type == MSG_BOOT:
                    self._note_boot(item)
                    if handshake:
                        # It may have been booting when the request came.
                        raise _Retry("device booted")
                    raise self._device_reset(f"it announced a new boot during {name}")
                if item.seq != seq:
                    self.stats.stale_frames += 1
                    continue
                if item.version != PROTOCOL_VERSION:
                    raise VersionMismatch(f"device speaks protocol version {item.version}, this tinygen "
                                          f"{PROTOCOL_VERSION}: rebuild and flash the firmware")
                code = detail = None
                if item.type == MSG_ERROR:
                    if len(item.payload) < ERROR.size:
                        raise ProtocolError(f"device sent a malformed error reply to {name}")
                    code, _request, detail = ERROR.unpack_from(item.payload)
                    if code == ERR_SESSION:
                        raise self._device_reset(f"it refused {name} for an unknown session")
                if not handshake and item.session != token:
                    raise self._device_reset(f"its session is {item.session:#x}, expected {token:#x}")
                if code is not None:
                    if code in (ERR_BAD_CRC, ERR_FRAME):
                        raise _Retry(f"device reported {ERROR_NAMES[code]}")
                    if code == ERR_VERSION:
                        raise VersionMismatch(_device_error_message(code, detail, ftype))
                    raise DeviceError(code, detail, ftype)
                if item.type != REPLY_FLAG | ftype:
                    raise ProtocolError(f"device answered {name} with frame type {item.type:#04x}: "
                                        "firmware and host disagree on the protocol")
                if handshake and item.session != token:
                    raise ProtocolError(f"device did not take the session token in its {name} reply")
                return item
            if damaged is not None:
                raise _Retry(f"corrupted reply: {damaged}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Retry("no reply")
            self._read(remaining)

    def _input_bytes(self, inputs: Sequence[np.ndarray], info: DeviceInfo) -> list[bytes]:
        if len(inputs) != len(info.inputs):
            raise InputMismatch(f"the model on the device takes {len(info.inputs)} inputs, got {len(inputs)}")
        blobs = []
        for tensor, value in zip(info.inputs, inputs):
            arr = np.asarray(value)
            want = tensor.dtype
            if arr.dtype.newbyteorder("=") != want.newbyteorder("="):
                hint = ""
                if want.kind in "iu" and tensor.scale:
                    hint = f"; quantize with scale {tensor.scale:g} and zero point {tensor.zero_point}"
                raise InputMismatch(f"input {tensor.index} must be {want.name}, got {arr.dtype.name}{hint}")
            shape = tuple(tensor.shape)
            if arr.shape != shape and not (shape[:1] == (1,) and arr.shape == shape[1:]):
                raise InputMismatch(f"input {tensor.index} must have shape {shape}, got {arr.shape}")
            blobs.append(np.ascontiguousarray(arr, dtype=want).tobytes())
        return blobs

    def _upload(self, index: int, blob: bytes, info: DeviceInfo) -> None:
        chunk = max(1, min(self.chunk_size, info.max_chunk or self.chunk_size))
        offset, setbacks = 0, 0
        while offset < len(blob):
            data = blob[offset : offset + chunk]
            try:
                frame = self._transact(CMD_INPUT_CHUNK, ARGS.pack(index, offset) + data)
            except DeviceError as exc:
                # A corrupted chunk made the device drop what it had from
                # some offset on; it says where to resume.
                if exc.code != ERR_INPUT_OFFSET or setbacks >= self.retries or exc.detail >= offset:
                    raise
                setbacks += 1
                offset = exc.detail
                continue
            if len(frame.payload) != ARGS.size:
                raise ProtocolError("INPUT_CHUNK reply has the wrong size")
            got_index, filled = ARGS.unpack(frame.payload)
            if got_index != index or filled < offset + len(data) or filled > len(blob):
                raise ProtocolError(f"INPUT_CHUNK reply (input {got_index}, {filled} bytes) does not match "
                                    f"the chunk sent (input {index}, bytes {offset}..{offset + len(data)})")
            offset += len(data)

    def _result(self, payload: bytes, info: DeviceInfo) -> InferenceResult:
        if len(payload) < RESULT_FIXED.size:
            raise ProtocolError("INVOKE reply is too short")
        counter, unit, n_out, flags = RESULT_FIXED.unpack_from(payload)
        if n_out != len(info.outputs):
            raise ProtocolError(f"INVOKE reply has {n_out} outputs, the handshake announced {len(info.outputs)}")
        inline = bool(flags & RESULT_INLINE)
        pos = RESULT_FIXED.size
        outputs = []
        for tensor in info.outputs:
            if pos + 4 > len(payload):
                raise ProtocolError("INVOKE reply is truncated")
            (nbytes,) = struct.unpack_from("<I", payload, pos)
            pos += 4
            if nbytes != tensor.bytes:
                raise ProtocolError(f"INVOKE reply has {nbytes} bytes for output {tensor.index}, "
                                    f"the handshake announced {tensor.bytes}")
            if inline:
                data = payload[pos : pos + nbytes]
                pos += nbytes
            else:
                data = self._read_output(tensor, info)
            if len(data) != nbytes:
                raise ProtocolError(f"INVOKE reply is truncated in output {tensor.index}")
            arr = np.frombuffer(data, dtype=tensor.dtype)
            outputs.append(arr.astype(tensor.dtype.newbyteorder("="), copy=True).reshape(tensor.shape))
        if pos != len(payload):
            raise ProtocolError(f"INVOKE reply has {len(payload) - pos} unexpected trailing bytes")
        return InferenceResult(outputs=outputs, counter=counter, counter_unit=_counter_unit(unit))

    def _read_output(self, tensor: TensorInfo, info: DeviceInfo) -> bytes:
        chunk = max(1, min(self.chunk_size, info.max_chunk or self.chunk_size))
        data = bytearray()
        while len(data) < tensor.bytes:
            n = min(chunk, tensor.bytes - len(data))
            frame = self._transact(CMD_READ_OUTPUT, READ_ARGS.pack(tensor.index, len(data), n),
                                   reply_bytes=n + ARGS.size)
            if len(frame.payload) != ARGS.size + n or ARGS.unpack_from(frame.payload) != (tensor.index, len(data)):
                raise ProtocolError(f"READ_OUTPUT reply does not match the request "
                                    f"(output {tensor.index}, bytes {len(data)}..{len(data) + n})")
            data += frame.payload[ARGS.size :]
        return bytes(data)


def open_device(url: str, baud: int = 115200, **kwargs: Any) -> DeviceClient:
    """Shorthand for :meth:`DeviceClient.open`."""
    return DeviceClient.open(url, baud, **kwargs)
