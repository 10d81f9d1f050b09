"""The element-wise kernels compile for Cortex-M4F with -Wall -Wextra -Werror
(and -pedantic), alone and inside a generated model; a chain of several
element-wise operators through the full aot backend (planner, in-place
buffers) matches TFLM."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from ew_models import check, options
from harness import ARM_CFLAGS, REPO, compile_cortex_m4
from tflite_builder import ACT, GraphBuilder

from tinygen.codegen.aot import generate_aot
from tinygen.ir import parse_tflite

KERNELS = REPO / "firmware_templates" / "aot" / "kernels"
SOURCES = ["tg_add_mul.c", "tg_softmax.c", "tg_activations.c", "tg_relu.c", "tg_mean.c",
           "tg_concat_pad.c", "tg_quantize.c"]

needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc is not installed")


@needs_arm
@pytest.mark.parametrize("src", SOURCES)
def test_kernel_compiles_for_cortex_m4(src, tmp_path):
    res = subprocess.run(["arm-none-eabi-gcc", *ARM_CFLAGS, "-pedantic", "-I", str(KERNELS),
                          "-c", str(KERNELS / src), "-o", str(tmp_path / "k.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def chain_model():
    """float -> QUANTIZE -> ADD(const) -> HARD_SWISH -> LOGISTIC -> MUL -> PAD -> MEAN
    -> SOFTMAX -> DEQUANTIZE, plus TANH and CONCATENATION branches."""
    rng = np.random.default_rng(7)
    b = GraphBuilder()
    x = b.activation((1, 6, 5, 8), "float32")
    q = b.activation((1, 6, 5, 8), scale=0.05, zero_point=-3)
    b.op("QUANTIZE", [x], [q])
    c = b.constant(rng.integers(-128, 128, size=(8,)).astype(np.int8), "int8", scale=0.02,
                   zero_point=4)
    a = b.activation((1, 6, 5, 8), scale=0.06, zero_point=2)
    b.op("ADD", [q, c], [a], options("AddOptions", fusedActivationFunction=ACT["NONE"]))
    h = b.activation((1, 6, 5, 8), scale=0.05, zero_point=-20)
    b.op("HARD_SWISH", [a], [h])
    s = b.activation((1, 6, 5, 8), scale=1 / 256, zero_point=-128)
    b.op("LOGISTIC", [h], [s])
    t = b.activation((1, 6, 5, 8), scale=1 / 128, zero_point=0)
    b.op("TANH", [a], [t])
    m = b.activation((1, 6, 5, 8), scale=0.004, zero_point=-20)
    b.op("MUL", [s, t], [m], options("MulOptions", fusedActivationFunction=ACT["RELU"]))
    cat = b.activation((1, 6, 5, 16), scale=0.004, zero_point=-20)
    b.op("CONCATENATION", [m, m], [cat], options("ConcatenationOptions", axis=-1))
    pads = b.constant(np.array([[0, 0], [1, 1], [2, 0], [0, 0]], np.int32), "int32")
    p = b.activation((1, 8, 7, 16), scale=0.004, zero_point=-20)
    b.op("PAD", [cat, pads], [p])
    axes = b.constant(np.array([1, 2], np.int32), "int32")
    g = b.activation((1, 16), scale=0.003, zero_point=-10)
    b.op("MEAN", [p, axes], [g], options("ReducerOptions", keepDims=False))
    sm = b.activation((1, 16), scale=1 / 256, zero_point=-128)
    b.op("SOFTMAX", [g], [sm], options("SoftmaxOptions", beta=1.0))
    out = b.activation((1, 16), "float32")
    b.op("DEQUANTIZE", [sm], [out])
    return b.build(inputs=[x], outputs=[out])


def test_chain_of_elementwise_ops_matches_tflm():
    model = chain_model()
    rng = np.random.default_rng(3)
    check(model, [[(rng.standard_normal((1, 6, 5, 8)) * 3).astype(np.float32)]
                  for _ in range(4)])


@needs_arm
def test_generated_model_compiles_for_cortex_m4():
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "aot"
        generate_aot(parse_tflite(chain_model()), out, board="host", copy_api_header=True)
        sizes = compile_cortex_m4(out, flags=(*ARM_CFLAGS, "-pedantic"))
        assert "model.c" in sizes
        for src in SOURCES:
            assert src in sizes, sorted(sizes)
