"""Decoded protocol payloads: what the device says about itself (BOOT, INFO)
and what an inference returned."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

from .framing import (
    BOOT,
    COUNTER_UNITS,
    DTYPES,
    INFO_FIXED,
    INFO_TAIL,
    PROTOCOL_VERSION,
    TENSOR_FIXED,
    ProtocolError,
)

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
    updatable: bool = False  # model slots (SLOTS, UPDATE_*, ACTIVATE; docs/model-update.md)
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


def counter_unit_name(code: int) -> str:
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
        counter_unit=counter_unit_name(unit),
        inputs=tuple(tensors[:n_in]),
        outputs=tuple(tensors[n_in:]),
        max_chunk=max_chunk,
        model_status=status,
        big_endian=big_endian,
        profile=bool(flags & 4), updatable=bool(flags & 8),
        arena_used=arena_used,
        model_error=model_error,
    )
