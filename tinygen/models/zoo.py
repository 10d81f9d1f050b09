"""Reference architectures: the four MLPerf Tiny models and more, built in Keras.

Layer for layer as the MLPerf Tiny training scripts define them (keyword
spotting DS-CNN, visual wake words MobileNetV1 0.25, image classification
ResNet-8, anomaly detection FC autoencoder), with random weights: the
benchmark and the end-to-end tests need their shapes and op mix, not their
accuracy.  `width` scales the channel counts down for quick tests.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def _keras():
    from .. import tfenv
    return tfenv.keras()


def ds_cnn_kws(width: float = 1.0):
    keras = _keras()
    L = keras.layers
    ch = max(4, int(64 * width))
    inp = keras.Input((49, 10, 1), name="mfcc")
    x = L.Conv2D(ch, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    for _ in range(4):
        x = L.DepthwiseConv2D((3, 3), padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
        x = L.Conv2D(ch, (1, 1), padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
    x = L.AveragePooling2D(pool_size=(25, 5))(x)
    x = L.Flatten()(x)
    out = L.Dense(12, activation="softmax")(x)
    return keras.Model(inp, out, name="ds_cnn_kws")


def _mobilenet_v1_025(channels: int, name: str, width: float):
    """MobileNetV1 with alpha 0.25 (times `width`) on a 96x96 image, two classes."""
    keras = _keras()
    L = keras.layers

    def ch(c):
        return max(4, int(c * 0.25 * width))

    inp = keras.Input((96, 96, channels), name="image")
    x = L.Conv2D(ch(32), 3, strides=2, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    for filters, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                            (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2),
                            (1024, 1)]:
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        x = L.Conv2D(ch(filters), 1, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = L.Flatten()(x)
    out = L.Dense(2, activation="softmax")(x)
    return keras.Model(inp, out, name=name)


def mobilenet_v1_vww(width: float = 1.0):
    """MLPerf Tiny's visual wake words shape: MobileNetV1 alpha 0.25 on 96x96x3."""
    return _mobilenet_v1_025(3, "mobilenet_v1_vww", width)


def resnet8_cifar(width: float = 1.0):
    keras = _keras()
    L = keras.layers

    def ch(c):
        return max(4, int(c * width))

    inp = keras.Input((32, 32, 3), name="image")
    x = L.Conv2D(ch(16), 3, padding="same")(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    for filters, stride in [(16, 1), (32, 2), (64, 2)]:
        y = L.Conv2D(ch(filters), 3, strides=stride, padding="same")(x)
        y = L.BatchNormalization()(y)
        y = L.Activation("relu")(y)
        y = L.Conv2D(ch(filters), 3, padding="same")(y)
        y = L.BatchNormalization()(y)
        if stride != 1:
            x = L.Conv2D(ch(filters), 1, strides=stride, padding="same")(x)
        x = L.Add()([x, y])
        x = L.Activation("relu")(x)
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = L.Flatten()(x)
    out = L.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out, name="resnet8_cifar")


def fc_autoencoder_ad(width: float = 1.0):
    keras = _keras()
    L = keras.layers
    units = max(8, int(128 * width))
    inp = keras.Input((640,), name="features")
    x = inp
    for n in [units] * 4 + [8] + [units] * 4:
        x = L.Dense(n)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
    out = L.Dense(640)(x)
    return keras.Model(inp, out, name="fc_autoencoder_ad")


def tiny_conv_kws(width: float = 1.0):
    """TFLM micro_speech's tiny_conv: a 49x40 spectrogram, one 10x8 convolution
    (stride 2, 8 filters) and a classifier.  On a single-channel input TFLite
    writes the convolution as DEPTHWISE_CONV_2D with depth multiplier 8, as
    the micro_speech model has it; built here as that layer."""
    keras = _keras()
    L = keras.layers
    mult = max(2, int(8 * width))
    inp = keras.Input((49, 40, 1), name="spectrogram")
    x = L.DepthwiseConv2D((10, 8), strides=(2, 2), padding="same", depth_multiplier=mult)(inp)
    x = L.Activation("relu")(x)
    x = L.Flatten()(x)
    out = L.Dense(4, activation="softmax")(x)
    return keras.Model(inp, out, name="tiny_conv_kws")


