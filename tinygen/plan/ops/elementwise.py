"""Lowerings of the element-wise, activation, reduction and data-movement
operators onto the kernels of firmware_templates/aot/kernels/tg_elementwise.h.

Every multiplier, shift, radius and clamp is computed here exactly as TFLM's
Prepare functions compute them (double-precision arithmetic on the float32
quantization parameters, TFLite's QuantizeMultiplier), so the kernels' integer
arithmetic reproduces the TFLM interpreter bit for bit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ...ir import Operator, Tensor
from ..c_literals import c_float, c_ints
from ..lowering import (
    KernelCall,
    LoweringContext,
    LoweringError,
    activation_range_int8,
    lowers,
    quantize_multiplier,
    round_half_away,
)

MAX_DIMS = 6          # TG_EW_MAX_DIMS
ADD_TABLE_BYTES = 2 * 256 * 4       # TG_ADD_TABLE_BYTES
# building the tables costs about as much as rescaling 512 elements directly
ADD_TABLE_MIN_ELEMENTS = 2048
MAX_CONCAT_INPUTS = 10

_SRC_ADD_MUL = "tg_add_mul.c"
_SRC_SOFTMAX = "tg_softmax.c"
_SRC_ACT = "tg_activations.c"
_SRC_MEAN = "tg_mean.c"
_SRC_CONCAT_PAD = "tg_concat_pad.c"
_SRC_QUANT = "tg_quantize.c"

_QRANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}


# ---------------------------------------------------------------------------
# TFLite's quantization arithmetic, as the TFLM interpreter (built without
# TFLITE_SINGLE_ROUNDING) runs it.

def _qm_smaller_than_one(real: float, what: str) -> tuple[int, int]:
    if not 0.0 < real < 1.0:
        raise LoweringError(f"{what}: rescale factor {real!r} must be in (0, 1) "
                            "(TFLM rejects these quantization parameters)")
    m, s = quantize_multiplier(real)
    return m, s


def _input_radius(integer_bits: int, left_shift: int, total_signed_bits: int = 31) -> int:
    """tflite::CalculateInputRadius."""
    max_rescaled = (1.0 * ((1 << integer_bits) - 1) * float(1 << (total_signed_bits - integer_bits))
                    / float(1 << left_shift) if left_shift >= 0 else
                    1.0 * ((1 << integer_bits) - 1) * float(1 << (total_signed_bits - integer_bits))
                    * float(1 << -left_shift))
    return int(math.floor(max_rescaled))


def _act_range(activation: str, t: Tensor) -> tuple[int, int]:
    return activation_range_int8(activation, t.scale, t.zero_point, *_QRANGE[t.dtype])


# ---------------------------------------------------------------------------
# small helpers





def _tensor(op: Operator, ctx: LoweringContext, k: int, io: str = "in") -> Tensor:
    idx = (op.inputs if io == "in" else op.outputs)[k]
    if idx < 0:
        raise LoweringError(f"{op.describe()}: {io}put {k} is missing")
    return ctx.model.tensors[idx]


def _need_quant(op: Operator, *ts: Tensor) -> None:
    for t in ts:
        if t.quant is None or len(t.quant.scale) != 1:
            raise LoweringError(f"{op.describe()}: tensor '{t.name}' needs per-tensor quantization")


def _need_dtype(op: Operator, t: Tensor, *dtypes: str) -> None:
    if t.dtype not in dtypes:
        raise LoweringError(f"{op.describe()}: tensor '{t.name}' is {t.dtype}; "
                            f"the aot kernel takes {' or '.join(dtypes)}")


def _activation_io(op: Operator, ctx: LoweringContext) -> tuple[list[int], list[int]]:
    return [i for i in op.inputs if i >= 0], list(op.outputs)


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _row_major_strides(shape) -> list[int]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= int(d)
    return list(reversed(strides))


def broadcast_plan(shape1, shape2, out_shape) -> tuple[list[int], list[int], list[int]]:
    """Iteration space of a broadcasting binary op: (dims, stride1, stride2),
    with size-1 dimensions dropped and mergeable neighbours merged."""
    rank = len(out_shape)
    s1 = [1] * (rank - len(shape1)) + [int(d) for d in shape1]
    s2 = [1] * (rank - len(shape2)) + [int(d) for d in shape2]
    out = [int(d) for d in out_shape]
    if len(s1) != rank or len(s2) != rank:
        raise LoweringError(f"shapes {list(shape1)} and {list(shape2)} do not broadcast to "
                            f"{list(out_shape)}")
    n1, n2 = _row_major_strides(s1), _row_major_strides(s2)
    dims, st1, st2 = [], [], []
    for d in range(rank):
        for s in (s1[d], s2[d]):
            if s not in (1, out[d]):
                raise LoweringError(f"shapes {list(shape1)} and {list(shape2)} do not broadcast "
                                    f"to {list(out_shape)}")
        if out[d] == 1:
            continue
        dims.append(out[d])
        st1.append(0 if s1[d] == 1 else n1[d])
        st2.append(0 if s2[d] == 1 else n2[d])
    # merge dimension d into d+1 when both inputs walk them contiguously
    i = len(dims) - 2
    while i >= 0:
        if st1[i] == st1[i + 1] * dims[i + 1] and st2[i] == st2[i + 1] * dims[i + 1]:
            dims[i + 1] *= dims[i]
            del dims[i], st1[i], st2[i]
        i -= 1
    if not dims:
        dims, st1, st2 = [1], [1], [1]
    if len(dims) > MAX_DIMS:
        raise LoweringError(f"broadcast of {list(shape1)} and {list(shape2)} needs "
                            f"{len(dims)} loop dimensions (the kernel iterates over {MAX_DIMS})")
    return dims, st1, st2


def _bcast_init(dims, st1, st2) -> str:
    return (f"{{ .ndim = {len(dims)}, .dims = {c_ints(dims, MAX_DIMS)}, "
            f".stride1 = {c_ints(st1, MAX_DIMS)}, .stride2 = {c_ints(st2, MAX_DIMS)} }}")


# ---------------------------------------------------------------------------
# ADD / MUL

def _binary_common(op: Operator, ctx: LoweringContext):
    if len([i for i in op.inputs if i >= 0]) != 2 or len(op.outputs) != 1:
        raise LoweringError(f"{op.describe()}: expects two inputs and one output")
    a, b = _tensor(op, ctx, 0), _tensor(op, ctx, 1)
    o = _tensor(op, ctx, 0, "out")
    for t in (a, b, o):
        _need_dtype(op, t, "int8")
    _need_quant(op, a, b, o)
    dims, st1, st2 = broadcast_plan(a.shape, b.shape, o.shape)
    return a, b, o, dims, st1, st2


def _binary_call(op, ctx, kernel, params_type, params, a, b, o, comment) -> KernelCall:
    """A binary kernel call.  A constant operand stays in `inputs`: the
    backend bakes it into flash and passes it like an activation."""
    if a.is_constant and b.is_constant:
        raise LoweringError(f"{op.describe()}: both operands are constant (fold it away first)")
    return KernelCall(kernel=kernel, params_type=params_type, params=params,
                      inputs=[op.inputs[0], op.inputs[1]], outputs=[op.outputs[0]],
                      sources=[_SRC_ADD_MUL],
                      in_place=not a.is_constant and tuple(a.shape) == tuple(o.shape),
                      comment=comment)


@lowers("ADD", "SUB")
def lower_add(op: Operator, ctx: LoweringContext) -> KernelCall:
    a, b, o, dims, st1, st2 = _binary_common(op, ctx)
    left_shift = 20     # TFLM's for int8; the kernel's rescaling depends on it
    s1, s2, so = np.float32(a.scale), np.float32(b.scale), np.float32(o.scale)
    # Double-precision ratios, as the installed TFLM computes them for ADD and
    # SUB (exhaustively checked: single precision, as some TFLM versions of
    # sub_common.cc write it, differs by 1 LSB on some scales).
    twice_max = 2.0 * float(max(s1, s2))
    r1, r2 = float(s1) / twice_max, float(s2) / twice_max
    ro = twice_max / (float(1 << left_shift) * float(so))
    m1, sh1 = _qm_smaller_than_one(r1, op.describe())
    m2, sh2 = _qm_smaller_than_one(r2, op.describe())
    mo, sho = _qm_smaller_than_one(ro, op.describe())
    lo, hi = _act_range(op.options.get("fused_activation_function", "NONE"), o)
    params = {
        "bc": _bcast_init(dims, st1, st2),
        "input1_offset": str(-a.zero_point), "input2_offset": str(-b.zero_point),
        "output_offset": str(o.zero_point),
        "input1_multiplier": str(m1), "input1_shift": str(sh1),
        "input2_multiplier": str(m2), "input2_shift": str(sh2),
        "output_multiplier": str(mo), "output_shift": str(sho),
        "act_min": str(lo), "act_max": str(hi),
        "subtract": "1" if op.opcode == "SUB" else "0",
    }
    sign = "-" if op.opcode == "SUB" else "+"
    direct = _binary_call(op, ctx, "tg_add_s8", "tg_add_s8_params", params, a, b, o,
                          f"{op.opcode} {list(a.shape)} {sign} {list(b.shape)} -> {list(o.shape)}")
    if o.num_elements < ADD_TABLE_MIN_ELEMENTS:
        return direct
    # tables of the 2 x 256 rescaled operand values, in scratch when it is free
    return dataclasses.replace(direct, kernel="tg_add_table_s8", scratch_bytes=ADD_TABLE_BYTES,
                               comment=direct.comment + " [tables]", fallback=direct)


@lowers("MUL")
def lower_mul(op: Operator, ctx: LoweringContext) -> KernelCall:
    a, b, o, dims, st1, st2 = _binary_common(op, ctx)
    real = float(np.float32(a.scale)) * float(np.float32(b.scale)) / float(np.float32(o.scale))
    m, s = quantize_multiplier(real)
    lo, hi = _act_range(op.options.get("fused_activation_function", "NONE"), o)
    params = {
        "bc": _bcast_init(dims, st1, st2),
        "input1_offset": str(-a.zero_point), "input2_offset": str(-b.zero_point),
        "output_offset": str(o.zero_point),
        "output_multiplier": str(m), "output_shift": str(s),
        "act_min": str(lo), "act_max": str(hi),
    }
    return _binary_call(op, ctx, "tg_mul_s8", "tg_mul_s8_params", params, a, b, o,
                        f"MUL {list(a.shape)} * {list(b.shape)} -> {list(o.shape)}")


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


def _sigmoid_like(op: Operator, ctx: LoweringContext, kernel: str) -> KernelCall:
    x, y = _tensor(op, ctx, 0), _tensor(op, ctx, 0, "out")
    _need_dtype(op, x, "int8")
    _need_dtype(op, y, "int8")
    _need_quant(op, x, y)
    if op.opcode == "LOGISTIC" and y.zero_point != -128:
        raise LoweringError(f"{op.describe()}: int8 LOGISTIC output zero point must be -128")
    m, shift, radius = sigmoid_params(x.scale)
    return KernelCall(
        kernel=kernel, params_type="tg_sigmoid_s8_params",
        params={"size": str(x.num_elements), "input_zero_point": str(x.zero_point),
                "input_range_radius": str(radius), "input_multiplier": str(m),
                "input_left_shift": str(shift)},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_ACT], in_place=True,
        comment=f"{op.opcode} {list(x.shape)}")


@lowers("LOGISTIC")
def lower_logistic(op: Operator, ctx: LoweringContext) -> KernelCall:
    return _sigmoid_like(op, ctx, "tg_logistic_s8")


@lowers("TANH")
def lower_tanh(op: Operator, ctx: LoweringContext) -> KernelCall:
    return _sigmoid_like(op, ctx, "tg_tanh_s8")


# ---------------------------------------------------------------------------
# MEAN / SUM

def _resolve_axes(op: Operator, ctx: LoweringContext, rank: int) -> list[int]:
    axis_t = _tensor(op, ctx, 1)
    if not axis_t.is_constant:
        raise LoweringError(f"{op.describe()}: the axis tensor must be constant")
    axes = []
    for a in np.asarray(axis_t.data).reshape(-1).tolist():
        a = int(a)
        cur = a + rank if a < 0 else a
        if not 0 <= cur < rank:
            raise LoweringError(f"{op.describe()}: axis {a} is out of range for rank {rank}")
        if cur not in axes:
            axes.append(cur)
    return axes


def reduce_plan(shape, axes) -> tuple[list[int], list[int], list[int], list[int]]:
    """(kept dims, their input strides, reduced dims, their input strides),
    merging neighbours that are walked contiguously."""
    strides = _row_major_strides(shape)

    def merged(ds):
        dims = [int(shape[d]) for d in ds if int(shape[d]) != 1]
        sts = [strides[d] for d in ds if int(shape[d]) != 1]
        i = len(dims) - 2
        while i >= 0:
            if sts[i] == sts[i + 1] * dims[i + 1]:
                dims[i + 1] *= dims[i]
                del dims[i], sts[i]
            i -= 1
        return (dims, sts) if dims else ([1], [0])
    kept = [d for d in range(len(shape)) if d not in axes]
    kd, ks = merged(kept)
    rd, rs = merged(sorted(axes))
    if len(kd) > MAX_DIMS or len(rd) > MAX_DIMS:
        raise LoweringError(f"reduction of {list(shape)} over {axes} needs too many loop dims")
    return kd, ks, rd, rs


def _lower_reduce(op: Operator, ctx: LoweringContext, compute_sum: bool) -> KernelCall:
    x, y = _tensor(op, ctx, 0), _tensor(op, ctx, 0, "out")
    _need_dtype(op, x, "int8")
    _need_dtype(op, y, "int8")
    _need_quant(op, x, y)
    axes = _resolve_axes(op, ctx, len(x.shape))
    count = _prod([x.shape[a] for a in axes])
    if count == 0 or x.num_elements == 0:
        raise LoweringError(f"{op.describe()}: empty reduction")
    kd, ks, rd, rs = reduce_plan(x.shape, axes)
    if _prod(kd) != y.num_elements:
        raise LoweringError(f"{op.describe()}: output shape {list(y.shape)} does not match "
                            f"reducing {list(x.shape)} over {axes}")
    in_scale, out_scale = np.float32(x.scale), np.float32(y.scale)
    m, s = quantize_multiplier(float(in_scale) / float(out_scale))
    # The TFLM interpreter runs QuantizedMeanOrSum for int8 MEAN even when the
    # input and output quantization are equal (checked against tflite_micro),
    # folding 1/count into the multiplier:
    if not compute_sum:
        shift = min(count.bit_length() - 1, 32, 31 + s)
        m = (m << shift) // count
        s = s - shift
    return KernelCall(
        kernel="tg_reduce_sum_s8", params_type="tg_reduce_s8_params",
        params={"out_ndim": str(len(kd)), "out_dims": c_ints(kd, MAX_DIMS),
                "out_stride": c_ints(ks, MAX_DIMS), "red_ndim": str(len(rd)),
                "red_dims": c_ints(rd, MAX_DIMS), "red_stride": c_ints(rs, MAX_DIMS),
                "count": str(count), "input_zero_point": str(x.zero_point),
                "output_zero_point": str(y.zero_point), "multiplier": str(m), "shift": str(s)},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_MEAN],
        comment=f"{op.opcode} {list(x.shape)} axes={axes} -> {list(y.shape)}")


@lowers("MEAN")
def lower_mean(op: Operator, ctx: LoweringContext) -> KernelCall:
    return _lower_reduce(op, ctx, compute_sum=False)


@lowers("SUM")
def lower_sum(op: Operator, ctx: LoweringContext) -> KernelCall:
    return _lower_reduce(op, ctx, compute_sum=True)


# ---------------------------------------------------------------------------
# CONCATENATION

@lowers("CONCATENATION")
def lower_concatenation(op: Operator, ctx: LoweringContext) -> KernelCall:
    ins = [i for i in op.inputs if i >= 0]
    y = _tensor(op, ctx, 0, "out")
    if not 1 <= len(ins) <= MAX_CONCAT_INPUTS:
        raise LoweringError(f"{op.describe()}: {len(ins)} inputs (the kernel takes 1 to "
                            f"{MAX_CONCAT_INPUTS})")
    if op.options.get("fused_activation_function", "NONE") != "NONE":
        raise LoweringError(f"{op.describe()}: a fused activation on CONCATENATION")
    rank = len(y.shape)
    axis = int(op.options.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < max(rank, 1):
        raise LoweringError(f"{op.describe()}: axis {axis} out of range")
    outer = _prod(y.shape[:axis])
    sizes = []
    for i in ins:
        t = ctx.model.tensors[i]
        if t.dtype != y.dtype:
            raise LoweringError(f"{op.describe()}: input '{t.name}' is {t.dtype}, output {y.dtype}")
        if t.dtype == "int8" and (t.quant is None or y.quant is None
                                  or np.float32(t.scale) != np.float32(y.scale)
                                  or t.zero_point != y.zero_point):
            # TFLM's int8 CONCATENATION is a byte copy and refuses inputs
            # whose quantization differs from the output's.
            raise LoweringError(f"{op.describe()}: int8 input '{t.name}' is quantized "
                                "differently from the output (TFLM does not requantize "
                                "CONCATENATION inputs)")
        if len(t.shape) != rank or any(int(t.shape[d]) != int(y.shape[d])
                                       for d in range(rank) if d != axis):
            raise LoweringError(f"{op.describe()}: input shape {list(t.shape)} does not fit "
                                f"output {list(y.shape)} on axis {axis}")
        sizes.append(_prod(t.shape[axis:]) * t.itemsize)
    if sum(sizes) * outer != y.nbytes:
        raise LoweringError(f"{op.describe()}: input sizes do not add up to the output")
    return KernelCall(
        kernel="tg_concatenation", params_type="tg_concat_params",
        params={"num_inputs": str(len(ins)), "outer": str(outer),
                "copy_size": c_ints(sizes, MAX_CONCAT_INPUTS)},
        inputs=ins, outputs=[op.outputs[0]], sources=[_SRC_CONCAT_PAD],
        comment=f"CONCATENATION axis={axis} -> {list(y.shape)}")


# ---------------------------------------------------------------------------
# PAD / PADV2

def pad_plan(in_shape, before, after) -> tuple[list[int], list[int], list[int]]:
    """(in_dims, out_dims, before), with unpadded trailing dims folded into
    the dimension before them so the kernel copies long rows."""
    ind = [int(d) for d in in_shape] or [1]
    bef = [int(b) for b in before] or [0]
    aft = [int(a) for a in after] or [0]
    outd = [i + b + a for i, b, a in zip(ind, bef, aft)]
    while len(ind) > 1 and bef[-1] == 0 and aft[-1] == 0:
        n = ind[-1]
        ind = ind[:-2] + [ind[-2] * n]
        outd = outd[:-2] + [outd[-2] * n]
        bef = bef[:-2] + [bef[-2] * n]
        aft = aft[:-2] + [aft[-2] * n]
    # leading dims without padding merge too
    while len(ind) > 1 and bef[0] == 0 and aft[0] == 0 and bef[1] == 0 and aft[1] == 0:
        ind = [ind[0] * ind[1]] + ind[2:]
        outd = [outd[0] * outd[1]] + outd[2:]
        bef = [0] + bef[2:]
        aft = [0] + aft[2:]
    if len(ind) > MAX_DIMS:
        raise LoweringError(f"PAD of rank {len(ind)} (the kernel handles {MAX_DIMS})")
    return ind, outd, bef


@lowers("PAD", "PADV2")
def lower_pad(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y = _tensor(op, ctx, 0), _tensor(op, ctx, 0, "out")
    _need_dtype(op, x, "int8")
    _need_dtype(op, y, "int8")
    pads_t = _tensor(op, ctx, 1)
    if not pads_t.is_constant:
        raise LoweringError(f"{op.describe()}: paddings must be constant")
    pads = np.asarray(pads_t.data).astype(np.int64).reshape(-1, 2)
    rank = len(x.shape)
    if pads.shape[0] != rank:
        raise LoweringError(f"{op.describe()}: {pads.shape[0]} padding pairs for rank {rank}")
    if (pads < 0).any():
        raise LoweringError(f"{op.describe()}: negative padding")
    for d in range(rank):
        if int(x.shape[d]) + int(pads[d, 0]) + int(pads[d, 1]) != int(y.shape[d]):
            raise LoweringError(f"{op.describe()}: output shape {list(y.shape)} does not match")
    real_inputs = [i for i in op.inputs if i >= 0]
    if len(real_inputs) == 3:
        cv = ctx.model.tensors[op.inputs[2]]
        if not cv.is_constant or cv.num_elements != 1:
            raise LoweringError(f"{op.describe()}: the pad value must be a constant scalar")
        pad_value = int(np.asarray(cv.data).reshape(-1)[0])
    else:
        _need_quant(op, y)
        pad_value = y.zero_point
    ind, outd, bef = pad_plan(x.shape, pads[:, 0], pads[:, 1])
    return KernelCall(
        kernel="tg_pad_s8", params_type="tg_pad_s8_params",
        params={"ndim": str(len(ind)), "in_dims": c_ints(ind, MAX_DIMS),
                "out_dims": c_ints(outd, MAX_DIMS), "before": c_ints(bef, MAX_DIMS),
                "pad_value": str(pad_value)},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_CONCAT_PAD],
        comment=f"{op.opcode} {list(x.shape)} -> {list(y.shape)}")


# ---------------------------------------------------------------------------
# QUANTIZE / DEQUANTIZE

_SUFFIX = {"int8": "s8", "int16": "s16"}


@lowers("QUANTIZE")
def lower_quantize(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y = _tensor(op, ctx, 0), _tensor(op, ctx, 0, "out")
    _need_dtype(op, y, "int8", "int16")
    _need_quant(op, y)
    if x.dtype == "float32":
        qmin, qmax = _QRANGE[y.dtype]
        return KernelCall(
            kernel=f"tg_quantize_f32_{_SUFFIX[y.dtype]}", params_type="tg_quantize_f32_params",
            params={"size": str(x.num_elements), "scale": c_float(y.scale),
                    "zero_point": str(y.zero_point), "qmin": str(qmin), "qmax": str(qmax)},
            inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_QUANT],
            comment=f"QUANTIZE float32 -> {y.dtype}")
    _need_dtype(op, x, "int8", "int16")
    _need_quant(op, x)
    m, s = quantize_multiplier(float(np.float32(x.scale)) / float(np.float32(y.scale)))
    return KernelCall(
        kernel=f"tg_requantize_{_SUFFIX[x.dtype]}_{_SUFFIX[y.dtype]}",
        params_type="tg_requantize_params",
        params={"size": str(x.num_elements), "input_zero_point": str(x.zero_point),
                "output_zero_point": str(y.zero_point), "multiplier": str(m), "shift": str(s)},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_QUANT],
        in_place=(x.dtype == y.dtype),
        comment=f"QUANTIZE {x.dtype} -> {y.dtype} (requantize)")


@lowers("DEQUANTIZE")
def lower_dequantize(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y = _tensor(op, ctx, 0), _tensor(op, ctx, 0, "out")
    _need_dtype(op, x, "int8", "int16")
    _need_dtype(op, y, "float32")
    _need_quant(op, x)
    return KernelCall(
        kernel=f"tg_dequantize_{_SUFFIX[x.dtype]}_f32", params_type="tg_dequantize_params",
        params={"size": str(x.num_elements), "scale": c_float(x.scale),
                "zero_point": str(x.zero_point)},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_QUANT],
        comment=f"DEQUANTIZE {x.dtype} -> float32")


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
