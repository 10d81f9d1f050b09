"""Small Keras models converted by the TFLite converter, as users' models are.

Each is converted to full-int8 .tflite through a tf.function with a fixed
batch-1 signature (so no SHAPE/STRIDED_SLICE ops appear) and cached on disk
(keyed by this file's contents), so the test session imports TensorFlow only
when the cache is cold.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from harness import _cache_dir

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


def _cached(name: str, build) -> bytes:
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    path = _cache_dir() / f"keras-{name}-{key}.tflite"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(build())
        os.replace(tmp, path)
    return path.read_bytes()


def _cnn() -> bytes:
    """Conv2D, DepthwiseConv2D (stride 2, RELU6), VALID conv, both pools,
    Flatten (RESHAPE) and two Dense layers: the kernels of conv.py, pooling.py
    and reshape.py only."""
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
    return convert_keras(keras.Model(inp, out), (16, 16, 3))


def _mixed() -> bytes:
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


def _dscnn() -> bytes:
    """The MLPerf Tiny keyword-spotting DS-CNN shape (49x10 MFCC input, 64
    channels, four depthwise-separable blocks), untrained."""
    import tensorflow as tf
    keras = tf.keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((49, 10, 1), batch_size=1)
    x = L.Conv2D(64, (10, 4), strides=2, padding="same")(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(4):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x)))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, 1)(x)))
    x = L.AveragePooling2D((25, 5))(x)
    x = L.Flatten()(x)
    out = L.Dense(12, activation="softmax")(x)
    return convert_keras(keras.Model(inp, out), (49, 10, 1))


def keras_cnn() -> bytes:
    return _cached("cnn", _cnn)


def keras_mixed() -> bytes:
    return _cached("mixed", _mixed)


def keras_dscnn() -> bytes:
    return _cached("dscnn", _dscnn)
