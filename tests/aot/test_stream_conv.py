"""A convolution streamed into a convolution (tg_stream_conv.c), and a
residual block -- conv -> conv -> ADD with the skip from before the first
convolution, itself or through a projection convolution -- run a chunk of
rows at a time without storing either inner map (tg_stream_res.c), against
TFLM, 0 LSB.

Geometries are drawn: strides 1-2, 1x1 to 5x5 windows, SAME and VALID,
dilation on the second convolution, odd sizes and channel counts, the ADD
with either operand order, with and without its tables, a fused activation
or none.  The planner keeps a fusion only where it shrinks the arena; the
drawn cases force it so that every draw runs the fused kernel, and the
output is placed over the block's input as far as the fusion's overlap
bound allows (the plan reaches its lower bound), so a bound that let a
chunk overwrite input bytes a later chunk reads would show as a mismatch.
"""

from __future__ import annotations

import functools
from unittest import mock

import numpy as np
import pytest
from ew_models import options
from harness import assert_bit_exact_m4, qemu_available
from hypothesis import assume, given
from hypothesis import strategies as st
from stream_support import FAST, bit_exact_on_host, force_streams, sweep, top_level_kernels
from tflite_builder import (
    ACT,
    GraphBuilder,
    bias_for,
    conv2d_options,
    filter_scales,
    out_size,
    output_scale_for,
    random_int8,
)

from tinygen.ir import parse_tflite
from tinygen.plan import aot as plan_aot_mod
from tinygen.plan import fuse
from tinygen.plan.aot import plan_aot

SWEEP = sweep(150)


class Block:
    """A graph under construction: int8 activations with their quantization."""

    def __init__(self, rng, name: str):
        self.rng = rng
        self.b = GraphBuilder(name)

    def input(self, shape) -> tuple[int, float, tuple]:
        scale = float(np.float32(self.rng.uniform(0.005, 0.05)))
        t = self.b.activation(shape, scale=scale, zero_point=int(self.rng.integers(-128, 128)))
        return t, scale, tuple(shape)

    def conv(self, x, k: tuple[int, int], cout: int, stride: tuple[int, int], padding: str,
             activation: str, dilation: tuple[int, int] = (1, 1)):
        t, scale, (n, h, w, cin) = x
        rng = self.rng
        wq = filter_scales(rng, cout, True)
        bias = bias_for(rng, scale, wq, cout, True)
        assert bias
        wt = self.b.constant(random_int8(rng, (cout, k[0], k[1], cin), -127, 127), "int8",
                             scale=wq, zero_point=0, axis=0)
        bt = self.b.constant(bias[0], "int32", scale=bias[1], zero_point=0, axis=0)
        oh = out_size(padding, h, k[0], stride[0], dilation[0])
        ow = out_size(padding, w, k[1], stride[1], dilation[1])
        o_scale = output_scale_for(scale, wq, k[0] * k[1] * cin, 1.0)
        o = self.b.activation((n, oh, ow, cout), scale=o_scale,
                              zero_point=int(rng.integers(-128, 128)))
        self.b.op("CONV_2D", [t, wt, bt], [o],
                  conv2d_options(padding, stride, dilation, activation), version=3)
        return o, o_scale, (n, oh, ow, cout)

    def add(self, a, b, activation: str, spread: float):
        scale = float(np.float32((a[1] + b[1]) * spread))
        o = self.b.activation(a[2], scale=scale, zero_point=int(self.rng.integers(-128, 128)))
        self.b.op("ADD", [a[0], b[0]], [o],
                  options("AddOptions", fusedActivationFunction=ACT[activation]))
        return o, scale, a[2]


def conv_conv_model(rng, h: int, w: int, cin: int, mid: int, cout: int, k1, s1, p1: str, k2,
                    s2, p2: str, d2) -> bytes:
    """input -> CONV_2D -> CONV_2D."""
    g = Block(rng, "stream conv conv")
    x = g.input((1, h, w, cin))
    m = g.conv(x, k1, mid, s1, p1, "RELU")
    y = g.conv(m, k2, cout, s2, p2, "NONE", d2)
    return g.b.build([x[0]], [y[0]])


