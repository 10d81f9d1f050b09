"""The host side of the model slot commands (docs/model-update.md):

    table = read_slots(client)                 # SLOTS
    result = send_image(client, image_bytes)   # UPDATE_BEGIN, _CHUNK..., _FINISH
    activate(client, slot)                     # ACTIVATE

Chunks carry their own CRC-32 (besides the frame's): the device checks it
again on the bytes it reads back from flash, so a flash write that went
wrong is caught, not only a line error.  A transfer cut by a reset resumes:
UPDATE_BEGIN of the same image answers where the device's marks end.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable

from ..errors import TinygenError
from .client import DeviceClient
from .framing import (
    CMD_ACTIVATE,
    CMD_FAULT_ARM,
    CMD_SLOTS,
    CMD_UPDATE_BEGIN,
    CMD_UPDATE_CHUNK,
    CMD_UPDATE_FINISH,
    UPDATE_REASONS,
)

STATES = {0: "empty", 1: "valid", 2: "receiving", 3: "invalid"}
_SLOTS_HEADER = struct.Struct("<BBBBIIII")
_SLOT = struct.Struct("<BBBB BBHI I I I 32s")
_FINISH = struct.Struct("<B3xII")
# what UPDATE_BEGIN needs to refuse an image before it is sent (the same
# fields are checked again, authenticated, once it is complete)
_IMG_HEADER = 32


@dataclass
class Slot:
    index: int
    state: str
    builtin: bool
    reason: int
    version: str
    security_counter: int
    size: int
    received: int
    model_sha256: str

    @property
    def why(self) -> str:
        return UPDATE_REASONS.get(self.reason, "") if self.reason else ""


@dataclass
class SlotTable:
    active: int
    boot_failed_slot: int | None
    boot_reason: int
    security_floor: int
    capacity: int
    chunk_bytes: int
    boot_ticks: int
    slots: list[Slot] = field(default_factory=list)

    @property
    def active_slot(self) -> Slot:
        return self.slots[self.active]


@dataclass
class UpdateResult:
    slot: int
    resumed_from: int        # bytes the device already held
    bytes_sent: int          # image bytes sent in chunks (not framing)
    chunks: int
    verify_ticks: int        # hash + signature, in the INFO counter unit
    selftest_ticks: int
    image_bytes: int = 0     # the full image
    delta: bool = False      # sent as a delta against the running image


def require_updatable(client: DeviceClient) -> None:
    if not client.info().updatable:
        raise TinygenError("the device's firmware has no model slots: build it with "
                           "`tinygen build --updatable` and flash it")


def read_slots(client: DeviceClient) -> SlotTable:
    require_updatable(client)
    raw = client.request(CMD_SLOTS)
    if len(raw) < _SLOTS_HEADER.size:
        raise TinygenError("device sent a malformed SLOTS reply")
    n, active, failed, reason, floor, capacity, chunk, ticks = _SLOTS_HEADER.unpack_from(raw)
    table = SlotTable(active, None if failed == 0xFF else failed, reason, floor, capacity,
                      chunk, ticks)
    for k in range(n):
        off = _SLOTS_HEADER.size + k * _SLOT.size
        if off + _SLOT.size > len(raw):
            raise TinygenError("device sent a truncated SLOTS reply")
        (state, kind, why, _r, major, minor, rev, build, sec, size, received,
         sha) = _SLOT.unpack_from(raw, off)
        version = f"{major}.{minor}.{rev}" + (f"+{build}" if build else "")
        table.slots.append(Slot(k, STATES.get(state, f"state {state}"), kind == 0, why,
                                version if state in (1, 3) else "", sec, size, received,
                                sha.hex() if state in (1, 3) else ""))
    return table


def send_image(client: DeviceClient, image: bytes,
               progress: Callable[[int, int], None] | None = None,
               base: bytes | None = None) -> UpdateResult:
    """Transfer, verify, self-test and activate one image; DeviceError (with
    the device's reason) when it is refused.  With `base` (the image the
    device runs), only a delta is sent when it is smaller."""
    from ..update.image import parse_image
    parsed = parse_image(image)
    table = read_slots(client)
    chunk = table.chunk_bytes
    if parsed.digest is None:
        raise TinygenError("the image has no SHA-512 TLV: make it with `tinygen image`")
    begin = (struct.pack("<II", len(image), chunk) + parsed.digest + image[:_IMG_HEADER]
             + struct.pack("<I", parsed.security_counter) + parsed.meta.pack())
    payload = image
    if base is not None:
        from ..update.delta import make_delta
        base_digest = parse_image(base).digest
        delta = make_delta(base, image)
        if base_digest is not None and len(delta) < len(image):
            payload = delta
            begin += struct.pack("<I", len(delta)) + base_digest
    slot, _resumed, _r, _r2, offset, chunk = struct.unpack(
        "<BBBBII", client.request(CMD_UPDATE_BEGIN, begin)[:12])
    start = offset
    sent = chunks = 0
    while offset < len(payload):
        data = payload[offset:offset + chunk]
        reply = client.request(CMD_UPDATE_CHUNK,
                               struct.pack("<II", offset, zlib.crc32(data)) + data)
        sent += len(data)
        chunks += 1
        nxt = struct.unpack("<I", reply[:4])[0]
        if nxt <= offset:
            raise TinygenError(f"device did not take the chunk at {offset} (it holds {nxt} bytes)")
        offset = nxt
        if progress:
            progress(offset, len(payload))
    done = client.request(CMD_UPDATE_FINISH, timeout=120.0)
    slot, verify_ticks, selftest_ticks = _FINISH.unpack_from(done)
    return UpdateResult(slot, start, sent, chunks, verify_ticks, selftest_ticks, len(image),
                        payload is not image)


def activate(client: DeviceClient, slot: int) -> tuple[int, int]:
    """Switch to a stored model (verified and self-tested first); returns the
    device's (verify, self-test) counter ticks."""
    require_updatable(client)
    if not 0 <= slot <= 255:
        raise TinygenError(f"slot {slot} does not exist")
    _s, verify_ticks, selftest_ticks = _FINISH.unpack_from(
        client.request(CMD_ACTIVATE, struct.pack("<B3x", slot), timeout=120.0))
    return verify_ticks, selftest_ticks


def arm_fault(client: DeviceClient, countdown: int) -> int:
    """Campaign firmware only: reset the board at the countdown-th fault point
    from now (0 disarms); returns the points passed since boot."""
    return struct.unpack("<I", client.request(CMD_FAULT_ARM, struct.pack("<I", countdown)))[0]

