"""The "dsp" kernels (Cortex-M4/M7 DSP extension) against TFLM, 0 LSB.

generate_aot picks them for cores with the DSP extension.  Every intrinsic
has a portable C twin in tg_dsp.h, so the same kernel code -- data layouts,
im2col, requantization, loop structure -- runs on the host here (with ASan
and UBSan on part of the draws), and on an emulated Cortex-M4F
(test_aot_m4.py and the QEMU tests below), where the intrinsics are real.

Also checked: the fast-requantization proof obligations (tg_rq_fast is
TFLite's MultiplyByQuantizedMultiplier wherever rq_records says so), the
raster-order overlap bound against a byte-level simulation of the kernels'
access order, and that memory_first falls back to the scratch-free kernels
only when the scratch would cost RAM.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from unittest import mock

import harness
import numpy as np
import pytest
from harness import assert_bit_exact, assert_bit_exact_m4, qemu_available
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_aot_ops import conv_cases, depthwise_cases, fc_cases
from tflite_builder import conv2d_model, depthwise_model, fully_connected_model

from tinygen.codegen import aot
from tinygen.ir import parse_tflite
from tinygen.plan import aot as plan_aot_mod
from tinygen.plan.lowering import quantize_multiplier
from tinygen.plan.ops.conv import raster_overlap, rq_records

FAST = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
M4 = settings(max_examples=8, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SLOW = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

FC_W16 = "tg_fully_connected_dsp_w16_s8"
DSP_KERNELS = {"tg_conv2d_dsp_s8", "tg_depthwise_dsp_s8", "tg_fully_connected_dsp_s8", FC_W16}
# a whole-window convolution runs as a fully connected layer, with 16-bit
# weights where scratch is allowed
AS_CONV_OR_FC = (["tg_conv2d_dsp_s8"], ["tg_fully_connected_dsp_s8"], [FC_W16])


@pytest.fixture(autouse=True)
def dsp_core(monkeypatch):
    """The host harness generates code for a Cortex-M4F (dsp kernels, portable
    intrinsics); the QEMU harness does so anyway (board mps2-an386)."""
    monkeypatch.setattr(harness, "generate_aot",
                        functools.partial(aot.generate_aot, core="cortex-m4f"))


def _target(fast_requant: bool) -> None:
    """fast_requant=False: the dsp kernels with TFLite's generic requantization
    (random models almost always qualify for the fast one)."""
    harness.generate_aot = functools.partial(aot.generate_aot, core="cortex-m4f",
                                             fast_requant=fast_requant)


def _host(tflite: bytes, seed: int, memory_first: bool = False, sanitize: bool = False,
          reference: bytes | None = None, fast_requant: bool = True) -> list[str]:
    _target(fast_requant)
    with tempfile.TemporaryDirectory(prefix="tg_dsp_") as d:
        cmp = assert_bit_exact(tflite, Path(d), n_inputs=3, seed=seed, sanitize=sanitize,
                               memory_first=memory_first, reference=reference)
        return [c.kernel for c in cmp.binary.result.calls]


def _m4(tflite: bytes, seed: int, memory_first: bool = False,
        reference: bytes | None = None, fast_requant: bool = True) -> list[str]:
    _target(fast_requant)
    with tempfile.TemporaryDirectory(prefix="tg_dsp_m4_") as d:
        binary = assert_bit_exact_m4(tflite, Path(d), n_inputs=3, seed=seed,
                                     memory_first=memory_first, reference=reference)
        return [c.kernel for c in binary.result.calls]


def _dw_models(kw: dict, seed: int) -> tuple[bytes, bytes | None]:
    """TFLM crashes on a depthwise without bias: it runs an all-zero bias instead."""
    ours = depthwise_model(np.random.default_rng(seed), **kw)
    ref = None if kw.get("with_bias", True) else \
        depthwise_model(np.random.default_rng(seed), **{**kw, "with_bias": "zero"})
    return ours, ref


# ---------------------------------------------------------------------------
# host: the dsp kernels with portable intrinsics


@FAST
@given(conv_cases(), st.booleans(), st.booleans())
def test_conv2d_dsp_host(case, sanitize, fast_requant):
    kw, seed = case
    kernels = _host(conv2d_model(np.random.default_rng(seed), **kw), seed, sanitize=sanitize,
                    fast_requant=fast_requant)
    # a window that is the whole input (one output pixel) runs as a fully connected layer
    assert kernels in AS_CONV_OR_FC \
        if kw["groups"] == 1 else kernels == ["tg_conv2d_s8"]


@st.composite
def wide_conv_cases(draw):
    """Channel counts that reach the direct (whole rows of groups of four)
    im2col path and 1x1 convolutions, as real networks have them."""
    kw, seed = draw(conv_cases())
    c = draw(st.sampled_from([4, 8, 12, 16]))
    k = draw(st.sampled_from([1, 1, 3]))
    kw.update(cin=c, cout=draw(st.integers(1, 9)), groups=1, kh=k, kw=k,
              dilation=(1, draw(st.sampled_from([1, 1, 2]))))
    from tflite_builder import out_size
    if min(out_size(kw["padding"], kw["h"], k, kw["stride"][0], kw["dilation"][0]),
           out_size(kw["padding"], kw["w"], k, kw["stride"][1], kw["dilation"][1])) < 1:
        kw.update(padding="SAME")
    return kw, seed


@FAST
@given(wide_conv_cases(), st.booleans(), st.booleans())
def test_conv2d_dsp_wide_host(case, sanitize, fast_requant):
    kw, seed = case
    assert _host(conv2d_model(np.random.default_rng(seed), **kw), seed, sanitize=sanitize,
                 fast_requant=fast_requant) in AS_CONV_OR_FC


@st.composite
def padded_row_conv_cases(draw):
    """Filter rows of 1..3 bytes past a group of four (one input channel, as
    in a grayscale or spectrogram first layer, or three): rows padded to the
    group with zero weights and expanded straight from the input, a row's last
    read running past the window; the image's last windows are gathered so
    that no read passes the input's end (ASan on part of the draws)."""
    kw, seed = draw(conv_cases())
    c = draw(st.sampled_from([1, 1, 2, 3, 5]))
    fw = draw(st.sampled_from([w for w in (1, 2, 3, 5) if (w * c) % 4]))
    fh = draw(st.integers(2, 3))
    kw.update(cin=c, cout=draw(st.integers(1, 9)), groups=1, kh=fh, kw=fw,
              dilation=(draw(st.integers(1, 2)), 1))
    from tflite_builder import out_size
    if min(out_size(kw["padding"], kw["h"], fh, kw["stride"][0], kw["dilation"][0]),
           out_size(kw["padding"], kw["w"], fw, kw["stride"][1], 1)) < 1:
        kw.update(padding="SAME")
    return kw, seed


