"""MEAN and SUM over any axes (TFLM's reduce kernels' arithmetic)."""

from __future__ import annotations

import numpy as np

from ...ir import Operator
from ..c_literals import c_ints
from ..lowering import (
    KernelCall,
    LoweringContext,
    LoweringError,
    lowers,
    quantize_multiplier,
)
from ._elementwise_base import _SRC_MEAN, MAX_DIMS, _need_dtype, _need_quant, _prod, _row_major_strides, _tensor

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


