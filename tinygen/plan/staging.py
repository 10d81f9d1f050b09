"""Weights kept in flash and copied into RAM per operator (the ESP8266).

The ESP8266 reads its SPI flash (mapped at 0x40200000) only with aligned
32-bit loads; a byte or halfword load from there faults, and the portable
kernels read int8 weights bytewise.  On a board with `weights_in_flash` the
weight arrays an operator's parameters point at are placed in flash, and
before the operator runs they are copied word by word (aligned 32-bit loads
only) into one RAM staging buffer that the parameters point at instead.  RAM
then holds the largest single operator's weights, not the model's, so models
with more weights than the ESP8266 has DRAM fit.
"""

from __future__ import annotations

import re

from .lowering import ConstArray, KernelCall

# staged arrays start on this boundary in the staging buffer
STAGE_ALIGN = 16


def staged_constants(call: KernelCall) -> list[ConstArray]:
    """The call's weight arrays that its parameters point at: those a kernel
    reads through the parameters, so redirecting the pointer is enough."""
    refs = " ".join(call.params.values())
    return [c for c in call.constants
            if c.is_weight and re.search(rf"\b{re.escape(c.name)}\b", refs)]


def const_bytes(c: ConstArray) -> int:
    return int(c.values.size) * int(c.values.dtype.itemsize)


def padded(nbytes: int) -> int:
    return (nbytes + STAGE_ALIGN - 1) // STAGE_ALIGN * STAGE_ALIGN


def stage_layout(call: KernelCall) -> list[tuple[ConstArray, int]]:
    """(array, offset in the staging buffer) for each staged array of a call."""
    out, off = [], 0
    for c in staged_constants(call):
        out.append((c, off))
        off += padded(const_bytes(c))
    return out


def stage_bytes(calls: list[KernelCall]) -> int:
    """The staging buffer: the largest operator's staged weights."""
    return max((sum(padded(const_bytes(c)) for c in staged_constants(call))
                for call in calls), default=0)


def flash_bytes(calls: list[KernelCall]) -> int:
    """The weights that stay in flash (every staged array)."""
    return sum(const_bytes(c) for call in calls for c in staged_constants(call))
