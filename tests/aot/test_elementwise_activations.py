"""LOGISTIC and TANH (int8): the aot kernels against the TFLM interpreter,
0 LSB.  Every example feeds all 256 input codes, so each drawn input
quantization is checked exhaustively."""

from __future__ import annotations

import numpy as np
import pytest
from ew_models import check, fast, int8_data, scales, seeds, slow, zero_points
from hypothesis import given
from hypothesis import strategies as st
from tflite_builder import GraphBuilder

ALL_CODES = np.arange(-128, 128, dtype=np.int8)


def activation_model(opcode, shape, in_scale, in_zp, out_scale=None, out_zp=None):
    if out_scale is None:
        out_scale, out_zp = (1.0 / 256, -128) if opcode == "LOGISTIC" else (1.0 / 128, 0)
    b = GraphBuilder()
    x = b.activation(shape, scale=in_scale, zero_point=in_zp)
    y = b.activation(shape, scale=out_scale, zero_point=out_zp)
    b.op(opcode, [x], [y])
    return b.build(inputs=[x], outputs=[y])


def _run(opcode, scale, zp, seed, rows):
    shape = (rows, 256)
    model = activation_model(opcode, shape, scale, zp)
    rng = np.random.default_rng(seed)
    data = np.stack([rng.permutation(ALL_CODES) for _ in range(rows)])
    check(model, [[data], [int8_data(seed, shape)]])


@fast(60)
@given(scales(-3.5, 0.5), zero_points, seeds, st.integers(1, 3))
def test_logistic_matches_tflm(scale, zp, seed, rows):
    _run("LOGISTIC", scale, zp, seed, rows)


@fast(60)
@given(scales(-3.5, 0.5), zero_points, seeds, st.integers(1, 3))
def test_tanh_matches_tflm(scale, zp, seed, rows):
    _run("TANH", scale, zp, seed, rows)


@pytest.mark.parametrize("opcode", ["LOGISTIC", "TANH"])
def test_typical_scales_exhaustive(opcode):
    """Scales a converter produces for LSTM gates and sigmoid heads."""
    for scale, zp in [(1 / 16, 0), (0.0235, -3), (8 / 128, -128), (0.1, 127), (1 / 32, 5)]:
        model = activation_model(opcode, (256,), scale, zp)
        check(model, [[ALL_CODES.copy()]])


@pytest.mark.slow
@pytest.mark.parametrize("opcode", ["LOGISTIC", "TANH"])
@slow(300)
@given(scale=scales(-5, 1.5), zp=zero_points, seed=seeds)
def test_activation_sweep(opcode, scale, zp, seed):
    _run(opcode, scale, zp, seed, 1)


@pytest.mark.parametrize("opcode", ["LOGISTIC", "TANH"])
@fast(150)
@given(scale=scales(-5, 1.5), zp=zero_points)
def test_table_is_the_interpreter_on_every_code(opcode, scale, zp):
    """The lowering's 256-entry table (plan/fixedpoint.py) against the
    tflite_micro interpreter directly, no C compiler in between: many more
    quantizations than the compiled tests above can afford."""
    from tinygen.ir import parse_tflite
    from tinygen.plan.aot import plan_aot
    from tinygen.reference import TflmReference
    tfl = activation_model(opcode, (256,), scale, zp)
    calls, _ = plan_aot(parse_tflite(tfl))
    (call,) = calls
    assert call.kernel == "tg_lut_s8" and call.params["table"] == call.constants[0].name
    table = call.constants[0].values
    assert table.dtype == np.int8 and table.shape == (256,)
    (want,) = TflmReference(tfl).run([ALL_CODES.copy()])
    np.testing.assert_array_equal(table, want.reshape(-1))
