"""Lowerings of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (int8).

The quantization constants are computed here exactly as TFLM's Prepare
functions compute them (PopulateConvolutionQuantizationParams for the
convolutions and per-channel FC, GetQuantizedConvolutionMultipler for
per-tensor FC), so the kernels only have to loop.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...ir import Operator, Tensor
from ..lowering import (
    ConstArray,
    KernelCall,
    LoweringContext,
    LoweringError,
    activation_range_int8,
    lowers,
    quantize_multiplier,
)
from ..narrow import CONV2D_DSP, DEPTHWISE_DSP, misfits
from .sparse import maybe_sparse

# ---------------------------------------------------------------------------
# helpers shared with the pooling lowerings


def out_size(padding: str, in_size: int, filter_size: int, stride: int, dilation: int = 1) -> int:
    """TFLite's ComputeOutSize."""
    effective = (filter_size - 1) * dilation + 1
    if stride == 0:
        return 0
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    if padding == "VALID":
        return (in_size + stride - effective) // stride
    return 0


def padding_before(stride: int, dilation: int, in_size: int, filter_size: int,
                   out: int) -> int:
    """TFLite's ComputePaddingWithOffset (the leading half of the total padding)."""
    effective = (filter_size - 1) * dilation + 1
    total = (out - 1) * stride + effective - in_size
    return max(total, 0) // 2


def dims4(shape) -> str:
    n, h, w, c = (int(d) for d in shape)
    return f"{{{n}, {h}, {w}, {c}}}"


def tensor(op: Operator, ctx: LoweringContext, pos: int, what: str,
           optional: bool = False) -> Tensor | None:
    if pos >= len(op.inputs) or op.inputs[pos] < 0:
        if optional:
            return None
        raise LoweringError(f"{op.describe()}: the {what} input is missing")
    return ctx.model.tensors[op.inputs[pos]]


def require(cond: bool, op: Operator, why: str) -> None:
    if not cond:
        raise LoweringError(f"{op.describe()}: {why}")


def require_int8_activation(op: Operator, t: Tensor, what: str) -> None:
    require(t.dtype == "int8", op, f"the {what} is {t.dtype}; the aot kernel handles int8 only")
    require(t.quant is not None, op, f"the {what} has no quantization parameters")
    require(not t.is_constant, op, f"the {what} is a constant; expected an activation")


def const_weights(op: Operator, t: Tensor, what: str) -> np.ndarray:
    require(t.is_constant, op, f"the {what} is not a constant (run-time weights are not supported)")
    require(t.quant is not None, op, f"the {what} has no quantization parameters")
    require(t.dtype == "int8", op, f"the {what} is {t.dtype}; only int8 weights are supported")
    return t.data


def const_bias(op: Operator, t: Tensor | None, channels: int) -> np.ndarray | None:
    if t is None:
        return None
    require(t.is_constant, op, "the bias is not a constant")
    require(t.dtype == "int32", op, f"the bias is {t.dtype}; int8 layers need int32 bias")
    require(t.num_elements == channels, op,
            f"the bias has {t.num_elements} values for {channels} output channels")
    return t.data.reshape(-1)


def check_filter_channels(op: Operator, filt: Tensor, channels: int, what: str = "filter") -> None:
    """TFLM's PopulateConvolutionQuantizationParams checks on per-channel
    weights: one scale per output channel and quantized_dimension naming a
    dimension of that size.  The scales are then applied per output channel
    whichever dimension is named, so any quantized_dimension passing these
    checks computes the same thing in TFLM and here."""
    q = filt.quant
    if not q.per_channel:
        return
    require(len(q.scale) == channels, op,
            f"the {what} has {len(q.scale)} per-channel scales for {channels} output channels")
    require(0 <= q.axis < len(filt.shape), op,
            f"quantized_dimension {q.axis} of the {what} is not a dimension of its shape "
            f"{list(filt.shape)}")
    require(int(filt.shape[q.axis]) == channels, op,
            f"quantized_dimension {q.axis} of the {what} has size {filt.shape[q.axis]}, "
            f"not the {channels} output channels its scales are for")


def per_channel_multipliers(op: Operator, inp: Tensor, filt: Tensor, out: Tensor,
                            channels: int) -> tuple[np.ndarray, np.ndarray]:
    """PopulateConvolutionQuantizationParams: one (multiplier, shift) per output
    channel from double(input_scale) * double(filter_scale[c]) / double(output_scale)."""
    scales = filt.quant.scale
    if len(scales) not in (1, channels):
        raise LoweringError(f"{op.describe()}: the filter has {len(scales)} scales "
                            f"for {channels} output channels")
    in_scale = float(np.float32(inp.scale))
    out_scale = float(np.float32(out.scale))
    mult = np.zeros(channels, np.int32)
    shift = np.zeros(channels, np.int32)
    for c in range(channels):
        fs = float(np.float32(scales[c] if len(scales) > 1 else scales[0]))
        m, s = quantize_multiplier(in_scale * fs / out_scale)
        mult[c], shift[c] = m, s
    return mult, shift


