"""The host side of an exchange with a device (specification: docs/protocol.md).

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
import re
import secrets
import struct
import time
from typing import Any, Sequence

import numpy as np

from .framing import (
    ARGS,
    CMD_INFO,
    CMD_INPUT_CHUNK,
    CMD_INVOKE,
    CMD_READ_OUTPUT,
    CMD_READ_PROFILE,
    CMD_RESET_STATE,
    COMMAND_NAMES,
    ERR_BAD_CRC,
    ERR_FRAME,
    ERR_INPUT_INCOMPLETE,
    ERR_INPUT_OFFSET,
    ERR_SESSION,
    ERR_VERSION,
    ERROR,
    ERROR_NAMES,
    INVOKE_ARGS,
    MSG_BOOT,
    MSG_ERROR,
    PROFILE_ARGS,
    PROTOCOL_VERSION,
    READ_ARGS,
    READ_BATCH,
    REPLY_FLAG,
    RESULT_FIXED,
    RESULT_INLINE,
    DeviceError,
    DeviceReset,
    DeviceTimeout,
    Frame,
    FrameError,
    FrameReader,
    InputMismatch,
    ProtocolError,
    VersionMismatch,
    device_error_message,
    encode_frame,
)
from .messages import (
    BootInfo,
    DeviceInfo,
    InferenceResult,
    LinkStats,
    TensorInfo,
    counter_unit_name,
    parse_boot,
    parse_info,
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

    def request(self, ftype: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """One request of an optional command (READ_PROFILE, the model slot
        commands) with the usual retries; the reply's payload.  An ERROR
        reply raises DeviceError (its message says why)."""
        self._current_info()
        return self._transact(ftype, payload, timeout=timeout,
                              reply_bytes=len(payload) + 64).payload

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
                while len(data) < READ_BATCH:
                    more = port.read(READ_BATCH)
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
                        raise VersionMismatch(device_error_message(code, detail, ftype))
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
        return InferenceResult(outputs=outputs, counter=counter, counter_unit=counter_unit_name(unit))

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
