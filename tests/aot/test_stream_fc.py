"""A convolution / depthwise convolution streamed into a FULLY_CONNECTED
(plan/fuse.py, tg_stream_fc*.c), and a convolution streamed into a depthwise
(tg_stream_dw.c), against TFLM, 0 LSB.

The fused call never stores the producer's map: the producer runs on chunks
of output rows presented as smaller convolutions, the FC accumulates each
chunk's part of its dot products.  Geometries cover the chunk boundaries
that matter: top padding shrinking chunk by chunk, strides, windows taller
than a chunk, dilation, odd pixel counts, map sizes that are not whole words.
The planner keeps a fusion only where it shrinks the arena; these tests force
it so that every draw exercises the fused kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import assert_bit_exact_m4, qemu_available
from hypothesis import given
from hypothesis import strategies as st
from stream_support import (
    FAST,
    bit_exact_on_host,
    force_streams,
    input_and_conv,
    sweep,
    top_level_kernels,
)
from tflite_builder import (
    GraphBuilder,
    bias_for,
    conv2d_options,
    depthwise_options,
    fc_options,
    filter_scales,
    out_size,
    output_scale_for,
    random_int8,
    reshape_options,
)

from tinygen.ir import parse_tflite
from tinygen.plan import fuse
from tinygen.plan.aot import plan_aot

SWEEP = sweep(200)
STREAMED = {"tg_stream_fc_conv_s8", "tg_stream_fc_dw_s8"}


def stream_model(rng, kind: str, h: int, w: int, cin: int, cout: int, kh: int, kw: int,
                 stride: tuple[int, int], dilation: tuple[int, int], padding: str,
                 units: int, activation: str, reshape: bool) -> bytes:
    """input -> CONV_2D or DEPTHWISE_CONV_2D -> [RESHAPE] -> FULLY_CONNECTED."""
    b = GraphBuilder("stream fc")
    in_scale = float(np.float32(rng.uniform(0.005, 0.05)))
    in_zp = int(rng.integers(-128, 128))
    x = b.activation((1, h, w, cin), scale=in_scale, zero_point=in_zp)
    wq = filter_scales(rng, cout, True)
    bias = bias_for(rng, in_scale, wq, cout, True)
    assert bias
    bt = b.constant(bias[0], "int32", scale=bias[1], zero_point=0, axis=0)
    oh = out_size(padding, h, kh, stride[0], dilation[0])
    ow = out_size(padding, w, kw, stride[1], dilation[1])
    if kind == "conv":
        wt = b.constant(random_int8(rng, (cout, kh, kw, cin), -127, 127), "int8", scale=wq,
                        zero_point=0, axis=0)
        m_scale = output_scale_for(in_scale, wq, kh * kw * cin, 1.0)
    else:
        wt = b.constant(random_int8(rng, (1, kh, kw, cout), -127, 127), "int8", scale=wq,
                        zero_point=0, axis=3)
        m_scale = output_scale_for(in_scale, wq, kh * kw, 1.0)
    m_zp = int(rng.integers(-128, 128))
    m = b.activation((1, oh, ow, cout), scale=m_scale, zero_point=m_zp)
    if kind == "conv":
        b.op("CONV_2D", [x, wt, bt], [m], conv2d_options(padding, stride, dilation, "RELU"),
             version=3)
    else:
        b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [m],
             depthwise_options(padding, stride, dilation, cout // cin, "RELU"), version=3)
    depth = oh * ow * cout
    flat = m
    if reshape:
        shape = b.constant(np.array([1, depth], np.int32), "int32")
        flat = b.activation((1, depth), scale=m_scale, zero_point=m_zp)
        b.op("RESHAPE", [m, shape], [flat], reshape_options([1, depth]))
    fq = filter_scales(rng, units, False)
    fw = b.constant(random_int8(rng, (units, depth), -127, 127), "int8", scale=fq,
                    zero_point=0, axis=0)
    fb = bias_for(rng, m_scale, fq, units, True)
    assert fb
    fbt = b.constant(fb[0], "int32", scale=fb[1], zero_point=0, axis=0)
    y = b.activation((1, units), scale=output_scale_for(m_scale, fq, depth, 1.0),
                     zero_point=int(rng.integers(-128, 128)))
    b.op("FULLY_CONNECTED", [flat, fw, fbt], [y], fc_options(activation), version=4)
    return b.build([x], [y])


def conv_dw_model(rng, h: int, w: int, cin: int, cout: int, kh: int, kw: int,
                  stride: tuple[int, int], padding: str, dkh: int, dkw: int,
                  dstride: tuple[int, int], ddilation: tuple[int, int], dpadding: str) -> bytes:
    """input -> CONV_2D -> DEPTHWISE_CONV_2D (multiplier 1): MobileNetV2's
    expansion feeding its depthwise."""
    b = GraphBuilder("stream dw")
    x, m, m_scale, _ = input_and_conv(b, rng, h, w, cin, cout, kh, kw, stride, padding, "RELU6")
    mh, mw = out_size(padding, h, kh, stride[0]), out_size(padding, w, kw, stride[1])
    dq = filter_scales(rng, cout, True)
    dbias = bias_for(rng, m_scale, dq, cout, True)
    assert dbias
    dw = b.constant(random_int8(rng, (1, dkh, dkw, cout), -127, 127), "int8", scale=dq,
                    zero_point=0, axis=3)
    dbt = b.constant(dbias[0], "int32", scale=dbias[1], zero_point=0, axis=0)
    oh = out_size(dpadding, mh, dkh, dstride[0], ddilation[0])
    ow = out_size(dpadding, mw, dkw, dstride[1], ddilation[1])
    y = b.activation((1, oh, ow, cout), scale=output_scale_for(m_scale, dq, dkh * dkw, 1.0),
                     zero_point=int(rng.integers(-128, 128)))
    b.op("DEPTHWISE_CONV_2D", [m, dw, dbt], [y],
         depthwise_options(dpadding, dstride, ddilation, 1, "NONE"), version=3)
    return b.build([x], [y])


@st.composite
def conv_dw_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    dkh, dkw = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    ddil = (draw(st.sampled_from([1, 1, 2])), 1)
    dpadding = draw(st.sampled_from(["SAME", "SAME", "VALID"]))
    h = draw(st.integers(max(kh, (dkh - 1) * ddil[0] + 1) * stride[0], 20))
    w = draw(st.integers(max(kw, dkw) * stride[1], 9))
    mh, mw = out_size(padding, h, kh, stride[0]), out_size(padding, w, kw, stride[1])
    if mh < (dkh - 1) * ddil[0] + 1 or mw < dkw:
        dpadding = "SAME"               # a VALID window larger than the map: no output
    return dict(h=h, w=w, cin=draw(st.integers(1, 5)), cout=draw(st.sampled_from([4, 8, 6, 12])),
                kh=kh, kw=kw, stride=stride, padding=padding, dkh=dkh, dkw=dkw,
                dstride=(draw(st.integers(1, 3)), draw(st.integers(1, 2))), ddilation=ddil,
                dpadding=dpadding), draw(st.integers(0, 2**16))


@st.composite
def stream_cases(draw):
    kind = draw(st.sampled_from(["conv", "dw", "dw_mult"]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    dilation = (draw(st.sampled_from([1, 1, 2])), 1)
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h = draw(st.integers((kh - 1) * dilation[0] + 1, 14))
    w = draw(st.integers(kw, 9))
    if kind == "conv":
        cin, cout = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    elif kind == "dw":
        cin = draw(st.integers(1, 9))
        cout = cin
    else:                               # one channel, multiplier > 1: the conv kernel
        cin, cout = 1, draw(st.sampled_from([2, 3, 8]))
    return dict(kind="conv" if kind == "conv" else "dw", h=h, w=w, cin=cin, cout=cout, kh=kh,
                kw=kw, stride=stride, dilation=dilation, padding=padding,
                units=draw(st.integers(1, 9)),
                activation=draw(st.sampled_from(["NONE", "RELU"])),
                reshape=draw(st.booleans())), draw(st.integers(0, 2**16))


@pytest.fixture(autouse=True)
def forced(monkeypatch):
    force_streams(monkeypatch)


@FAST
@given(case=stream_cases(), sanitize=st.booleans())
def test_stream_fc_host(case, sanitize):
    _stream_fc(case, sanitize)


@pytest.mark.slow
@SWEEP
@given(case=stream_cases(), sanitize=st.booleans())
def test_stream_fc_host_sweep(case, sanitize):
    _stream_fc(case, sanitize)


def _stream_fc(case, sanitize):
    kw, seed = case
    tfl = stream_model(np.random.default_rng(seed), **kw)
    kernels = top_level_kernels(bit_exact_on_host(tfl, seed, sanitize))
    # the portable depthwise (dilated, multiplier > 1 on several channels) is not streamed
    assert kernels[-1] in STREAMED or kernels[0] not in fuse.PRODUCERS, kernels


@FAST
@given(case=conv_dw_cases(), sanitize=st.booleans())
def test_stream_conv_dw_host(case, sanitize):
    _stream_conv_dw(case, sanitize)


@pytest.mark.slow
@SWEEP
@given(case=conv_dw_cases(), sanitize=st.booleans())
def test_stream_conv_dw_host_sweep(case, sanitize):
    _stream_conv_dw(case, sanitize)


def _stream_conv_dw(case, sanitize):
    kw, seed = case
    tfl = conv_dw_model(np.random.default_rng(seed), **kw)
    kernels = top_level_kernels(bit_exact_on_host(tfl, seed, sanitize))
    assert kernels == ["tg_stream_conv_dw_s8"] or kernels[-1] != "tg_depthwise_dsp_s8" \
        or kernels[0] != "tg_conv2d_dsp_s8", kernels


def test_stream_fc_kept_only_when_it_saves_ram():
    """A large map before a small FC is streamed; a map smaller than the chunk
    and accumulators it would need is not."""
    rng = np.random.default_rng(1)
    big = parse_tflite(stream_model(rng, "conv", 24, 16, 1, 8, 3, 3, (1, 1), (1, 1), "SAME", 4,
                                    "NONE", True))
    calls, plan = plan_aot(big, core="cortex-m4f")
    _, unfused = plan_aot(big, core="cortex-m4f", fuse=False)
    assert calls[-1].kernel == "tg_stream_fc_conv_s8" and calls[0].absorbed_by == 2
    assert plan.arena_bytes < unfused.arena_bytes
    small = parse_tflite(stream_model(rng, "conv", 2, 2, 4, 2, 1, 1, (1, 1), (1, 1), "SAME", 8,
                                      "NONE", False))
    calls, _ = plan_aot(small, core="cortex-m4f")
    assert not any(c.fused for c in calls)


@pytest.mark.slow
@pytest.mark.skipif(not qemu_available(), reason="qemu-system-arm / arm-none-eabi-gcc missing")
def test_stream_fc_m4(tmp_path):
    """The intrinsic build on an emulated Cortex-M4F: tiny_conv's shape (10x8
    window, stride 2, multiplier 8 on one channel), a strided depthwise, and
    a convolution streamed into a depthwise."""
    rng = np.random.default_rng(7)
    for i, kw in enumerate([
            dict(kind="dw", h=25, w=20, cin=1, cout=8, kh=10, kw=8, stride=(2, 2),
                 dilation=(1, 1), padding="SAME", units=12, activation="NONE", reshape=True),
            dict(kind="dw", h=11, w=7, cin=6, cout=6, kh=3, kw=3, stride=(2, 1),
                 dilation=(1, 1), padding="SAME", units=5, activation="RELU", reshape=False)]):
        binary = assert_bit_exact_m4(stream_model(rng, **kw), tmp_path / str(i), n_inputs=3,
                                     memory_first=False)
        assert binary.result.calls[-1].kernel in STREAMED
    # MobileNetV2's 1x1 expansion feeding a stride-2 3x3 depthwise (mobilenet_ssd)
    tfl = conv_dw_model(rng, h=12, w=10, cin=8, cout=24, kh=1, kw=1, stride=(1, 1),
                        padding="SAME", dkh=3, dkw=3, dstride=(2, 2), ddilation=(1, 1),
                        dpadding="SAME")
    binary = assert_bit_exact_m4(tfl, tmp_path / "dw", n_inputs=3, memory_first=False)
    assert binary.result.calls[-1].kernel == "tg_stream_conv_dw_s8"
