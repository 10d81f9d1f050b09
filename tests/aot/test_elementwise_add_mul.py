"""ADD, SUB and MUL (int8, broadcasting, fused activations, constant
operands): the aot kernels against the TFLM interpreter, 0 LSB."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import tflite_builder as tb
from ew_models import ACTIVATIONS, check, fast, int8_data, options, patterns, scales, seeds, shapes, slow, zero_points
from harness import assert_bit_exact
from hypothesis import given
from hypothesis import strategies as st
from tflite_builder import ACT, GraphBuilder

from tinygen.ir import parse_tflite
from tinygen.plan.aot import plan_aot

tb.OPTION_TABLES.setdefault("SUB", "SubOptions")
_OPTIONS = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}


@st.composite
def broadcast_case(draw, max_rank: int):
    out = draw(shapes(1, max_rank, 1, 5))
    rank = len(out)

    def operand():
        r = draw(st.integers(1, rank))
        dims = list(out[rank - r:])
        return tuple(d if draw(st.booleans()) else 1 for d in dims)
    a, b = operand(), operand()
    # the output shape is the broadcast of the two operands
    ra, rb = (1,) * (rank - len(a)) + a, (1,) * (rank - len(b)) + b
    out = tuple(max(x, y) for x, y in zip(ra, rb))
    if draw(st.booleans()):
        a = out   # the common case: one full-size operand
    return a, b, out


def check_speed_first(tflite: bytes, batches) -> None:
    """check() with the planner choosing speed over RAM (kernels with scratch)."""
    with tempfile.TemporaryDirectory(prefix="tg_ew_") as d:
        assert_bit_exact(tflite, Path(d), inputs=batches, memory_first=False)


def binary_model(opcode, a_shape, b_shape, out_shape, qa, qb, qo, activation, const_b=None,
                 const_a=None):
    b = GraphBuilder()
    if const_a is not None:
        ta = b.constant(const_a, "int8", scale=qa[0], zero_point=qa[1])
    else:
        ta = b.activation(a_shape, scale=qa[0], zero_point=qa[1])
    if const_b is not None:
        tbb = b.constant(const_b, "int8", scale=qb[0], zero_point=qb[1])
    else:
        tbb = b.activation(b_shape, scale=qb[0], zero_point=qb[1])
    to = b.activation(out_shape, scale=qo[0], zero_point=qo[1])
    opt = options(_OPTIONS[opcode], fusedActivationFunction=ACT[activation])
    b.op(opcode, [ta, tbb], [to], opt)
    ins = [t for t, c in ((ta, const_a), (tbb, const_b)) if c is None]
    return b.build(inputs=ins, outputs=[to])


def _run_binary(data, opcode, max_rank):
    a_shape, b_shape, out_shape = data.draw(broadcast_case(max_rank))
    sa, sb = data.draw(scales(-3, 0)), data.draw(scales(-3, 0))
    za, zb, zo = data.draw(zero_points), data.draw(zero_points), data.draw(zero_points)
    # output scale around the natural range of the result; wide factor so
    # some examples saturate and some squeeze into few codes
    factor = data.draw(st.sampled_from([0.05, 0.3, 1.0, 1.0, 2.0, 10.0]))
    if opcode in ("ADD", "SUB"):
        so = (sa + sb) * factor
    else:
        so = sa * sb * 128.0 * factor
    activation = data.draw(st.sampled_from(ACTIVATIONS))
    const = data.draw(st.sampled_from([None, None, None, "b", "a"]))
    seed, pat = data.draw(seeds), data.draw(patterns)
    xa, xb = int8_data(seed, a_shape, pat), int8_data(seed + 1, b_shape, pat)
    model = binary_model(opcode, a_shape, b_shape, out_shape, (sa, za), (sb, zb), (so, zo),
                         activation, const_b=xb if const == "b" else None,
                         const_a=xa if const == "a" else None)
    feeds = [x for x, c in ((xa, "a"), (xb, "b")) if const != c]
    extra = [[int8_data(seed + 7 + k, x.shape) for x in feeds] for k in range(2)]
    check(model, [feeds] + extra)


@fast(80)
@given(st.data())
def test_add_matches_tflm(data):
    _run_binary(data, "ADD", max_rank=5)


@fast(40)
@given(st.data())
def test_sub_matches_tflm(data):
    _run_binary(data, "SUB", max_rank=4)


@fast(80)
@given(st.data())
def test_mul_matches_tflm(data):
    # TFLM's MUL broadcasts over at most 4 dimensions
    _run_binary(data, "MUL", max_rank=4)


@pytest.mark.parametrize("opcode", ["ADD", "SUB", "MUL"])
def test_every_input_pair(opcode):
    """All 65536 (a, b) code pairs, for a few random quantizations: catches
    any rounding of the rescale multipliers that differs from TFLM's."""
    a = np.repeat(np.arange(-128, 128), 256).astype(np.int8).reshape(1, 65536)
    b = np.tile(np.arange(-128, 128), 256).astype(np.int8).reshape(1, 65536)
    rng = np.random.default_rng({"ADD": 1, "SUB": 2, "MUL": 3}[opcode])
    for _ in range(4):
        sa, sb = (float(np.float32(10 ** rng.uniform(-3, 0))) for _ in range(2))
        so = (sa + sb) * rng.uniform(0.3, 2.0) if opcode != "MUL" else \
            sa * sb * 128 * rng.uniform(0.3, 2.0)
        za, zb, zo = (int(z) for z in rng.integers(-128, 128, size=3))
        model = binary_model(opcode, (1, 65536), (1, 65536), (1, 65536), (sa, za), (sb, zb),
                             (float(np.float32(so)), zo), "NONE")
        check(model, [[a, b]])
        if opcode != "MUL":
            # speed first: the table kernel (its scratch would grow this one-op arena,
            # so the default plan keeps the direct kernel checked just above)
            kernels = [c.kernel for c in plan_aot(parse_tflite(model), memory_first=False)[0]]
            assert kernels == ["tg_add_table_s8"], kernels
            check_speed_first(model, [[a, b]])


