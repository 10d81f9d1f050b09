"""What the element-wise lowerings share: TFLite's quantization arithmetic as
the TFLM interpreter runs it, tensor checks, broadcasting, and the kernel files."""

from __future__ import annotations

import math

import numpy as np

from ...ir import Operator, Tensor
from ..c_literals import c_ints
from ..lowering import (
    LoweringContext,
    LoweringError,
    activation_range_int8,
    quantize_multiplier,
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


