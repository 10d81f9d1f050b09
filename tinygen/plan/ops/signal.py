"""TFLM's signal library ops (an audio front end) for the aot runtime.

The kernels (firmware_templates/aot/kernels/tg_signal.c) do the reference's
integer arithmetic; what the reference computes when the interpreter starts
(kissfft's Q15 twiddles with libm's cos/sin, its factorisation and input
order, the log curve) is computed here and baked into flash.

TFLM reads custom options by position in sorted key order, so an options map
with other keys than the kernel's would be read differently: refused.
"""

from __future__ import annotations

import math

import numpy as np

from ...ir import Operator, Tensor
from ...ir.flexbuffer import FlexBufferError, loads
from ..lowering import ConstArray, KernelCall, LoweringContext, LoweringError, lowers

_SRC = ["tg_signal.c", "tg_signal.h"]
_MAX_STAGES = 16           # TG_RFFT_MAX_STAGES
_Q15_MAX = 32767


def _options(op: Operator, keys: tuple[str, ...]) -> dict:
    if not keys:
        return {}
    try:
        opts = loads(op.custom_options) if op.custom_options else None
    except FlexBufferError as exc:
        raise LoweringError(f"its custom options are not a FlexBuffer map ({exc})") from exc
    if not isinstance(opts, dict) or sorted(opts) != sorted(keys):
        got = sorted(opts) if isinstance(opts, dict) else type(opts).__name__
        raise LoweringError(f"custom options {got}; the kernel reads exactly {sorted(keys)}")
    for k, v in opts.items():
        if not isinstance(v, (int, bool)):
            raise LoweringError(f"custom option '{k}' is {v!r}, not an integer")
    return {k: int(v) for k, v in opts.items()}


def _io(op: Operator, ctx: LoweringContext, n_in: int, n_out: int
        ) -> tuple[list[Tensor], list[Tensor]]:
    if len(op.inputs) != n_in or len(op.outputs) != n_out or min(op.inputs + op.outputs) < 0:
        raise LoweringError(f"{len(op.inputs)} inputs and {len(op.outputs)} outputs; the "
                            f"kernel takes {n_in} and {n_out}")
    t = ctx.model.tensors
    return [t[i] for i in op.inputs], [t[i] for i in op.outputs]


def _dtypes(ts: list[Tensor], *dtypes: str) -> None:
    for t, want in zip(ts, dtypes):
        if t.dtype != want:
            raise LoweringError(f"tensor '{t.name}' is {t.dtype}; the kernel takes {want}")


def _rank(t: Tensor, rank: int) -> None:
    if len(t.shape) != rank:
        raise LoweringError(f"tensor '{t.name}' has {len(t.shape)} dimensions; the kernel "
                            f"takes {rank}")


def _constant(t: Tensor, what: str) -> np.ndarray:
    if not t.is_constant or t.data is None:
        raise LoweringError(f"the {what} '{t.name}' is not a constant tensor; the aot kernel "
                            "checks its tables at build time")
    return np.asarray(t.data).reshape(-1)


def _call(op: Operator, kernel: str, params_type: str, params: dict, **kw) -> KernelCall:
    return KernelCall(kernel=kernel, params_type=params_type,
                      params={k: str(v) for k, v in params.items()},
                      inputs=[i for i in op.inputs], outputs=list(op.outputs),
                      sources=list(_SRC), **kw)


@lowers("SignalWindow")
def lower_window(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x, w), (y,) = _io(op, ctx, 2, 1)
    _dtypes([x, w, y], "int16", "int16", "int16")
    shift = _options(op, ("shift",))["shift"]
    if not 0 <= shift <= 31:
        raise LoweringError(f"shift {shift} is outside 0..31")
    _rank(w, 1)
    n, k = x.num_elements, w.num_elements
    if k == 0 or n % k or y.num_elements != n:
        raise LoweringError(f"{n} samples are not a whole number of {k}-weight windows")
    return _call(op, "tg_window_s16", "tg_window_params",
                 {"size": n, "window_size": k, "shift": shift},
                 in_place=True, comment=f"SignalWindow {k} weights, >> {shift}")


