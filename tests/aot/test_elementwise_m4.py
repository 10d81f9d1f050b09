"""The element-wise kernels built by arm-none-eabi-gcc and run on an emulated
Cortex-M4F (QEMU mps2-an386): 0 LSB vs TFLM (floats bit for bit).  Several
operators share one model (one ELF) with an output each; the int8 inputs
cover every code."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import tflite_builder as tb
from ew_models import options
from harness import assert_bit_exact_m4, qemu_available
from test_elementwise_arm import chain_model
from tflite_builder import ACT, GraphBuilder

pytestmark = pytest.mark.skipif(not qemu_available(), reason="qemu-system-arm not installed")
tb.OPTION_TABLES.setdefault("SUB", "SubOptions")
tb.OPTION_TABLES.setdefault("LEAKY_RELU", "LeakyReluOptions")

ALL_CODES = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)


def _m4(tflite: bytes, batches) -> None:
    with tempfile.TemporaryDirectory(prefix="tg_ew_m4_") as d:
        assert_bit_exact_m4(tflite, Path(d), inputs=batches)


def unary_fanout_model(scale: float, zp: int) -> bytes:
    """One int8 input feeding every single-input element-wise operator."""
    b = GraphBuilder()
    x = b.activation((1, 256), scale=scale, zero_point=zp)
    outs = []

    def out(q=None, dtype="int8"):
        t = b.activation((1, 256), dtype, scale=q[0] if q else None,
                         zero_point=q[1] if q else 0)
        outs.append(t)
        return t
    b.op("LOGISTIC", [x], [out((1 / 256, -128))])
    b.op("TANH", [x], [out((1 / 128, 0))])
    b.op("HARD_SWISH", [x], [out((scale * 0.7, -50))])
    b.op("LEAKY_RELU", [x], [out((scale * 0.8, -20))], options("LeakyReluOptions", alpha=0.2))
    b.op("RELU", [x], [out((scale * 0.6, -128))])
    b.op("RELU6", [x], [out((scale, zp))])
    b.op("SOFTMAX", [x], [out((1 / 256, -128))], options("SoftmaxOptions", beta=1.0))
    b.op("QUANTIZE", [x], [out((scale * 1.7, 9))])
    b.op("DEQUANTIZE", [x], [out(None, "float32")])
    return b.build(inputs=[x], outputs=outs)


def binary_fanout_model(qa, qb, width: int = 65536) -> bytes:
    b = GraphBuilder()
    x = b.activation((1, width), scale=qa[0], zero_point=qa[1])
    y = b.activation((1, width), scale=qb[0], zero_point=qb[1])
    outs = []
    for opcode, opt, so in [("ADD", "AddOptions", qa[0] + qb[0]),
                            ("SUB", "SubOptions", qa[0] + qb[0]),
                            ("MUL", "MulOptions", qa[0] * qb[0] * 100)]:
        o = b.activation((1, width), scale=so, zero_point=-7)
        b.op(opcode, [x, y], [o], options(opt, fusedActivationFunction=ACT["NONE"]))
        outs.append(o)
    return b.build(inputs=[x, y], outputs=outs)


@pytest.mark.parametrize("scale,zp", [(0.05, -3), (0.0123, 100), (0.3, -128)])
def test_unary_ops_on_cortex_m4(scale, zp):
    rng = np.random.default_rng(0)
    _m4(unary_fanout_model(scale, zp),
        [[ALL_CODES.copy()], [rng.permutation(ALL_CODES.reshape(-1)).reshape(1, 256)]])


def test_binary_ops_every_pair_on_cortex_m4():
    a = np.repeat(np.arange(-128, 128), 256).astype(np.int8).reshape(1, 65536)
    b = np.tile(np.arange(-128, 128), 256).astype(np.int8).reshape(1, 65536)
    model = binary_fanout_model((0.0371, 5), (0.1123, -60))
    _m4(model, [[a, b]])
    # speed first: ADD and SUB through the table kernel (scratch in the arena)
    from tinygen.ir import parse_tflite
    from tinygen.plan.aot import plan_aot
    kernels = [c.kernel for c in plan_aot(parse_tflite(model), memory_first=False,
                                          core="cortex-m4f")[0]]
    assert kernels[:2] == ["tg_add_table_s8"] * 2, kernels
    with tempfile.TemporaryDirectory(prefix="tg_ew_m4_") as d:
        assert_bit_exact_m4(model, Path(d), inputs=[[a, b]], memory_first=False)


def test_chain_on_cortex_m4():
    rng = np.random.default_rng(5)
    _m4(chain_model(), [[(rng.standard_normal((1, 6, 5, 8)) * 3).astype(np.float32)]
                        for _ in range(3)])


def test_quantize_float_ties_on_cortex_m4():
    """float32 -> int8 / int16 on the FPU: values on and next to x.5 ties."""
    from test_elementwise_quantize import float_inputs, unary_model
    for out_dtype, scale, zp in [("int8", 0.0371, -5), ("int16", 0.0007, 0)]:
        model = unary_model("QUANTIZE", (4, 64), "float32", None, out_dtype, (scale, zp))
        _m4(model, [[float_inputs(s, (4, 64), scale, zp)] for s in range(3)])