def res_model(rng, h: int, w: int, cin: int, cout: int, k1, stride: int, k2, proj: int | None,
              skip_first: bool, proj_first: bool, activation: str, spread: float) -> bytes:
    """A residual block: input -> CONV_2D (stride) -> CONV_2D -> ADD with the
    input itself (identity: cout == cin, stride 1) or a `proj` x `proj`
    CONV_2D of it with the same stride, every window SAME."""
    g = Block(rng, "stream res")
    x = g.input((1, h, w, cin))
    p = None
    if proj is not None and proj_first:
        p = g.conv(x, (proj, proj), cout, (stride, stride), "SAME", "NONE")
    m = g.conv(x, k1, cout, (stride, stride), "SAME", "RELU")
    y = g.conv(m, k2, cout, (1, 1), "SAME", "NONE")
    if proj is not None and not proj_first:
        p = g.conv(x, (proj, proj), cout, (stride, stride), "SAME", "NONE")
    skip = p if p is not None else x
    o = g.add(skip, y, activation, spread) if skip_first else g.add(y, skip, activation, spread)
    return g.b.build([x[0]], [o[0]])


@st.composite
def conv_conv_cases(draw):
    k1 = (draw(st.sampled_from([1, 3, 3, 2, 5])), draw(st.sampled_from([1, 3, 3, 2])))
    k2 = (draw(st.sampled_from([1, 3, 3, 2, 5])), draw(st.sampled_from([1, 3, 3, 4])))
    s1 = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    s2 = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    d2 = (draw(st.sampled_from([1, 1, 1, 2])), 1)
    p1 = draw(st.sampled_from(["SAME", "VALID"]))
    p2 = draw(st.sampled_from(["SAME", "VALID"]))
    h = draw(st.integers(max(k1[0], 2) * s1[0], 19))
    w = draw(st.integers(max(k1[1], 2) * s1[1], 11))
    mh, mw = out_size(p1, h, k1[0], s1[0]), out_size(p1, w, k1[1], s1[1])
    if mh < (k2[0] - 1) * d2[0] + 1 or mw < k2[1]:
        p2 = "SAME"                     # a VALID window larger than the map: no output
    return dict(h=h, w=w, cin=draw(st.integers(1, 5)), mid=draw(st.sampled_from([3, 4, 8, 5])),
                cout=draw(st.sampled_from([2, 4, 6, 7])), k1=k1, s1=s1, p1=p1, k2=k2, s2=s2,
                p2=p2, d2=d2), draw(st.integers(0, 2**16))


@st.composite
def res_cases(draw):
    proj = draw(st.sampled_from([None, None, 1, 1, 3]))
    stride = draw(st.integers(1, 2)) if proj is not None else 1
    if draw(st.booleans()):
        # 2048 elements or more: the ADD with its tables (built once per block)
        cout = draw(st.sampled_from([16, 24]))
        oh, ow = draw(st.integers(12, 18)), draw(st.integers(11, 14))
    else:
        cout = draw(st.sampled_from([1, 3, 4, 5, 8]))
        oh, ow = draw(st.integers(2, 12)), draw(st.integers(2, 11))
    cin = cout if proj is None else draw(st.sampled_from([3, 4, 8, 16]))
    # SAME, so the input is any size that gives this output
    h = oh * stride - draw(st.integers(0, stride - 1))
    w = ow * stride - draw(st.integers(0, stride - 1))
    return dict(h=h, w=w, cin=cin, cout=cout,
                k1=(draw(st.sampled_from([1, 3, 3, 5])), draw(st.sampled_from([1, 3, 3]))),
                stride=stride,
                k2=(draw(st.sampled_from([1, 3, 3, 2])), draw(st.sampled_from([1, 3, 3]))),
                proj=proj, skip_first=draw(st.booleans()), proj_first=draw(st.booleans()),
                activation=draw(st.sampled_from(["NONE", "RELU"])),
                spread=draw(st.sampled_from([0.3, 1.0, 1.0, 2.0]))), draw(st.integers(0, 2**16))


@pytest.fixture(autouse=True)
def forced(monkeypatch):
    force_streams(monkeypatch)


RES = {"tg_stream_res_s8", "tg_stream_res_direct_s8"}    # ADD with tables / without
PAIR = {"tg_stream_conv_conv_s8"}


