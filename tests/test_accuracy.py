"""Accuracy on labelled data, the verdict's warnings, time and energy, -o reuse.

Fast: labels files made here, a one-operator model built as a flatbuffer with
its TFLM reference, and hand-computed expectations.  The QEMU run with the
keyword-spotting test set is test_kws_accuracy_on_labelled_data (slow)."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tinygen.errors import TinygenError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "aot"))
KWS = ROOT / "examples" / "kws_cnn"


# ---------------------------------------------------------------------------
# labels


def test_labels_from_npz_x_y():
    from tinygen.data import load_labels
    y, where = load_labels(KWS / "test.npz")
    assert where == "test.npz (array 'y')"
    assert y.dtype == np.int64 and y.tolist() == np.load(KWS / "test.npz")["y"].tolist()


def test_labels_npy_beside_the_inputs(tmp_path):
    from tinygen.data import labels_file_beside, load_labels
    np.save(tmp_path / "test_x.npy", np.zeros((3, 4), np.float32))
    assert load_labels(tmp_path / "test_x.npy") is None          # no labels beside it yet
    np.save(tmp_path / "test_y.npy", np.array([2, 0, 1]))
    assert labels_file_beside(tmp_path / "test_x.npy") == tmp_path / "test_y.npy"
    y, where = load_labels(tmp_path / "test_x.npy")
    assert y.tolist() == [2, 0, 1] and where == "test_y.npy"
    np.save(tmp_path / "clips.npy", np.zeros((2, 4), np.float32))
    np.save(tmp_path / "clips_labels.npy", np.eye(3)[[1, 2]])    # one-hot
    assert load_labels(tmp_path / "clips.npy")[0].tolist() == [1, 2]


def test_labels_follow_dropped_samples(tmp_path):
    from tinygen.data import load_labels, load_samples
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    x[1, 0] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.array([5, 6, 7, 8]))
    s = load_samples(tmp_path / "d.npz", [(1, 3)], what="data", drop_nonfinite=True,
                     note=lambda _m: None)
    assert len(s) == 3
    assert load_labels(tmp_path / "d.npz", s)[0].tolist() == [5, 7, 8]


def test_labels_from_a_folder_of_class_files(tmp_path):
    """--data DIR: one .npy per class named after it; the class order is --labels's,
    else the sorted file names."""
    from tinygen.data import load_labels, load_samples, read_arrays
    d = tmp_path / "clips"
    d.mkdir()
    np.save(d / "yes.npy", np.full((2, 3), 1, np.float32))
    np.save(d / "no.npy", np.full((3, 3), 2, np.float32))
    (d / "README.txt").write_text("not a class")
    (label, x), = read_arrays(d, "data")
    assert x[:, 0].tolist() == [2, 2, 2, 1, 1]                  # no.npy, then yes.npy
    y, where = load_labels(d)
    assert y.tolist() == [0, 0, 0, 1, 1] and where == "clips/ (one file per class)"
    y, _ = load_labels(d, names=["_silence_", "yes", "no"])
    assert y.tolist() == [2, 2, 2, 1, 1]
    s = load_samples(d, [(1, 3)], what="data", note=lambda _m: None)
    assert len(s) == 5 and load_labels(d, s)[0].tolist() == [0, 0, 0, 1, 1]


@pytest.mark.parametrize("files, names, message", [
    ({}, None, "holds no .npy files; give one .npy per class"),
    ({"yes": (2, 3), "no": (2, 4)}, None, "samples of different shapes"),
    ({"yes": (2, 3), "maybe": (1, 3)}, ["yes", "no"], "maybe.npy names no class of --labels"),
])
def test_bad_class_folder_is_one_clear_error(tmp_path, files, names, message):
    from tinygen.data import load_labels, read_arrays
    for stem, shape in files.items():
        np.save(tmp_path / f"{stem}.npy", np.zeros(shape, np.float32))
    with pytest.raises(TinygenError, match=re.escape(message)):
        read_arrays(tmp_path, "data")
        load_labels(tmp_path, names=names)


def test_calibration_folder_is_still_refused(tmp_path):
    from tinygen.data import read_arrays
    with pytest.raises(TinygenError, match="is a directory; give a .npy or .npz file"):
        read_arrays(tmp_path, "calibration")


@pytest.mark.parametrize("y, message", [
    (np.array([0, 1]), "hold 2 labels for 3 samples"),
    (np.array([0, -1, 2]), "negative class index"),
    (np.array([0.5, 1, 2]), "non-integer"),
    (np.array(["a", "b", "c"]), "expected integer class indices"),
])
def test_bad_labels_are_one_clear_error(tmp_path, y, message):
    from tinygen.data import load_labels, load_samples
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2), np.float32), y=y)
    s = load_samples(tmp_path / "d.npz", [(1, 2)], what="data")
    with pytest.raises(TinygenError, match=message):
        load_labels(tmp_path / "d.npz", s)


def test_class_names_file(tmp_path):
    from tinygen.data import load_class_names
    (tmp_path / "names.txt").write_text("cat\n dog \n\n")
    assert load_class_names(tmp_path / "names.txt") == ["cat", "dog"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(TinygenError, match="is empty"):
        load_class_names(tmp_path / "empty.txt")
    with pytest.raises(TinygenError, match="does not exist"):
        load_class_names(tmp_path / "missing.txt")


# ---------------------------------------------------------------------------
# accuracy, confusion, verdict


def test_accuracy_and_confusion_by_hand():
    from tinygen.verify.accuracy import measure_accuracy
    y = np.array([0, 1, 2, 2])
    acc = measure_accuracy(y, np.array([0, 1, 1, 2]), 3, output="probs",
                           device_preds={"dev": np.array([0, 1, 1, 2])},
                           float_pred=np.array([0, 1, 2, 2]), names=["a", "b", "c"])
    assert acc.int8 == 0.75 and acc.devices == {"dev": 0.75} and acc.float == 1.0
    assert acc.float_vs_int8_top1 == 0.75 and acc.device == 0.75
    assert acc.confusion["int8"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert acc.confusion["float"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]
    with pytest.raises(TinygenError, match="names 2 classes but the model's classifier output "
                                           "has 3"):
        measure_accuracy(y, y, 3, output="probs", names=["a", "b"])
    with pytest.raises(TinygenError, match="hold class 2 but .* has 2 classes"):
        measure_accuracy(y, y, 2, output="probs")


def test_quality_notes_warn_and_fail():
    from tinygen.verify.accuracy import measure_accuracy, quality_notes
    warnings, failures = quality_notes(synthetic=True, float_check=None, accuracy=None)
    assert warnings == ["accuracy unknown: synthetic calibration"] and failures == []
    drift = {"out": {"float_vs_reference_top1": 2 / 3, "devices": {}}}
    warnings, failures = quality_notes(synthetic=False, float_check=drift, accuracy=None)
    assert warnings == ["float/int8 top-1 agreement 66.7% (below 90%)"] and not failures
    warnings, failures = quality_notes(synthetic=False, float_check=drift, accuracy=None,
                                       min_agreement=0.9)
    assert failures == ["float/int8 top-1 agreement 66.7% < --min-agreement 90%"]
    assert quality_notes(synthetic=False, float_check=drift, accuracy=None,
                         min_agreement=0.5) == ([], [])
    y = np.array([0, 1, 1, 0])
    acc = measure_accuracy(y, np.array([0, 1, 0, 0]), 2, output="o",
                           device_preds={"d": np.array([0, 1, 0, 0])}, float_pred=y)
    warnings, failures = quality_notes(synthetic=False, float_check=None, accuracy=acc,
                                       min_accuracy=0.8)
    assert "int8 accuracy 75.0% vs float 100.0%" in warnings
    assert failures == ["device accuracy 75.0% < --min-accuracy 80%"]


@pytest.fixture(scope="module")
def fc_report():
    from tflite_builder import fully_connected_model

    from tinygen.ir import parse_tflite
    from tinygen.verify import VerifyReport, compare_outputs, latency_figures, make_vector_set, run_reference
    from tinygen.verify.accuracy import top1, verify_accuracy
    ir = parse_tflite(fully_connected_model(np.random.default_rng(3), depth=16, units=4))
    vectors, _floats = make_vector_set(ir, 12, None, None)
    ref = run_reference(ir, vectors)
    labels = top1(ref, 0)
    labels[:3] = (labels[:3] + 1) % 4           # three wrong: 75 % accuracy
    acc = verify_accuracy(ir, labels, ref, {"socket://dev": ref}, None,
                          ["yes", "no", "up", "down"], labels_from="test.npz (array 'y')")
    report = VerifyReport(passed=True, bit_exact=True, board="qemu-cortex-m4", runtime="aot",
                          port="socket://dev", model_signature=ir.signature,
                          vectors=len(vectors), tolerance_lsb=0,
                          outputs=compare_outputs(ir, ref, ref, 0),
                          latency=latency_figures([1000] * len(vectors), "instructions"),
                          memory={}, warnings=["accuracy unknown: synthetic calibration"],
                          calibration={"source": "synthetic", "synthetic": True},
                          accuracy=acc.as_dict())
    return ir, report, acc


def test_verdict_line_carries_the_warnings(fc_report):
    from dataclasses import replace

    from tinygen.report.text import format_report, verdict_line
    _ir, report, acc = fc_report
    assert acc.int8 == 0.75 and acc.device == 0.75
    assert verdict_line(report) == "PASS (bit-exact; accuracy unknown: synthetic calibration)"
    clean = replace(report, warnings=[])
    assert verdict_line(clean) == "PASS: bit-exact on all 1 outputs"
    failed = replace(report, passed=False, warnings=[],
                     failures=["device accuracy 75.0% < --min-accuracy 90%"])
    assert verdict_line(failed) == "FAIL (bit-exact; device accuracy 75.0% < --min-accuracy 90%)"
    text = format_report(report)
    assert "int8 host (TFLM) 75.0%, device 75.0%" in text
    assert "calibration: synthetic (SYNTHETIC" in text
    confusion = text[text.index("confusion"):]
    for name in ("yes", "no", "up", "down"):
        assert name in confusion


def test_junit_and_html_carry_accuracy(fc_report, tmp_path):
    from dataclasses import replace

    from tinygen.report.html import accuracy_html
    from tinygen.report.junit import write_junit
    _ir, report, _acc = fc_report
    failed = replace(report, passed=False, failures=["device accuracy 75.0% < --min-accuracy 90%"])
    write_junit(failed, tmp_path / "j.xml")
    suite = ET.parse(tmp_path / "j.xml").getroot()
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["accuracy.device"] == "0.750000" and props["classes"] == "yes,no,up,down"
    assert props["calibration.synthetic"] == "true"
    assert sum(json.loads(props["confusion"]), []).count(0) < 16    # a real matrix
    quality = [c for c in suite.iter("testcase") if c.get("name") == "quality"]
    assert quality and quality[0].find("failure") is not None
    assert suite.get("failures") == "1" and suite.get("tests") == "2"
    html = "\n".join(accuracy_html(report.accuracy))
    assert "Confusion matrix" in html and "<th>down</th>" in html and "75.0%" in html


# ---------------------------------------------------------------------------
# time and energy


def test_time_and_energy_from_datasheet_figures():
    from tinygen.boards import get_board
    from tinygen.verify.measure import time_and_energy
    esp = get_board("esp32cam")
    assert esp.run_current_ma == 68 and esp.supply_v == 3.3 and "Datasheet" in esp.power_source
    lat = {"cycles": 240_000, "unit": "cycles"}
    t = time_and_energy(lat, esp, macs=480_000)
    assert t["ms"] == pytest.approx(1.0) and t["ms_basis"].startswith("measured")
    assert t["macs_per_cycle"] == pytest.approx(2.0)
    assert t["energy_uj"] == pytest.approx(68 * 3.3 * 1.0)       # mA x V x ms = µJ
    qemu = get_board("qemu-stm32f405")
    t = time_and_energy({"instructions": 168_000, "unit": "instructions"}, qemu, macs=0)
    assert t["ms"] == pytest.approx(1.0) and t["ms_basis"].startswith("estimate")
    assert "energy_uj" not in t and t["energy_basis"].startswith("none: emulated board")
    # an STM32: 84 µA/MHz x 80 MHz from the L432's datasheet, at its 80 MHz clock
    l4 = get_board("nucleo_l432kc")
    t = time_and_energy({"cycles": 800_000, "unit": "cycles"}, l4, macs=0)
    assert t["ms"] == pytest.approx(10.0)
    assert t["energy_uj"] == pytest.approx(6.72 * 3.3 * 10.0)
    assert t["energy_basis"].startswith("estimate") and "DS11451" in t["energy_basis"]
    # the ESP32-C3: Table 5-8's 23 mA at 160 MHz
    c3 = get_board("esp32-c3-devkitm-1")
    t = time_and_energy({"cycles": 160_000, "unit": "cycles"}, c3, macs=0)
    assert t["energy_uj"] == pytest.approx(23 * 3.3 * 1.0) and "Table 5-8" in t["energy_basis"]
    # a real board without figures says so instead of guessing
    f4 = get_board("nucleo_f446re")
    t = time_and_energy({"cycles": 180_000, "unit": "cycles"}, f4, macs=0)
    assert "energy_uj" not in t and t["energy_basis"].startswith("unknown")


def test_every_power_figure_is_a_real_boards_at_its_clock_with_a_source():
    from tinygen.boards import all_boards
    with_power = [b for b in all_boards() if b.run_current_ma > 0]
    assert {b.id for b in with_power} >= {"esp32dev", "esp32cam", "nucleo_l432kc", "nodemcuv2",
                                           "esp32-s3-devkitc-1", "esp32-c3-devkitm-1"}
    for b in with_power:
        assert not b.emulated and b.supply_v > 0 and len(b.power_source) > 20, b.id


@pytest.mark.parametrize("power, message", [
    ("[power]\nrun_current_ma = 10\nvoltage_v = 3.3\nclock_mhz = 25\nsource = 'x'\n",
     "[power] is for real boards"),
])
def test_power_on_an_emulated_board_is_refused(tmp_path, power, message):
    from tinygen.boards import BOARDS_DIR, board_from_toml
    p = tmp_path / "b.toml"
    p.write_text((BOARDS_DIR / "qemu-cortex-m4.toml").read_text() + power)
    with pytest.raises(TinygenError, match=re.escape(message)):
        board_from_toml(p)


def test_power_at_another_clock_is_refused(tmp_path):
    from tinygen.boards import BOARDS_DIR, board_from_toml
    p = tmp_path / "b.toml"
    text = (BOARDS_DIR / "esp32dev.toml").read_text().replace(
        "clock_mhz = 240\nsource", "clock_mhz = 160\nsource")
    p.write_text(text)
    with pytest.raises(TinygenError, match="not the board's clock_mhz 240"):
        board_from_toml(p)


# ---------------------------------------------------------------------------
# -o DIR holding another model's project


def test_output_dir_of_another_model_needs_force(tmp_path):
    from tinygen.boards import get_board
    from tinygen.project.build import _check_destination
    out = tmp_path / "proj"
    out.mkdir()
    (out / "tinygen.json").write_text(json.dumps(
        {"board": "qemu-stm32f405", "model_path": str(tmp_path / "other.h5")}))
    board = get_board("qemu-stm32f405")
    with pytest.raises(TinygenError, match="another model .*other.h5.*--force"):
        _check_destination(out, board, tmp_path / "mine.h5")
    _check_destination(out, board, tmp_path / "other.h5")         # the same model: rebuilt
    _check_destination(out, board, tmp_path / "mine.h5", force=True)
    with pytest.raises(TinygenError, match="board qemu-stm32f405, not esp32dev.*--force"):
        _check_destination(out, get_board("esp32dev"), tmp_path / "other.h5")
    _check_destination(out, get_board("esp32dev"), tmp_path / "other.h5", force=True)


def test_min_accuracy_without_labels_is_one_line(tmp_path):
    from conftest import run_cli
    r = run_cli("verify", ROOT / "examples" / "quickstart" / "model.h5", "--min-accuracy", 90,
                "-o", tmp_path / "p")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(
        "tinygen: error: --min-accuracy needs labelled test data")


@pytest.mark.slow
def test_kws_accuracy_on_labelled_data(tmp_path):
    """The keyword spotter's 325 labelled clips on an emulated Cortex-M4: the
    accuracies match what the example's own training script measured
    (results.json, TFLite interpreter), and labels.txt names the classes."""
    from conftest import run_cli
    report = tmp_path / "kws.json"
    r = run_cli("verify", "--board", "qemu-cortex-m4", KWS / "model.h5",
                "--calib", KWS / "calib.npy", "--data", KWS / "test.npz",
                "-o", tmp_path / "proj", "--json", report, "--min-accuracy", 80, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(report.read_text())
    expected = json.loads((KWS / "results.json").read_text())
    acc = data["accuracy"]
    assert acc["samples"] == 325 and acc["classes"] == (KWS / "labels.txt").read_text().split()
    assert acc["float"] == pytest.approx(expected["float_accuracy"], abs=6e-5)
    assert acc["int8"] == pytest.approx(expected["int8_accuracy"], abs=6e-5)
    assert acc["device"] == acc["int8"]                    # bit-exact: the same predictions
    assert sum(map(sum, acc["confusion"]["int8"])) == 325
    assert data["calibration"] == {"source": "calib.npy", "synthetic": False}
    assert data["latency"]["ms"] > 0 and "estimate" in data["latency"]["ms_basis"]
    assert "device 86.8%" in r.stdout and "_silence_" in r.stdout
    # The same clips as a folder of one .npy per class, named from labels.txt, and the
    # int8 .tflite the first run built with the float model as a float .tflite
    # (--float-model): the same int8/device accuracies and confusion matrices (the
    # order of the clips does not matter); the float level now comes from TFLite's
    # float kernels instead of Keras, so it may differ by a clip or two.
    from tinygen import tfenv
    z = np.load(KWS / "test.npz")
    names = (KWS / "labels.txt").read_text().split()
    folder = tmp_path / "clips"
    folder.mkdir()
    for k, name in enumerate(names):
        np.save(folder / f"{name}.npy", z["x"][z["y"] == k])
    from tinygen.load import load_model
    float_tflite = tmp_path / "kws.float.tflite"
    km = load_model(KWS / "model.h5").keras_model
    tf = tfenv.tf()
    with tfenv.quiet():
        float_tflite.write_bytes(tf.lite.TFLiteConverter.from_keras_model(km).convert())
    report2 = tmp_path / "kws_folder.json"
    r = run_cli("verify", "--board", "qemu-cortex-m4", tmp_path / "proj" / "model.tflite",
                "--float-model", float_tflite, "--data", folder, "--labels", KWS / "labels.txt",
                "-o", tmp_path / "proj2", "--json", report2, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    acc2 = json.loads(report2.read_text())["accuracy"]
    for key in ("samples", "classes", "int8", "device"):
        assert acc2[key] == acc[key], key
    assert acc2["confusion"]["int8"] == acc["confusion"]["int8"]
    assert abs(acc2["float"] - acc["float"]) <= 2 / 325
    assert abs(acc2["float_vs_int8_top1"] - acc["float_vs_int8_top1"]) <= 2 / 325
    assert acc2["labels_from"] == "clips/ (one file per class)"


# ---------------------------------------------------------------------------
# the float level of an int8 .tflite: --float-model


def test_float_tflite_runs_as_the_float_level(cnn_h5, cnn_tflite, cnn_calib, tmp_path):
    """A float .tflite (the model before quantization) gives the float level: its
    outputs are the Keras model's (TFLite's float kernels, to float rounding);
    an int8 .tflite is no float model; one of another shape is refused."""
    from tinygen import tfenv
    from tinygen.ir import parse_tflite
    from tinygen.verify.device_run import run_float_model
    tf = tfenv.tf()
    keras_model = tfenv.keras().models.load_model(cnn_h5, compile=False)
    float_tflite = tmp_path / "cnn.float.tflite"
    with tfenv.quiet():
        float_tflite.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras_model).convert())
    ir = parse_tflite(cnn_tflite.read_bytes())
    x = np.load(cnn_calib)[:5]
    vectors = [[xi[None]] for xi in x]
    outs = run_float_model(float_tflite, ir, vectors)
    want = keras_model.predict(x, verbose=0)
    assert len(outs) == 5
    np.testing.assert_allclose(np.concatenate([o[0] for o in outs]), want, atol=1e-5)
    assert run_float_model(cnn_tflite, ir, vectors) is None         # int8: no float level
    other = tfenv.keras().Sequential([tfenv.keras().Input((4,)), tfenv.keras().layers.Dense(2)])
    (tmp_path / "other.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_keras_model(other).convert())
    with pytest.raises(TinygenError, match="give the float model it was quantized from"):
        run_float_model(tmp_path / "other.tflite", ir, vectors)


def test_missing_float_model_is_one_line(cnn_tflite, tmp_path):
    from conftest import run_cli
    r = run_cli("verify", cnn_tflite, "--float-model", tmp_path / "nope.tflite",
                "-o", tmp_path / "p")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == \
        f"tinygen: error: --float-model {tmp_path / 'nope.tflite'} does not exist"
