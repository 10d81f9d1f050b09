"""Make foreign_lstm.tflite: an int8 LSTM .tflite that tinygen did not produce.

It stands for a model a user brings already converted: a legacy Keras 2
(``tf_keras``) model with two stacked LSTMs (batch-major, time_major=False),
shapes unlike the example's (40 steps x 4 features, 12 and 6 units, 2 outputs),
trained for a moment on a toy task (frequency and amplitude of noisy sines),
then converted by the plain TFLite converter (``from_keras_model`` on a batch-1
copy of the model; no tinygen code involved) with the usual full-integer
settings: representative dataset, TFLITE_BUILTINS_INT8, int8 input and output.

    python3 examples/lstm_anomaly/make_foreign.py
    tinygen verify --board qemu-cortex-m4 examples/lstm_anomaly/foreign_lstm.tflite --samples 5
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
STEPS, FEATURES = 40, 4


def toy_data(n: int, rng: np.random.Generator):
    t = np.arange(STEPS)[None, :, None]
    freq = rng.uniform(0.02, 0.2, (n, 1, 1))
    amp = rng.uniform(0.3, 1.5, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, FEATURES))
    x = amp * np.sin(2 * np.pi * freq * t + phase) + rng.normal(0, 0.1, (n, STEPS, FEATURES))
    y = np.concatenate([freq[:, 0] * 10, amp[:, 0]], axis=1)
    return x.astype(np.float32), y.astype(np.float32)


def build(tf_keras, batch):
    return tf_keras.Sequential([
        tf_keras.Input((STEPS, FEATURES), batch_size=batch, name="series"),
        tf_keras.layers.LSTM(12, return_sequences=True, time_major=False, name="lstm_a"),
        tf_keras.layers.LSTM(6, time_major=False, name="lstm_b"),
        tf_keras.layers.Dense(2, name="head"),
    ])


def main():
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(11)
    rng = np.random.default_rng(11)
    model = build(tf_keras, batch=None)              # trained with any batch size
    x, y = toy_data(1024, rng)
    model.compile("adam", "mse")
    model.fit(x, y, epochs=3, batch_size=32, verbose=2)
    # The converter fuses the LSTMs into UNIDIRECTIONAL_SEQUENCE_LSTM only with a
    # fixed batch: with batch None it fails ("Lowering tensor list ops is
    # failed").  So the weights go into the same model built for batch 1, as the
    # TFLite LSTM guides do.
    deploy = build(tf_keras, batch=1)
    deploy.set_weights(model.get_weights())

    def representative():
        for s in x[:100]:
            yield [s[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(deploy)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    tflite = conv.convert()
    (HERE / "foreign_lstm.tflite").write_bytes(tflite)
    print(f"wrote foreign_lstm.tflite ({len(tflite)} bytes)")


if __name__ == "__main__":
    main()