@FAST
@given(padded_row_conv_cases(), st.booleans(), st.booleans())
def test_conv2d_dsp_padded_rows_host(case, sanitize, fast_requant):
    kw, seed = case
    assert _host(conv2d_model(np.random.default_rng(seed), **kw), seed, sanitize=sanitize,
                 fast_requant=fast_requant) in AS_CONV_OR_FC


def test_conv2d_dsp_pads_rows_only_without_extra_groups():
    """3x3 on one channel: 3 rows of 4 = the 3 groups of 9 taps, padded;
    3x3 on three channels: 3 x 12 = 9 groups against 7, not padded."""
    from tinygen.plan.aot import lower_model
    rows = {}
    for cin in (1, 3):
        model = parse_tflite(conv2d_model(np.random.default_rng(cin), h=6, w=6, cin=cin))
        (call,) = lower_model(model, core="cortex-m4f")
        rows[cin] = (call.params["row_k"], call.params["direct_rows"], call.params["groups4"])
    assert rows == {1: ("4", "1", "3"), 3: ("9", "0", "7")}


@st.composite
def whole_window_conv_cases(draw):
    """Convolutions with one output pixel whose window is the whole input (a
    streaming model's temporal layer, a pointwise layer on a 1x1 map): lowered
    to the fully connected kernel."""
    kw, seed = draw(conv_cases())
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    kw.update(h=h, w=w, kh=h, kw=w, groups=1, cin=draw(st.integers(1, 20)),
              cout=draw(st.integers(1, 20)), padding="VALID", dilation=(1, 1))
    return kw, seed


@FAST
@given(whole_window_conv_cases(), st.booleans(), st.booleans())
def test_conv2d_whole_window_as_fc_host(case, sanitize, fast_requant):
    kw, seed = case
    assert _host(conv2d_model(np.random.default_rng(seed), **kw), seed, sanitize=sanitize,
                 fast_requant=fast_requant) == [FC_W16]