@lowers("SignalFftAutoScale")
def lower_fft_auto_scale(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x,), (y, bits) = _io(op, ctx, 1, 2)
    _dtypes([x, y, bits], "int16", "int16", "int32")
    _options(op, ())
    _rank(x, 1)
    _rank(y, 1)
    if y.num_elements != x.num_elements or bits.num_elements != 1:
        raise LoweringError("output shapes differ from the input's")
    return _call(op, "tg_fft_auto_scale_s16", "tg_fft_auto_scale_params",
                 {"size": x.num_elements}, in_place=True,
                 comment=f"SignalFftAutoScale {x.num_elements} samples")


# ---------------------------------------------------------------------------
# SignalRfft: kissfft's real FFT in Q15


def kiss_factors(n: int) -> list[tuple[int, int]]:
    """kissfft's split of n (radix, remaining length), outermost first:
    fours while they divide, then twos, then odd primes."""
    out, p = [], 4
    limit = math.floor(math.sqrt(n))
    while True:
        while n % p:
            p = 2 if p == 4 else (3 if p == 2 else p + 2)
            if p > limit:
                p = n
        n //= p
        out.append((p, n))
        if n <= 1:
            return out


def kiss_order(n: int, factors: list[tuple[int, int]]) -> np.ndarray:
    """Which complex input each slot of the first (innermost) stage reads:
    the recursion's decimation, unrolled."""
    order = np.zeros(n, np.uint16)

    def place(out_base: int, in_base: int, stride: int, level: int) -> None:
        p, m = factors[level]
        if m == 1:
            for j in range(p):
                order[out_base + j] = in_base + j * stride
        else:
            for q in range(p):
                place(out_base + q * m, in_base + q * stride, stride * p, level + 1)

    place(0, 0, 1, 0)
    return order


def _q15(v: float) -> int:
    return int(math.floor(0.5 + _Q15_MAX * v))


def kiss_twiddles(n: int, inverse: bool = False) -> np.ndarray:
    """The complex FFT's twiddles, (re, im) interleaved, as kiss_fft_alloc
    rounds them (same double arithmetic and libm; the inverse negates the
    phase, not the rounded values)."""
    pi = math.pi
    out = []
    for i in range(n):
        phase = -2 * pi * i / n
        if inverse:
            phase = -phase
        out += [_q15(math.cos(phase)), _q15(math.sin(phase))]
    return np.array(out, np.int16)


