"""QUANTIZE (float32 -> int8/int16, int8/int16 requantization) and
DEQUANTIZE (int8/int16 -> float32): the aot kernels against the TFLM
interpreter; integers 0 LSB, floats bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from ew_models import check, fast, scales, seeds, shapes, slow
from hypothesis import given
from hypothesis import strategies as st
from tflite_builder import GraphBuilder

QRANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}


def unary_model(opcode, shape, in_dtype, qin, out_dtype, qout):
    b = GraphBuilder()
    x = b.activation(shape, in_dtype, scale=qin[0] if qin else None,
                     zero_point=qin[1] if qin else 0)
    y = b.activation(shape, out_dtype, scale=qout[0] if qout else None,
                     zero_point=qout[1] if qout else 0)
    b.op(opcode, [x], [y])
    return b.build(inputs=[x], outputs=[y])


def float_inputs(seed, shape, scale, zp):
    """Values on and next to the rounding ties of x / scale, plus wide ones."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    q = rng.integers(-300, 300, size=n).astype(np.float32)
    kind = rng.integers(0, 4, size=n)
    ties = (q + np.float32(0.5)) * np.float32(scale)
    near = np.nextafter(ties, np.where(rng.integers(0, 2, size=n) == 1, np.inf, -np.inf)
                        .astype(np.float32))
    wide = (rng.standard_normal(n) * 200 * scale).astype(np.float32)
    vals = np.where(kind == 0, ties, np.where(kind == 1, near, np.where(kind == 2, wide,
                                                                        q * np.float32(scale))))
    return vals.astype(np.float32).reshape(shape)


def int_data(seed, shape, dtype):
    lo, hi = QRANGE[dtype]
    return np.random.default_rng(seed).integers(lo, hi + 1, size=shape).astype(dtype)


def zp_for(dtype):
    lo, hi = QRANGE[dtype]
    return st.integers(lo, hi) if dtype == "int8" else st.integers(-300, 300) | st.just(0)


@fast(50)
@given(shapes(1, 3, 1, 16), scales(-4, 0), st.sampled_from(["int8", "int8", "int16"]),
       st.data(), seeds)
def test_quantize_float_matches_tflm(shape, scale, out_dtype, data, seed):
    zp = data.draw(zp_for(out_dtype))
    model = unary_model("QUANTIZE", shape, "float32", None, out_dtype, (scale, zp))
    check(model, [[float_inputs(seed + k, shape, scale, zp)] for k in range(2)])


@fast(40)
@given(shapes(1, 3, 1, 16), st.sampled_from([("int8", "int8"), ("int8", "int8"),
                                             ("int8", "int16"), ("int16", "int8"),
                                             ("int16", "int16")]),
       scales(-3, 0), st.floats(0.05, 20.0), st.data(), seeds)
def test_requantize_matches_tflm(shape, types, scale, ratio, data, seed):
    tin, tout = types
    qin = (scale, data.draw(zp_for(tin)))
    qout = (float(np.float32(scale * ratio)), data.draw(zp_for(tout)))
    model = unary_model("QUANTIZE", shape, tin, qin, tout, qout)
    check(model, [[int_data(seed + k, shape, tin)] for k in range(2)])


@fast(30)
@given(shapes(1, 3, 1, 16), st.sampled_from(["int8", "int8", "int16"]), scales(-5, 1),
       st.data(), seeds)
def test_dequantize_matches_tflm(shape, in_dtype, scale, data, seed):
    zp = data.draw(zp_for(in_dtype))
    model = unary_model("DEQUANTIZE", shape, in_dtype, (scale, zp), "float32", None)
    check(model, [[int_data(seed + k, shape, in_dtype)] for k in range(2)])


@pytest.mark.slow
@slow(300)
@given(shapes(1, 2, 1, 64), scales(-6, 2), st.integers(-128, 127), seeds)
def test_quantize_dequantize_sweep(shape, scale, zp, seed):
    check(unary_model("QUANTIZE", shape, "float32", None, "int8", (scale, zp)),
          [[float_inputs(seed, shape, scale, zp)]])
    check(unary_model("DEQUANTIZE", shape, "int8", (scale, zp), "float32", None),
          [[int_data(seed, shape, "int8")]])


@pytest.mark.parametrize("tin,tout", [("int8", "int8"), ("int8", "int16"), ("int16", "int8"),
                                      ("int16", "int16")])
@pytest.mark.parametrize("zps", [(-128, -128), (-128, 0), (5, -7), (0, 127)])
def test_requantize_at_the_same_scale_moves_only_the_zero_point(tin, tout, zps):
    """Multiplier 2^30, shift 1 (a ratio of exactly 1.0): the kernels' offset
    path, over every int8 value and the int16 extremes."""
    zin, zout = zps
    if tin == "int16":
        zin = zin * 3
    if tout == "int16":
        zout = zout * 3
    shape = (1, 512)
    model = unary_model("QUANTIZE", shape, tin, (0.0625, zin), tout, (0.0625, zout))
    lo, hi = QRANGE[tin]
    vals = np.concatenate([np.arange(-128, 128), np.array([lo, hi, lo + 1, hi - 1, 0] * 8),
                           np.linspace(lo, hi, 216).astype(np.int64)])
    check(model, [[vals.astype(tin).reshape(shape)]])
