#!/usr/bin/env python3
"""Derive the int16 logistic table of tg_lstm.c from the reference interpreter.

The aot LSTM kernel (firmware_templates/aot/kernels/tg_lstm.c) must agree bit
for bit with the reference interpreter's int16 LOGISTIC and TANH, which
interpolate a 256-entry table L[0..255] of the logistic function (one entry
every 1/24 of the argument, in units of 1/65536).  The table's values are not
reproduced by any simple rounding of 65536 / (1 + exp(-k/24)), so instead of
computing them this script *measures* them: it builds single-operator int16
models, runs them on the tflite_micro Python interpreter and reads the
entries back from the outputs.  Nothing is taken from the reference's source.

The arithmetic (the kernel model, as implemented by tg_lstm_tanh in
tg_lstm.c and described in docs/aot-lstm.md)
------------------------------------------------------------------------
An int16 TANH input v with scale S is first put on the table's grid,
x ~= v * S * 12288 (Q3.12, S = 2^-12, gives x = 3v: 24 table steps per unit
at 8 fractional bits, tanh(a) = 2 logistic(2a) - 1).  With
k = |x| >> 8 and t = |x| & 255, for x >= 0 and k < 255:

    r = 256 * L[k] + t * (L[k+1] - L[k])
    y = (r - 2^23 + 128) >> 8                              (int16 output)

At a grid point (t = 0) this is y = (256 L[k] - 2^23 + 128) >> 8 = L[k] - 32768
exactly (128 < 256 never carries), so every entry the index can reach,
L[0..254], is read off one output without any rounding loss:

    L[k] = y(x = 256 k) + 32768.

L[255] is never an index (k >= 255 saturates); it only enters as the upper
end of the last interval, so it is solved from the points 0 < t < 256 of
k = 254:  y - (L[254] - 32768) = (t * (L[255] - L[254]) + 128) >> 8.

The probe scale is float32(1/6144): 12288 * S is then 2 (float32(1/3) rounds
up, so the rescaling multiplier is exactly 2^14 at shift 13 rather than one
below it) and x = 2v, which puts v = 128 k exactly on grid point k for every
k <= 255 within the int16 range.  A second probe at float32(1/12288) (x = v)
reads L[0..127] again, independently.

Why TANH and not LOGISTIC alone: LOGISTIC interpolates at 9 fractional bits
and keeps 15 of the 25 result bits, y = (512 L[k] + t d + 512) >> 10 for
x >= 0, so a grid point only gives (L[k] + 1) >> 1.  Where the table is flat
(L[k] = L[k+1], the tail near 65534) no input can tell 2m from 2m - 1: with
d = 0 the interpolation carries no information.  TANH's output keeps the
table's full 16 bits, so it is used for the derivation, and LOGISTIC (like
TANH at other scales) is used to check the result on every int16 input.

Checks (derive_table() runs them all and raises on any failure)
---------------------------------------------------------------
* uniqueness: for each entry, every candidate value 0..65535 is put through
  the kernel model at the probed points; exactly one candidate must
  reproduce the observed outputs;
* the two probe scales agree on L[0..127];
* replay: with the derived table, the kernel model reproduces the reference
  on all 65536 int16 inputs of TANH at S = 2^-12, 2^-11, 1/6144, 1/12288 and
  of LOGISTIC at S = 2^-12 (x = 3v) and 1/3072 (x = 4v) -- which also
  confirms the input mapping assumed above.

Usage:
    python3 tools/derive_sigmoid_lut.py            # print the table as C
    python3 tools/derive_sigmoid_lut.py --write    # regenerate the header
    python3 tools/derive_sigmoid_lut.py --check    # compare with the header
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import flatbuffers
import numpy as np

REPO = Path(__file__).resolve().parents[1]
HEADER = REPO / "firmware_templates" / "aot" / "kernels" / "tg_lstm_sigmoid_lut.h"
MACRO = "TG_LSTM_SIGMOID_LUT_VALUES"
N_ENTRIES = 256
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int64)
OUT_SCALE = 2.0 ** -15


# ---------------------------------------------------------------------------
# single-op int16 models, run on the reference interpreter

def activation_model(opcode: str, input_scale: float, n: int = 65536) -> bytes:
    """A .tflite with one int16 LOGISTIC or TANH on a [n] tensor, symmetric
    quantization (zero point 0), output scale 2^-15."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    def tensor(name: str, scale: float, buffer: int):
        t = schema.TensorT()
        t.shape = [n]
        t.type = schema.TensorType.INT16
        t.name = name
        t.buffer = buffer
        q = schema.QuantizationParametersT()
        q.scale = [float(np.float32(scale))]
        q.zeroPoint = [0]
        t.quantization = q
        return t

    code = getattr(schema.BuiltinOperator, opcode)
    oc = schema.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = 1
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = [0]
    op.outputs = [1]
    sg = schema.SubGraphT()
    sg.tensors = [tensor("x", input_scale, 1), tensor("y", OUT_SCALE, 2)]
    sg.operators = [op]
    sg.inputs = [0]
    sg.outputs = [1]
    sg.name = "main"
    m = schema.ModelT()
    m.version = 3
    m.description = f"tinygen sigmoid table probe: int16 {opcode}"
    m.buffers = [schema.BufferT() for _ in range(3)]
    m.operatorCodes = [oc]
    m.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run_reference(opcode: str, input_scale: float, inputs: np.ndarray = ALL_INT16) -> np.ndarray:
    """The reference interpreter's int16 outputs for the given int16 inputs."""
    from tflite_micro.python.tflite_micro import runtime

    inputs = np.asarray(inputs, dtype=np.int16).reshape(-1)
    interp = runtime.Interpreter.from_bytes(activation_model(opcode, input_scale, inputs.size),
                                            arena_size=8 * inputs.size + 64 * 1024)
    interp.set_input(inputs, 0)
    interp.invoke()
    return np.array(interp.get_output(0)).reshape(-1).astype(np.int64)


