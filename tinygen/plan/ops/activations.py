"""SOFTMAX, LOGISTIC, TANH, RELU, RELU6, LEAKY_RELU and HARD_SWISH."""

from __future__ import annotations

import math

import numpy as np

from ...ir import Operator, Tensor
from ..fixedpoint import sigmoid_table
from ..lowering import (
    ConstArray,
    KernelCall,
    LoweringContext,
    LoweringError,
    lowers,
    quantize_multiplier,
    round_half_away,
)
from ._elementwise_base import _SRC_ACT, _SRC_SOFTMAX, _input_radius, _need_dtype, _need_quant, _prod, _tensor

# ---------------------------------------------------------------------------
# SOFTMAX

SOFTMAX_DIFF_INTEGER_BITS = 5


def softmax_params(input_scale: float, beta: float) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling + CalculateInputRadius (double rounding)."""
    real = min(float(beta) * float(np.float32(input_scale))
               * float(1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)), float((1 << 31) - 1))
    if not real > 1.0:
        raise LoweringError(f"softmax: beta * input_scale = {beta * input_scale!r} is too small "
                            "(TFLM rejects it)")
    # the shift is a left shift of the input difference here, up to 31
    m, shift = quantize_multiplier(real, limit_shift=False)
    diff_min = -_input_radius(SOFTMAX_DIFF_INTEGER_BITS, shift)
    return m, shift, diff_min


@lowers("SOFTMAX")
def lower_softmax(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y = _tensor(op, ctx, 0), _tensor(op, ctx, 0, "out")
    _need_dtype(op, x, "int8")
    _need_dtype(op, y, "int8", "int16")
    _need_quant(op, x, y)
    if not x.shape:
        raise LoweringError(f"{op.describe()}: softmax of a scalar")
    if y.dtype == "int8":
        if y.zero_point != -128 or np.float32(y.scale) != np.float32(1.0 / 256):
            raise LoweringError(f"{op.describe()}: int8 softmax output must have scale 1/256 and "
                                f"zero point -128 (has {y.scale}, {y.zero_point})")
        kernel = "tg_softmax_s8"
    else:
        if y.zero_point != -32768 or abs(float(y.scale) - 1.0 / 65536) > 0.001 / 65536:
            raise LoweringError(f"{op.describe()}: int16 softmax output must have scale 1/65536 "
                                f"and zero point -32768")
        kernel = "tg_softmax_s8_s16"
    beta = float(op.options.get("beta", 1.0))
    m, shift, diff_min = softmax_params(x.scale, beta)
    depth = int(x.shape[-1])
    outer = _prod(x.shape[:-1])
    return KernelCall(
        kernel=kernel, params_type="tg_softmax_s8_params",
        params={"outer": str(outer), "depth": str(depth), "input_multiplier": str(m),
                "input_left_shift": str(shift), "diff_min": str(diff_min)},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_SOFTMAX],
        in_place=(y.dtype == "int8"),
        comment=f"SOFTMAX {list(x.shape)} beta={beta}")


# ---------------------------------------------------------------------------
# LOGISTIC / TANH

SIGMOID_INPUT_INTEGER_BITS = 4


def sigmoid_params(input_scale: float) -> tuple[int, int, int]:
    """TFLM's int8 LOGISTIC/TANH Prepare: frexp of scale * 2^27 (no
    renormalisation of a rounded-up significand), and the saturation radius."""
    real = float(np.float32(input_scale)) * float(1 << (31 - SIGMOID_INPUT_INTEGER_BITS))
    q, shift = math.frexp(real)
    mult = int(round_half_away(q * (1 << 31)))
    if mult >= (1 << 31):
        raise LoweringError(f"input scale {input_scale!r} gives an unrepresentable multiplier")
    radius = _input_radius(SIGMOID_INPUT_INTEGER_BITS, shift, 31)
    return mult, shift, radius


def _sigmoid_like(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y = _tensor(op, ctx, 0), _tensor(op, ctx, 0, "out")
    _need_dtype(op, x, "int8")
    _need_dtype(op, y, "int8")
    _need_quant(op, x, y)
    if op.opcode == "LOGISTIC" and y.zero_point != -128:
        raise LoweringError(f"{op.describe()}: int8 LOGISTIC output zero point must be -128")
    m, shift, radius = sigmoid_params(x.scale)
    # the whole function: one output code per input code (plan/fixedpoint.py)
    table = np.array(sigmoid_table(op.opcode, x.zero_point, radius, m, shift), np.int8)
    name = ctx.name(op, "lut")
    return KernelCall(
        kernel="tg_lut_s8", params_type="tg_lut_s8_params",
        params={"size": str(x.num_elements), "table": name},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_ACT], in_place=True,
        constants=[ConstArray(name, "int8_t", table, align=4, is_weight=False)],
        comment=f"{op.opcode} {list(x.shape)} [table]")


@lowers("LOGISTIC")
def lower_logistic(op: Operator, ctx: LoweringContext) -> KernelCall:
    return _sigmoid_like(op, ctx)


@lowers("TANH")
def lower_tanh(op: Operator, ctx: LoweringContext) -> KernelCall:
    return _sigmoid_like(op, ctx)


# ---------------------------------------------------------------------------
# RELU / RELU6 / LEAKY_RELU / HARD_SWISH

_SRC_RELU = "tg_relu.c"


def _unary_int8(op: Operator, ctx: LoweringContext) -> tuple[Tensor, Tensor]:
    x, y = _tensor(op, ctx, 0), _tensor(op, ctx, 0, "out")
    _need_dtype(op, x, "int8")
    _need_dtype(op, y, "int8")
    _need_quant(op, x, y)
    return x, y


def _f32_round(v) -> int:
    return int(round_half_away(float(v)))


@lowers("RELU")
def lower_relu(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y = _unary_int8(op, ctx)
    m, s = quantize_multiplier(float(np.float32(x.scale)) / float(np.float32(y.scale)))
    act_min = max(-128, y.zero_point + _f32_round(np.float32(0.0) / np.float32(y.scale)))
    return KernelCall(
        kernel="tg_relu_s8", params_type="tg_relu_s8_params",
        params={"size": str(x.num_elements), "input_zero_point": str(x.zero_point),
                "output_zero_point": str(y.zero_point), "multiplier": str(m), "shift": str(s),
                "act_min": str(act_min), "act_max": "127"},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_RELU], in_place=True,
        comment=f"RELU {list(x.shape)}")


@lowers("RELU6")
def lower_relu6(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y = _unary_int8(op, ctx)
    # TFLM clamps in the input's quantization and ignores the output's
    six = _f32_round(np.float32(6.0) / np.float32(x.scale)) + x.zero_point
    six = min(127, max(-128, six))
    return KernelCall(
        kernel="tg_clamp_s8", params_type="tg_clamp_s8_params",
        params={"size": str(x.num_elements), "lo": str(x.zero_point), "hi": str(six)},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_RELU], in_place=True,
        comment=f"RELU6 {list(x.shape)}")


@lowers("LEAKY_RELU")
def lower_leaky_relu(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y = _unary_int8(op, ctx)
    alpha = float(np.float32(op.options.get("alpha", 0.0)))
    # TFLM computes both multipliers in double from the float32 scales and alpha.
    sx, sy = float(np.float32(x.scale)), float(np.float32(y.scale))
    ma, sa = quantize_multiplier(abs(sx * alpha / sy))
    mi, si = quantize_multiplier(sx / sy)
    return KernelCall(
        kernel="tg_leaky_relu_s8", params_type="tg_leaky_relu_s8_params",
        params={"size": str(x.num_elements), "input_zero_point": str(x.zero_point),
                "output_zero_point": str(y.zero_point),
                "multiplier_identity": str(mi), "shift_identity": str(si),
                "multiplier_alpha": str(ma), "shift_alpha": str(sa),
                "alpha_negative": "1" if alpha < 0 else "0"},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_RELU], in_place=True,
        comment=f"LEAKY_RELU alpha={float(alpha)} {list(x.shape)}")


def _downscale_to_int16(m: int) -> int:
    """tflite::DownScaleInt32ToInt16Multiplier."""
    if m >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (m + (1 << 15)) >> 16


@lowers("HARD_SWISH")
def lower_hard_swish(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y = _unary_int8(op, ctx)
    hires = np.float32(1.0 / 128.0) * np.float32(x.scale)
    reluish_scale = np.float32(3.0) / np.float32(32768.0)
    om, oe = quantize_multiplier(float(np.float32(hires / np.float32(y.scale))))
    if oe > 0:
        raise LoweringError(f"{op.describe()}: output scale too small for the input scale "
                            "(TFLM rejects it)")
    rm, re_ = quantize_multiplier(float(np.float32(hires / reluish_scale)))
    return KernelCall(
        kernel="tg_hard_swish_s8", params_type="tg_hard_swish_s8_params",
        params={"size": str(x.num_elements), "input_zero_point": str(x.zero_point),
                "output_zero_point": str(y.zero_point),
                "output_multiplier_fixedpoint_int16": str(_downscale_to_int16(om)),
                "output_multiplier_exponent": str(oe),
                "reluish_multiplier_fixedpoint_int16": str(_downscale_to_int16(rm)),
                "reluish_multiplier_exponent": str(re_)},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_RELU], in_place=True,
        comment=f"HARD_SWISH {list(x.shape)}")
