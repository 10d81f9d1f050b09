"""A convolution streamed into an average or max pool (plan/fuse.py,
tg_stream_pool.c) against TFLM, 0 LSB.

The fused call never stores the convolution's map: the pool runs one output
row at a time and the convolution computes the rows its windows reach just
before.  The pool's output may also lie over the start of the convolution's
input (fuse.stream_pool_overlap); the planner puts it exactly at that bound
when it saves bytes, so a bound one row too generous shows up as wrong
outputs here.  Geometries: pool windows taller or shorter than their stride
(rows shared by two pool rows, rows no window reads), SAME windows clipped at
the edges, strided and padded convolutions, odd sizes.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from harness import assert_bit_exact, assert_bit_exact_m4, qemu_available
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
    filter_scales,
    out_size,
    output_scale_for,
    pool_options,
    random_int8,
)

from tinygen.ir import parse_tflite
from tinygen.plan import aot as plan_aot_mod
from tinygen.plan import fuse
from tinygen.plan.aot import plan_aot

SWEEP = sweep(200)


def conv_pool_model(rng, h: int, w: int, cin: int, cout: int, kh: int, kw: int,
                    stride: tuple[int, int], padding: str, pool: str, ph: int, pw: int,
                    pstride: tuple[int, int], ppadding: str, activation: str) -> bytes:
    """input -> CONV_2D -> AVERAGE_POOL_2D or MAX_POOL_2D."""
    b = GraphBuilder("stream pool")
    x, m, m_scale, m_zp = input_and_conv(b, rng, h, w, cin, cout, kh, kw, stride, padding, "RELU")
    mh, mw = out_size(padding, h, kh, stride[0]), out_size(padding, w, kw, stride[1])
    oh, ow = out_size(ppadding, mh, ph, pstride[0]), out_size(ppadding, mw, pw, pstride[1])
    y = b.activation((1, oh, ow, cout), scale=m_scale, zero_point=m_zp)
    b.op(pool, [m], [y], pool_options((ph, pw), pstride, ppadding, activation))
    return b.build([x], [y])


@st.composite
def conv_pool_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    ph, pw = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    pstride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h = draw(st.integers(max(kh, ph) * stride[0], 20))
    w = draw(st.integers(max(kw, pw) * stride[1], 9))
    mh, mw = out_size(padding, h, kh, stride[0]), out_size(padding, w, kw, stride[1])
    ppadding = draw(st.sampled_from(["SAME", "VALID"]))
    if mh < ph or mw < pw:
        ppadding = "SAME"               # a VALID window larger than the map: no output
    return dict(h=h, w=w, cin=draw(st.integers(1, 9)), cout=draw(st.sampled_from([3, 4, 8, 12])),
                kh=kh, kw=kw, stride=stride, padding=padding,
                pool=draw(st.sampled_from(["AVERAGE_POOL_2D", "MAX_POOL_2D"])), ph=ph, pw=pw,
                pstride=pstride, ppadding=ppadding,
                activation=draw(st.sampled_from(["NONE", "RELU6"]))), draw(st.integers(0, 2**16))


@pytest.fixture(autouse=True)
def forced(monkeypatch):
    force_streams(monkeypatch)


def _conv_pool(case, sanitize):
    kw, seed = case
    tfl = conv_pool_model(np.random.default_rng(seed), **kw)
    kernels = top_level_kernels(bit_exact_on_host(tfl, seed, sanitize))
    assert kernels == ["tg_stream_conv_pool_s8"] or kernels[0] != "tg_conv2d_dsp_s8", kernels


@FAST
@given(case=conv_pool_cases(), sanitize=st.booleans())
def test_stream_conv_pool_host(case, sanitize):
    _conv_pool(case, sanitize)


@pytest.mark.slow
@SWEEP
@given(case=conv_pool_cases(), sanitize=st.booleans())
def test_stream_conv_pool_host_sweep(case, sanitize):
    _conv_pool(case, sanitize)


def _quickstart_like(rng) -> bytes:
    """The quickstart's pointwise 16x16x8 -> 12 before its 2x2 average pool."""
    return conv_pool_model(rng, h=16, w=16, cin=8, cout=12, kh=1, kw=1, stride=(1, 1),
                           padding="SAME", pool="AVERAGE_POOL_2D", ph=2, pw=2, pstride=(2, 2),
                           ppadding="VALID", activation="NONE")


def test_pool_output_placed_over_the_input(tmp_path):
    """The planner uses the fused call's bound: the pool's output starts
    inside the convolution's input (160 B after it, rounded down to the
    alignment), and the outputs are still TFLM's."""
    tfl = _quickstart_like(np.random.default_rng(3))
    calls, plan = plan_aot(parse_tflite(tfl), core="cortex-m4f", memory_first=False)
    fused = [c for c in calls if c.kernel == "tg_stream_conv_pool_s8"]
    assert len(fused) == 1 and fused[0].overlap == 160
    x, y = (plan.offsets[t] for t in (fused[0].inputs[0], fused[0].outputs[0]))
    assert 0 <= y - x <= 160, (x, y)
    assert_bit_exact(tfl, tmp_path, n_inputs=4, seed=3, memory_first=False)