def kiss_super_twiddles(n: int, inverse: bool = False) -> np.ndarray:
    """The real FFT's split twiddles for an n-point complex FFT (kiss_fftr_alloc)."""
    out = []
    for i in range(n // 2):
        phase = -3.14159265358979323846264338327 * ((i + 1) / n + 0.5)
        if inverse:
            phase = -phase
        out += [_q15(math.cos(phase)), _q15(math.sin(phase))]
    return np.array(out, np.int16)


@lowers("SignalRfft")
def lower_rfft(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x,), (y,) = _io(op, ctx, 1, 1)
    opts = _options(op, ("T", "fft_length"))
    if opts["T"] != 7 or x.dtype != "int16":
        raise LoweringError(f"a {x.dtype} FFT; the aot runtime implements the int16 one")
    _dtypes([x, y], "int16", "int16")
    fft = opts["fft_length"]
    if fft < 4 or fft & (fft - 1) or fft > 8192:
        raise LoweringError(f"fft_length {fft}; the aot kernel takes powers of two 4..8192")
    if not x.shape or not y.shape:
        raise LoweringError("scalar input or output")
    in_len, out_last = int(x.shape[-1]), int(y.shape[-1])
    frames = x.num_elements // max(in_len, 1)
    n = fft // 2
    if in_len < 1 or in_len > fft:
        raise LoweringError(f"{in_len} samples per frame do not fit fft_length {fft}")
    if out_last < 2 * (n + 1) or out_last % 2 or y.num_elements != frames * out_last:
        raise LoweringError(f"output {list(y.shape)} cannot hold {frames} spectra of {n + 1} "
                            "complex bins")
    factors = kiss_factors(n)
    if len(factors) > _MAX_STAGES or any(p not in (2, 4) for p, _ in factors):
        raise LoweringError(f"fft_length {fft} splits into radices {[p for p, _ in factors]}")
    name = ctx.name(op, "rfft")
    consts = [ConstArray(f"{name}_twiddles", "int16_t", kiss_twiddles(n), is_weight=False),
              ConstArray(f"{name}_split", "int16_t", kiss_super_twiddles(n), is_weight=False),
              ConstArray(f"{name}_order", "uint16_t", kiss_order(n, factors), is_weight=False)]
    radix = [p for p, _ in reversed(factors)]
    params = {"fft_length": fft, "input_length": in_len, "frames": frames,
              "output_stride": out_last // 2, "num_stages": len(radix),
              "radix": "{" + ", ".join(str(r) for r in radix) + "}",
              "twiddles": consts[0].name, "super_twiddles": consts[1].name,
              "order": consts[2].name}
    return _call(op, "tg_rfft_s16", "tg_rfft_params", params, constants=consts,
                 scratch_bytes=2 * fft,
                 comment=f"SignalRfft int16, {fft} points, radices {radix}")


@lowers("SignalIrfft")
def lower_irfft(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x,), (y,) = _io(op, ctx, 1, 1)
    opts = _options(op, ("T", "fft_length"))
    if opts["T"] != 7 or x.dtype != "int16":
        raise LoweringError(f"a {x.dtype} inverse FFT; the aot runtime implements the int16 "
                            "one")
    _dtypes([x, y], "int16", "int16")
    fft = opts["fft_length"]
    if fft < 4 or fft & (fft - 1) or fft > 8192:
        raise LoweringError(f"fft_length {fft}; the aot kernel takes powers of two 4..8192")
    if not x.shape or len(y.shape) != len(x.shape):
        raise LoweringError("input and output ranks differ")
    in_last, out_last = int(x.shape[-1]), int(y.shape[-1])
    n = fft // 2
    if in_last % 2 or in_last < 2 * (n + 1):
        raise LoweringError(f"input rows of {in_last} int16 do not hold the {n + 1} complex "
                            f"bins fft_length {fft} reads")
    frames = x.num_elements // in_last
    # TFLM writes fft_length samples per frame, output_length apart
    if out_last != fft or y.num_elements != frames * fft:
        raise LoweringError(f"output {list(y.shape)} is not {frames} frames of {fft} samples")
    factors = kiss_factors(n)
    if len(factors) > _MAX_STAGES or any(p not in (2, 4) for p, _ in factors):
        raise LoweringError(f"fft_length {fft} splits into radices {[p for p, _ in factors]}")
    name = ctx.name(op, "irfft")
    consts = [ConstArray(f"{name}_twiddles", "int16_t", kiss_twiddles(n, True), is_weight=False),
              ConstArray(f"{name}_split", "int16_t", kiss_super_twiddles(n, True),
                         is_weight=False),
              ConstArray(f"{name}_order", "uint16_t", kiss_order(n, factors), is_weight=False)]
    radix = [p for p, _ in reversed(factors)]
    params = {"fft_length": fft, "input_stride": in_last // 2, "frames": frames,
              "num_stages": len(radix), "radix": "{" + ", ".join(str(r) for r in radix) + "}",
              "twiddles": consts[0].name, "super_twiddles": consts[1].name,
              "order": consts[2].name}
    return _call(op, "tg_irfft_s16", "tg_irfft_params", params, constants=consts,
                 scratch_bytes=2 * fft,
                 comment=f"SignalIrfft int16, {fft} points, radices {radix}")


@lowers("SignalEnergy")
def lower_energy(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x,), (y,) = _io(op, ctx, 1, 1)
    _dtypes([x, y], "int16", "uint32")
    _rank(x, 1)
    _rank(y, 1)
    opts = _options(op, ("end_index", "start_index"))
    bins = x.num_elements // 2
    if y.num_elements != bins or x.num_elements % 2:
        raise LoweringError(f"output of {y.num_elements} for {x.num_elements / 2:g} complex bins")
    if not 0 <= opts["start_index"] <= opts["end_index"] <= bins:
        raise LoweringError(f"bins {opts['start_index']}..{opts['end_index']} are outside the "
                            f"{bins} of the spectrum")
    return _call(op, "tg_energy_s16", "tg_energy_params",
                 {"size": bins, "start_index": opts["start_index"],
                  "end_index": opts["end_index"]},
                 comment=f"SignalEnergy bins {opts['start_index']}..{opts['end_index']}")


@lowers("SignalFilterBank")
def lower_filter_bank(op: Operator, ctx: LoweringContext) -> KernelCall:
    ins, (y,) = _io(op, ctx, 6, 1)
    _dtypes(ins + [y], "uint32", "int16", "int16", "int16", "int16", "int16", "uint64")
    for t in ins + [y]:
        _rank(t, 1)
    ch = _options(op, ("num_channels",))["num_channels"]
    if ch < 1 or y.num_elements != ch:
        raise LoweringError(f"num_channels {ch} but the output has {y.num_elements}")
    weights = _constant(ins[1], "weights")
    unweights = _constant(ins[2], "unweights")
    starts, wstarts, widths = (_constant(t, "channel table").astype(np.int64) for t in ins[3:])
    if len(unweights) != len(weights) or min(len(starts), len(wstarts), len(widths)) < ch + 1:
        raise LoweringError(f"channel tables shorter than {ch + 1} (num_channels + 1) entries")
    bins = ins[0].num_elements
    for c in range(ch + 1):
        if widths[c] < 0 or starts[c] < 0 or wstarts[c] < 0 or starts[c] + widths[c] > bins \
                or wstarts[c] + widths[c] > len(weights):
            raise LoweringError(f"channel {c} reads bins {starts[c]}..{starts[c] + widths[c]} "
                                f"and weights {wstarts[c]}..{wstarts[c] + widths[c]}, beyond "
                                f"{bins} bins or {len(weights)} weights")
    return _call(op, "tg_filter_bank", "tg_filter_bank_params", {"num_channels": ch},
                 comment=f"SignalFilterBank {ch} channels over {bins} bins")


@lowers("SignalFilterBankSquareRoot")
def lower_filter_bank_sqrt(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x, bits), (y,) = _io(op, ctx, 2, 1)
    _dtypes([x, bits, y], "uint64", "int32", "uint32")
    _rank(x, 1)
    if y.num_elements != x.num_elements or bits.num_elements != 1:
        raise LoweringError("output or scale shape differs from the input's")
    return _call(op, "tg_filter_bank_sqrt", "tg_filter_bank_sqrt_params",
                 {"num_channels": x.num_elements},
                 comment=f"SignalFilterBankSquareRoot {x.num_elements} channels")


@lowers("SignalFilterBankSpectralSubtraction")
def lower_spectral_subtraction(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x,), (y, noise) = _io(op, ctx, 1, 2)
    _dtypes([x, y, noise], "uint32", "uint32", "uint32")
    keys = ("alternate_one_minus_smoothing", "alternate_smoothing", "clamping",
            "min_signal_remaining", "num_channels", "one_minus_smoothing", "smoothing",
            "smoothing_bits", "spectral_subtraction_bits")
    o = _options(op, keys)
    ch = o["num_channels"]
    if ch < 1 or not x.num_elements >= ch or y.num_elements < ch or noise.num_elements != ch:
        raise LoweringError(f"num_channels {ch} for tensors of {x.num_elements}, "
                            f"{y.num_elements} and {noise.num_elements} values")
    for k in ("smoothing_bits", "spectral_subtraction_bits"):
        if not 0 <= o[k] <= 31:
            raise LoweringError(f"{k} {o[k]} is outside 0..31")
    params = {"num_channels": ch, "clamping": int(bool(o["clamping"]))}
    for k in keys:
        if k not in params:
            params[k] = f"{o[k] & 0xFFFFFFFF}u"
    return _call(op, "tg_spectral_subtraction", "tg_spectral_subtraction_params", params,
                 state_bytes=4 * ch,
                 comment=f"SignalFilterBankSpectralSubtraction {ch} channels (noise state)")


@lowers("SignalPCAN")
def lower_pcan(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x, noise, lut), (y,) = _io(op, ctx, 3, 1)
    _dtypes([x, noise, lut, y], "uint32", "uint32", "int16", "uint32")
    shift = _options(op, ("snr_shift",))["snr_shift"]
    if not 0 <= shift <= 63:
        raise LoweringError(f"snr_shift {shift} is outside 0..63")
    ch = x.num_elements
    if noise.num_elements < ch or y.num_elements != ch:
        raise LoweringError("noise estimate or output shorter than the input")
    # the gain curve is indexed up to 4 * 32 - 4 for the largest noise estimate
    if len(_constant(lut, "gain table")) < 4 * 32 - 3:
        raise LoweringError(f"the gain table has {lut.num_elements} entries; it needs 125")
    return _call(op, "tg_pcan", "tg_pcan_params", {"num_channels": ch, "snr_shift": shift},
                 comment=f"SignalPCAN {ch} channels")


def log_lut() -> np.ndarray:
    """log2(1 + x) - x at 128 segments of [0, 1], Q16, and a closing 0 (the
    curve the reference's Log32 interpolates)."""
    vals = [round((math.log2(1 + i / 128) - i / 128) * 65536) for i in range(129)]
    return np.array(vals + [0], np.uint16)


@lowers("SignalFilterBankLog")
def lower_filter_bank_log(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x,), (y,) = _io(op, ctx, 1, 1)
    _dtypes([x, y], "uint32", "int16")
    o = _options(op, ("input_correction_bits", "output_scale"))
    if not 0 <= o["input_correction_bits"] <= 31:
        raise LoweringError(f"input_correction_bits {o['input_correction_bits']} is outside "
                            "0..31")
    ch = x.num_elements
    if y.num_elements != ch:
        raise LoweringError("output size differs from the input's")
    lut = ConstArray(ctx.name(op, "log_lut"), "uint16_t", log_lut(), is_weight=False)
    return _call(op, "tg_filter_bank_log", "tg_filter_bank_log_params",
                 {"num_channels": ch, "correction_bits": f"{o['input_correction_bits']}u",
                  "output_scale": f"{o['output_scale'] & 0xFFFFFFFF}u", "log_lut": lut.name},
                 constants=[lut], comment=f"SignalFilterBankLog {ch} channels")


@lowers("SignalFramer")
def lower_framer(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x,), (y, valid) = _io(op, ctx, 1, 2)
    _dtypes([x, y, valid], "int16", "int16", "bool")
    o = _options(op, ("frame_size", "frame_step", "prefill"))
    size, step = o["frame_size"], o["frame_step"]
    if not x.shape or len(y.shape) != len(x.shape) + 1 or valid.num_elements != 1:
        raise LoweringError("the output must have one axis more than the input, and a scalar "
                            "valid flag")
    inner = int(x.shape[-1])
    if step < 1 or size < 1 or inner < step or inner % step:
        raise LoweringError(f"frame_step {step} does not divide the {inner} samples of an input")
    outer, n_frames = x.num_elements // inner, inner // step
    if y.num_elements != outer * n_frames * size:
        raise LoweringError(f"output {list(y.shape)} is not {outer} x {n_frames} frames of {size}")
    capacity = -(-size // step) * step
    initial = size - step if o["prefill"] else 0
    if initial < 0:
        raise LoweringError(f"prefill with frame_step {step} above frame_size {size}")
    return _call(op, "tg_framer_s16", "tg_framer_params",
                 {"outer_dims": outer, "n_frames": n_frames, "frame_size": size,
                  "frame_step": step, "initial": initial, "capacity": capacity},
                 state_bytes=4 * outer + 2 * outer * capacity,
                 comment=f"SignalFramer {size} samples every {step} (sample history)")


@lowers("SignalStacker")
def lower_stacker(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x,), (y, valid) = _io(op, ctx, 1, 2)
    _dtypes([x, y, valid], "int16", "int16", "bool")
    o = _options(op, ("num_channels", "stacker_left_context", "stacker_right_context",
                      "stacker_step"))
    ch, left = o["num_channels"], o["stacker_left_context"]
    if o["stacker_step"] != 1 or o["stacker_right_context"] != 0:
        raise LoweringError(f"stacker_step {o['stacker_step']}, right context "
                            f"{o['stacker_right_context']}; the aot kernel stacks every frame "
                            "with left context only (step 1, right context 0)")
    if ch < 1 or left < 0 or x.num_elements != ch or y.num_elements != ch * (left + 1) \
            or valid.num_elements != 1:
        raise LoweringError(f"{x.num_elements} values in, {y.num_elements} out for "
                            f"{ch} channels and {left} frames of left context")
    return _call(op, "tg_stacker_s16", "tg_stacker_params",
                 {"num_channels": ch, "left_context": left},
                 state_bytes=4 + 2 * ch * (left + 1),
                 comment=f"SignalStacker {left + 1} frames of {ch} (frame history)")


@lowers("SignalDelay")
def lower_delay(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x,), (y,) = _io(op, ctx, 1, 1)
    _dtypes([x, y], "int16", "int16")
    delay = _options(op, ("delay_length",))["delay_length"]
    if not x.shape or int(x.shape[-1]) < 1:
        raise LoweringError("a scalar or empty input; the kernel delays along the last axis")
    if not 0 <= delay <= 1 << 20:
        raise LoweringError(f"delay_length {delay} is outside 0..{1 << 20}")
    if y.num_elements != x.num_elements:
        raise LoweringError(f"output of {y.num_elements} values for {x.num_elements} in")
    n = int(x.shape[-1])
    outer = x.num_elements // n
    if delay == 0:
        # no history to keep: the output is the input's bytes (a view when it can be)
        return KernelCall(kernel="tg_reshape", params_type="tg_reshape_params",
                          params={"bytes": f"{x.nbytes}u"}, inputs=[op.inputs[0]],
                          outputs=[op.outputs[0]], sources=["tg_reshape.c", "tg_reshape.h"],
                          view=True, comment="SignalDelay 0 samples: a copy")
    return _call(op, "tg_delay_s16", "tg_delay_params",
                 {"outer_dims": outer, "frame_size": n, "delay": delay},
                 state_bytes=2 * outer * delay,
                 comment=f"SignalDelay {delay} samples (sample history)")


_OVERLAP_ADD_TYPES = {7: ("int16", "tg_overlap_add_s16", 2), 0: ("float32", "tg_overlap_add_f32", 4)}


@lowers("SignalOverlapAdd")
def lower_overlap_add(op: Operator, ctx: LoweringContext) -> KernelCall:
    (x,), (y,) = _io(op, ctx, 1, 1)
    o = _options(op, ("T", "frame_step"))
    if o["T"] not in _OVERLAP_ADD_TYPES or _OVERLAP_ADD_TYPES[o["T"]][0] != x.dtype:
        raise LoweringError(f"T {o['T']} with a {x.dtype} input; the kernel takes int16 (T 7) "
                            "or float32 (T 0)")
    dtype, kernel, size_of = _OVERLAP_ADD_TYPES[o["T"]]
    _dtypes([x, y], dtype, dtype)
    if len(x.shape) < 2 or len(y.shape) != len(x.shape) - 1:
        raise LoweringError(f"input {list(x.shape)} and output {list(y.shape)}: the input needs "
                            "[..., frames, frame_size] and the output one axis less")
    size, n_frames, step = int(x.shape[-1]), int(x.shape[-2]), o["frame_step"]
    if size < 1 or n_frames < 1:
        raise LoweringError(f"input {list(x.shape)} holds no frame")
    if not 1 <= step <= size:
        # TFLM would move a negative number of samples
        raise LoweringError(f"frame_step {step} is outside 1..{size} (the frame size)")
    outer = x.num_elements // (size * n_frames)
    if y.num_elements != outer * n_frames * step:
        raise LoweringError(f"output {list(y.shape)} is not {outer} x {n_frames} steps of {step}")
    return _call(op, kernel, "tg_overlap_add_params",
                 {"outer_dims": outer, "n_frames": n_frames, "frame_size": size,
                  "frame_step": step},
                 state_bytes=size_of * outer * size,
                 comment=f"SignalOverlapAdd {dtype} frames of {size} every {step} (running sum)")
