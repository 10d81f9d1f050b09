"""CONCATENATION and PAD/PADV2: the aot kernels against the TFLM interpreter,
0 LSB.  (TFLM requires int8 CONCATENATION inputs to share the output's
quantization; the lowering refuses anything else, tested below.)"""

from __future__ import annotations

import numpy as np
import pytest
from ew_models import check, fast, int8_data, options, scales, seeds, shapes, slow, zero_points
from hypothesis import given
from hypothesis import strategies as st
from tflite_builder import GraphBuilder

from tinygen.ir import parse_tflite
from tinygen.plan.lowering import LoweringContext, LoweringError
from tinygen.plan.ops import lower


def concat_model(in_shapes, axis, q, dtype="int8", in_q=None):
    b = GraphBuilder()
    rank = len(in_shapes[0])
    ax = axis % rank
    out_shape = list(in_shapes[0])
    out_shape[ax] = sum(s[ax] for s in in_shapes)
    scale, zp = (q if dtype == "int8" else (None, 0))
    ins = [b.activation(s, dtype, scale=(in_q[i][0] if in_q else scale),
                        zero_point=(in_q[i][1] if in_q else zp)) for i, s in enumerate(in_shapes)]
    y = b.activation(tuple(out_shape), dtype, scale=scale, zero_point=zp)
    b.op("CONCATENATION", ins, [y], options("ConcatenationOptions", axis=axis))
    return b.build(inputs=ins, outputs=[y])


@st.composite
def concat_case(draw):
    base = draw(shapes(1, 4, 1, 5))
    rank = len(base)
    axis = draw(st.integers(0, rank - 1))
    n = draw(st.integers(1, 5))
    in_shapes = []
    for _ in range(n):
        s = list(base)
        s[axis] = draw(st.integers(1, 4))
        in_shapes.append(tuple(s))
    if draw(st.booleans()):
        axis -= rank
    dtype = draw(st.sampled_from(["int8", "int8", "int8", "float32"]))
    return in_shapes, axis, (draw(scales()), draw(zero_points)), dtype


def _data(seed, shape, dtype):
    if dtype == "float32":
        return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return int8_data(seed, shape)


@fast(40)
@given(concat_case(), seeds)
def test_concatenation_matches_tflm(case, seed):
    in_shapes, axis, q, dtype = case
    model = concat_model(in_shapes, axis, q, dtype)
    check(model, [[_data(seed + 10 * k + i, s, dtype) for i, s in enumerate(in_shapes)]
                  for k in range(2)])


def test_concatenation_refuses_mixed_quantization():
    model = concat_model([(1, 4), (1, 3)], 1, (0.1, 0), in_q=[(0.1, 0), (0.2, 0)])
    m = parse_tflite(model)
    with pytest.raises(LoweringError, match="quantized differently"):
        lower(m.operators[0], LoweringContext(m))


def pad_model(shape, pads, q, pad_value=None):
    b = GraphBuilder()
    x = b.activation(shape, scale=q[0], zero_point=q[1])
    p = b.constant(np.asarray(pads, np.int32).reshape(len(shape), 2), "int32")
    out_shape = tuple(n + a + c for n, (a, c) in zip(shape, pads))
    y = b.activation(out_shape, scale=q[0], zero_point=q[1])
    if pad_value is None:
        b.op("PAD", [x, p], [y])
    else:
        v = b.constant(np.asarray([pad_value], np.int8).reshape(()), "int8", scale=q[0],
                       zero_point=q[1])
        b.op("PADV2", [x, p, v], [y])
    return b.build(inputs=[x], outputs=[y])


@st.composite
def pad_case(draw):
    shape = draw(shapes(1, 4, 1, 5))
    pads = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in shape]
    if draw(st.booleans()) and len(shape) == 4:
        pads[0] = (0, 0)   # the image-style case (batch and channels unpadded)
        pads[3] = (0, 0)
    pad_value = draw(st.none() | st.integers(-128, 127))
    return tuple(shape), pads, (draw(scales()), draw(zero_points)), pad_value


@fast(50)
@given(pad_case(), seeds)
def test_pad_matches_tflm(case, seed):
    shape, pads, q, pad_value = case
    model = pad_model(shape, pads, q, pad_value)
    check(model, [[int8_data(seed, shape)], [int8_data(seed + 1, shape, "extremes")]])


@pytest.mark.slow
@slow(300)
@given(concat_case(), pad_case(), seeds)
def test_concat_pad_sweep(ccase, pcase, seed):
    in_shapes, axis, q, dtype = ccase
    check(concat_model(in_shapes, axis, q, dtype),
          [[_data(seed + i, s, dtype) for i, s in enumerate(in_shapes)]])
    shape, pads, q, pad_value = pcase
    check(pad_model(shape, pads, q, pad_value), [[int8_data(seed, shape)]])
