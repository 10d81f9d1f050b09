"""Every bad input ends in one clear line, a non-zero exit and nothing written."""

import numpy as np
import pytest
from conftest import run_cli


def assert_one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    errors = [l for l in r.stderr.splitlines() if l.startswith("tinygen: error:")]
    assert len(errors) == 1, r.stderr
    for n in needles:
        assert n in errors[0], errors[0]


def assert_nothing_written(parent):
    leftovers = [p.name for p in parent.iterdir()] if parent.exists() else []
    assert leftovers == [], leftovers


@pytest.fixture()
def outdir(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


def test_missing_model(tmp_path, outdir):
    r = run_cli("build", tmp_path / "nope.h5", "-o", outdir / "p")
    assert_one_line_error(r, "does not exist")
    assert_nothing_written(outdir)


def test_corrupt_keras_file(tmp_path, outdir):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 50)
    r = run_cli("build", "--board", "esp32cam", bad, "-o", outdir / "p")
    assert_one_line_error(r, "cannot load Keras model")
    assert_nothing_written(outdir)


@pytest.mark.parametrize("fraction", [0.1, 0.6, 0.97])
def test_truncated_tflite(cnn_tflite, tmp_path, outdir, fraction):
    data = cnn_tflite.read_bytes()
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(data[: int(len(data) * fraction)])
    r = run_cli("build", "--board", "esp32cam", bad, "-o", outdir / "p")
    assert_one_line_error(r, "cut.tflite")
    assert_nothing_written(outdir)


def test_truncated_keras(cnn_keras, tmp_path, outdir):
    bad = tmp_path / "cut.keras"
    bad.write_bytes(cnn_keras.read_bytes()[:500])
    r = run_cli("inspect", bad)
    assert_one_line_error(r, "cannot load Keras model")


def test_float_tflite_rejected(keras, tmp_path, outdir):
    import tensorflow as tf
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    fn = tf.function(lambda x: m(x), input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    data = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()]).convert()
    f = tmp_path / "float.tflite"
    f.write_bytes(data)
    r = run_cli("build", "--board", "esp32cam", f, "-o", outdir / "p")
    assert_one_line_error(r, "not a full-int8 model", "float32")
    assert_nothing_written(outdir)


def _with_opcode(tflite: bytes, old: str, new_code: int) -> bytes:
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    from tinygen.ir.schema_enums import BUILTIN_OPS
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(tflite, 0))
    for oc in m.operatorCodes:
        if BUILTIN_OPS[max(oc.builtinCode, oc.deprecatedBuiltinCode)] == old:
            oc.builtinCode = new_code
            oc.deprecatedBuiltinCode = min(new_code, 127)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unsupported_op_named_with_position(cnn_tflite, tmp_path, outdir):
    # RFFT2D has no TFLM kernel: swap it in for SOFTMAX, the last op.
    from tinygen.ir.schema_enums import BUILTIN_OPS
    code = next(k for k, v in BUILTIN_OPS.items() if v == "RFFT2D")
    bad = tmp_path / "rfft.tflite"
    bad.write_bytes(_with_opcode(cnn_tflite.read_bytes(), "SOFTMAX", code))
    r = run_cli("build", "--board", "nucleo_f446re", "--runtime", "tflm", bad, "-o", outdir / "p")
    assert_one_line_error(r, "RFFT2D", "operator #5")
    assert_nothing_written(outdir)


def test_model_too_big_for_board(keras, tmp_path, outdir):
    m = keras.Sequential([keras.Input((512,)), keras.layers.Dense(640), keras.layers.Dense(4)])
    path = tmp_path / "big.h5"
    m.save(path)
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(0).random((8, 512), dtype=np.float32))
    r = run_cli("build", "--board", "nucleo_l432kc", path, "--calib", calib, "-o", outdir / "p")
    assert_one_line_error(r, "does not fit nucleo_l432kc", "flash: needs", "262,144")
    assert_nothing_written(outdir)


def test_unknown_board_suggests_names(cnn_tflite, outdir):
    r = run_cli("build", "--board", "esp32-cam", cnn_tflite, "-o", outdir / "p")
    assert_one_line_error(r, "unknown board 'esp32-cam'", "esp32cam")
    assert_nothing_written(outdir)


def test_unwritable_output_directory(cnn_tflite):
    r = run_cli("build", "--board", "esp32cam", cnn_tflite, "-o", "/proc/tinygen/p")
    assert_one_line_error(r, "/proc")


def test_output_dir_not_ours_is_refused(cnn_tflite, outdir):
    (outdir / "p").mkdir()
    (outdir / "p" / "precious.txt").write_text("keep me")
    r = run_cli("build", "--board", "esp32cam", cnn_tflite, "-o", outdir / "p")
    assert_one_line_error(r, "not empty")
    assert (outdir / "p" / "precious.txt").read_text() == "keep me"


def test_bad_calibration_shape(cnn_h5, tmp_path, outdir):
    calib = tmp_path / "c.npy"
    np.save(calib, np.zeros((4, 7, 7), np.float32))
    r = run_cli("build", "--board", "esp32cam", cnn_h5, "--calib", calib, "-o", outdir / "p")
    assert_one_line_error(r, "expected [N, 12, 12, 3]")
    assert_nothing_written(outdir)


def test_missing_serial_device_fails_before_converting(cnn_h5, tmp_path):
    """A /dev path that is not there is reported at once, with what to check."""
    r = run_cli("verify", "--board", "esp32cam", cnn_h5, "--port", tmp_path / "ttyUSB9",
                timeout=60)
    assert_one_line_error(r, "ttyUSB9 does not exist")
    assert "loading" not in r.stderr      # nothing was converted first
