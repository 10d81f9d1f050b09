"""Train the quickstart model: a tiny CNN telling bar orientations apart.

The data is generated here (no download): 16x16 grey images with a
horizontal, vertical or diagonal bar, or only noise.  Trains in seconds on a
CPU and writes model.h5, calib.npy (calibration inputs) and test.npz.
"""

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

HERE = Path(__file__).resolve().parent
CLASSES = ["horizontal", "vertical", "diagonal", "noise"]


def make_images(n: int, rng: np.random.Generator):
    x = rng.normal(0.0, 0.15, (n, 16, 16, 1)).astype(np.float32)
    y = rng.integers(0, len(CLASSES), n)
    for img, label in zip(x, y):
        pos = rng.integers(3, 13)
        width = rng.integers(1, 3)
        if label == 0:
            img[pos:pos + width, :, 0] += 1.0
        elif label == 1:
            img[:, pos:pos + width, 0] += 1.0
        elif label == 2:
            shift = rng.integers(-4, 5)
            for i in range(16):
                j = i + shift
                if 0 <= j < 16:
                    img[i, j, 0] += 1.0
    return x, y


def build():
    return keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.Conv2D(12, 1, activation="relu"),
        keras.layers.AveragePooling2D(2),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(len(CLASSES)),
        keras.layers.Softmax(),
    ])


def main():
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    x, y = make_images(3000, rng)
    xt, yt = make_images(400, rng)
    model = build()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=64, verbose=0)
    _, acc = model.evaluate(xt, yt, verbose=0)
    print(f"float test accuracy: {acc:.3f}")
    model.save(HERE / "model.h5")
    np.save(HERE / "calib.npy", x[:100])
    np.savez(HERE / "test.npz", x=xt[:100])


if __name__ == "__main__":
    main()