@FAST
@given(depthwise_cases(), st.booleans(), st.booleans())
def test_depthwise_dsp_host(case, sanitize, fast_requant):
    kw, seed = case
    ours, ref = _dw_models(kw, seed)
    kernels = _host(ours, seed, sanitize=sanitize, reference=ref, fast_requant=fast_requant)
    assert kernels == [_dw_kernel(kw)]


def _dw_kernel(kw: dict) -> str:
    """The kernel a depthwise lowers to on a DSP core with scratch allowed."""
    if kw["depth_multiplier"] == 1:
        return "tg_depthwise_dsp_s8"
    return "tg_conv2d_dsp_s8" if kw["cin"] == 1 else "tg_depthwise_conv2d_s8"


@st.composite
def multiplier_depthwise_cases(draw):
    """Depth multiplier > 1 on one input channel (TFLM micro_speech's
    tiny_conv: 10x8, multiplier 8, on a 49x40x1 spectrogram): lowered to the
    convolution kernel, windows up to 10x8, clipped by the border or not."""
    kw, seed = draw(depthwise_cases())
    kh, kwid = draw(st.integers(1, 10)), draw(st.integers(1, 8))
    kw.update(cin=1, depth_multiplier=draw(st.sampled_from([2, 3, 4, 8, 8, 13])),
              kh=kh, kw=kwid, h=draw(st.integers(kh, kh + 8)), w=draw(st.integers(kwid, kwid + 8)),
              dilation=(1, draw(st.sampled_from([1, 1, 2]))))
    if kw["dilation"][1] == 2 and kw["padding"] == "VALID" and (kwid - 1) * 2 + 1 > kw["w"]:
        kw.update(padding="SAME")
    return kw, seed


@FAST
@given(multiplier_depthwise_cases(), st.booleans(), st.booleans())
def test_depthwise_multiplier_dsp_host(case, sanitize, fast_requant):
    kw, seed = case
    ours, ref = _dw_models(kw, seed)
    assert _host(ours, seed, sanitize=sanitize, reference=ref,
                 fast_requant=fast_requant) == ["tg_conv2d_dsp_s8"]


@st.composite
def wide_depthwise_cases(draw):
    kw, seed = draw(depthwise_cases())
    kw.update(cin=draw(st.sampled_from([4, 8, 12, 13])), depth_multiplier=1,
              kh=3, kw=draw(st.sampled_from([3, 3, 2])), padding="SAME")
    return kw, seed


@FAST
@given(wide_depthwise_cases(), st.booleans(), st.booleans())
def test_depthwise_dsp_wide_host(case, sanitize, fast_requant):
    kw, seed = case
    ours, ref = _dw_models(kw, seed)
    assert _host(ours, seed, sanitize=sanitize, reference=ref,
                 fast_requant=fast_requant) == ["tg_depthwise_dsp_s8"]


@FAST
@given(fc_cases(), st.booleans(), st.booleans(), st.booleans())
def test_fully_connected_dsp_host(case, sanitize, fast_requant, wide):
    """Both weight layouts: 16-bit lanes (the default where the flash allows)
    and int8 words (the flash too small for doubled weights)."""
    kw, seed = case
    with mock.patch.object(plan_aot_mod, "wide_weights_fit", lambda *_: wide):
        kernels = _host(fully_connected_model(np.random.default_rng(seed), **kw), seed,
                        sanitize=sanitize, fast_requant=fast_requant)
    assert kernels == [FC_W16 if wide else "tg_fully_connected_dsp_s8"]


@pytest.mark.slow
@SLOW
@given(conv_cases(big=True) | wide_conv_cases(), st.booleans())
def test_conv2d_dsp_host_sweep(case, memory_first):
    kw, seed = case
    _host(conv2d_model(np.random.default_rng(seed), **kw), seed, memory_first=memory_first,
          fast_requant=seed % 3 != 0)


@pytest.mark.slow
@SLOW
@given(depthwise_cases(big=True) | wide_depthwise_cases() | multiplier_depthwise_cases())
def test_depthwise_dsp_host_sweep(case):
    kw, seed = case
    ours, ref = _dw_models(kw, seed)
    _host(ours, seed, reference=ref, fast_requant=seed % 3 != 0)


@pytest.mark.slow
@SLOW
@given(fc_cases(big=True))
def test_fully_connected_dsp_host_sweep(case):
    kw, seed = case
    _host(fully_connected_model(np.random.default_rng(seed), **kw), seed,
          fast_requant=seed % 3 != 0)


# ---------------------------------------------------------------------------
# emulated Cortex-M4F: the same kernels with the real intrinsics

needs_qemu = pytest.mark.skipif(not qemu_available(), reason="qemu-system-arm not installed")


