"""Property tests: tinygen's aot kernels against the TFLM interpreter, 0 LSB.

Each example builds a one-operator .tflite directly (tflite_builder), runs it
through generate_aot + the host compiler and through TFLM on the same random
inputs, and requires identical bytes.  Never compared against our own code.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from harness import assert_bit_exact, build_host, run_host, run_tflm
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tflite_builder import (
    GraphBuilder,
    conv2d_model,
    conv2d_options,
    depthwise_model,
    fc_options,
    fully_connected_model,
    out_size,
    pool_model,
    reshape_options,
)

from tinygen.codegen.aot import generate_aot
from tinygen.ir import parse_tflite
from tinygen.plan.lowering import LoweringError, quantize_multiplier

FAST = settings(max_examples=50, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SLOW = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

activations = st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])
paddings = st.sampled_from(["SAME", "VALID"])
zero_points = st.integers(-128, 127)
# < 1 saturates on purpose, > 1 squeezes the output into a few codes
spreads = st.sampled_from([0.05, 0.3, 1.0, 1.0, 3.0, 20.0])


def check(tflite: bytes, n_inputs: int = 3, seed: int = 0, reference: bytes | None = None,
          memory_first: bool = True) -> None:
    with tempfile.TemporaryDirectory(prefix="tg_aot_") as d:
        assert_bit_exact(tflite, Path(d), n_inputs=n_inputs, seed=seed, reference=reference,
                         memory_first=memory_first)


def check_depthwise(kw: dict, seed: int) -> None:
    """TFLM's DEPTHWISE_CONV_2D Prepare crashes (segfault) when the bias is
    omitted (it releases the missing bias tensor); for those cases TFLM runs
    the same model with an explicit all-zero bias, which is the same function."""
    ours = depthwise_model(np.random.default_rng(seed), **kw)
    ref = None
    if not kw.get("with_bias", True):
        ref = depthwise_model(np.random.default_rng(seed), **{**kw, "with_bias": "zero"})
    check(ours, seed=seed, reference=ref)


# ---------------------------------------------------------------------------
# CONV_2D

@st.composite
def conv_cases(draw, big=False):
    lim = 16 if big else 10
    h, w = draw(st.integers(1, lim)), draw(st.integers(1, lim))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(paddings)
    oh = out_size(padding, h, kh, stride[0], dilation[0])
    ow = out_size(padding, w, kw, stride[1], dilation[1])
    assume(oh >= 1 and ow >= 1)
    groups = draw(st.sampled_from([1, 1, 1, 2]))
    cin = groups * draw(st.integers(1, 8 if big else 5))
    cout = groups * draw(st.integers(1, 8 if big else 5))
    return dict(n=draw(st.integers(1, 2)), h=h, w=w, cin=cin, cout=cout, kh=kh, kw=kw,
                stride=stride, dilation=dilation, padding=padding, groups=groups,
                activation=draw(activations), per_channel=draw(st.booleans()),
                with_bias=draw(st.booleans()), in_zp=draw(zero_points),
                out_zp=draw(zero_points), spread=draw(spreads)), draw(st.integers(0, 2**31))


# memory_first=True runs the scratch-free direct kernel (a one-op model's
# scratch always grows the arena), False the gathered-window kernel
@FAST
@given(conv_cases(), st.booleans())
def test_conv2d_bit_exact(case, memory_first):
    kw, seed = case
    check(conv2d_model(np.random.default_rng(seed), **kw), seed=seed, memory_first=memory_first)


@pytest.mark.slow
@SLOW
@given(conv_cases(big=True), st.booleans())
def test_conv2d_bit_exact_sweep(case, memory_first):
    kw, seed = case
    check(conv2d_model(np.random.default_rng(seed), **kw), seed=seed, memory_first=memory_first)


# ---------------------------------------------------------------------------
# DEPTHWISE_CONV_2D

@st.composite
def depthwise_cases(draw, big=False):
    lim = 16 if big else 10
    h, w = draw(st.integers(1, lim)), draw(st.integers(1, lim))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(paddings)
    oh = out_size(padding, h, kh, stride[0], dilation[0])
    ow = out_size(padding, w, kw, stride[1], dilation[1])
    assume(oh >= 1 and ow >= 1)
    return dict(n=draw(st.integers(1, 2)), h=h, w=w, cin=draw(st.integers(1, 8 if big else 6)),
                depth_multiplier=draw(st.integers(1, 3)), kh=kh, kw=kw, stride=stride,
                dilation=dilation, padding=padding, activation=draw(activations),
                per_channel=draw(st.booleans()), with_bias=draw(st.booleans()),
                in_zp=draw(zero_points), out_zp=draw(zero_points),
                spread=draw(spreads)), draw(st.integers(0, 2**31))


@FAST
@given(depthwise_cases())
def test_depthwise_conv2d_bit_exact(case):
    kw, seed = case
    check_depthwise(kw, seed)


@pytest.mark.slow
@SLOW
@given(depthwise_cases(big=True))
def test_depthwise_conv2d_bit_exact_sweep(case):
    kw, seed = case
    check_depthwise(kw, seed)


# ---------------------------------------------------------------------------
# FULLY_CONNECTED

@st.composite
def fc_cases(draw, big=False):
    depth = draw(st.integers(1, 300 if big else 64))
    layout = draw(st.sampled_from(["2d", "2d", "4d", "keep"]))
    batches = draw(st.integers(1, 3))
    if layout == "2d":
        shape, keep = (batches, depth), False
    elif layout == "4d":
        shape, keep = (1, batches, 1, depth), False
    else:
        shape, keep = (batches, 2, depth), True
    return dict(depth=depth, units=draw(st.integers(1, 40 if big else 16)), input_shape=shape,
                keep_num_dims=keep, activation=draw(activations),
                with_bias=draw(st.booleans()), per_channel=draw(st.booleans()),
                in_zp=draw(zero_points), out_zp=draw(zero_points),
                spread=draw(spreads)), draw(st.integers(0, 2**31))


@FAST
@given(fc_cases())
def test_fully_connected_bit_exact(case):
    kw, seed = case
    check(fully_connected_model(np.random.default_rng(seed), **kw), seed=seed)


@pytest.mark.slow
@SLOW
@given(fc_cases(big=True))
def test_fully_connected_bit_exact_sweep(case):
    kw, seed = case
    check(fully_connected_model(np.random.default_rng(seed), **kw), seed=seed)


# ---------------------------------------------------------------------------
# AVERAGE_POOL_2D, MAX_POOL_2D

@st.composite
def pool_cases(draw, big=False):
    lim = 16 if big else 10
    h, w = draw(st.integers(1, lim)), draw(st.integers(1, lim))
    fh, fw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(paddings)
    assume(out_size(padding, h, fh, stride[0]) >= 1 and out_size(padding, w, fw, stride[1]) >= 1)
    return dict(kind=draw(st.sampled_from(["MAX_POOL_2D", "AVERAGE_POOL_2D"])),
                n=draw(st.integers(1, 2)), h=h, w=w, c=draw(st.integers(1, 6)),
                filter=(fh, fw), stride=stride, padding=padding,
                activation=draw(activations), zp=draw(zero_points)), draw(st.integers(0, 2**31))


@FAST
@given(pool_cases())
def test_pool2d_bit_exact(case):
    kw, seed = case
    check(pool_model(np.random.default_rng(seed), **kw), seed=seed)


@pytest.mark.slow
@SLOW
@given(pool_cases(big=True))
def test_pool2d_bit_exact_sweep(case):
    kw, seed = case
    check(pool_model(np.random.default_rng(seed), **kw), seed=seed)


# ---------------------------------------------------------------------------
# fixed cases that random search may miss

def test_requantization_rounding_matches_tflm(tmp_path):
    """TFLM uses TFLite's double rounding (gemmlowp), not single rounding: build an
    FC whose accumulators land where the two differ and require 0 LSB."""
    b = GraphBuilder("rounding")
    in_scale, w_scale, out_scale = 0.25, 0.5, 0.25 / 0.48971886732741515 * 0.5
    x = b.activation((1, 1), scale=in_scale, zero_point=0)
    w = b.constant(np.array([[1], [-1], [127], [-127]], np.int8), "int8", scale=w_scale)
    y = b.activation((1, 4), scale=float(np.float32(out_scale)), zero_point=0)
    b.op("FULLY_CONNECTED", [x, w, -1], [y], fc_options(), version=4)
    tfl = b.build([x], [y])
    inputs = [[np.array([[v]], np.int8)] for v in range(-128, 128)]
    m, s = quantize_multiplier(float(np.float32(in_scale) * np.float32(w_scale))
                               / float(np.float32(out_scale)))

    def single(acc):                       # TFLITE_SINGLE_ROUNDING
        t = 31 - s
        return (acc * m + (1 << (t - 1))) >> t

    def double(acc):                       # gemmlowp, what TFLM does
        ab = acc * m
        v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
        hi = abs(v) >> 31 if v >= 0 else -(abs(v) >> 31)
        e = -s
        mask = (1 << e) - 1
        return (hi >> e) + (1 if (hi & mask) > (mask >> 1) + (1 if hi < 0 else 0) else 0)

    accs = [v * k for v in range(-128, 128) for k in (1, -1, 127, -127)]
    assert any(single(a) != double(a) for a in accs), "the case does not separate the modes"
    assert_bit_exact(tfl, tmp_path, inputs=inputs)


def test_conv_extreme_inputs_and_large_bias(tmp_path):
    rng = np.random.default_rng(7)
    tfl = conv2d_model(rng, h=6, w=6, cin=8, cout=8, kh=3, kw=3, in_zp=-128, out_zp=127,
                       spread=0.2, activation="RELU6")
    model = parse_tflite(tfl)
    x = model.tensors[model.inputs[0]]
    inputs = [[np.full(x.shape, v, np.int8)] for v in (-128, 127, 0)]
    for memory_first in (True, False):
        assert_bit_exact(tfl, tmp_path, inputs=inputs, memory_first=memory_first)


def test_scratch_never_grows_the_arena_by_default(tmp_path):
    tfl = conv2d_model(np.random.default_rng(2), h=6, w=6, cin=4, cout=4, kh=3, kw=3)
    model = parse_tflite(tfl)
    lean = generate_aot(model, tmp_path / "lean")
    fast = generate_aot(model, tmp_path / "fast", memory_first=False)
    assert lean.calls[0].kernel == "tg_conv2d_direct_s8" and lean.calls[0].scratch_bytes == 0
    assert fast.calls[0].kernel == "tg_conv2d_s8" and fast.calls[0].scratch_bytes == 36
    assert lean.arena_bytes < fast.arena_bytes
    assert fast.plan.scratch_offsets[0] % 16 == 0


@pytest.mark.parametrize("kind", ["conv", "dw", "fc", "pool"])
def test_sanitizers_clean(tmp_path, kind):
    """ASan + UBSan build of each kernel (out-of-bounds reads of the constant
    arrays, signed overflow in the requantization)."""
    rng = np.random.default_rng(11)
    tfl = {"conv": lambda: conv2d_model(rng, h=5, w=7, cin=3, cout=5, kh=3, kw=2, stride=(2, 1),
                                        dilation=(1, 2), padding="SAME", groups=1),
           "dw": lambda: depthwise_model(rng, h=7, w=5, cin=3, depth_multiplier=2, kh=2, kw=3,
                                         padding="SAME", stride=(2, 2)),
           "fc": lambda: fully_connected_model(rng, batches=2, depth=33, units=7),
           "pool": lambda: pool_model(rng, "AVERAGE_POOL_2D", h=7, w=6, c=3, filter=(3, 3),
                                      stride=(2, 2), padding="SAME")}[kind]()
    assert_bit_exact(tfl, tmp_path, sanitize=True, n_inputs=4)
    assert_bit_exact(tfl, tmp_path, sanitize=True, n_inputs=4, memory_first=False)


# ---------------------------------------------------------------------------
# RESHAPE / SQUEEZE / EXPAND_DIMS

def _chain_with_reshape(rng, opcode="RESHAPE"):
    """conv -> reshape -> fully connected: the reshape must cost nothing."""
    b = GraphBuilder("reshape chain")
    x = b.activation((1, 4, 4, 2), scale=0.02, zero_point=3)
    w = b.constant(rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8), "int8",
                   scale=np.full(3, 0.01, np.float32), axis=0)
    c = b.activation((1, 4, 4, 3), scale=0.05, zero_point=-4)
    b.op("CONV_2D", [x, w, -1], [c], conv2d_options("SAME"), version=3)
    if opcode == "RESHAPE":
        shape = b.constant(np.array([1, 48], np.int32), "int32")
        r = b.activation((1, 48), scale=0.05, zero_point=-4)
        b.op("RESHAPE", [c, shape], [r], reshape_options([1, 48]))
    else:
        axis = b.constant(np.array([0], np.int32), "int32")
        r = b.activation((1, 1, 4, 4, 3), scale=0.05, zero_point=-4)
        b.op("EXPAND_DIMS", [c, axis], [r])
    fw = b.constant(rng.integers(-127, 128, (5, 48)).astype(np.int8), "int8", scale=0.01)
    y = b.activation((1, 5), scale=0.3, zero_point=0)
    b.op("FULLY_CONNECTED", [r, fw, -1], [y], fc_options("RELU"), version=4)
    return b.build([x], [y])


@pytest.mark.parametrize("opcode", ["RESHAPE", "EXPAND_DIMS"])
def test_reshape_is_aliased_and_exact(tmp_path, opcode):
    tfl = _chain_with_reshape(np.random.default_rng(3), opcode)
    cmp = assert_bit_exact(tfl, tmp_path, n_inputs=3)
    res = cmp.binary.result
    assert res.skipped_ops == [1]
    model = cmp.binary.model
    op = model.operators[1]
    assert res.plan.offsets[op.inputs[0]] == res.plan.offsets[op.outputs[0]]
    assert "tg_reshape" not in (tmp_path / "aot" / "model.c").read_text().split("tg_model_run")[1]


def test_reshape_input_to_output(tmp_path):
    """A model that only reshapes: input and output share the buffer."""
    b = GraphBuilder("reshape only")
    x = b.activation((1, 2, 3, 4), scale=0.1, zero_point=1)
    shape = b.constant(np.array([4, 6], np.int32), "int32")
    y = b.activation((4, 6), scale=0.1, zero_point=1)
    b.op("RESHAPE", [x, shape], [y], reshape_options([4, 6]))
    assert_bit_exact(b.build([x], [y]), tmp_path)


def test_squeeze_after_pool(tmp_path):
    b = GraphBuilder("squeeze")
    x = b.activation((1, 4, 4, 3), scale=0.1, zero_point=1)
    p = b.activation((1, 1, 1, 3), scale=0.1, zero_point=1)
    from tflite_builder import pool_options, schema
    b.op("AVERAGE_POOL_2D", [x], [p], pool_options((4, 4), (4, 4), "VALID"))
    y = b.activation((1, 3), scale=0.1, zero_point=1)
    o = schema.SqueezeOptionsT()
    o.squeezeDims = [1, 2]
    b.op("SQUEEZE", [p], [y], o)
    assert_bit_exact(b.build([x], [y]), tmp_path)


# ---------------------------------------------------------------------------
# errors

def test_unsupported_op_names_op_and_position(tmp_path):
    from tinygen.plan.ops import supported_opcodes
    opcode = next(c for c in ("LOCAL_RESPONSE_NORMALIZATION", "L2_NORMALIZATION", "FLOOR", "EXP")
                  if c not in supported_opcodes())
    b = GraphBuilder("unsupported")
    x = b.activation((1, 8), scale=0.1, zero_point=0)
    w = b.constant(np.ones((8, 8), np.int8), "int8", scale=0.1)
    y = b.activation((1, 8), scale=0.1, zero_point=0)
    b.op("FULLY_CONNECTED", [x, w, -1], [y], fc_options())
    z = b.activation((1, 8), scale=0.1, zero_point=0)
    b.op(opcode, [y], [z])
    model = parse_tflite(b.build([x], [z]))
    with pytest.raises(LoweringError, match=rf"{opcode}.*#1"):
        generate_aot(model, tmp_path / "out")
    assert not (tmp_path / "out" / "model.c").exists()


def test_float_conv_is_rejected_clearly(tmp_path):
    b = GraphBuilder("float conv")
    x = b.activation((1, 4, 4, 1), dtype="float32")
    w = b.constant(np.ones((1, 3, 3, 1), np.float32), "float32")
    y = b.activation((1, 4, 4, 1), dtype="float32")
    b.op("CONV_2D", [x, w, -1], [y], conv2d_options())
    with pytest.raises(LoweringError, match=r"CONV_2D \(operator #0\).*int8"):
        generate_aot(parse_tflite(b.build([x], [y])), tmp_path)


def test_multiple_runs_reuse_state_correctly(tmp_path):
    """Several inferences in one process: nothing leaks from one run to the next."""
    rng = np.random.default_rng(5)
    tfl = conv2d_model(rng, h=6, w=6, cin=2, cout=3)
    model = parse_tflite(tfl)
    binary = build_host(model, tmp_path)
    x = model.tensors[model.inputs[0]]
    batches = [[rng.integers(-128, 128, x.shape).astype(np.int8)] for _ in range(5)]
    ours = run_host(binary, batches + batches[:1])
    ref = run_tflm(tfl, batches)
    for r, o in zip(ref, ours):
        assert np.array_equal(r[0], o[0])
    assert np.array_equal(ours[0][0], ours[5][0])
