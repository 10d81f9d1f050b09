"""Shared fixtures: small Keras models that build in seconds, saved once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PLATFORMIO_SETTING_ENABLE_TELEMETRY", "No")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def keras():
    from tinygen import tfenv
    return tfenv.keras()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def _small_cnn(keras):
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(6, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3, padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(5),
        keras.layers.Softmax(),
    ])


@pytest.fixture(scope="session")
def cnn_h5(keras, model_dir):
    path = model_dir / "cnn.h5"
    _small_cnn(keras).save(path)
    return path


@pytest.fixture(scope="session")
def cnn_keras(keras, model_dir):
    path = model_dir / "cnn.keras"
    _small_cnn(keras).save(path)
    return path


@pytest.fixture(scope="session")
def cnn_saved_model(keras, model_dir):
    path = model_dir / "cnn_savedmodel"
    _small_cnn(keras).export(str(path), verbose=False)
    return path


@pytest.fixture(scope="session")
def cnn_calib(model_dir):
    path = model_dir / "cnn_calib.npy"
    np.save(path, np.random.default_rng(0).random((24, 12, 12, 3), dtype=np.float32))
    return path


@pytest.fixture(scope="session")
def cnn_tflite(cnn_h5, cnn_calib, model_dir):
    from tinygen.convert import convert
    from tinygen.load import load_model
    path = model_dir / "cnn.int8.tflite"
    path.write_bytes(convert(load_model(cnn_h5), cnn_calib).tflite)
    return path


def run_cli(*args, cwd=None, timeout=600):
    """Run the tinygen CLI as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "tinygen.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


# ---------------------------------------------------------------------------
# Extended property sweeps (hundreds of examples per op) are not run by default,
# not even with the slow end-to-end tests: `pytest --sweeps` runs them.

def pytest_addoption(parser):
    parser.addoption("--sweeps", action="store_true", default=False,
                     help="also run the extended hypothesis sweeps (tests named *_sweep)")


def pytest_configure(config):
    config.addinivalue_line("markers", "sweep: extended property sweep; run with --sweeps")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--sweeps"):
        return
    skip = pytest.mark.skip(reason="extended sweep: run with --sweeps")
    for item in items:
        if "_sweep" in item.name:
            item.add_marker(pytest.mark.sweep)
            item.add_marker(skip)
