"""QUANTIZE and DEQUANTIZE."""

from __future__ import annotations

import numpy as np

from ...ir import Operator
from ..c_literals import c_float
from ..lowering import (
    KernelCall,
    LoweringContext,
    lowers,
    quantize_multiplier,
)
from ._elementwise_base import _QRANGE, _SRC_QUANT, _need_dtype, _need_quant, _tensor

# ---------------------------------------------------------------------------
# QUANTIZE / DEQUANTIZE

_SUFFIX = {"int8": "s8", "int16": "s16", "uint8": "u8", "int32": "s32"}
# TFLM's Requantize pairs beyond int8/int16 <-> int8/int16 that camera front ends
# use: the frame's uint8 pixels to int8, int8 to int32 table indices
_EXTRA_PAIRS = {("uint8", "int8"), ("int8", "int32")}


@lowers("QUANTIZE")
def lower_quantize(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y = _tensor(op, ctx, 0), _tensor(op, ctx, 0, "out")
    if (x.dtype, y.dtype) not in _EXTRA_PAIRS:
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
    if (x.dtype, y.dtype) not in _EXTRA_PAIRS:
        _need_dtype(op, x, "int8", "int16")
    _need_quant(op, x)
    m, s = quantize_multiplier(float(np.float32(x.scale)) / float(np.float32(y.scale)))
    return KernelCall(
        kernel=f"tg_requantize_{_SUFFIX[x.dtype]}_{_SUFFIX[y.dtype]}",
        params_type="tg_requantize_params",
        params={"size": str(x.num_elements), "input_zero_point": str(x.zero_point),
                "output_zero_point": str(y.zero_point), "multiplier": str(m), "shift": str(s)},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=[_SRC_QUANT],
        in_place=(x.itemsize == y.itemsize),
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