@needs_qemu
@M4
@given(wide_conv_cases(), st.booleans())
def test_conv2d_dsp_m4(case, fast_requant):
    kw, seed = case
    assert _m4(conv2d_model(np.random.default_rng(seed), **kw), seed,
               fast_requant=fast_requant) in AS_CONV_OR_FC


@needs_qemu
@M4
@given(padded_row_conv_cases(), st.booleans())
def test_conv2d_dsp_padded_rows_m4(case, fast_requant):
    kw, seed = case
    assert _m4(conv2d_model(np.random.default_rng(seed), **kw), seed,
               fast_requant=fast_requant) in AS_CONV_OR_FC


@needs_qemu
@M4
@given(whole_window_conv_cases(), st.booleans())
def test_conv2d_whole_window_as_fc_m4(case, fast_requant):
    kw, seed = case
    assert _m4(conv2d_model(np.random.default_rng(seed), **kw), seed,
               fast_requant=fast_requant) == [FC_W16]


@needs_qemu
@M4
@given(wide_depthwise_cases(), st.booleans())
def test_depthwise_dsp_m4(case, fast_requant):
    kw, seed = case
    ours, ref = _dw_models(kw, seed)
    assert _m4(ours, seed, reference=ref, fast_requant=fast_requant) == ["tg_depthwise_dsp_s8"]


@needs_qemu
@M4
@given(multiplier_depthwise_cases(), st.booleans())
def test_depthwise_multiplier_dsp_m4(case, fast_requant):
    kw, seed = case
    ours, ref = _dw_models(kw, seed)
    assert _m4(ours, seed, reference=ref, fast_requant=fast_requant) == ["tg_conv2d_dsp_s8"]


@needs_qemu
@M4
@given(fc_cases(), st.booleans(), st.booleans())
def test_fully_connected_dsp_m4(case, fast_requant, wide):
    kw, seed = case
    with mock.patch.object(plan_aot_mod, "wide_weights_fit", lambda *_: wide):
        kernels = _m4(fully_connected_model(np.random.default_rng(seed), **kw), seed,
                      fast_requant=fast_requant)
    assert kernels == [FC_W16 if wide else "tg_fully_connected_dsp_s8"]


@needs_qemu
@pytest.mark.slow
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(wide_conv_cases() | conv_cases(big=True), st.booleans())
def test_conv2d_dsp_m4_sweep(case, memory_first):
    kw, seed = case
    _m4(conv2d_model(np.random.default_rng(seed), **kw), seed, memory_first=memory_first,
        fast_requant=seed % 3 != 0)


@needs_qemu
@pytest.mark.slow
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(wide_depthwise_cases() | depthwise_cases(big=True) | multiplier_depthwise_cases())
def test_depthwise_dsp_m4_sweep(case):
    kw, seed = case
    ours, ref = _dw_models(kw, seed)
    _m4(ours, seed, reference=ref, fast_requant=seed % 3 != 0)


# ---------------------------------------------------------------------------
# the arithmetic behind the fast requantization


