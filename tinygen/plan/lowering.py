"""Lowering of IR operators to calls of tinygen's C kernels (the aot runtime).

Every kernel follows one convention (in the spirit of CMSIS-NN's argument
structs): a `const tg_<kernel>_params *` that holds every shape, quantization
constant and constant-tensor pointer resolved at build time, followed by the
activation buffers:

    void tg_<kernel>(const tg_<kernel>_params *p, const int8_t *in0, ..., int8_t *out0, ...);

A lowering function turns one IR operator into a KernelCall; the aot backend
prints the params struct, the constant arrays and the call in order.  Decisions
(multipliers, shifts, padding offsets, layouts) are made here in Python, so the
template only prints them.

Call convention, as the aot backend (tinygen/codegen/aot.py) prints it:
  * every tensor in `inputs`/`outputs` is passed as a pointer whose C type
    follows the tensor's dtype (`const int8_t *` for an int8 input, `float *`
    for a float32 output, ...).  An activation points into the static arena;
    a *constant* tensor listed in `inputs` is baked into flash by the backend
    (`tg_const_t<index>`) and passed the same way;
  * when `scratch_bytes > 0`, one more argument follows the outputs:
    `void *scratch`, 16-byte aligned, valid only during the call;
  * `sources` names files under firmware_templates/aot/kernels; the backend
    copies them (and the headers they include, transitively) and model.c
    includes every listed header and every header a listed .c includes.

Interface notes (backward compatible additions, newest last):
  * KernelCall.view: the output is the first input's bytes unchanged
    (RESHAPE/SQUEEZE/EXPAND_DIMS).  The planner gives both one buffer and
    the backend emits no call when it could.
  * quantize_multiplier no longer clamps shifts above 30 (that clamp exists
    only in TFLite's single-rounding build; TFLM uses double rounding) and
    raises LoweringError for multipliers >= 2^30 instead.
  * activation_range_int8 computes in float32 like TFLite's Quantize().
  * KernelCall.fallback: an equivalent call that needs no scratch memory.  The
    backend uses it instead when the primary call's scratch would make the
    arena larger (RAM first; speed when it is free).  A FULLY_CONNECTED with
    16-bit weights carries its int8 call there too, the layout plan/fuse.py
    streams a producer into.
  * KernelCall.overlap: raster-order kernels whose output may start inside
    their input (replaces an attribute that conv lowerings set on the fly).
  * quantize_multiplier(limit_shift=False) for multipliers whose shift is not
    applied by MultiplyByQuantizedMultiplier (softmax's input scaling).
  * KernelCall.state_bytes: memory a kernel keeps from one invoke to the next
    (the signal library's noise estimate).  The backend declares it as a static
    array, zeroes it on reset and passes `void *state` after the outputs
    (before the scratch).
  * KernelCall.fused / absorbed_by: one call doing several operators' work
    (a producer streamed into a FULLY_CONNECTED, plan/fuse.py); the planner
    sees only the fused call's inputs and outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..ir import Model, Operator


class LoweringError(ValueError):
    """An operator (or one of its settings) the aot runtime does not implement."""


@dataclass
class ConstArray:
    """A constant baked into flash: `static const <ctype> <name>[] = {...};`"""
    name: str
    ctype: str                   # "int8_t", "int32_t", "int16_t", "uint8_t", "float"
    values: np.ndarray           # 1-D, already in the layout the kernel expects
    align: int = 4
    is_weight: bool = True       # counted as model weights (vs. small kernel tables)


@dataclass
class KernelCall:
    kernel: str                  # C function name, e.g. "tg_conv2d_s8"
    params_type: str             # e.g. "tg_conv2d_params"
    params: dict[str, str]       # designated-initializer fields -> C expressions
    inputs: list[int]            # activation tensor indices passed as arguments, in order
    outputs: list[int]
    sources: list[str]           # kernel source files (relative to firmware_templates/aot/kernels)
    constants: list[ConstArray] = field(default_factory=list)
    scratch_bytes: int = 0       # kernel scratch placed in the arena by the planner
    in_place: bool = False       # output may share the first input's buffer
    comment: str = ""
    view: bool = False           # output == first input's bytes (reshape-like): share the buffer
    fallback: "KernelCall | None" = None  # same result without scratch; used if scratch grows the arena
    # raster-order kernels: output 0 may start at most this many bytes after input 0
    # starts (aot_ops.conv.raster_overlap); None: the two must not share bytes
    overlap: int | None = None
    state_bytes: int = 0         # kept across invokes, zeroed by reset: `void *state`
    # operator fusion (plan/fuse.py): `fused` lists the earlier operators whose
    # work this call does (their intermediate tensors are never stored); each of
    # those gets a call with `absorbed_by` = this call's operator and no code
    fused: tuple[int, ...] = ()
    absorbed_by: int | None = None


class LoweringContext:
    """What a lowering function may ask of the backend."""

    def __init__(self, model: Model, prefix: str = "op", dsp: bool = False,
                 fast_requant: bool = True, wide_weights: bool = True):
        self.model = model
        self.prefix = prefix
        self.dsp = dsp                    # the core has the DSP extension: dsp kernel family
        self.fast_requant = fast_requant  # dsp kernels: tg_rq_fast where proven exact
        # dsp convolutions and FCs may store their weights as 16-bit lanes (twice the
        # flash); False where the board's flash cannot hold that (plan.aot)
        self.wide_weights = wide_weights

    def name(self, op: Operator, what: str) -> str:
        return f"{self.prefix}{op.index}_{what}"


Lowering = Callable[[Operator, LoweringContext], KernelCall]
_LOWERINGS: dict[str, Lowering] = {}


def lowers(*opcodes: str):
    """Register a lowering function for one or more IR opcodes."""
    def register(fn: Lowering) -> Lowering:
        for code in opcodes:
            if code in _LOWERINGS:
                raise RuntimeError(f"two lowerings registered for {code}")
            _LOWERINGS[code] = fn
        return fn
    return register


def registered_lowering(opcode: str) -> Lowering | None:
    """The lowering registered for an opcode (tinygen.plan.ops registers them all)."""
    return _LOWERINGS.get(opcode)


def registered_opcodes() -> set[str]:
    return set(_LOWERINGS)


# ---------------------------------------------------------------------------
# Quantization arithmetic shared by the lowerings (mirrors TFLM's helpers).

def quantize_multiplier(real_multiplier: float, limit_shift: bool = True) -> tuple[int, int]:
    """Q31 fixed-point multiplier and power-of-two shift, as TFLite's
    QuantizeMultiplier computes them (frexp, round half away from zero), in
    the default double-rounding build that TFLM uses.

    real_multiplier ~= multiplier * 2^(shift - 31); multipliers below 2^-31
    flush to (0, 0) as in TFLite.  limit_shift refuses shifts above 30, which
    MultiplyByQuantizedMultiplier cannot apply; softmax's input scaling uses
    its shift otherwise and passes False."""
    if real_multiplier == 0.0:
        return 0, 0
    if not math.isfinite(real_multiplier) or real_multiplier < 0:
        raise LoweringError(f"invalid requantization multiplier {real_multiplier!r}")
    mantissa, shift = math.frexp(real_multiplier)
    q = int(round_half_away(mantissa * (1 << 31)))
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if limit_shift and shift > 30:
        raise LoweringError(f"requantization multiplier {real_multiplier!r} is too large "
                            "(scales are inconsistent)")
    return q, shift


def round_half_away(x: float) -> float:
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


ACTIVATION_RANGES = {"NONE", "RELU", "RELU6", "RELU_N1_TO_1"}


def activation_range_int8(activation: str, scale: float, zero_point: int,
                          qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """Clamp range for a fused activation on a quantized output (TFLite's
    CalculateActivationRangeQuantized: round(f / scale) in float32)."""
    def q(v: float) -> int:
        tmp = np.float32(v) / np.float32(scale)
        if not np.isfinite(tmp) or abs(float(tmp)) >= 2.0 ** 31:
            raise LoweringError(f"output scale {scale!r} cannot represent {v}")
        return int(zero_point) + int(round_half_away(float(tmp)))
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    # TFLM's CalculateActivationRangeQuantized clamps for the three above and
    # silently applies nothing for TANH, SIGN_BIT, ...: copying that would
    # drop an activation the model asks for.
    raise LoweringError(f"fused_activation_function {activation} is not supported on a "
                        "quantized output (TFLM's int8 kernels skip it without applying it)")


def c_array_literal(values: np.ndarray, per_line: int = 16) -> str:
    flat = np.asarray(values).reshape(-1)
    if flat.dtype.kind == "f":
        items = [repr(float(v)) + "f" for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return ",\n  ".join(lines)