def lstm_classifier(width: float = 1.0):
    """Sequence classification with an int8 UNIDIRECTIONAL_SEQUENCE_LSTM: 28
    steps of 28 features (MNIST read row by row), 32 units, 10 classes."""
    keras = _keras()
    L = keras.layers
    units = max(4, int(32 * width))
    inp = keras.Input((28, 28), name="rows")
    x = L.LSTM(units)(inp)
    out = L.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out, name="lstm_classifier")


def person_detection_96(width: float = 1.0):
    """TFLM person_detection's shape: MobileNetV1 alpha 0.25 on a 96x96
    grayscale image (one channel), two classes (person / no person)."""
    return _mobilenet_v1_025(1, "person_detection_96", width)


def streaming_kws(width: float = 1.0):
    """A streaming wake-word model with external state, as streaming KWS
    models are exported for microcontrollers: each invocation takes one new
    40-feature frame and, per temporal layer, the last two frames of that
    layer's input (the state the application feeds back), and returns the
    class scores and the updated states.  Three temporal layers (a 3-frame
    convolution, then two depthwise-separable 3-frame blocks), 12 classes."""
    keras = _keras()
    L = keras.layers
    ch = max(8, int(64 * width))
    frame = keras.Input((1, 40), name="frame")
    states = [keras.Input((2, 40), name="state0"), keras.Input((2, ch), name="state1"),
              keras.Input((2, ch), name="state2")]
    new_states = []
    x = frame
    for i, state in enumerate(states):
        window = L.Concatenate(axis=1)([state, x])            # (3, channels)
        new_states.append(L.Cropping1D((1, 0), name=f"new_state{i}")(window))
        if i == 0:
            x = L.Conv1D(ch, 3, use_bias=False)(window)
        else:
            x = L.DepthwiseConv1D(3, use_bias=False)(window)
            x = L.BatchNormalization()(x)
            x = L.ReLU()(x)
            x = L.Conv1D(ch, 1, use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.Flatten()(x)
    out = L.Dense(12, activation="softmax", name="scores")(x)
    return keras.Model([frame] + states, [out] + new_states, name="streaming_kws")


MLPERF_TINY: dict[str, Callable] = {
    "ds_cnn_kws": ds_cnn_kws,
    "mobilenet_v1_vww": mobilenet_v1_vww,
    "resnet8_cifar": resnet8_cifar,
    "fc_autoencoder_ad": fc_autoencoder_ad,
}

# Shapes the MLPerf models do not have (issue 19): a depthwise convolution
# with depth multiplier > 1 on one channel, an int8 LSTM, a streaming
# wake-word model with external state, a one-channel person detector.
MORE: dict[str, Callable] = {
    "tiny_conv_kws": tiny_conv_kws,
    "lstm_classifier": lstm_classifier,
    "streaming_kws": streaming_kws,
    "person_detection_96": person_detection_96,
}

ZOO: dict[str, Callable] = {**MLPERF_TINY, **MORE}


def randomize_batchnorm(model, seed: int = 0) -> None:
    """Give BatchNormalization layers non-trivial statistics, as training would."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                               rng.normal(0, 0.1, beta.shape).astype(np.float32),
                               rng.normal(0, 0.1, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 1.5, var.shape).astype(np.float32)])


def build(name: str, width: float = 1.0, seed: int = 0):
    keras = _keras()
    keras.utils.set_random_seed(seed)
    model = ZOO[name](width)
    randomize_batchnorm(model, seed)
    return model


def calibration_data(model, n: int = 32, seed: int = 0) -> np.ndarray | list[np.ndarray]:
    """n random samples per input: one array, or one per input in input order
    (save those with np.savez: a .npz holds one array per input)."""
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1, 1, (n,) + tuple(t.shape[1:])).astype(np.float32)
              for t in model.inputs]
    return arrays[0] if len(arrays) == 1 else arrays
