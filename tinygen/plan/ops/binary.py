"""ADD, SUB and MUL onto tg_add_mul.c (direct and table kernels, broadcasting)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ...ir import Operator
from ..lowering import (
    KernelCall,
    LoweringContext,
    LoweringError,
    lowers,
    quantize_multiplier,
)
from ..narrow import ADD_S8, MUL_S8, misfits
from ._elementwise_base import (
    _SRC_ADD_MUL,
    ADD_TABLE_BYTES,
    ADD_TABLE_MIN_ELEMENTS,
    _act_range,
    _bcast_init,
    _need_dtype,
    _need_quant,
    _qm_smaller_than_one,
    _tensor,
    broadcast_plan,
)

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
    bad = misfits(params, ADD_S8 if params_type == "tg_add_s8_params" else MUL_S8)
    if bad:
        raise LoweringError(f"{op.describe()}: {', '.join(bad)} outside the kernel's "
                            "parameter types")
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