def test_add_table_kernel_threshold_and_broadcast():
    """Below ADD_TABLE_MIN_ELEMENTS the direct kernel even when speed comes
    first; above, the table kernel, also with a broadcast operand and SUB."""
    small, big = (1, 4, 8, 16), (1, 16, 16, 16)
    for opcode in ("ADD", "SUB"):
        for shape, kernel in ((small, "tg_add_s8"), (big, "tg_add_table_s8")):
            model = binary_model(opcode, shape, (16,), shape, (0.02, -3), (0.07, 40),
                                 (0.05, 2), "RELU")
            kernels = [c.kernel for c in plan_aot(parse_tflite(model), memory_first=False)[0]]
            assert kernels == [kernel], (shape, kernels)
            check_speed_first(model, [[int8_data(s, shape, "all"), int8_data(s + 1, (16,), "all")]
                                      for s in range(3)])


def test_add_same_scales_and_extreme_scales():
    """Hand-picked corners: equal scales, a 100x scale ratio, RELU6 clamps."""
    for sa, sb, so in [(0.05, 0.05, 0.1), (0.001, 0.1, 0.1), (0.5, 0.005, 0.02)]:
        shape = (1, 3, 4, 8)
        model = binary_model("ADD", shape, (8,), shape, (sa, -128), (sb, 127), (so, 5), "RELU6")
        check(model, [[int8_data(s, shape, "extremes"), int8_data(s + 1, (8,), "all")]
                      for s in range(3)])


@pytest.mark.slow
@slow(500)
@given(st.data())
def test_add_sweep(data):
    _run_binary(data, "ADD", max_rank=5)


@pytest.mark.slow
@slow(500)
@given(st.data())
def test_mul_sweep(data):
    _run_binary(data, "MUL", max_rank=4)