def _srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul, as TFLite writes it."""
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    q = abs(v) >> 31
    return q if v >= 0 else -q


def _rdbp(x: int, e: int) -> int:
    mask = (1 << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > thr else 0)


def _wrap(v: int) -> int:
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


def _tflite_rq(acc: int, mult: int, shift: int, offset: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return _rdbp(_srdhm(_wrap(acc * (1 << left)), mult), right) + offset


def _fast_rq(acc: int, rec) -> int:
    bias, mult, rnd, e = (int(v) for v in rec)
    a2 = _wrap(acc * 2)
    x = (a2 * mult + (1 << 31)) >> 32           # smmulr
    t = x + rnd - (1 if x < 0 else 0)
    assert -(1 << 31) <= t < (1 << 31)          # no int32 overflow in the kernel
    return t >> e


def _fast2a_rq(acc: int, rec) -> int:
    """tg_rq_fast2a (the depthwise kernel's form): the round in SMMLAR's
    accumulator, the sign correction from 2 * acc."""
    bias, mult, rnd, e = (int(v) for v in rec)
    a2 = _wrap(acc * 2)
    t = _wrap(rnd + ((a2 * mult + (1 << 31)) >> 32)) + (-1 if a2 < 0 else 0)   # smmlar; add asr
    return t >> e


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.floats(1e-9, 4.0), st.integers(-128, 127), st.integers(0, (1 << 31) - 1),
       st.data())
def test_fast_requantization_is_tflite(real, out_zp, bound, data):
    mult, shift = quantize_multiplier(real)
    fast, rec = rq_records(None, np.array([mult]), np.array([shift]), out_zp,
                           np.array([bound], np.int64))
    if not fast:
        assert shift >= 0 or bound >= (1 << 30) or mult == 0 or \
            bound + (1 << max(-shift - 1, 0)) + abs(out_zp) * (1 << -shift) + 2 >= (1 << 31)
        return
    for acc in data.draw(st.lists(st.integers(-bound, bound), min_size=1, max_size=20)) + \
            [bound, -bound, 0]:
        assert _fast_rq(acc, rec[0]) == _tflite_rq(acc, mult, shift, out_zp)
        assert _fast2a_rq(acc, rec[0]) == _tflite_rq(acc, mult, shift, out_zp)


def test_fast_requantization_ties():
    """Accumulators exactly halfway between two outputs, both signs."""
    for real in (0.25, 0.125, 2.0 ** -10, 0.3, 0.0078125):
        mult, shift = quantize_multiplier(real)
        fast, rec = rq_records(None, np.array([mult]), np.array([shift]), -3,
                               np.array([1 << 20], np.int64))
        assert fast
        for acc in range(-2000, 2000):
            assert _fast_rq(acc, rec[0]) == _tflite_rq(acc, mult, shift, -3), (real, acc)
            assert _fast2a_rq(acc, rec[0]) == _tflite_rq(acc, mult, shift, -3), (real, acc)


# ---------------------------------------------------------------------------
# the overlap bound: replay the kernels' access order on bytes


def _raster_clobbers(in_shape, out_shape, fh, fw, win, shift) -> bool:
    """True if writing pixel q's outputs (in raster order) at input + shift
    destroys an input byte a pixel >= q still reads."""
    n, ih, iw, ic = in_shape
    _, oh, ow, oc = out_shape
    reads = []
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                px = set()
                for ky in range(fh):
                    iy = oy * win["stride_h"] - win["pad_h"] + ky * win["dilation_h"]
                    for kx in range(fw):
                        ix = ox * win["stride_w"] - win["pad_w"] + kx * win["dilation_w"]
                        if 0 <= iy < ih and 0 <= ix < iw:
                            base = ((b * ih + iy) * iw + ix) * ic
                            px.update(range(base, base + ic))
                reads.append(px)
    still = [min(r) if r else None for r in reads]
    for q in range(len(reads)):
        lo, hi = shift + q * oc, shift + (q + 1) * oc
        for p in range(q, len(reads)):
            if still[p] is not None and any(lo <= x < hi for x in reads[p]):
                return True
    return False


@settings(max_examples=60, deadline=None, derandomize=True)
@given(conv_cases())
def test_raster_overlap_is_exact(case):
    kw, _ = case
    from tinygen.plan.ops.conv import conv_window
    tfl = conv2d_model(np.random.default_rng(0), **kw)
    model = parse_tflite(tfl)
    op = model.operators[0]
    inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    filt = model.tensors[op.inputs[1]]
    fh, fw = int(filt.shape[1]), int(filt.shape[2])
    win = conv_window(op, inp.shape, fh, fw, out.shape)
    bound = raster_overlap(inp.shape, out.shape, fh, fw, win)
    shapes = (tuple(int(d) for d in inp.shape), tuple(int(d) for d in out.shape))
    assert not _raster_clobbers(*shapes, fh, fw, win, bound)          # safe
    if bound < inp.nbytes:
        assert _raster_clobbers(*shapes, fh, fw, win, bound + 1)      # and tight


# ---------------------------------------------------------------------------
# memory_first: scratch is kept when it is (nearly) free


def test_memory_first_keeps_cheap_scratch_and_drops_costly():
    from keras_models import keras_dscnn
    model = parse_tflite(keras_dscnn())
    fast, fast_plan = aot.plan_aot(model, memory_first=False, core="cortex-m4f")
    chosen, plan = aot.plan_aot(model, core="cortex-m4f")
    lean, lean_plan = aot.plan_aot(model, core="cortex-m4f", scratch_growth=0.0)
    assert {c.kernel for c in chosen} >= {"tg_conv2d_dsp_s8", "tg_depthwise_dsp_s8"}
    assert plan.arena_bytes <= lean_plan.arena_bytes * 1.125
    assert lean_plan.arena_bytes <= plan.arena_bytes <= fast_plan.arena_bytes
    # one-op model: the im2col columns would grow the arena a lot -> fallback
    tiny = parse_tflite(conv2d_model(np.random.default_rng(0), h=4, w=4, cin=16, cout=2))
    calls, _ = aot.plan_aot(tiny, core="cortex-m4f")
    assert calls[0].kernel == "tg_conv2d_direct_s8"


def test_core_selects_kernel_family():
    tfl = conv2d_model(np.random.default_rng(0), h=6, w=6, cin=8, cout=8)
    model = parse_tflite(tfl)
    for core, kernel in (("cortex-m4f", "tg_conv2d_dsp_s8"), ("cortex-m7", "tg_conv2d_dsp_s8"),
                         ("cortex-m33", "tg_conv2d_dsp_s8"), ("xtensa-lx6", "tg_conv2d_s8"),
                         ("cortex-m3", "tg_conv2d_s8"), (None, "tg_conv2d_s8")):
        calls, _ = aot.plan_aot(model, memory_first=False, core=core)
        assert calls[0].kernel == kernel, core
    assert aot.board_core("qemu-cortex-m4") == "cortex-m4f"
    assert aot.board_core("mps2-an500") == "cortex-m7"
    assert aot.board_core("esp32cam") == "xtensa-lx6"
    assert aot.board_core("host") is None


# ---------------------------------------------------------------------------
# release code: no printf family, no heap, no double-precision helpers


@pytest.mark.skipif(not qemu_available(), reason="arm-none-eabi-gcc not installed")
def test_dsp_model_links_without_libc_baggage(tmp_path):
    import subprocess

    from keras_models import keras_cnn
    res = aot.generate_aot(parse_tflite(keras_cnn()), tmp_path / "src", core="cortex-m4f")
    kernels = {c.kernel for c in res.calls}
    # its depthwise runs inside the conv -> depthwise stream (plan/fuse.py),
    # its FC with 16-bit weights
    assert kernels >= DSP_KERNELS - {"tg_depthwise_dsp_s8", "tg_fully_connected_dsp_s8"} \
        | {"tg_stream_conv_dw_s8"}
    harness.link_cortex_m4(tmp_path / "src", tmp_path)
    nm = subprocess.run(["arm-none-eabi-nm", "-S", "--size-sort", str(tmp_path / "model_m4.elf")],
                        capture_output=True, text=True, check=True).stdout
    names = {line.split()[-1] for line in nm.splitlines() if line.strip()}
    # whole libc names (a substring test took the model's own tg_inputs for puts)
    libc = ("malloc", "_malloc_r", "_free_r", "free", "puts", "_puts_r", "__sfvwrite_r")
    bad = {n for n in names if "printf" in n or "dtoa" in n or n.startswith("__aeabi_d")
           or n in libc}
    assert not bad, sorted(bad)


def test_convolutions_keep_8bit_weights_where_16bit_ones_would_not_fit():
    """16-bit convolution weights double the weight flash: a board whose
    flash holds the int8 weights but not twice them gets the portable kernel
    (plan, analysis and the fit figure agree), a large one the dsp kernel."""
    import dataclasses

    from tinygen.analyze.analysis import analyze
    from tinygen.boards import get_board
    from tinygen.ir import parse_tflite
    from tinygen.plan.aot import CODE_FLASH_ALLOWANCE, plan_aot
    from tinygen.plan.staging import const_bytes

    model = parse_tflite(conv2d_model(np.random.default_rng(5), h=12, w=12, cin=64, cout=64))
    weights = model.constant_bytes()
    roomy, tight = 4 << 20, CODE_FLASH_ALLOWANCE + weights + weights // 2
    calls, _ = plan_aot(model, memory_first=False, core="cortex-m4f", flash_budget=roomy)
    assert [c.kernel for c in calls] == ["tg_conv2d_dsp_s8"]
    calls, _ = plan_aot(model, memory_first=False, core="cortex-m4f", flash_budget=tight)
    assert [c.kernel for c in calls] == ["tg_conv2d_s8"]
    board = get_board("nucleo_l432kc")
    for flash in (roomy, tight):
        calls, _ = plan_aot(model, core="cortex-m4f", flash_budget=flash)
        planned = sum(const_bytes(c) for call in calls for c in call.constants)
        a = analyze(model, dataclasses.replace(board, app_flash_bytes=flash))
        aot = next(f for f in a.fits if f["runtime"] == "aot")
        assert aot["fits"] and aot["model_flash"] == planned, (flash, aot)
    assert planned < weights + 1024