def conv_window(op: Operator, in_shape, filter_h: int, filter_w: int, out_shape):
    """Strides, dilations and leading padding; checks the output shape."""
    opts = op.options
    padding = opts.get("padding", "SAME")
    require(padding in ("SAME", "VALID"), op, f"padding {padding} is not supported")
    sh, sw = int(opts.get("stride_h", 1)), int(opts.get("stride_w", 1))
    dh, dw = int(opts.get("dilation_h_factor", 1)), int(opts.get("dilation_w_factor", 1))
    require(sh >= 1 and sw >= 1, op, f"strides must be positive (got {sh}x{sw})")
    require(dh >= 1 and dw >= 1, op, f"dilations must be positive (got {dh}x{dw})")
    oh = out_size(padding, in_shape[1], filter_h, sh, dh)
    ow = out_size(padding, in_shape[2], filter_w, sw, dw)
    require((oh, ow) == (out_shape[1], out_shape[2]), op,
            f"output is {out_shape[1]}x{out_shape[2]} but {padding} padding gives {oh}x{ow}")
    ph = padding_before(sh, dh, in_shape[1], filter_h, oh)
    pw = padding_before(sw, dw, in_shape[2], filter_w, ow)
    return dict(stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw, pad_h=ph, pad_w=pw)


def wrap_int32(values: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int32 (the kernels' accumulators wrap the same way)."""
    v = np.asarray(values, dtype=np.int64)
    return (((v + (1 << 31)) % (1 << 32)) - (1 << 31)).astype(np.int32)


def folded_bias(bias: np.ndarray | None, input_offset: int, filter_sums: np.ndarray) -> np.ndarray:
    """bias + input_offset * sum(weights of the channel): lets a kernel multiply
    raw int8 inputs for windows that lie wholly inside the input (exact, since
    integer sums do not depend on their order)."""
    b = np.zeros(len(filter_sums), np.int64) if bias is None else bias.astype(np.int64)
    return wrap_int32(b + int(input_offset) * filter_sums.astype(np.int64))


def quant_constants(ctx: LoweringContext, op: Operator, filt_values: np.ndarray,
                    bias: np.ndarray | None, mult: np.ndarray, shift: np.ndarray,
                    kbias: np.ndarray | None = None):
    consts = [ConstArray(ctx.name(op, "filter"), "int8_t", filt_values.reshape(-1), align=16)]
    if bias is not None:
        consts.append(ConstArray(ctx.name(op, "bias"), "int32_t",
                                 bias.astype(np.int32), align=16))
    if kbias is not None:
        consts.append(ConstArray(ctx.name(op, "kbias"), "int32_t", kbias, align=16,
                                 is_weight=False))
    consts.append(ConstArray(ctx.name(op, "mult"), "int32_t", mult, align=16, is_weight=False))
    consts.append(ConstArray(ctx.name(op, "shift"), "int32_t", shift, align=16, is_weight=False))
    fields = {
        "filter": ctx.name(op, "filter"),
        "bias": ctx.name(op, "bias") if bias is not None else "NULL",
        "kbias": ctx.name(op, "kbias") if kbias is not None else "NULL",
        "multiplier": ctx.name(op, "mult"),
        "shift": ctx.name(op, "shift"),
    }
    return consts, fields


# ---------------------------------------------------------------------------
# "dsp" kernels (cores with the DSP extension): re-laid-out weights and
# requantization records, see firmware_templates/aot/kernels/tg_dsp.h


def acc_bounds(w_rows: np.ndarray, bias: np.ndarray | None, input_offset: int) -> np.ndarray:
    """Largest |accumulator| per output channel over every possible input:
    |bias| + sum|w| * max|x + input_offset| (padding taps add 0)."""
    span = max(abs(-128 + int(input_offset)), abs(127 + int(input_offset)))
    b = np.zeros(len(w_rows), np.int64) if bias is None else np.abs(bias.astype(np.int64))
    return b + np.abs(w_rows.astype(np.int64)).sum(axis=1) * span


def rq_records(bias: np.ndarray | None, mult: np.ndarray, shift: np.ndarray,
               output_offset: int, bounds: np.ndarray, allow_fast: bool = True
               ) -> tuple[bool, np.ndarray]:
    """(fast, records [channels][4]) for tg_rq_fast / tg_rq_exact.

    fast: every channel shifts right (e = -shift >= 1), |acc| < 2^30 for every
    input (so 2*acc does not overflow and smmulr(2*acc, m) is exactly
    SaturatingRoundingDoublingHighMul) and |x| + round cannot overflow.
    Fast records are {bias, multiplier, 2^(e-1) + output_offset * 2^e, e};
    exact ones {bias, multiplier, shift, output_offset}."""
    n = len(mult)
    b = np.zeros(n, np.int64) if bias is None else bias.astype(np.int64)
    e = -shift.astype(np.int64)
    fast = bool(allow_fast and n > 0 and np.all(e >= 1) and np.all(mult > 0)
                and np.all(bounds < (1 << 30)))
    if fast:
        rnd = (np.int64(1) << (e - 1)) + int(output_offset) * (np.int64(1) << e)
        worst = bounds + 2 + np.abs(rnd)
        fast = bool(np.all(worst < (1 << 31)))
    rec = np.zeros((n, 4), np.int64)
    rec[:, 0] = b
    rec[:, 1] = mult
    if fast:
        rec[:, 2] = rnd
        rec[:, 3] = e
    else:
        rec[:, 2] = shift
        rec[:, 3] = int(output_offset)
    return fast, rec


def rq_blocks(rec: np.ndarray, block: int) -> np.ndarray:
    """Records regrouped per block of channels: [blocks][4 fields][block],
    the last block padded with zero records (channels never stored)."""
    n = len(rec)
    nb = -(-n // block)
    padded = np.zeros((nb * block, 4), np.int64)
    padded[:n] = rec
    return wrap_int32(padded.reshape(nb, block, 4).transpose(0, 2, 1).reshape(-1))


def pack_words(b: np.ndarray) -> np.ndarray:
    """int8 bytes (a multiple of 4) -> little-endian int32 words."""
    return np.ascontiguousarray(b.astype(np.int8).reshape(-1)).view("<i4").astype(np.int32)


def mm_weights_w16(rows: np.ndarray, scale: int) -> tuple[np.ndarray, int]:
    """[out][k] int8 -> (words, groups4) in tg_mm_2x2_w16's layout: per pair of
    output channels and group of four k the 16-bit lanes (w0, w2), (w1, w3)
    of channel 2j, then of 2j+1, each weight times `scale` (2 for the fast
    requantization, whose sums are 2 * acc); k and the channel count are
    padded with zero weights."""
    n, k = rows.shape
    g4 = max(1, -(-k // 4))
    pairs = -(-n // 2)
    w = np.zeros((pairs * 2, g4 * 4), np.int64)
    w[:n, :k] = rows.astype(np.int64) * scale
    w = w.reshape(pairs, 2, g4, 4).transpose(0, 2, 1, 3)     # [pair][group][channel][4]
    lanes = np.stack([(w[..., 0] & 0xFFFF) | (w[..., 2] & 0xFFFF) << 16,
                      (w[..., 1] & 0xFFFF) | (w[..., 3] & 0xFFFF) << 16], axis=-1)
    return wrap_int32(lanes.reshape(-1)), g4


def raster_overlap(in_shape, out_shape, fh: int, fw: int, win: dict) -> int:
    """How far (bytes, may be negative) after the start of its input a
    raster-order kernel's output may start: every kernel of this family
    computes output pixels in (batch, row, column) order and reads the inputs
    of pixel q only before writing pixel q+1's outputs.  So writing pixel q
    must not touch any input byte a pixel >= q still reads; the bound is
    min over q of (first input byte read by pixels >= q) - (end of pixel q's
    output).  The planner reads it from KernelCall.overlap."""
    n, ih, iw, ic = (int(d) for d in in_shape)
    _, oh, ow, oc = (int(d) for d in out_shape)
    big = np.iinfo(np.int64).max // 4

    def first_valid(out_len, size, taps, stride, pad, dil):
        origin = np.arange(out_len, dtype=np.int64) * stride - pad
        pos = origin[:, None] + np.arange(taps, dtype=np.int64)[None, :] * dil
        ok = (pos >= 0) & (pos < size)
        return np.where(ok, pos, big).min(axis=1)

    fy = first_valid(oh, ih, fh, win["stride_h"], win["pad_h"], win["dilation_h"])
    fx = first_valid(ow, iw, fw, win["stride_w"], win["pad_w"], win["dilation_w"])
    b = np.arange(n, dtype=np.int64)[:, None, None]
    first = ((b * ih + fy[None, :, None]) * iw + fx[None, None, :]) * ic
    first = np.where((fy[None, :, None] >= big) | (fx[None, None, :] >= big), big, first)
    need = np.minimum.accumulate(first.reshape(-1)[::-1])[::-1]
    ends = (np.arange(need.size, dtype=np.int64) + 1) * oc
    ok = need < big
    if not ok.any():
        return n * ih * iw * ic           # reads nothing: anywhere after the input
    return int((need[ok] - ends[ok]).min())


def rows_overlap(batches: int, depth: int, units: int) -> int:
    """raster_overlap for row-by-row kernels (FULLY_CONNECTED): output row b
    is written after input row b was read for the last time."""
    b = np.arange(batches, dtype=np.int64)
    return int((b * depth - (b + 1) * units).min())


def with_overlap(call: KernelCall, overlap: int) -> KernelCall:
    """Mark a call (and its fallbacks) as a raster-order kernel for the planner."""
    c = call
    while c is not None:
        c.overlap = overlap
        c = c.fallback
    return call


def act_fields(act_min: int, act_max: int) -> dict[str, str]:
    full = act_min <= -128 and act_max >= 127
    return {"act_full": "1" if full else "0", "act_min": str(act_min), "act_max": str(act_max)}


# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# what CONV_2D and DEPTHWISE_CONV_2D share: their operands and TFLM's
# per-channel quantization (PopulateConvolutionQuantizationParams)


def conv_operands(op: Operator, ctx: LoweringContext):
    """Input, filter, optional bias, output and the constant filter, checked:
    int8 activations, 4-D tensors."""
    inp = tensor(op, ctx, 0, "input")
    filt = tensor(op, ctx, 1, "filter")
    bias_t = tensor(op, ctx, 2, "bias", optional=True)
    out = ctx.model.tensors[op.outputs[0]]
    require_int8_activation(op, inp, "input")
    require_int8_activation(op, out, "output")
    w = const_weights(op, filt, "filter")
    require(len(inp.shape) == 4 and len(filt.shape) == 4 and len(out.shape) == 4, op,
            "input, filter and output must be 4-D")
    return inp, filt, bias_t, out, w


def conv_quantization(op: Operator, inp: Tensor, filt: Tensor, bias_t: Tensor | None,
                      out: Tensor, oc: int, fh: int, fw: int):
    """Bias, window, fused activation and its int8 range, per-channel multipliers."""
    bias = const_bias(op, bias_t, oc)
    win = conv_window(op, inp.shape, fh, fw, out.shape)
    act = op.options.get("fused_activation_function", "NONE")
    act_range = activation_range_int8(act, out.scale, out.zero_point)
    return bias, win, act, act_range, per_channel_multipliers(op, inp, filt, out, oc)


@lowers("CONV_2D")
def lower_conv2d(op: Operator, ctx: LoweringContext) -> KernelCall:
    inp, filt, bias_t, out, w = conv_operands(op, ctx)
    oc, fh, fw, fc = (int(d) for d in filt.shape)
    n, ih, iw, ic = (int(d) for d in inp.shape)
    require(out.shape[0] == n and out.shape[3] == oc, op,
            f"output shape {list(out.shape)} does not match input {list(inp.shape)} "
            f"and filter {list(filt.shape)}")
    require(fc > 0 and ic % fc == 0, op, f"input depth {ic} is not a multiple of filter depth {fc}")
    groups = ic // fc
    require(oc % groups == 0, op, f"{oc} filters do not split into {groups} groups")
    check_filter_channels(op, filt, oc)
    bias, win, act, (act_min, act_max), (mult, shift) = conv_quantization(
        op, inp, filt, bias_t, out, oc, fh, fw)
    kbias = folded_bias(bias, -inp.zero_point, w.astype(np.int64).sum(axis=(1, 2, 3)))
    consts, fields = quant_constants(ctx, op, w, bias, mult, shift, kbias)
    params = {
        "in": dims4(inp.shape), "out": dims4(out.shape),
        "filter_h": str(fh), "filter_w": str(fw), "filter_c": str(fc),
        **{k: str(v) for k, v in win.items()},
        "input_offset": str(-inp.zero_point), "output_offset": str(out.zero_point),
        "act_min": str(act_min), "act_max": str(act_max),
        **fields,
    }
    pointwise = fh == 1 and fw == 1 and groups == 1 and win["pad_h"] == 0 and win["pad_w"] == 0
    call = KernelCall(
        kernel="tg_conv2d_1x1_s8" if pointwise else "tg_conv2d_s8",
        params_type="tg_conv2d_params", params=params,
        inputs=[op.inputs[0]], outputs=[op.outputs[0]],
        sources=["tg_conv2d.c", "tg_conv2d.h"], constants=consts,
        # the gathered window of one output pixel (see tg_conv2d.c)
        scratch_bytes=0 if pointwise else fh * fw * fc,
        comment=(f"CONV_2D {fh}x{fw} {ic}->{oc} stride {win['stride_h']}x{win['stride_w']} "
                 f"dilation {win['dilation_h']}x{win['dilation_w']} "
                 f"{op.options.get('padding')} {act}"))
    if not pointwise:
        call.fallback = dataclasses.replace(call, kernel="tg_conv2d_direct_s8", scratch_bytes=0)
    if ctx.dsp and groups == 1 and _whole_window(inp.shape, out.shape, fh, fw, win):
        # one output pixel whose window is the whole input (a streaming model's
        # temporal layer, a pointwise layer on a 1x1 map): filter [oc][fh][fw][ic]
        # and input [h][w][c] flatten in the same order, so this is a fully
        # connected layer, whose four-row kernel needs no im2col
        k = fh * fw * fc
        fc_call = _fully_connected_dsp(op, ctx, w.reshape(oc, k), bias, mult, shift, kbias,
                                       inp.zero_point, out.zero_point, act_min, act_max,
                                       n, k, oc, call.comment + " as FC")
        fc_call = with_overlap(fc_call, rows_overlap(n, k, oc))
        return _sparse_option(op, ctx, fc_call, w.reshape(oc, k), bias, kbias, mult, shift,
                              -inp.zero_point, out.zero_point, n, act_min, act_max)
    if ctx.dsp and groups == 1:
        call = _conv2d_dsp(op, ctx, inp, out, w, bias, win, mult, shift, act_min, act_max, call)
    call = with_overlap(call, raster_overlap(inp.shape, out.shape, fh, fw, win))
    if pointwise and win["stride_h"] == win["stride_w"] == 1:
        # one contiguous input vector per pixel: a matrix product
        call = _sparse_option(op, ctx, call, w.reshape(oc, -1), bias, kbias, mult, shift,
                              -inp.zero_point, out.zero_point, n * ih * iw, act_min, act_max)
    return call


def _whole_window(in_shape, out_shape, fh: int, fw: int, win: dict) -> bool:
    """One output pixel, no padding, the filter exactly the input's extent."""
    _, ih, iw, _ = (int(d) for d in in_shape)
    _, oh, ow, _ = (int(d) for d in out_shape)
    return (oh == ow == 1 and fh == ih and fw == iw and win["pad_h"] == 0
            and win["pad_w"] == 0 and (fh == 1 or win["dilation_h"] == 1)
            and (fw == 1 or win["dilation_w"] == 1))


def _conv2d_dsp(op, ctx, inp, out, w, bias, win, mult, shift, act_min, act_max,
                portable: KernelCall) -> KernelCall:
    if not ctx.wide_weights:
        # the flash holds the int8 weights only: the portable kernel reads them
        return portable
    oc, fh, fw, c = (int(d) for d in w.shape)
    row_bytes = fw * c
    row_k = row_bytes
    if win["dilation_w"] == 1 and fh > 1 and row_bytes % 4:
        # rows padded to whole groups of four with zero weights, where that
        # adds no group of k (a 3x3 filter on one channel: 3 x 4 = 12 = 3
        # groups): each row is then expanded straight from the input, with
        # no gather of the window (docs/performance.md section 16)
        padded = -(-row_bytes // 4) * 4
        if -(-fh * padded // 4) == -(-fh * row_bytes // 4):
            row_k = padded
    rows_k = np.zeros((oc, fh, row_k), np.int8)
    rows_k[:, :, :row_bytes] = w.reshape(oc, fh, row_bytes)
    rows = rows_k.reshape(oc, -1)
    fast, rec = rq_records(bias, mult, shift, out.zero_point,
                           acc_bounds(rows, bias, -inp.zero_point), ctx.fast_requant)
    # 16-bit weights: a fifth fewer instructions in the matmul for twice the
    # weight flash (docs/performance.md section 16); doubled with the bias
    # under the fast requantization, which then needs no shift per output
    scale = 2 if fast else 1
    words, g4 = mm_weights_w16(rows, scale)
    rec[:, 0] *= scale
    direct_rows = win["dilation_w"] == 1 and (fh == 1 or row_k % 4 == 0)
    _, ih, iw, _ = (int(d) for d in inp.shape)
    _, oh, ow, _ = (int(d) for d in out.shape)
    all_inside = (win["pad_h"] == 0 and win["pad_w"] == 0
                  and (oh - 1) * win["stride_h"] + (fh - 1) * win["dilation_h"] < ih
                  and (ow - 1) * win["stride_w"] + (fw - 1) * win["dilation_w"] < iw)
    # a padded row may not be read past the image's end: the last windows gather
    scratch = 16 * g4 + (0 if direct_rows and all_inside and row_k == row_bytes else 4 * g4)
    consts = [ConstArray(ctx.name(op, "filter"), "int32_t", words, align=16),
              ConstArray(ctx.name(op, "rq"), "int32_t", rq_blocks(rec, 2), align=16,
                         is_weight=False)]
    params = {
        "in": dims4(inp.shape), "out": dims4(out.shape),
        "filter_h": str(fh), "filter_w": str(fw),
        **{k: str(v) for k, v in win.items()},
        "input_offset": str(-inp.zero_point), "groups4": str(g4),
        "direct_rows": "1" if direct_rows else "0", "row_k": str(row_k),
        "pointwise": "1" if (fh == fw == 1 and win["stride_h"] == win["stride_w"] == 1
                             and all_inside) else "0",
        "fast": "1" if fast else "0",
        **act_fields(act_min, act_max),
        "filter": ctx.name(op, "filter"), "rq": ctx.name(op, "rq"),
    }
    if misfits(params, CONV2D_DSP):
        return portable
    fallback = portable if portable.scratch_bytes == 0 else portable.fallback
    return KernelCall(
        kernel="tg_conv2d_dsp_s8", params_type="tg_conv2d_dsp_params", params=params,
        inputs=list(portable.inputs), outputs=list(portable.outputs),
        sources=["tg_conv2d_dsp.c", "tg_conv2d_dsp.h"], constants=consts,
        scratch_bytes=scratch, comment=portable.comment + f" [dsp{' fast-rq' if fast else ''}]",
        fallback=fallback)


def _sparse_option(op, ctx, dense: KernelCall, w_rows: np.ndarray, bias, kbias, mult, shift,
                   input_offset: int, output_offset: int, rows: int, act_min: int,
                   act_max: int) -> KernelCall:
    """The layer as a sparse matrix product when that costs less (plan/ops/sparse.py)."""
    units = len(w_rows)
    if len(mult) == 1:
        mult = np.full(units, mult[0], np.int32)
        shift = np.full(units, shift[0], np.int32)
    fast, rec = rq_records(bias, mult, shift, output_offset,
                           acc_bounds(w_rows, bias, input_offset), ctx.fast_requant)
    rec[:, 0] = kbias                   # raw int8 inputs: the offset is folded in
    return maybe_sparse(op, ctx, dense, w_rows, fast, wrap_int32(rec), rows, act_min, act_max)


@lowers("DEPTHWISE_CONV_2D")
def lower_depthwise_conv2d(op: Operator, ctx: LoweringContext) -> KernelCall:
    inp, filt, bias_t, out, w = conv_operands(op, ctx)
    one, fh, fw, oc = (int(d) for d in filt.shape)
    n, ih, iw, ic = (int(d) for d in inp.shape)
    require(one == 1, op, f"the filter's first dimension is {one}, expected 1")
    require(out.shape[0] == n and out.shape[3] == oc, op,
            f"output shape {list(out.shape)} does not match input {list(inp.shape)} "
            f"and filter {list(filt.shape)}")
    require(ic > 0 and oc % ic == 0, op, f"{oc} output channels for {ic} input channels")
    dm = int(op.options.get("depth_multiplier", 0) or 0)
    require(dm * ic == oc, op,
            f"depth_multiplier {dm} x {ic} input channels != {oc} output channels")
    check_filter_channels(op, filt, oc)
    bias, win, act, (act_min, act_max), (mult, shift) = conv_quantization(
        op, inp, filt, bias_t, out, oc, fh, fw)
    kbias = folded_bias(bias, -inp.zero_point, w.astype(np.int64).sum(axis=(0, 1, 2)))
    consts, fields = quant_constants(ctx, op, w, bias, mult, shift, kbias)
    params = {
        "in": dims4(inp.shape), "out": dims4(out.shape),
        "filter_h": str(fh), "filter_w": str(fw), "depth_multiplier": str(dm),
        **{k: str(v) for k, v in win.items()},
        "input_offset": str(-inp.zero_point), "output_offset": str(out.zero_point),
        "act_min": str(act_min), "act_max": str(act_max),
        **fields,
    }
    call = KernelCall(
        kernel="tg_depthwise_conv2d_s8", params_type="tg_depthwise_conv2d_params",
        params=params, inputs=[op.inputs[0]], outputs=[op.outputs[0]],
        sources=["tg_depthwise_conv2d.c", "tg_depthwise_conv2d.h"], constants=consts,
        comment=(f"DEPTHWISE_CONV_2D {fh}x{fw} {ic}x{dm} stride "
                 f"{win['stride_h']}x{win['stride_w']} dilation "
                 f"{win['dilation_h']}x{win['dilation_w']} {op.options.get('padding')} {act}"))
    if ctx.dsp and dm == 1:
        call = _depthwise_dsp(op, ctx, inp, out, w, bias, win, mult, shift, act_min, act_max,
                              call)
    elif ctx.dsp and ic == 1:
        # One input channel: output channel m filters that channel with column
        # m, which is a convolution with filters [m][fh][fw][1].  The conv
        # kernel's SMLAD runs two taps per instruction where a depthwise
        # kernel gets no pairwise sum; the integers are the same sums.
        w_conv = w.reshape(fh, fw, oc).transpose(2, 0, 1)[..., None]
        call = _conv2d_dsp(op, ctx, inp, out, w_conv, bias, win, mult, shift, act_min,
                           act_max, call)
    return with_overlap(call, raster_overlap(inp.shape, out.shape, fh, fw, win))


def _depthwise_dsp(op, ctx, inp, out, w, bias, win, mult, shift, act_min, act_max,
                   portable: KernelCall) -> KernelCall:
    _, fh, fw, c = (int(d) for d in w.shape)
    taps = fh * fw
    groups = -(-c // 4)
    fast, rec = rq_records(bias, mult, shift, out.zero_point,
                           acc_bounds(w.reshape(taps, c).T, bias, -inp.zero_point),
                           ctx.fast_requant)
    # fast requantization wants 2 * acc: weights and bias stored doubled (the
    # 16-bit lanes hold 2 * w exactly; |2 * acc| < 2^31 is part of the proof)
    scale = 2 if fast else 1
    rec[:, 0] *= scale
    wt = np.zeros((taps, groups * 4), np.int64)
    wt[:, :c] = w.reshape(taps, c).astype(np.int64) * scale
    wt = wt.reshape(taps, groups, 4).transpose(1, 0, 2)          # [g][tap][4 channels]
    lanes = np.stack([wt[..., 0] & 0xFFFF | (wt[..., 2] & 0xFFFF) << 16,
                      wt[..., 1] & 0xFFFF | (wt[..., 3] & 0xFFFF) << 16], axis=-1)
    act = act_fields(act_min, act_max)
    blocks = rq_blocks(rec, 4).reshape(groups, 4, 4)
    if fast:
        # the kernel loads (multiplier, round) pairs: one LDRD feeds SMMLAR
        blocks = np.concatenate([blocks[:, :1], blocks[:, 1:3].transpose(0, 2, 1).reshape(
            groups, 2, 4), blocks[:, 3:]], axis=1)
    if fast and fh == 3 and fw == 3 and act["act_full"] == "1":
        # a 5th field for the unrolled 3x3 path of windows inside the image,
        # which multiplies raw inputs: the input offset's share folded into the
        # (doubled) bias; int32 wrap-around of partial sums cancels, the final
        # sum is exact
        kb = np.zeros(groups * 4, np.int64)
        kb[:c] = folded_bias(rec[:, 0], -inp.zero_point,
                             w.reshape(taps, c).astype(np.int64).sum(axis=0) * scale)
        blocks = np.concatenate([blocks, wrap_int32(kb).reshape(groups, 1, 4)], axis=1)
    consts = [ConstArray(ctx.name(op, "filter"), "int32_t", wrap_int32(lanes.reshape(-1)),
                         align=16),
              ConstArray(ctx.name(op, "rq"), "int32_t", blocks.reshape(-1), align=16,
                         is_weight=False)]
    params = {
        "in": dims4(inp.shape), "out": dims4(out.shape),
        "filter_h": str(fh), "filter_w": str(fw),
        **{k: str(v) for k, v in win.items()},
        "input_offset": str(-inp.zero_point), "fast": "1" if fast else "0",
        **act,
        "filter": ctx.name(op, "filter"), "rq": ctx.name(op, "rq"),
        "rq_words": str(blocks.shape[1] * 4),
    }
    if misfits(params, DEPTHWISE_DSP):
        return portable
    return KernelCall(
        kernel="tg_depthwise_dsp_s8", params_type="tg_depthwise_dsp_params", params=params,
        inputs=list(portable.inputs), outputs=list(portable.outputs),
        sources=["tg_depthwise_dsp.c", "tg_depthwise_dsp.h"], constants=consts,
        comment=portable.comment + f" [dsp{' fast-rq' if fast else ''}]")


@lowers("FULLY_CONNECTED")
def lower_fully_connected(op: Operator, ctx: LoweringContext) -> KernelCall:
    inp = tensor(op, ctx, 0, "input")
    filt = tensor(op, ctx, 1, "weights")
    bias_t = tensor(op, ctx, 2, "bias", optional=True)
    out = ctx.model.tensors[op.outputs[0]]
    require_int8_activation(op, inp, "input")
    require_int8_activation(op, out, "output")
    w = const_weights(op, filt, "weights")
    require(len(filt.shape) == 2, op, f"weights of shape {list(filt.shape)}; expected 2-D")
    require(op.options.get("weights_format", 0) in (0, "DEFAULT"), op,
            "shuffled weights are not supported")
    units, depth = (int(d) for d in filt.shape)
    require(len(out.shape) >= 1 and out.shape[-1] == units, op,
            f"output shape {list(out.shape)} does not end in {units} units")
    require(depth > 0 and inp.num_elements % depth == 0, op,
            f"input of {inp.num_elements} values is not a multiple of depth {depth}")
    batches = out.num_elements // units
    require(batches * depth == inp.num_elements, op,
            f"output {list(out.shape)} and input {list(inp.shape)} disagree on the batch")
    bias = const_bias(op, bias_t, units)
    act = op.options.get("fused_activation_function", "NONE")
    act_min, act_max = activation_range_int8(act, out.scale, out.zero_point)
    per_channel = filt.quant.per_channel
    if per_channel:
        check_filter_channels(op, filt, units, "weights")
        mult, shift = per_channel_multipliers(op, inp, filt, out, units)
        filter_offset = 0   # per-channel weights are symmetric; TFLM ignores the zero point
    else:
        # GetQuantizedConvolutionMultipler: the scale product is taken in float.
        product = float(np.float32(inp.scale) * np.float32(filt.scale))
        m, s = quantize_multiplier(product / float(np.float32(out.scale)))
        mult, shift = np.array([m], np.int32), np.array([s], np.int32)
        filter_offset = -filt.zero_point
    kbias = folded_bias(bias, -inp.zero_point, w.astype(np.int64).sum(axis=1)) \
        if filter_offset == 0 else None
    consts, fields = quant_constants(ctx, op, w, bias, mult, shift, kbias)
    params = {
        "batches": str(batches), "accum_depth": str(depth), "out_depth": str(units),
        "input_offset": str(-inp.zero_point), "filter_offset": str(filter_offset),
        "output_offset": str(out.zero_point),
        "act_min": str(act_min), "act_max": str(act_max),
        "per_channel": "1" if per_channel else "0",
        **fields,
    }
    call = KernelCall(
        kernel="tg_fully_connected_s8", params_type="tg_fully_connected_params",
        params=params, inputs=[op.inputs[0]], outputs=[op.outputs[0]],
        sources=["tg_fully_connected.c", "tg_fully_connected.h"], constants=consts,
        comment=f"FULLY_CONNECTED {batches}x{depth} -> {units} {act}")
    if ctx.dsp and filter_offset == 0:
        if not per_channel:
            mult = np.full(units, mult[0], np.int32)
            shift = np.full(units, shift[0], np.int32)
        call = _fully_connected_dsp(op, ctx, w, bias, mult, shift, kbias, inp.zero_point,
                                    out.zero_point, act_min, act_max, batches, depth, units,
                                    call.comment)
    call = with_overlap(call, rows_overlap(batches, depth, units))
    if kbias is not None:
        call = _sparse_option(op, ctx, call, w, bias, kbias, mult, shift, -inp.zero_point,
                              out.zero_point, batches, act_min, act_max)
    return call


def _fully_connected_dsp(op, ctx, w, bias, mult, shift, kbias, in_zp: int, out_zp: int,
                         act_min: int, act_max: int, batches: int, depth: int, units: int,
                         comment: str) -> KernelCall:
    """tg_fully_connected_dsp_s8 for weights [units][depth] (symmetric) with
    per-unit multipliers; kbias is the bias with the input offset folded in."""
    fast, rec = rq_records(bias, mult, shift, out_zp, acc_bounds(w, bias, -in_zp),
                           ctx.fast_requant)
    rec[:, 0] = kbias               # raw int8 inputs: the offset is folded in
    g4 = -(-depth // 4)
    quads = -(-units // 4)
    wt = np.zeros((quads * 4, g4 * 4), np.int8)
    wt[:units, :depth] = w
    wt = wt.reshape(quads, 4, g4, 4).transpose(0, 2, 1, 3)   # [quad][group][row][4]
    dsp_consts = [ConstArray(ctx.name(op, "filter"), "int32_t", pack_words(wt), align=16),
                  ConstArray(ctx.name(op, "rq"), "int32_t", rq_blocks(rec, 4), align=16,
                             is_weight=False)]
    params = {"batches": str(batches), "depth": str(depth), "units": str(units),
              "fast": "1" if fast else "0", **act_fields(act_min, act_max),
              "filter": ctx.name(op, "filter"), "rq": ctx.name(op, "rq")}
    int8 = KernelCall(
        kernel="tg_fully_connected_dsp_s8", params_type="tg_fully_connected_dsp_params",
        params=params, inputs=[op.inputs[0]], outputs=[op.outputs[0]],
        sources=["tg_fully_connected_dsp.c", "tg_fully_connected_dsp.h"],
        constants=dsp_consts, comment=comment + f" [dsp{' fast-rq' if fast else ''}]")
    if not ctx.wide_weights:
        return int8
    # 16-bit weights: the matmul unpacks no weight (docs/performance.md
    # section 21) for twice the weight flash; the int8 call stays as the
    # fallback because plan/fuse.py streams chunks into that layout
    w16 = wt.astype(np.int64).reshape(quads, g4, 4, 4)       # [quad][group][row][4]
    lanes = np.stack([(w16[..., 0] & 0xFFFF) | (w16[..., 2] & 0xFFFF) << 16,
                      (w16[..., 1] & 0xFFFF) | (w16[..., 3] & 0xFFFF) << 16], axis=-1)
    return dataclasses.replace(
        int8, kernel="tg_fully_connected_dsp_w16_s8", fallback=int8,
        constants=[ConstArray(ctx.name(op, "filter"), "int32_t", wrap_int32(lanes.reshape(-1)),
                              align=16), dsp_consts[1]],
        comment=int8.comment.replace("[dsp", "[dsp w16"))
