"""The wire layer of the tinygen serial protocol (docs/protocol.md): constants,
struct layouts, COBS, CRC-32 frames and a frame reader that resynchronises after
garbage.  No exchange logic lives here: that is client.py.

A frame on the wire is ``00 | COBS(header | payload | CRC-32) | 00``; the header
is ``version u8, type u8, seq u16, session u32, length u32`` (little-endian) and
the CRC-32 is zlib's, over header and payload.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
from cobs import cobs

from tinygen.errors import TinygenError

PROTOCOL_VERSION = 1
PROTOCOL_MINOR = 1

CMD_INFO = 0x01
CMD_INPUT_CHUNK = 0x02
CMD_INVOKE = 0x03
CMD_RESET_STATE = 0x04
CMD_READ_OUTPUT = 0x05
CMD_READ_PROFILE = 0x06  # optional: firmware built with --profile (INFO flags bit 2)
# optional: updatable firmware (INFO flags bit 3; docs/model-update.md)
CMD_SLOTS = 0x10
CMD_UPDATE_BEGIN = 0x11
CMD_UPDATE_CHUNK = 0x12
CMD_UPDATE_FINISH = 0x13
CMD_ACTIVATE = 0x14
CMD_FAULT_ARM = 0x15  # only firmware built for the power-loss campaign
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
    CMD_SLOTS: "SLOTS",
    CMD_UPDATE_BEGIN: "UPDATE_BEGIN",
    CMD_UPDATE_CHUNK: "UPDATE_CHUNK",
    CMD_UPDATE_FINISH: "UPDATE_FINISH",
    CMD_ACTIVATE: "ACTIVATE",
    CMD_FAULT_ARM: "FAULT_ARM",
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
ERR_UPDATE = 15  # detail: one of UPDATE_REASONS

# Why a device refused an update command (tg_update.h TG_UPD_*).
UPDATE_REASONS = {
    1: "it is not a model image (bad magic)",
    2: "the image is truncated",
    3: "the image format is not one this firmware knows",
    4: "the image has no SHA-512",
    5: "the image content does not match its SHA-512: it is corrupted",
    6: "the image is not signed",
    7: "the image signature does not verify with the device's key (signed with another key?)",
    8: "the image was built for another model architecture or runtime",
    9: "the image is larger than a slot, or needs more arena than this firmware has",
    10: "the image's version is not newer than the running model's (anti-rollback)",
    11: "the image's security counter is below the device's floor (anti-rollback)",
    12: "the model's self-test vectors gave other outputs on the device",
    13: "there is no such slot",
    14: "that slot holds no installed model",
    15: "chunks of the image are missing",
    16: "no update was begun since the device booted",
    17: "a chunk's offset or length is not the one the transfer expects",
    18: "the device's flash did not read back what was written",
    19: "this exact image is already the running model",
    20: "the request was malformed",
    21: "the delta was made from another image than the one the device runs",
    22: "the delta does not apply (corrupted, or not a delta)",
}

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
    ERR_UPDATE: "UPDATE",
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
READ_BATCH = 1 << 16


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
        super().__init__(device_error_message(code, detail, command))


class InputMismatch(TinygenError, ValueError):
    """The arrays given to infer() do not match the device's input tensors."""


def signed32(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


def device_error_message(code: int, detail: int, command: int) -> str:
    cmd = COMMAND_NAMES.get(command, f"command 0x{command:02x}")
    if code == ERR_MODEL:
        status = signed32(detail)
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
        ERR_UPDATE: f"device refused {cmd}: "
                    + UPDATE_REASONS.get(detail, f"reason {detail}")
                    + "; the running model is unchanged",
    }
    return messages.get(code, f"device error {code} (detail {detail}) for {cmd}")


# --------------------------------------------------------------------------
# framing


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode data (the result holds no zero byte), with the `cobs` package.

    Canonical COBS: blocks end at every zero and after 254 non-zero bytes, and
    data that ends with a full 254-byte block gets no empty block after it.
    The device encoder (tg_protocol.c) cuts at the same places, so both
    produce the same bytes for the same frame (tests/test_protocol.py holds
    the package to that, edge cases included)."""
    return cobs.encode(bytes(data))


def cobs_decode(data: bytes | bytearray) -> bytes:
    """Inverse of :func:`cobs_encode`; raises FrameError on malformed input."""
    try:
        return cobs.decode(bytes(data))
    except cobs.DecodeError as exc:
        raise FrameError(f"malformed COBS frame: {exc}") from None


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


def decode_frame(body: bytes | bytearray) -> Frame:
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
