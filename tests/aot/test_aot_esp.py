"""The aot kernels' property tests on the Espressif cores: the generated code
built by riscv64-unknown-elf-gcc for RV32IMC (QEMU virt, qemu-esp32c3) and by
xtensa-lx106-elf-gcc for the LX106 (QEMU lx60-nommu, qemu-esp8266), 0 LSB
against the tflite_micro interpreter.

Neither core has a SIMD multiply-accumulate: both run the portable kernels,
with their own integer semantics (RV32: no 64-bit registers, libgcc's
64-bit helpers; LX106: no hardware divide, the BSP's libgcc_lx106.c, 16x16
MUL16 and MULL only).  The same case strategies as the host and Cortex-M4
tests (test_aot_ops.py, test_aot_m4.py), fewer examples (each one is a
build and a QEMU boot); slow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from harness import random_inputs
from harness_esp import ESP_BOARDS, assert_bit_exact_esp, esp_available
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras_models import keras_cnn, keras_mixed
from test_aot_ops import conv_cases, depthwise_cases, fc_cases, pool_cases
from test_elementwise_m4 import ALL_CODES, binary_fanout_model
from test_lstm import lstm_cases, lstm_model
from tflite_builder import conv2d_model, depthwise_model, fully_connected_model, pool_model

pytestmark = pytest.mark.slow
ESP = settings(max_examples=8, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                      HealthCheck.function_scoped_fixture])
BOARDS = [pytest.param(b, marks=pytest.mark.skipif(not esp_available(b),
                                                   reason=f"{b}: toolchain or QEMU missing"))
          for b in ESP_BOARDS]


def _esp(tflite: bytes, board: str, seed: int, reference: bytes | None = None,
         memory_first: bool = True, n_inputs: int = 3, **kw) -> None:
    with tempfile.TemporaryDirectory(prefix="tg_esp_") as d:
        assert_bit_exact_esp(tflite, Path(d), board, n_inputs=n_inputs, seed=seed,
                             reference=reference, memory_first=memory_first, **kw)


@pytest.mark.parametrize("board", BOARDS)
@ESP
@given(conv_cases(), st.booleans())
def test_conv2d_esp(board, case, memory_first):
    kw, seed = case
    _esp(conv2d_model(np.random.default_rng(seed), **kw), board, seed,
         memory_first=memory_first)


@pytest.mark.parametrize("board", BOARDS)
@ESP
@given(depthwise_cases())
def test_depthwise_conv2d_esp(board, case):
    kw, seed = case
    ours = depthwise_model(np.random.default_rng(seed), **kw)
    ref = None if kw.get("with_bias", True) else \
        depthwise_model(np.random.default_rng(seed), **{**kw, "with_bias": "zero"})
    _esp(ours, board, seed, ref)


@pytest.mark.parametrize("board", BOARDS)
@ESP
@given(fc_cases())
def test_fully_connected_esp(board, case):
    kw, seed = case
    _esp(fully_connected_model(np.random.default_rng(seed), **kw), board, seed)


@pytest.mark.parametrize("board", BOARDS)
@ESP
@given(pool_cases())
def test_pool2d_esp(board, case):
    kw, seed = case
    _esp(pool_model(np.random.default_rng(seed), **kw), board, seed)


@pytest.mark.parametrize("board", BOARDS)
@ESP
@given(lstm_cases())
def test_lstm_esp(board, case):
    """UNIDIRECTIONAL_SEQUENCE_LSTM (int8, int16 cell state): four consecutive
    invocations, the state carried from one to the next on both sides."""
    kw, seed = case
    _esp(lstm_model(seed, **kw), board, seed, n_inputs=4)


@pytest.mark.parametrize("board", BOARDS)
def test_keras_models_esp(board, tmp_path):
    """Two small Keras models through the converter (conv, depthwise, pooling,
    FC, add, concatenation, softmax, ...), exact and counted in instructions."""
    counts: list[int] = []
    assert_bit_exact_esp(keras_cnn(), tmp_path / "cnn", board, n_inputs=4, counts_out=counts)
    assert len(counts) == 4 and all(c > 0 for c in counts)
    assert_bit_exact_esp(keras_mixed(), tmp_path / "mixed", board, n_inputs=4)
    assert_bit_exact_esp(keras_mixed(), tmp_path / "fast", board, n_inputs=2,
                         memory_first=False)


@pytest.mark.parametrize("board", BOARDS)
def test_binary_ops_every_pair_esp(board):
    """ADD, SUB and MUL on every pair of int8 codes: 16 sets of 4,096 pairs
    (the ESP8266's DRAM holds a 4,096-wide model, not a 65,536-wide one)."""
    a = np.repeat(np.arange(-128, 128), 256).astype(np.int8).reshape(16, 1, 4096)
    b = np.tile(np.arange(-128, 128), 256).astype(np.int8).reshape(16, 1, 4096)
    _esp(binary_fanout_model((0.0371, 5), (0.1123, -60), width=4096), board, 0,
         inputs=[[x, y] for x, y in zip(a, b)])


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("scale,zp", [(0.05, -3), (0.3, -128)])
def test_int8_unary_ops_every_code_esp(board, scale, zp):
    """Every int8 element-wise operator with int8 output on all 256 codes
    (DEQUANTIZE's float output aside: no soft-float on the LX106 here)."""
    from ew_models import options
    from tflite_builder import GraphBuilder
    b = GraphBuilder()
    x = b.activation((1, 256), scale=scale, zero_point=zp)
    outs = []
    for opcode, q, opts in [
            ("LOGISTIC", (1 / 256, -128), None), ("TANH", (1 / 128, 0), None),
            ("HARD_SWISH", (scale * 0.7, -50), None),
            ("LEAKY_RELU", (scale * 0.8, -20), options("LeakyReluOptions", alpha=0.2)),
            ("RELU", (scale * 0.6, -128), None), ("RELU6", (scale, zp), None),
            ("SOFTMAX", (1 / 256, -128), options("SoftmaxOptions", beta=1.0)),
            ("QUANTIZE", (scale * 1.7, 9), None)]:
        o = b.activation((1, 256), scale=q[0], zero_point=q[1])
        b.op(opcode, [x], [o], opts)
        outs.append(o)
    rng = np.random.default_rng(0)
    _esp(b.build(inputs=[x], outputs=outs), board, 0,
         inputs=[[ALL_CODES.copy()], [rng.permutation(ALL_CODES.reshape(-1)).reshape(1, 256)]])


@pytest.mark.skipif(not esp_available("qemu-esp8266"), reason="qemu-esp8266 tools missing")
def test_flash_rule_is_enforced_on_esp8266(tmp_path):
    """The negative control of the flash-load plugin every ESP8266 test here
    runs with: the same driver with one byte load from flash added is stopped."""
    from harness_esp import build_esp, run_esp

    from tinygen.ir import parse_tflite
    tflite = fully_connected_model(np.random.default_rng(1))
    model = parse_tflite(tflite)
    batches = random_inputs(model, np.random.default_rng(1), 1)
    good = build_esp(model, tmp_path / "good", "qemu-esp8266", batches)
    run_esp(good)
    assert good.flash_loads[0] > 0 and good.flash_loads[1] > 0, good.flash_loads
    bad = build_esp(model, tmp_path / "bad", "qemu-esp8266", batches,
                    driver_defines=["TG_TEST_READ_FLASH_BYTE"])
    with pytest.raises(AssertionError, match="VIOLATION .* size=1"):
        run_esp(bad)
