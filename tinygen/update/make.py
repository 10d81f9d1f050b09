"""A model -> the signed image for the slots of an updatable firmware.

The payload and the architecture fingerprint come from the runtime's code
generator (codegen.aot with updatable=True), so an image fits a firmware
exactly when its model would have generated the same code.  The self-test
vectors are one input per input tensor (seeded by the model's SHA-256) and
the outputs the tflite_micro interpreter gives for it: the device runs them
before it commits to the new model, and must match to the bit.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TinygenError
from ..ir import Model
from .image import Meta, Version, build_image, selftest_tlv

TFLM_NOTE = ("a tflm image may change the whole graph, but its operator set and its "
             "inputs' and outputs' shapes and quantization must be those the firmware was "
             "built for")
AOT_FLAGS_NOTE = ("an aot image carries the weights and per-channel tables only: its "
                  "layers, shapes and activation quantization must be those the firmware "
                  "was built for")


@dataclass
class Payload:
    data: bytes
    fingerprint: bytes
    arena_bytes: int
    runtime: str


def aot_payload(ir: Model, board: str, name: str) -> Payload:
    """The constants of `ir` laid out as codegen.aot's updatable build reads them."""
    from ..codegen.aot import generate_aot
    with tempfile.TemporaryDirectory(prefix="tg-image-") as tmp:
        res = generate_aot(ir, Path(tmp), board=board, name=name, updatable=True)
    assert res.payload is not None
    return Payload(res.payload, bytes.fromhex(res.fingerprint), res.arena_bytes, "aot")


def tflm_payload(ir: Model, board: str, name: str) -> Payload:
    """The .tflite itself, with the arena TFLM's recording allocator measures
    for it on the host (what the device's arena must hold)."""
    from ..analyze.analysis import analyze
    from ..boards import get_board
    from ..codegen.tflm import tflm_fingerprint
    measured = analyze(ir, get_board(board)).tflm_arena["total"]
    return Payload(ir.tflite, bytes.fromhex(tflm_fingerprint(ir, name)), measured, "tflm")


def payload_for(runtime: str, ir: Model, board: str, name: str) -> Payload:
    return tflm_payload(ir, board, name) if runtime == "tflm" else aot_payload(ir, board, name)


def selftest_vectors(ir: Model) -> tuple[list[bytes], list[bytes]]:
    """(input bytes, expected output bytes) from the tflite_micro interpreter."""
    from ..reference import TflmReference
    rng = np.random.default_rng(int(ir.signature[:16], 16))
    inputs = []
    for i in ir.inputs:
        t = ir.tensors[i]
        dt = np.dtype(t.np_dtype or np.int8)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            x = rng.integers(info.min, int(info.max) + 1, size=t.shape, dtype=dt)
        else:
            x = rng.standard_normal(t.shape).astype(dt)
        inputs.append(x)
    outputs = TflmReference(ir.tflite).run(inputs)
    return ([np.ascontiguousarray(x).tobytes() for x in inputs],
            [np.ascontiguousarray(y).tobytes() for y in outputs])


def image_for(ir: Model, payload: Payload, version: Version, sign,
              security_counter: int = 0) -> bytes:
    ins, outs = selftest_vectors(ir)
    meta = Meta(payload.runtime, payload.arena_bytes, payload.fingerprint,
                bytes.fromhex(ir.signature))
    return build_image(payload.data, meta, version, selftest_tlv(ins, outs), sign,
                       security_counter)


def check_fits(payload: Payload, fingerprint_hex: str, arena_bytes: int, what: str) -> None:
    """The host's side of the device's WRONG_ARCH / TOO_LARGE checks."""
    if payload.fingerprint.hex() != fingerprint_hex:
        note = AOT_FLAGS_NOTE if payload.runtime == "aot" else TFLM_NOTE
        raise TinygenError(f"{what} does not fit this firmware: {note} "
                           "(architecture fingerprint differs); rebuild and flash the firmware "
                           "for it instead")
    if payload.arena_bytes > arena_bytes:
        raise TinygenError(f"{what} needs {payload.arena_bytes} B of arena, the firmware has "
                           f"{arena_bytes} B")