# ---------------------------------------------------------------------------
# the kernel model (tg_lstm_tanh / tg_lstm_sigmoid), vectorised, int64

def _interp(table: np.ndarray, ax: np.ndarray, frac_bits: int) -> np.ndarray:
    """L[k] << b + t * (L[k+1] - L[k]) for k = ax >> b < 255; other lanes 0."""
    k = ax >> frac_bits
    kk = np.minimum(k, N_ENTRIES - 2)
    lo, hi = table[kk], table[kk + 1]
    return (lo << frac_bits) + (ax & ((1 << frac_bits) - 1)) * (hi - lo)


def tanh_model(table, x: np.ndarray) -> np.ndarray:
    """int16 tanh of grid inputs x (24 steps per unit, 8 fractional bits)."""
    table = np.asarray(table, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    ax = np.abs(x)
    r = np.where(ax >> 8 >= N_ENTRIES - 1, 0xFFFF << 8, _interp(table, ax, 8))
    r = np.where(x >= 0, r - (1 << 23) + (1 << 7), (1 << 23) - r + (1 << 7) - 1)
    return r >> 8


def sigmoid_model(table, x: np.ndarray) -> np.ndarray:
    """int16 logistic of grid inputs x (24 steps per unit, 9 fractional bits)."""
    table = np.asarray(table, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    ax = np.abs(x)
    r = np.where(ax >> 9 >= N_ENTRIES - 1, 0x7FFF << 10, _interp(table, ax, 9))
    r = np.where(x >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1)
    return r >> 10


# (opcode, input scale, grid input x as a function of the int16 input v)
PROBE = ("TANH", 1.0 / 6144.0, 2)            # x = 2v: every entry, t = 0 at v = 128 k
SECOND_PROBE = ("TANH", 1.0 / 12288.0, 1)    # x = v: L[0..127] again
REPLAYS = [("TANH", 2.0 ** -12, 3), ("TANH", 2.0 ** -11, 6), PROBE, SECOND_PROBE,
           ("LOGISTIC", 2.0 ** -12, 3), ("LOGISTIC", 1.0 / 3072.0, 4)]


def _read_grid(outputs: np.ndarray, step: int) -> dict[int, int]:
    """Entries read at the grid points x = 256 k (t = 0) of a probe with x = step * v,
    each checked to be the only candidate that explains its output."""
    candidates = np.arange(65536, dtype=np.int64)
    found = {}
    for k in range(N_ENTRIES - 1):
        if (256 * k) % step or 256 * k // step > 32767:
            continue
        y = outputs[256 * k // step + 32768]
        # at t = 0 the upper neighbour drops out: r = 256 L[k]
        fit = candidates[((candidates << 8) - (1 << 23) + (1 << 7)) >> 8 == y]
        if fit.size != 1:
            raise AssertionError(f"L[{k}]: {fit.size} table values explain y = {y}")
        # and the same through the full kernel model
        assert tanh_model(np.r_[np.zeros(k, np.int64), fit, [0]], [256 * k])[0] == y
        found[k] = int(fit[0])
    return found


def _solve_last(outputs: np.ndarray, step: int, below: int) -> int:
    """L[255] from the points 0 < t < 256 of the last interval (k = 254)."""
    xs = np.array([x for x in range(254 * 256 + 1, 255 * 256) if x % step == 0], np.int64)
    ys = outputs[xs // step + 32768]
    cand = np.arange(65536, dtype=np.int64)[:, None]
    pred = ((below << 8) + (xs[None, :] & 0xFF) * (cand - below) - (1 << 23) + (1 << 7)) >> 8
    fit = np.flatnonzero((pred == ys[None, :]).all(axis=1))
    if fit.size != 1:
        raise AssertionError(f"L[255]: {fit.size} table values explain the last interval")
    return int(fit[0])


def derive_table(verbose: bool = False) -> list[int]:
    """The 256 entries, measured on the reference interpreter and checked."""
    def say(msg):
        if verbose:
            print(msg, file=sys.stderr)

    opcode, scale, step = PROBE
    outputs = run_reference(opcode, scale)
    grid = _read_grid(outputs, step)
    assert sorted(grid) == list(range(N_ENTRIES - 1)), sorted(set(range(255)) - set(grid))
    table = [grid[k] for k in range(N_ENTRIES - 1)]
    table.append(_solve_last(outputs, step, table[-1]))
    say(f"probe {opcode} S=1/{1 / scale:g}: L[0..254] at t = 0, L[255] from 127 points "
        "of the last interval, each the only candidate of 65536")

    opcode, scale, step = SECOND_PROBE
    again = _read_grid(run_reference(opcode, scale), step)
    mismatch = [k for k, val in again.items() if table[k] != val]
    if mismatch:
        raise AssertionError(f"the second probe disagrees on entries {mismatch}")
    say(f"probe {opcode} S=1/{1 / scale:g}: L[0..{max(again)}] agree")

    for opcode, scale, step in REPLAYS:
        ref = run_reference(opcode, scale)
        model = (tanh_model if opcode == "TANH" else sigmoid_model)(table, step * ALL_INT16)
        bad = np.flatnonzero(ref != model)
        if bad.size:
            raise AssertionError(f"replay {opcode} S={scale:g}: {bad.size} inputs differ, "
                                 f"first v = {int(ALL_INT16[bad[0]])}")
        say(f"replay {opcode} S={scale:g} (x = {step}v): all 65536 inputs match")
    return table


# ---------------------------------------------------------------------------
# C output

def c_values(table, per_line: int = 12, indent: str = "  ") -> list[str]:
    rows = [", ".join(str(v) for v in table[i:i + per_line])
            for i in range(0, len(table), per_line)]
    return [indent + r + ("," if i < len(rows) - 1 else "") for i, r in enumerate(rows)]


MIRROR_MACRO = "TG_LSTM_SIGMOID_MIRROR_VALUES"
MIRROR_HALF = 384        # the mirrored table's indices: -MIRROR_HALF .. MIRROR_HALF


def mirror_table(table) -> list[int]:
    """The same table for tg_lstm_dsp_s8, indexed by the signed x >> b instead
    of |x| >> b: M[j] = L[j] - 2^15 for j >= 0 (65535 - 2^15 past the last
    entry, TFLM's saturation) and 2^15 - L[-j] for j < 0, so that the
    interpolation at a negative x is already 1 - logistic(|x|) (see
    tg_lstm.c)."""
    ext = list(table) + [0xFFFF] * (MIRROR_HALF + 1 - len(table))
    return [(1 << 15) - ext[-j] for j in range(-MIRROR_HALF, 0)] + \
           [ext[j] - (1 << 15) for j in range(MIRROR_HALF + 1)]


def render_header(table) -> str:
    assert len(table) == N_ENTRIES and all(0 <= v <= 0xFFFF for v in table)
    body = " \\\n".join(c_values(table))
    mirror = " \\\n".join(c_values(mirror_table(table)))
    return f"""\
/* The int16 logistic table of tg_lstm.c: L[k] ~ 65536 * logistic(k / 24).
 *
 * Generated -- do not edit.  Derived by tools/derive_sigmoid_lut.py by
 * probing the reference interpreter's int16 LOGISTIC/TANH (the tflite_micro
 * Python package): every entry is read back from the outputs of single-op
 * int16 TANH models at inputs that fall exactly on the table's grid, checked
 * to be the only value explaining them, and the whole table is replayed
 * against LOGISTIC and TANH on all 65536 int16 inputs.  Regenerate with
 *   python3 tools/derive_sigmoid_lut.py --write
 *
 * A list of initialisers rather than an array, so that files which include
 * it without using it (model.c includes every kernel's local headers) get
 * no unused definition.
 */
#ifndef TG_LSTM_SIGMOID_LUT_H
#define TG_LSTM_SIGMOID_LUT_H

#define {MACRO} \\
{body}

/* The table mirrored and offset by -2^15 for tg_lstm_dsp_s8: entries
 * -{MIRROR_HALF}..{MIRROR_HALF} (mirror_table() in the script). */
#define TG_LSTM_SIGMOID_MIRROR_HALF {MIRROR_HALF}
#define {MIRROR_MACRO} \\
{mirror}

#endif /* TG_LSTM_SIGMOID_LUT_H */
"""


def read_header_table(path: Path = HEADER) -> list[int]:
    text = path.read_text()
    m = re.search(rf"#define\s+{MACRO}\s*\\\n((?:[^\n]*\\\n)*[^\n]*)", text)
    if not m:
        raise ValueError(f"{path}: no {MACRO}")
    return [int(v) for v in re.findall(r"\d+", m.group(1))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help=f"regenerate {HEADER.name}")
    ap.add_argument("--check", action="store_true", help=f"compare with {HEADER.name}")
    args = ap.parse_args(argv)
    table = derive_table(verbose=True)
    if args.write:
        HEADER.write_text(render_header(table))
        print(f"wrote {HEADER.relative_to(REPO)}", file=sys.stderr)
    elif args.check:
        if read_header_table() != table:
            print(f"{HEADER.relative_to(REPO)} differs from the derived table", file=sys.stderr)
            return 1
        print(f"{HEADER.relative_to(REPO)} matches", file=sys.stderr)
    else:
        print("static const uint16_t tg_lstm_sigmoid_lut[256] = {")
        print("\n".join(c_values(table)))
        print("};")
    return 0


if __name__ == "__main__":
    sys.exit(main())
