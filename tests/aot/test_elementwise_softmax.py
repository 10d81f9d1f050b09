"""SOFTMAX (int8 in; int8 or int16 out): the aot kernel against the TFLM
interpreter, 0 LSB.  TFLM's int8 softmax is the gemmlowp fixed-point one
(exp on Q5.26 differences, reciprocal of the Q12.19 sum)."""

from __future__ import annotations

import numpy as np
import pytest
from ew_models import check, fast, int8_data, options, patterns, scales, seeds, shapes, slow, zero_points
from hypothesis import given
from hypothesis import strategies as st
from tflite_builder import GraphBuilder


def softmax_model(shape, in_scale, in_zp, beta, out_int16=False):
    b = GraphBuilder()
    x = b.activation(shape, scale=in_scale, zero_point=in_zp)
    if out_int16:
        y = b.activation(shape, "int16", scale=1.0 / 65536, zero_point=-32768)
    else:
        y = b.activation(shape, scale=1.0 / 256, zero_point=-128)
    b.op("SOFTMAX", [x], [y], options("SoftmaxOptions", beta=beta))
    return b.build(inputs=[x], outputs=[y])


@st.composite
def softmax_case(draw):
    outer = draw(shapes(0, 3, 1, 4))
    depth = draw(st.integers(1, 64))
    shape = tuple(outer) + (depth,)
    scale = draw(scales(-3, 1))
    beta = draw(st.sampled_from([1.0, 1.0, 1.0, 0.5, 2.0]) | st.floats(0.05, 8.0))
    beta = float(np.float32(beta))
    return shape, scale, draw(zero_points), beta, draw(st.sampled_from([False, False, True]))


def _run(case, seed, pat):
    shape, scale, zp, beta, int16 = case
    model = softmax_model(shape, scale, zp, beta, out_int16=int16)
    check(model, [[int8_data(seed + k, shape, pat if k == 0 else "random")] for k in range(3)])


@fast(100)
@given(softmax_case(), seeds, patterns)
def test_softmax_matches_tflm(case, seed, pat):
    _run(case, seed, pat)


def test_softmax_keyword_spotting_shape():
    """The usual classifier head: (1, 12) logits, typical scale, beta 1."""
    # the last two saturate beta * scale * 2^26 at 2^31 - 1 (shift 31, found by the sweep)
    for scale, zp, beta in [(0.1, 10, 1.0), (0.0039, -128, 1.0), (0.25, 0, 1.0), (4.0, 3, 1.0),
                            (10.0, 0, 2.0), (10.0, -5, 8.0)]:
        model = softmax_model((1, 12), scale, zp, beta)
        check(model, [[int8_data(s, (1, 12), p)] for s, p in
                      enumerate(["random", "extremes", "constant", "all"])])


@pytest.mark.slow
@slow(500)
@given(softmax_case(), seeds, patterns)
def test_softmax_sweep(case, seed, pat):
    _run(case, seed, pat)