def _check(tfl: bytes, seed: int, sanitize: bool, kernels: set[str], rows: int = 1):
    """0 LSB, the one fused call, its output over its input as far as the
    bound allows; rows: consumer output rows per chunk (the planner takes 1,
    the kernels take any)."""
    # a window as large as its input (one output pixel) is lowered as a fully
    # connected layer: not a convolution pair to stream
    unfused, _ = plan_aot(parse_tflite(tfl), core="cortex-m4f", fuse=False, memory_first=False)
    assume(all(c.kernel in (fuse.CONV, *fuse.ADDS) for c in unfused))
    chunked = functools.partial(fuse.fuse_conv_conv, rows=rows)
    with mock.patch.object(fuse, "fuse_conv_conv", chunked):
        cmp = bit_exact_on_host(tfl, seed, sanitize)
    calls = cmp.binary.result.calls
    done = top_level_kernels(cmp)
    assert len(done) == 1 and done[0] in kernels, done
    plan = cmp.binary.result.plan
    model = cmp.binary.model
    x, y = model.inputs[0], model.outputs[0]
    fused = calls[-1]
    # the output placed over the input as far as the bound lets it (the
    # planner reaches its lower bound only by sharing the most bytes)
    assert plan.arena_bytes == plan.lower_bound_bytes
    a = plan.alignment
    bound = fused.overlap - fused.overlap % a
    nx, ny = (-(-model.tensors[t].nbytes // a) * a for t in (x, y))

    def shared(s: int) -> int:          # bytes y shares with x when it starts s after it
        return max(0, min(nx, s + ny) - max(0, s))
    s = plan.offsets[y] - plan.offsets[x]
    assert s <= bound or s >= nx
    assert shared(s) == max(shared(t) for t in range(-ny, bound + 1, a))


@FAST
@given(case=conv_conv_cases(), sanitize=st.booleans(), rows=st.sampled_from([1, 1, 2, 3]))
def test_stream_conv_conv_host(case, sanitize, rows):
    kw, seed = case
    _check(conv_conv_model(np.random.default_rng(seed), **kw), seed, sanitize, PAIR, rows)


@pytest.mark.slow
@SWEEP
@given(case=conv_conv_cases(), sanitize=st.booleans(), rows=st.sampled_from([1, 1, 2, 3]))
def test_stream_conv_conv_host_sweep(case, sanitize, rows):
    kw, seed = case
    _check(conv_conv_model(np.random.default_rng(seed), **kw), seed, sanitize, PAIR, rows)


@FAST
@given(case=res_cases(), sanitize=st.booleans(), rows=st.sampled_from([1, 1, 2, 3]))
def test_stream_res_host(case, sanitize, rows):
    kw, seed = case
    _check(res_model(np.random.default_rng(seed), **kw), seed, sanitize, RES, rows)


@pytest.mark.slow
@SWEEP
@given(case=res_cases(), sanitize=st.booleans(), rows=st.sampled_from([1, 1, 2, 3]))
def test_stream_res_host_sweep(case, sanitize, rows):
    kw, seed = case
    _check(res_model(np.random.default_rng(seed), **kw), seed, sanitize, RES, rows)


def _geometry(stride: int, pad: int, k: int) -> dict[str, int]:
    return dict(filter_h=k, filter_w=k, stride_h=stride, stride_w=stride, pad_h=pad, pad_w=pad,
                dilation_h=1, dilation_w=1)


def test_stream_overlap_resnet8_blocks():
    """ResNet-8's first two blocks, worked out by hand.  Identity block
    (32x32x16, 3x3 SAME twice): after output row r, later chunks read input
    rows >= r + 1 and the ADD runs over skip row r itself, so the output may
    start exactly at the input (bound 0) and no later.  Projection block
    (32x32x16 -> 16x16x32, 3x3 stride 2 with pad_h 0, then 3x3; skip a 1x1
    stride-2 convolution): output row r (512 B) ends where input row 2r + 2
    starts when s = 512, but the projection itself writes output pixel x
    (32 B) at s + 32x while pixels >= x read from input byte 32x on, so
    s <= -32."""
    c3 = _geometry(1, 1, 3)
    assert fuse.stream_overlap((1, 32, 32, 16), (1, 32, 32, 16), 32, c3, c3, 1,
                               "identity") == 0
    # the pair alone: after output row r the producer still reads input rows >= r + 1
    assert fuse.stream_overlap((1, 32, 32, 16), (1, 32, 32, 16), 32, c3, c3, 1, "none") == 0
    assert fuse.stream_overlap((1, 32, 32, 16), (1, 16, 16, 32), 16, _geometry(2, 0, 3), c3, 1,
                               "projection", _geometry(2, 0, 1)) == -32


def _resnet_block(rng, h: int, c: int) -> bytes:
    return res_model(rng, h=h, w=h, cin=c, cout=c, k1=(3, 3), stride=1, k2=(3, 3), proj=None,
                     skip_first=True, proj_first=False, activation="RELU", spread=1.0)


def test_stream_res_kept_only_when_it_saves_ram(monkeypatch):
    """Unforced: a ResNet block whose skip and inner maps hold the peak is
    fused; in a block too small for its buffers and tables to pay, not.
    (memory_first=False: alone, the block's peak would otherwise send its
    convolutions to the scratch-free portable kernel, which is not streamed.)"""
    monkeypatch.setattr(plan_aot_mod, "fuse_streams", fuse.fuse_streams)
    rng = np.random.default_rng(3)
    big = parse_tflite(_resnet_block(rng, 16, 16))
    calls, plan = plan_aot(big, core="cortex-m4f", memory_first=False)
    _, unfused = plan_aot(big, core="cortex-m4f", fuse=False, memory_first=False)
    assert [c.kernel for c in calls if c.absorbed_by is None] == ["tg_stream_res_s8"]
    assert calls[0].absorbed_by == calls[1].absorbed_by == 2
    assert plan.arena_bytes <= unfused.arena_bytes * (1 - fuse.MIN_GAIN)
    # skip 4,096 B (the output over it) + 3 map rows + 1 output row + tables + columns
    assert plan.arena_bytes < 4096 + 4 * 256 + 2048 + 1024
    small = parse_tflite(_resnet_block(rng, 3, 4))
    calls, _ = plan_aot(small, core="cortex-m4f", memory_first=False)
    assert [c.kernel for c in calls] == ["tg_conv2d_dsp_s8"] * 2 + ["tg_add_s8"]


@pytest.mark.slow
@pytest.mark.skipif(not qemu_available(), reason="qemu-system-arm / arm-none-eabi-gcc missing")
def test_stream_conv_m4(tmp_path):
    """The intrinsic build on an emulated Cortex-M4F: ResNet-8's first two
    blocks (identity 32x32x16; 3x3 stride 2 to 16x16x32 with a 1x1 stride-2
    projection), a small block with a 3x3 projection, and a strided pair
    without an ADD."""
    rng = np.random.default_rng(11)
    binary = assert_bit_exact_m4(_resnet_block(rng, 32, 16), tmp_path / "identity", n_inputs=2,
                                 memory_first=False)
    assert binary.result.calls[-1].kernel == "tg_stream_res_s8"     # 16,384 elements: tables
    tfl = res_model(rng, h=32, w=32, cin=16, cout=32, k1=(3, 3), stride=2, k2=(3, 3), proj=1,
                    skip_first=True, proj_first=False, activation="RELU", spread=1.0)
    binary = assert_bit_exact_m4(tfl, tmp_path / "proj", n_inputs=2, memory_first=False)
    assert binary.result.calls[-1].kernel == "tg_stream_res_s8"
    # a small block: the ADD rescales each element (no tables)
    tfl = res_model(rng, h=7, w=5, cin=4, cout=6, k1=(3, 3), stride=2, k2=(3, 3), proj=3,
                    skip_first=False, proj_first=True, activation="NONE", spread=1.0)
    binary = assert_bit_exact_m4(tfl, tmp_path / "direct", n_inputs=2, memory_first=False)
    assert binary.result.calls[-1].kernel == "tg_stream_res_direct_s8"
    tfl = conv_conv_model(rng, h=15, w=9, cin=3, mid=8, cout=5, k1=(3, 3), s1=(2, 1), p1="SAME",
                          k2=(3, 3), s2=(2, 2), p2="VALID", d2=(1, 1))
    binary = assert_bit_exact_m4(tfl, tmp_path / "pair", n_inputs=2, memory_first=False)
    assert binary.result.calls[-1].kernel == "tg_stream_conv_conv_s8"
