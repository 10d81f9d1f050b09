"""Small Keras models with pruned (all-zero) channels, converted to int8 as
users' models are, cached on disk (keyed by this file's contents)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from harness import _cache_dir
from keras_models import convert_keras

# Which channels each layer of _channels_cnn() has zeroed, and what the
# rewrite may therefore drop.  conv2 reads the second depthwise output with
# a 3x3 SAME window: its constant channels 6 and 7 (non-zero bias, so not the
# zero point after ReLU) are position-dependent at the borders there and
# must stay; channel 2's constant is the zero point and goes.
ZEROED = {"conv0": [1, 4], "dw0": [1, 4], "pw1": [2, 6, 7], "conv2": [0, 3]}
EXPECTED_SHAPES = {0: 6, 1: 6, 2: 9, 3: 9, 4: 4, 5: 4}   # op index -> output channels


def _channels_cnn() -> bytes:
    import keras
    rng = np.random.default_rng(1)
    inp = keras.Input((12, 10, 2))
    x = keras.layers.Conv2D(8, (3, 3), strides=2, padding="same", activation="relu",
                            name="conv0")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw0")(x)
    x = keras.layers.Conv2D(10, 1, activation="relu", name="pw1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="valid", activation="relu", name="dw1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5, name="fc")(x)
    out = keras.layers.Softmax()(x)
    m = keras.Model(inp, out)
    for layer in m.layers:
        for w in layer.weights:
            w.assign(rng.normal(0, 0.4, w.shape).astype("float32"))
    biases = {("conv0", 1): 0.3, ("conv0", 4): -0.2, ("pw1", 2): 0.5, ("pw1", 6): -0.1,
              ("pw1", 7): 0.2, ("conv2", 0): 0.4}
    for name, chans in ZEROED.items():
        layer = m.get_layer(name)
        w, b = layer.get_weights()
        if name.startswith("dw"):
            w[:, :, chans, :] = 0
        else:
            w[..., chans] = 0
        for c in chans:
            b[c] = biases.get((name, c), b[c])
        layer.set_weights([w, b])
    return convert_keras(m, (12, 10, 2))


SPARSE_ZERO_SHARE = 0.85


def _sparse_mlp() -> bytes:
    """1x1 convolutions over 25 pixels (an odd count: the kernel's single-row
    tail), a 300-deep Dense (16-bit column indices) and a small Dense, every
    kernel with its smallest 85 % of weights set to zero."""
    import keras
    rng = np.random.default_rng(4)
    inp = keras.Input((5, 5, 8))
    x = keras.layers.Conv2D(16, 1, activation="relu")(inp)
    x = keras.layers.Conv2D(12, 1)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(20, activation="relu")(x)
    out = keras.layers.Dense(4)(x)
    m = keras.Model(inp, out)
    for layer in m.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        w = rng.normal(0, 0.4, ws[0].shape).astype("float32")
        w[np.abs(w) <= np.quantile(np.abs(w), SPARSE_ZERO_SHARE)] = 0
        layer.set_weights([w, rng.normal(0, 0.2, ws[1].shape).astype("float32")])
    return convert_keras(m, (5, 5, 8))


def _all_zero_layer() -> bytes:
    """A 1x1 convolution whose every filter is zero (its output is its bias,
    requantized): every channel could go, one has to stay."""
    import keras
    rng = np.random.default_rng(6)
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c0")(inp)
    x = keras.layers.Conv2D(6, 1, activation="relu", name="zero")(x)
    x = keras.layers.Conv2D(5, 1, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3)(x)
    m = keras.Model(inp, out)
    for layer in m.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.normal(0, 0.4, w.shape).astype("float32") for w in ws])
    w, b = m.get_layer("zero").get_weights()
    m.get_layer("zero").set_weights([np.zeros_like(w), np.abs(b) + 0.1])
    return convert_keras(m, (6, 6, 3))


def _cached(name: str, build) -> bytes:
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    path = _cache_dir() / f"pruned-{name}-{key}.tflite"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(build())
        os.replace(tmp, path)
    return path.read_bytes()


def channels_cnn() -> bytes:
    return _cached("channels-cnn", _channels_cnn)


def sparse_mlp() -> bytes:
    return _cached("sparse-mlp", _sparse_mlp)


def all_zero_layer() -> bytes:
    return _cached("all-zero-layer", _all_zero_layer)
