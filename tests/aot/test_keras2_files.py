"""Model files written by Keras 2 (tf_keras): they load, convert as Keras 2 converts
them, and the aot runtime runs the result bit-exact against the tflite_micro interpreter.

The files are made here with tf_keras, the Keras 2 that TF 2.21 ships: an .h5
(the format of most tutorials and model zoos) and a legacy SavedModel.  Keras 3
refuses the .h5 (its DepthwiseConv2D config carries `groups`, as every Keras
2.x release wrote it) and does not read legacy SavedModels at all.

"As Keras 2 converts them" is checked against TF's own Keras 2 route
(TFLiteConverter.from_keras_model on the tf_keras model that was saved) on the
tflite_micro interpreter; bit-exactness against tflite_micro too, never
against tinygen's own code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from harness import assert_bit_exact, random_inputs, run_tflm

from tinygen.ir import parse_tflite

pytestmark = pytest.mark.slow

INPUT_SHAPE = (12, 12, 3)


def _keras2_model(tf_keras):
    """Conv2D, depthwise (multiplier 2 and 1), BatchNormalization with non-trivial
    statistics, ReLU6, max and average pooling, Dense + softmax."""
    tf_keras.utils.set_random_seed(7)
    L = tf_keras.layers
    x_in = L.Input(INPUT_SHAPE)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x_in)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(6.0)(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=1, strides=2)(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(12, 1)(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(10, activation="relu")(x)
    x = L.Dense(4, activation="softmax")(x)
    model = tf_keras.Model(x_in, x, name="keras2_dscnn")
    rng = np.random.default_rng(3)
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    model.get_layer("bn").set_weights([
        rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
        rng.normal(0, 0.2, beta.shape).astype(np.float32),
        rng.normal(0, 0.3, mean.shape).astype(np.float32),
        rng.uniform(0.5, 2.0, var.shape).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def keras2(tmp_path_factory):
    from tinygen import tfenv
    tfenv.tf()
    import tf_keras
    d = tmp_path_factory.mktemp("keras2")
    model = _keras2_model(tf_keras)
    h5 = d / "keras2_model.h5"
    model.save(h5)
    saved = d / "keras2_savedmodel"
    model.save(saved, save_format="tf")
    calib = d / "calib.npy"
    np.save(calib, np.random.default_rng(0).uniform(-1, 1, (32,) + INPUT_SHAPE).astype(np.float32))
    return {"model": model, "h5": h5, "savedmodel": saved, "calib": calib, "dir": d}


def _keras2_reference_tflite(model, calib: np.ndarray) -> bytes:
    """What a Keras 2 user gets: TF's converter straight from the tf_keras model."""
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s[None]] for s in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def _quant(t):
    return (t.dtype, list(np.atleast_1d(t.scale)), list(np.atleast_1d(t.zero_point)))


def test_the_h5_is_one_keras3_refuses(keras2):
    """The premise: the file carries Keras 2 config keys and Keras 3 cannot load it."""
    import h5py

    from tinygen import tfenv
    with h5py.File(keras2["h5"], "r") as h5:
        assert h5.attrs["keras_version"].startswith("2.")
        config = json.loads(h5.attrs["model_config"])
    depthwise = [l["config"] for l in config["config"]["layers"]
                 if l["class_name"] == "DepthwiseConv2D"]
    assert sorted(c["depth_multiplier"] for c in depthwise) == [1, 2]
    assert all("groups" in c for c in depthwise)
    keras = tfenv.keras()
    with pytest.raises(Exception, match="DepthwiseConv2D"):
        keras.models.load_model(keras2["h5"], compile=False)
    with pytest.raises(Exception):  # noqa: B017 - whatever the library raises
        keras.models.load_model(keras2["savedmodel"], compile=False)


@pytest.mark.parametrize("form", ["h5", "savedmodel"])
def test_keras2_file_loads_with_its_own_weights(keras2, form):
    from tinygen.load import load_model
    src = load_model(keras2[form])
    assert src.kind == "keras" and src.loader.startswith("tf_keras ")
    assert src.keras_version.startswith("2.") and src.keras_backend == "tensorflow"
    x = np.load(keras2["calib"])[:8]
    np.testing.assert_array_equal(np.asarray(src.keras_model(x, training=False)),
                                  np.asarray(keras2["model"](x, training=False)))


@pytest.mark.parametrize("form", ["h5", "savedmodel"])
def test_keras2_file_converts_as_keras2_and_runs_bit_exact(keras2, form, tmp_path):
    out = tmp_path / "model.tflite"
    r = run_cli("convert", keras2[form], "--calib", keras2["calib"], "-o", out)
    assert r.returncode == 0, r.stderr
    assert "corrupt" not in r.stderr
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["keras_version"].startswith("2.")
    assert report["keras_backend"] == "tensorflow"
    assert report["loader"].startswith("tf_keras ")
    assert report["samples"] == 32 and report["outputs"][0]["cosine"] > 0.99
    ours = out.read_bytes()
    ir = parse_tflite(ours)
    assert [op.opcode for op in ir.operators].count("DEPTHWISE_CONV_2D") == 2

    # The same quantization and the same int8 outputs as Keras 2's own conversion.
    calib = np.load(keras2["calib"])
    ref_tflite = _keras2_reference_tflite(keras2["model"], calib)
    ref_ir = parse_tflite(ref_tflite)
    assert [_quant(t) for t in ir.input_tensors() + ir.output_tensors()] == \
        [_quant(t) for t in ref_ir.input_tensors() + ref_ir.output_tensors()]
    tin = ir.input_tensors()[0]
    from tinygen.convert import quantize
    batches = [[quantize(s[None], tin)] for s in calib]
    batches += random_inputs(ir, np.random.default_rng(1), 16)
    batches += [[np.full(tin.shape, v, np.int8)] for v in (-128, 0, 127)]
    for k, (a, b) in enumerate(zip(run_tflm(ours, batches), run_tflm(ref_tflite, batches))):
        np.testing.assert_array_equal(a[0], b[0], err_msg=f"input {k}")

    # And the aot runtime: 0 LSB against tflite_micro on the same inputs.
    assert_bit_exact(ours, tmp_path / "aot", inputs=batches)


def test_keras2_file_no_keras_can_rebuild_is_not_called_corrupt(keras2, tmp_path):
    """A well-formed Keras 2 .h5 whose layer no installed Keras knows (a custom layer):
    the message says so, not 'corrupt'."""
    import shutil

    import h5py
    path = tmp_path / "custom.h5"
    shutil.copyfile(keras2["h5"], path)
    with h5py.File(path, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        config["config"]["layers"][-1]["class_name"] = "MyTeamsSoftmaxDense"
        h5.attrs["model_config"] = json.dumps(config)
    r = run_cli("inspect", path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = [l for l in r.stderr.splitlines() if l.startswith("tinygen: error:")]
    assert "written by Keras 2." in line and "MyTeamsSoftmaxDense" in line
    assert "corrupt" not in line


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_keras2_file_is_called_corrupt(keras2, tmp_path, keep):
    data = keras2["h5"].read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[: int(len(data) * keep)])
    r = run_cli("inspect", path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = [l for l in r.stderr.splitlines() if l.startswith("tinygen: error:")]
    assert "corrupt, truncated or not a Keras model" in line
