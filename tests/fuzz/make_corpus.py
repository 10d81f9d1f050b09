"""Write the seed corpus of tests/fuzz/fuzz_protocol.c (into tests/fuzz/corpus/).

    python3 tests/fuzz/make_corpus.py [OUT_DIR]

Frames are made with the host's own codec (tinygen.device.protocol), so the
seeds are exactly what tinygen sends.  The input format is described at the
top of fuzz_protocol.c: a mode byte, a boot configuration byte, then either
the raw byte stream (RAW) or a list of operations (OPS).  The harness's fake
model has input 0 int8 [1,10,10,3] (300 bytes), input 1 float32 [1,10] (40
bytes) and outputs of 300, 16 and 40 bytes.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tinygen.device.protocol import (  # noqa: E402
    CMD_INFO,
    CMD_INPUT_CHUNK,
    CMD_INVOKE,
    CMD_READ_OUTPUT,
    CMD_RESET_STATE,
    encode_frame,
)

TOKEN = 0x5EC00001
IN0, IN1 = 300, 40
ALL = struct.pack("<I", 0xFFFFFFFF)


def chunk(index: int, offset: int, data: bytes) -> bytes:
    return struct.pack("<B3xI", index, offset) + data


def read(index: int, offset: int, length: int) -> bytes:
    return struct.pack("<B3xII", index, offset, length)


def raw(stream: bytes, piece_code: int = 0, config: int = 0) -> bytes:
    return bytes([piece_code & 0x7F, config]) + stream


def session(x0: bytes, x1: bytes, seq: int = 1, split: int = 120, inline=ALL) -> bytes:
    out = encode_frame(CMD_INFO, seq, TOKEN)
    seq += 1
    for off in range(0, len(x0), split):
        out += encode_frame(CMD_INPUT_CHUNK, seq, TOKEN, chunk(0, off, x0[off : off + split]))
        seq += 1
    out += encode_frame(CMD_INPUT_CHUNK, seq, TOKEN, chunk(1, 0, x1))
    out += encode_frame(CMD_INVOKE, seq + 1, TOKEN, inline)
    return out


def seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    x0 = rng.integers(-128, 128, IN0).astype(np.int8).tobytes()
    x1 = rng.uniform(-10, 10, 10).astype(np.float32).tobytes()
    nz0 = rng.integers(1, 128, IN0).astype(np.int8).tobytes()  # no zero byte
    s = {}
    # one valid frame of each command, and a complete session
    s["raw-info"] = raw(encode_frame(CMD_INFO, 1, TOKEN))
    s["raw-session-inline"] = raw(session(x0, x1))
    s["raw-session-read-output"] = raw(
        session(x0, x1, inline=struct.pack("<I", 0))
        + encode_frame(CMD_READ_OUTPUT, 50, TOKEN, read(0, 0, 300))
        + encode_frame(CMD_READ_OUTPUT, 51, TOKEN, read(1, 4, 12))
        + encode_frame(CMD_READ_OUTPUT, 52, TOKEN, read(2, 0, 40)), piece_code=3)
    s["raw-invoke-retransmitted"] = raw(
        session(nz0, x1) + encode_frame(CMD_INVOKE, 5, TOKEN, ALL)  # same seq as the session's INVOKE
        + encode_frame(CMD_RESET_STATE, 6, TOKEN), piece_code=9)
    s["raw-reset-state"] = raw(encode_frame(CMD_INFO, 1, TOKEN) + encode_frame(CMD_RESET_STATE, 2, TOKEN))
    s["raw-input-chunk-resume"] = raw(
        encode_frame(CMD_INFO, 1, TOKEN)
        + encode_frame(CMD_INPUT_CHUNK, 2, TOKEN, chunk(0, 0, x0[:10]))
        + encode_frame(CMD_INPUT_CHUNK, 3, TOKEN, chunk(0, 30, x0[30:]))  # INPUT_OFFSET
        + encode_frame(CMD_INPUT_CHUNK, 4, TOKEN, chunk(0, 5, x0[5:]))
        + encode_frame(CMD_INPUT_CHUNK, 5, TOKEN, chunk(3, 0, x0))  # INPUT_INDEX
        + encode_frame(CMD_INPUT_CHUNK, 6, TOKEN, chunk(1, 8, x1))  # INPUT_SIZE
        + encode_frame(CMD_INVOKE, 7, TOKEN, ALL))  # INPUT_INCOMPLETE
    # errors the device must answer
    s["raw-no-session"] = raw(encode_frame(CMD_INVOKE, 9, 0, ALL) + encode_frame(CMD_INPUT_CHUNK, 10, 1, chunk(0, 0, x0)))
    s["raw-unknown-command"] = raw(encode_frame(CMD_INFO, 1, TOKEN) + encode_frame(0x42, 2, TOKEN, b"xyz"))
    s["raw-other-version"] = raw(encode_frame(CMD_INFO, 1, TOKEN, version=2))
    s["raw-bad-length"] = raw(encode_frame(CMD_INFO, 1, TOKEN, b"\1")
                              + encode_frame(CMD_INFO, 2, TOKEN)
                              + encode_frame(CMD_INVOKE, 3, TOKEN, b"\1\2")
                              + encode_frame(CMD_READ_OUTPUT, 4, TOKEN, read(0, 0, 1 << 20)))
    s["raw-read-output-errors"] = raw(encode_frame(CMD_INFO, 1, TOKEN)
                                      + encode_frame(CMD_READ_OUTPUT, 2, TOKEN, read(0, 0, 4))
                                      + session(x0, x1, seq=3)
                                      + encode_frame(CMD_READ_OUTPUT, 20, TOKEN, read(7, 0, 4))
                                      + encode_frame(CMD_READ_OUTPUT, 21, TOKEN, read(0, 47, 4)))
    s["raw-read-output-too-long"] = raw(session(x0, x1) + encode_frame(CMD_READ_OUTPUT, 30, TOKEN, read(0, 0, 16385)))
    s["raw-model-init-failed"] = raw(session(x0, x1), config=2)
    s["raw-null-output"] = raw(session(x0, x1), config=4)
    s["raw-run-fails"] = raw(session(x0, b"FAIL" + x1[4:]))
    # garbage and damage
    s["garbage-random"] = raw(rng.integers(0, 256, 300).astype(np.uint8).tobytes())
    s["garbage-text"] = raw(b"*** tinygen fault: exception=00000003 pc=08000abc ***\r\n" + encode_frame(CMD_INFO, 1, TOKEN))
    good = session(x0, x1)
    cut = bytearray(good)
    del cut[len(cut) // 2 : len(cut) // 2 + 7]
    s["garbage-cut-frame"] = raw(bytes(cut), piece_code=2)
    flipped = bytearray(good)
    flipped[100] ^= 0x10
    s["garbage-bit-flip"] = raw(bytes(flipped), piece_code=1)
    s["garbage-no-delimiters"] = raw(b"\x05" + b"\xff" * 200)
    # operations mode (0x80): ops as documented in fuzz_protocol.c
    ops = bytearray([0x80, 0])
    ops += bytes([7])                                    # INFO
    ops += bytes([5, 0, 0, 150]) + x0[:150]              # INPUT_CHUNK 0 @0
    ops += bytes([5, 0, 150, 150]) + x0[150:]            # INPUT_CHUNK 0 @150
    ops += bytes([5, 1, 0, 40]) + x1                     # INPUT_CHUNK 1 @0
    ops += bytes([6, 0])                                 # INVOKE, all inline
    ops += bytes([6, 4])                                 # the same INVOKE again
    ops += bytes([8, 0, 0, 255]) + (300).to_bytes(4, "little")  # READ_OUTPUT all of output 0
    ops += bytes([8, 2, 4, 8])                           # READ_OUTPUT of output 2
    ops += bytes([9])                                    # RESET_STATE
    s["ops-session"] = bytes(ops)
    ops = bytearray([0x81, 0, 7])
    ops += bytes([5, 0, 0, 100]) + x0[:100]
    ops += bytes([0x42, 2, 3, 0, 0]) + (200 + 8).to_bytes(2, "little") + chunk(0, 100, x0[100:]) \
        + bytes([30, 0, 0, 0x40])                        # a damaged chunk (16-bit length)
    ops += bytes([3])                                    # receive timeout
    ops += bytes([5, 0, 100, 200]) + x0[100:]
    ops += bytes([5, 1, 0, 40]) + x1 + bytes([6, 1])
    ops += bytes([1, 0x42, 9, 0, 1, 0])                  # unknown type, session 0
    ops += bytes([4, 0x0C])                              # reboot with NULL buffers
    ops += bytes([7, 5, 1, 0, 40]) + x1
    s["ops-damage-timeout-reboot"] = bytes(ops)
    ops = bytearray([0x8F, 0x30, 7, 5, 0, 0, 200]) + x0[:200] + bytes([6, 0, 4, 0x13, 7, 6, 0])
    s["ops-bad-model-description"] = bytes(ops)
    return s


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (out / name).write_bytes(data)
    print(f"wrote {len(seeds())} seeds to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "corpus")
