"""Models for the model-update tests and benchmark.

`retrained(tflite, fraction, seed)`: the same .tflite with a fraction of its
int8 weights moved by +-1..3 LSB and its int32 biases by a few LSB, every
scale and zero point unchanged: what a fine-tune with frozen quantization
parameters (the weights move, the graph and the activation ranges do not)
gives.  Only weights change, so an updatable aot firmware accepts it.
"""

from __future__ import annotations

import numpy as np

from tinygen.ir import parse_tflite


def retrained(tflite: bytes, fraction: float = 0.2, seed: int = 0) -> bytes:
    ir = parse_tflite(tflite)
    rng = np.random.default_rng(seed)
    out = bytearray(tflite)
    consumers = {i for op in ir.operators for i in op.inputs[1:]}
    for t in ir.tensors:
        if not t.is_constant or t.index not in consumers or t.data is None or t.data.size < 4:
            continue
        raw = np.ascontiguousarray(t.data).tobytes()
        at = out.find(raw)
        if at < 0 or out.find(raw, at + 1) >= 0:
            continue                  # not unambiguous in the file: leave it
        values = t.data.reshape(-1).copy()
        pick = rng.random(values.size) < fraction
        if t.dtype == "int8":
            step = rng.integers(-3, 4, values.size)
            values[pick] = np.clip(values[pick].astype(np.int32) + step[pick], -127, 127)
        elif t.dtype == "int32":
            values[pick] = values[pick] + rng.integers(-20, 21, int(pick.sum()))
        else:
            continue
        out[at:at + len(raw)] = values.astype(t.data.dtype).tobytes()
    return bytes(out)