def test_stream_pool_kept_only_when_it_saves_ram(monkeypatch):
    """The quickstart's shape is streamed without forcing; a map smaller than
    the rows and scratch it would need is not."""
    monkeypatch.setattr(plan_aot_mod, "fuse_streams", fuse.fuse_streams)
    model = parse_tflite(_quickstart_like(np.random.default_rng(4)))
    calls, plan = plan_aot(model, core="cortex-m4f")
    _, unfused = plan_aot(model, core="cortex-m4f", fuse=False)
    assert [c.kernel for c in calls if c.absorbed_by is None] == ["tg_stream_conv_pool_s8"]
    assert plan.arena_bytes < unfused.arena_bytes * (1 - fuse.MIN_GAIN)
    small = parse_tflite(conv_pool_model(
        np.random.default_rng(5), h=4, w=4, cin=2, cout=2, kh=1, kw=1, stride=(1, 1),
        padding="SAME", pool="MAX_POOL_2D", ph=2, pw=2, pstride=(2, 2), ppadding="VALID",
        activation="NONE"))
    calls, _ = plan_aot(small, core="cortex-m4f")
    assert not any(c.fused for c in calls)


@pytest.mark.slow
@pytest.mark.skipif(not qemu_available(), reason="qemu-system-arm / arm-none-eabi-gcc missing")
def test_stream_conv_pool_m4(tmp_path):
    """The intrinsic build on an emulated Cortex-M4F: the quickstart's shape,
    and a strided 3x3 convolution into a SAME 3x3 max pool of stride 2
    (rows shared by two pool rows)."""
    rng = np.random.default_rng(9)
    binary = assert_bit_exact_m4(_quickstart_like(rng), tmp_path / "q", n_inputs=3,
                                 memory_first=False)
    assert binary.result.calls[-1].kernel == "tg_stream_conv_pool_s8"
    tfl = conv_pool_model(rng, h=15, w=11, cin=3, cout=8, kh=3, kw=3, stride=(2, 1),
                          padding="SAME", pool="MAX_POOL_2D", ph=3, pw=3, pstride=(2, 2),
                          ppadding="SAME", activation="RELU6")
    binary = assert_bit_exact_m4(tfl, tmp_path / "m", n_inputs=3, memory_first=False)
    assert binary.result.calls[-1].kernel == "tg_stream_conv_pool_s8"



def _quickstart_chain(rng) -> bytes:
    """The quickstart's layers: 3x3 conv 1 -> 8, 3x3 depthwise, 1x1 conv 8 ->
    12, 2x2 average pool (16x16 maps)."""
    b = GraphBuilder("quickstart chain")
    scale = float(np.float32(rng.uniform(0.005, 0.05)))
    x = b.activation((1, 16, 16, 1), scale=scale, zero_point=int(rng.integers(-128, 128)))
    t, zp = x, 0
    for kind, cin, cout, k in (("conv", 1, 8, 3), ("dw", 8, 8, 3), ("conv", 8, 12, 1)):
        wq = filter_scales(rng, cout, True)
        bias = bias_for(rng, scale, wq, cout, True)
        assert bias
        bt = b.constant(bias[0], "int32", scale=bias[1], zero_point=0, axis=0)
        scale = output_scale_for(scale, wq, k * k * (cin if kind == "conv" else 1), 1.0)
        zp = int(rng.integers(-128, 128))
        y = b.activation((1, 16, 16, cout), scale=scale, zero_point=zp)
        if kind == "conv":
            wt = b.constant(random_int8(rng, (cout, k, k, cin), -127, 127), "int8", scale=wq,
                            zero_point=0, axis=0)
            b.op("CONV_2D", [t, wt, bt], [y], conv2d_options("SAME", (1, 1), (1, 1), "RELU"),
                 version=3)
        else:
            wt = b.constant(random_int8(rng, (1, k, k, cout), -127, 127), "int8", scale=wq,
                            zero_point=0, axis=3)
            b.op("DEPTHWISE_CONV_2D", [t, wt, bt], [y],
                 depthwise_options("SAME", (1, 1), (1, 1), 1, "RELU"), version=3)
        t = y
    out = b.activation((1, 8, 8, 12), scale=scale, zero_point=zp)
    b.op("AVERAGE_POOL_2D", [t], [out], pool_options((2, 2), (2, 2), "VALID", "NONE"))
    return b.build([x], [out])


def test_fusions_that_stop_paying_are_undone(monkeypatch, tmp_path):
    """In the quickstart's chain the conv -> depthwise stream is taken first
    (it lowers the peak at the pointwise layer), then the conv -> pool stream
    moves the peak below what the first one saves: the first is undone, as it
    costs instructions for no byte."""
    monkeypatch.setattr(plan_aot_mod, "fuse_streams", fuse.fuse_streams)
    tfl = _quickstart_chain(np.random.default_rng(6))
    model = parse_tflite(tfl)
    calls, plan = plan_aot(model, core="cortex-m4f")
    assert [c.kernel for c in calls if c.fused] == ["tg_stream_conv_pool_s8"]
    assert_bit_exact(tfl, tmp_path, n_inputs=3, seed=6)
    monkeypatch.setattr(plan_aot_mod, "fuse_streams",
                        functools.partial(fuse.fuse_streams, force=True))
    both, forced = plan_aot(model, core="cortex-m4f")
    assert [c.kernel for c in both if c.fused] == ["tg_stream_conv_dw_s8",
                                                    "tg_stream_conv_pool_s8"]
    assert plan.arena_bytes <= forced.arena_bytes
