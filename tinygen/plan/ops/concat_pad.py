"""CONCATENATION, PAD and PADV2 (data movement, requantized where TFLM does)."""

from __future__ import annotations

import numpy as np

from ...ir import Operator
from ..c_literals import c_ints
from ..lowering import (
    KernelCall,
    LoweringContext,
    LoweringError,
    lowers,
)
from ._elementwise_base import _SRC_CONCAT_PAD, MAX_CONCAT_INPUTS, MAX_DIMS, _need_dtype, _need_quant, _prod, _tensor

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
                # as long as the inputs: a compound literal, not a fixed array
                "copy_size": "(const int32_t[])" + c_ints(sizes)},
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


