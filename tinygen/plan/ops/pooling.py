"""Lowerings of AVERAGE_POOL_2D and MAX_POOL_2D (int8).

TFLite pools keep the input's quantization on the output, so the kernels do
no requantization; the window is clipped to the image and the fused
activation becomes a clamp range (TFLM's CalculateOpDataPool).
"""

from __future__ import annotations

from ...ir import Operator
from ..lowering import KernelCall, LoweringContext, activation_range_int8, lowers
from .conv import (
    dims4,
    out_size,
    padding_before,
    raster_overlap,
    require,
    require_int8_activation,
    with_overlap,
)


@lowers("AVERAGE_POOL_2D", "MAX_POOL_2D")
def lower_pool2d(op: Operator, ctx: LoweringContext) -> KernelCall:
    require(len(op.inputs) >= 1 and op.inputs[0] >= 0, op, "the input is missing")
    inp = ctx.model.tensors[op.inputs[0]]
    out = ctx.model.tensors[op.outputs[0]]
    require_int8_activation(op, inp, "input")
    require_int8_activation(op, out, "output")
    require(len(inp.shape) == 4 and len(out.shape) == 4, op, "input and output must be 4-D")
    require(inp.shape[0] == out.shape[0] and inp.shape[3] == out.shape[3], op,
            f"output {list(out.shape)} does not match input {list(inp.shape)}")
    # TFLite's converter gives a pool's output the input's quantization; TFLM
    # does not check it and never requantizes, and neither do we.
    opts = op.options
    padding = opts.get("padding", "SAME")
    require(padding in ("SAME", "VALID"), op, f"padding {padding} is not supported")
    sh, sw = int(opts.get("stride_h", 1)), int(opts.get("stride_w", 1))
    fh, fw = int(opts.get("filter_height", 1)), int(opts.get("filter_width", 1))
    require(sh >= 1 and sw >= 1 and fh >= 1 and fw >= 1, op,
            f"stride {sh}x{sw} and filter {fh}x{fw} must be positive")
    oh = out_size(padding, inp.shape[1], fh, sh)
    ow = out_size(padding, inp.shape[2], fw, sw)
    require((oh, ow) == tuple(out.shape[1:3]), op,
            f"output is {out.shape[1]}x{out.shape[2]} but {padding} padding gives {oh}x{ow}")
    ph = padding_before(sh, 1, inp.shape[1], fh, oh)
    pw = padding_before(sw, 1, inp.shape[2], fw, ow)
    act = opts.get("fused_activation_function", "NONE")
    act_min, act_max = activation_range_int8(act, out.scale, out.zero_point)
    avg = op.opcode == "AVERAGE_POOL_2D"
    params = {
        "in": dims4(inp.shape), "out": dims4(out.shape),
        "filter_h": str(fh), "filter_w": str(fw), "stride_h": str(sh), "stride_w": str(sw),
        "pad_h": str(ph), "pad_w": str(pw), "act_min": str(act_min), "act_max": str(act_max),
    }
    call = KernelCall(
        kernel="tg_avg_pool2d_s8" if avg else "tg_max_pool2d_s8",
        params_type="tg_pool2d_params", params=params,
        inputs=[op.inputs[0]], outputs=[op.outputs[0]],
        sources=["tg_pooling.c", "tg_pooling.h"],
        comment=f"{op.opcode} {fh}x{fw} stride {sh}x{sw} {padding} {act}")
    # pixels in raster order, each written after its window was read
    win = dict(stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw, dilation_h=1, dilation_w=1)
    return with_overlap(call, raster_overlap(inp.shape, out.shape, fh, fw, win))
