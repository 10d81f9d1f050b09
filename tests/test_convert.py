"""convert: Keras .h5/.keras, SavedModel and .tflite inputs -> full-int8 models + report."""

import json

import numpy as np
import pytest
from conftest import run_cli

from tinygen.convert import check_full_int8
from tinygen.ir import parse_tflite


def assert_full_int8(data: bytes):
    ir = parse_tflite(data)
    assert [t.dtype for t in ir.input_tensors()] == ["int8"]
    assert [t.dtype for t in ir.output_tensors()] == ["int8"]
    check_full_int8(ir, "model")
    assert "SHAPE" not in ir.op_names()       # fixed batch-1 trace
    return ir


@pytest.mark.parametrize("fixture", ["cnn_h5", "cnn_keras", "cnn_saved_model"])
def test_convert_keras_formats(fixture, request, cnn_calib, tmp_path):
    model = request.getfixturevalue(fixture)
    out = tmp_path / "m.tflite"
    r = run_cli("convert", model, "--calib", cnn_calib, "-o", out)
    assert r.returncode == 0, r.stderr
    ir = assert_full_int8(out.read_bytes())
    assert ir.op_names()[:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["samples"] == 24 and not report["synthetic_calibration"]
    (o,) = report["outputs"]
    assert o["cosine"] > 0.99
    assert o["top1_agreement"] is not None and 0.0 <= o["top1_agreement"] <= 1.0
    assert o["max_abs_error"] < 0.1
    assert "cosine" in r.stdout


def test_convert_without_calibration_warns_loudly(cnn_h5, tmp_path):
    out = tmp_path / "m.tflite"
    r = run_cli("convert", cnn_h5, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "synthetic" in r.stderr and "warning" in r.stderr
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["synthetic_calibration"] and report["warnings"]


def test_tflite_is_checked_and_passed_through(cnn_tflite, tmp_path):
    out = tmp_path / "copy.tflite"
    r = run_cli("convert", cnn_tflite, "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == cnn_tflite.read_bytes()


def test_report_matches_float_model(cnn_h5, cnn_calib, keras):
    """The report's error figures recomputed from Keras and the TFLM interpreter."""
    from tflite_micro.python.tflite_micro import runtime

    from tinygen.convert import convert
    from tinygen.load import load_model
    res = convert(load_model(cnn_h5), cnn_calib)
    x = np.load(cnn_calib)
    m = keras.models.load_model(cnn_h5, compile=False)
    ref = m.predict(x, verbose=0)
    interp = runtime.Interpreter.from_bytes(res.tflite, arena_size=1 << 20)
    ind = interp.get_input_details(0)["quantization_parameters"]
    outd = interp.get_output_details(0)["quantization_parameters"]
    got = []
    for s in x:
        q = np.clip(np.round(s / ind["scales"][0]) + ind["zero_points"][0], -128, 127)
        interp.set_input(q.astype(np.int8)[None], 0)
        interp.invoke()
        got.append((interp.get_output(0).astype(np.float64) - outd["zero_points"][0]) * outd["scales"][0])
    got = np.concatenate(got)
    assert res.report.outputs[0].max_abs_error == pytest.approx(np.max(np.abs(ref - got)), rel=1e-5)
    agree = np.mean(np.argmax(ref, 1) == np.argmax(got, 1))
    assert res.report.outputs[0].top1_agreement == pytest.approx(agree)
