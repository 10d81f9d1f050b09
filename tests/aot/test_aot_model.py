"""Whole models through the aot backend, as the TFLite converter emits them.

Small Keras models are converted to full-int8 .tflite (a tf.function with a
fixed batch-1 signature, so no SHAPE/STRIDED_SLICE ops appear), generated
with generate_aot, compiled for the host and compared with TFLM (0 LSB); the
same sources must compile for Cortex-M4F with -Wall -Wextra -Werror.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from harness import assert_bit_exact, compile_cortex_m4, link_cortex_m4, random_inputs, tflm_arena_usage
from keras_models import keras_cnn, keras_dscnn, keras_mixed

from tinygen.codegen.aot import generate_aot
from tinygen.ir import parse_tflite


@pytest.fixture(scope="session")
def keras_cnn_tflite() -> bytes:
    return keras_cnn()


@pytest.fixture(scope="session")
def keras_mixed_tflite() -> bytes:
    return keras_mixed()


def _ops(tfl: bytes) -> list[str]:
    return [op.opcode for op in parse_tflite(tfl).operators]


def test_keras_cnn_bit_exact(keras_cnn_tflite, tmp_path):
    tfl = keras_cnn_tflite
    assert _ops(tfl) == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "MAX_POOL_2D",
                         "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    model = parse_tflite(tfl)
    x = model.tensors[model.inputs[0]]
    batches = random_inputs(model, np.random.default_rng(0), 16)
    batches += [[np.full(x.shape, v, np.int8)] for v in (-128, 0, 127)]
    cmp = assert_bit_exact(tfl, tmp_path, inputs=batches)
    res = cmp.binary.result
    assert res.skipped_ops == [5]                  # the Flatten costs nothing
    usage = tflm_arena_usage(tfl)
    assert res.arena_bytes <= usage["head"]        # never more activation RAM than TFLM
    weights = {i for op in model.operators if op.opcode != "RESHAPE"
               for i in op.inputs[1:] if i >= 0}
    assert res.weights_bytes == sum(model.tensors[i].nbytes for i in weights)


def test_keras_cnn_files_and_result(keras_cnn_tflite, tmp_path):
    res = generate_aot(parse_tflite(keras_cnn_tflite), tmp_path, board="nucleo_f446re")
    names = sorted(p.name for p in res.files)
    # A Cortex-M4F board gets the DSP (SMLAD) kernels; only what the model uses is
    # copied: the convolution whose map only the depthwise reads is streamed into
    # it (plan/fuse.py: the tg_stream_* driver calls both dsp kernels).
    assert names == ["model.c", "model.h", "tg_conv2d_dsp.c", "tg_conv2d_dsp.h",
                     "tg_depthwise_dsp.c", "tg_depthwise_dsp.h", "tg_dsp.h",
                     "tg_fully_connected_dsp.c", "tg_fully_connected_dsp.h", "tg_kernels.h",
                     "tg_pooling.c", "tg_pooling.h", "tg_stream_dw.c", "tg_stream_dw.h",
                     "tg_stream_fc.h"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names      # flat, nothing else
    src = (tmp_path / "model.c").read_text()
    assert '"nucleo_f446re"' in src and "static int8_t tg_arena[" in src
    assert "malloc" not in src
    assert len(res.calls) == 8 and res.plan.arena_bytes == res.arena_bytes
    assert res.weights_bytes > 0 and res.tables_bytes > 0
    assert res.weight_symbols and res.table_symbols
    for name in res.weight_symbols + res.table_symbols:
        assert f"static const int8_t {name}[" in src or f"static const int32_t {name}[" in src
    # what generate_aot decided is what plan_aot reports (for the analyze stage)
    from tinygen.plan.aot import plan_aot
    calls, plan = plan_aot(parse_tflite(keras_cnn_tflite), core="cortex-m4f")
    assert plan.arena_bytes == res.arena_bytes
    assert [c.kernel for c in calls] == [c.kernel for c in res.calls]


def test_keras_cnn_compiles_for_cortex_m4(keras_cnn_tflite, tmp_path):
    res = generate_aot(parse_tflite(keras_cnn_tflite), tmp_path / "src")
    sizes = compile_cortex_m4(tmp_path / "src")
    assert set(sizes) == {"model.c", "tg_conv2d.c", "tg_depthwise_conv2d.c",
                          "tg_fully_connected.c", "tg_pooling.c"}
    elf = link_cortex_m4(tmp_path / "src", tmp_path)
    # the arena is the only RAM the model needs; the weights are in flash
    assert res.arena_bytes <= elf["bss"] < res.arena_bytes + 512
    assert elf["text"] > res.weights_bytes


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed")
def test_keras_cnn_clang_werror(keras_cnn_tflite, tmp_path):
    cmp = assert_bit_exact(keras_cnn_tflite, tmp_path, n_inputs=2, opt="-O2", cc="clang")
    assert cmp.n_inputs == 2


def test_keras_mixed_bit_exact(keras_mixed_tflite, tmp_path):
    tfl = keras_mixed_tflite
    ops = _ops(tfl)
    assert {"ADD", "MEAN", "SOFTMAX", "DEPTHWISE_CONV_2D"} <= set(ops), ops
    cmp = assert_bit_exact(tfl, tmp_path, n_inputs=12)
    compile_cortex_m4(cmp.binary.result.out_dir)
    assert cmp.arena_bytes <= tflm_arena_usage(tfl)["head"]


@pytest.mark.slow
def test_keras_dscnn_bit_exact(tmp_path):
    """The MLPerf Tiny KWS network shape: bit-exact, and never more activation
    RAM than TFLM's planner."""
    tfl = keras_dscnn()
    cmp = assert_bit_exact(tfl, tmp_path, n_inputs=8, opt="-O2")
    assert cmp.arena_bytes <= tflm_arena_usage(tfl)["head"]
