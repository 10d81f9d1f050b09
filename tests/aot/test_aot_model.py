"""Whole models through the aot backend, as the TFLite converter emits them.

Small Keras models are converted to full-int8 .tflite (a tf.function with a
fixed batch-1 signature, so no SHAPE/STRIDED_SLICE ops appear), generated
with generate_aot, compiled for the host and compared with TFLM (0 LSB); the
same sources must compile for Cortex-M4F with -Wall -Wextra -Werror.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from harness import (assert_bit_exact, compile_cortex_m4, link_cortex_m4, random_inputs,
                     tflm_arena_usage)
from tinygen.codegen.aot import generate_aot
from tinygen.ir import parse_tflite

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def convert_keras(model, input_shape, seed=0, n_calib=24) -> bytes:
    import tensorflow as tf
    spec = tf.TensorSpec((1, *input_shape), tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(n_calib):
            yield [(rng.random((1, *input_shape), dtype=np.float32) * 2 - 1)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="session")
def keras_cnn_tflite(tmp_path_factory) -> bytes:
    """Conv2D, DepthwiseConv2D (stride 2, RELU6), VALID conv, both pools,
    Flatten (RESHAPE) and two Dense layers: only the kernels of conv.py,
    pooling.py and reshape.py."""
    import tensorflow as tf
    keras = tf.keras
    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(x)
    x = keras.layers.Conv2D(12, 3, padding="valid")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.AveragePooling2D(2, padding="same")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    out = keras.layers.Dense(10)(x)
    tfl = convert_keras(keras.Model(inp, out), (16, 16, 3))
    (tmp_path_factory.mktemp("keras") / "cnn.tflite").write_bytes(tfl)
    return tfl


@pytest.fixture(scope="session")
def keras_mixed_tflite() -> bytes:
    """A residual block with the element-wise family too (ADD, MEAN via global
    average pooling, SOFTMAX), dilation and a depth multiplier."""
    import tensorflow as tf
    keras = tf.keras
    keras.utils.set_random_seed(5)
    inp = keras.Input((12, 12, 4), batch_size=1)
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    b = keras.layers.Conv2D(8, 3, padding="same", dilation_rate=2)(a)
    c = keras.layers.Add()([a, b])
    d = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid",
                                     activation="relu")(c)
    e = keras.layers.GlobalAveragePooling2D()(d)
    f = keras.layers.Dense(6)(e)
    out = keras.layers.Softmax()(f)
    return convert_keras(keras.Model(inp, out), (12, 12, 4), seed=1)


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
    assert names == ["model.c", "model.h", "tg_conv2d.c", "tg_conv2d.h",
                     "tg_depthwise_conv2d.c", "tg_depthwise_conv2d.h",
                     "tg_fully_connected.c", "tg_fully_connected.h", "tg_kernels.h",
                     "tg_pooling.c", "tg_pooling.h"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names      # flat, nothing else
    src = (tmp_path / "model.c").read_text()
    assert '"nucleo_f446re"' in src and "static int8_t tg_arena[" in src
    assert "malloc" not in src
    assert len(res.calls) == 8 and res.plan.arena_bytes == res.arena_bytes
    assert res.weights_bytes > 0 and res.tables_bytes > 0


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
