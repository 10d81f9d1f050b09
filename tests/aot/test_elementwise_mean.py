"""MEAN and SUM (int8) over drawn axes, keep_dims true and false: the aot
kernel against the TFLM interpreter, 0 LSB.  Includes the GlobalAveragePooling
form (4-D, axes 1 and 2)."""

from __future__ import annotations

import numpy as np
import pytest
from ew_models import check, fast, int8_data, options, patterns, scales, seeds, shapes, slow, zero_points
from hypothesis import given
from hypothesis import strategies as st
from tflite_builder import GraphBuilder


def reduce_model(opcode, shape, axes, keep_dims, qin, qout):
    rank = len(shape)
    resolved = sorted({a % rank for a in axes})
    if keep_dims:
        out_shape = tuple(1 if d in resolved else n for d, n in enumerate(shape))
    else:
        out_shape = tuple(n for d, n in enumerate(shape) if d not in resolved)
    b = GraphBuilder()
    x = b.activation(shape, scale=qin[0], zero_point=qin[1])
    ax = b.constant(np.asarray(axes, np.int32), "int32")
    y = b.activation(out_shape, scale=qout[0], zero_point=qout[1])
    b.op(opcode, [x, ax], [y], options("ReducerOptions", keepDims=keep_dims))
    return b.build(inputs=[x], outputs=[y])


@st.composite
def reduce_case(draw):
    shape = draw(shapes(1, 4, 1, 7))
    rank = len(shape)
    # TFLM resolves at most two distinct axes
    n_axes = draw(st.integers(1, min(2, rank)))
    axes = draw(st.lists(st.integers(0, rank - 1), min_size=n_axes, max_size=n_axes,
                         unique=True))
    axes = [a - rank if draw(st.booleans()) else a for a in axes]
    if draw(st.integers(0, 4)) == 0:
        axes = axes + [axes[0]]   # a duplicate axis
    keep = draw(st.booleans())
    qin = (draw(scales(-3, 0)), draw(zero_points))
    qout = qin if draw(st.booleans()) else (qin[0] * draw(st.sampled_from([0.25, 0.9, 1.0, 3.0])),
                                            draw(zero_points))
    return shape, axes, keep, qin, qout


def _run(opcode, case, seed, pat):
    shape, axes, keep, qin, qout = case
    model = reduce_model(opcode, shape, axes, keep, qin, qout)
    check(model, [[int8_data(seed + k, shape, pat if k == 0 else "random")] for k in range(3)])


@fast(80)
@given(reduce_case(), seeds, patterns)
def test_mean_matches_tflm(case, seed, pat):
    _run("MEAN", case, seed, pat)


@fast(25)
@given(reduce_case(), seeds, patterns)
def test_sum_matches_tflm(case, seed, pat):
    shape, axes, keep, qin, qout = case
    n = int(np.prod([shape[a % len(shape)] for a in set(axes)]))
    _run("SUM", (shape, axes, keep, qin, (qout[0] * n / 4, qout[1])), seed, pat)


@pytest.mark.parametrize("keep_dims", [True, False])
def test_global_average_pooling(keep_dims):
    """What Keras GlobalAveragePooling2D converts to."""
    for (h, w, c), q in [((7, 7, 32), ((0.05, -10), (0.05, -10))),
                         ((5, 3, 8), ((0.02, 4), (0.01, -7))),
                         ((1, 1, 4), ((0.1, 0), (0.1, 0)))]:
        model = reduce_model("MEAN", (1, h, w, c), [1, 2], keep_dims, *q)
        check(model, [[int8_data(s, (1, h, w, c), p)] for s, p in
                      enumerate(["random", "extremes", "constant"])])


@pytest.mark.slow
@slow(400)
@given(reduce_case(), seeds, patterns)
def test_mean_sweep(case, seed, pat):
    _run("MEAN", case, seed, pat)
