"""Detector accuracy in verify (issue 15): mAP@0.5 at float, int8 host and device
levels from ground-truth boxes; the ground truth's file formats; the reports."""

from __future__ import annotations

import importlib.util
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import ROOT

from tinygen.errors import TinygenError
from tinygen.verify.detection import class_ap, mean_ap, measure_detection

SSD = ROOT / "examples" / "mobilenet_ssd"


def _example_utils():
    """The example's own evaluation code (evaluate.py's AP), written separately."""
    spec = importlib.util.spec_from_file_location("ssd_example_utils_map", SSD / "ssd_utils.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _boxes(rng, n):
    y0, x0 = rng.uniform(0, 0.7, (2, n))
    h, w = rng.uniform(0.05, 0.3, (2, n))
    return np.stack([y0, x0, y0 + h, x0 + w], axis=1)


def _ap_brute(tp_flags, n_gt):
    """All-point AP the other way round: each true positive adds 1/n_gt of recall
    at the best precision reached at or after it."""
    tp = np.asarray(tp_flags, float)
    prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    return sum(prec[k:].max() / n_gt for k in range(len(tp)) if tp[k])


def test_ap_by_hand():
    gt = [(np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]), np.array([0, 1])),
          (np.array([[0.1, 0.1, 0.4, 0.4]]), np.array([0]))]
    dets = [
        (np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.52], [0.5, 0.5, 1, 1], [0.6, 0, 0.9, 0.3]]),
         np.array([0, 0, 0, 1]), np.array([0.9, 0.85, 0.3, 0.6])),
        (np.array([[0.1, 0.1, 0.4, 0.45]]), np.array([0]), np.array([0.7])),
    ]
    # class 0 by score: 0.9 TP, 0.85 duplicate FP, 0.7 TP (IoU 0.857), 0.3 FP; 2 objects
    assert class_ap(dets, gt, 0) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert class_ap(dets, gt, 1) == 0.0                           # only a miss
    assert class_ap(dets, gt, 2) is None                          # no ground truth
    assert class_ap(dets, gt, 0, threshold=0.9) == pytest.approx(0.5)
    m, aps = mean_ap(dets, gt, 3)
    assert m == pytest.approx((0.5 + 0.5 * 2 / 3 + 0.0) / 2) and aps[2] is None


def test_ap_against_brute_force_and_the_examples_evaluation():
    su = _example_utils()
    rng = np.random.default_rng(7)
    for _ in range(25):
        gts, dets = [], []
        for _img in range(5):
            g = _boxes(rng, 3)
            cls = rng.integers(0, 3, 3)
            gts.append((g, cls))
            hit = rng.random(6) < 0.6
            b = np.where(hit[:, None], g[rng.integers(0, 3, 6)] + rng.normal(0, 0.02, (6, 4)),
                         _boxes(rng, 6))
            dets.append((b, rng.integers(0, 3, 6), rng.random(6)))
        m, aps = mean_ap(dets, gts, 3)
        m2, aps2 = su.mean_average_precision(dets, gts, 3)
        assert m == pytest.approx(m2)
        assert aps == pytest.approx(aps2)
    # exact-match boxes, one class: the brute-force formula
    for _ in range(10):
        gts, dets, flags = [], [], []
        for _img in range(4):
            g = _boxes(rng, 3)
            gts.append((g, np.zeros(3, int)))
            hit = rng.random(5) < 0.5
            dets.append((np.where(hit[:, None], g[rng.integers(0, 3, 5)], _boxes(rng, 5) + 2),
                         np.zeros(5, int), rng.random(5)))
        order = np.argsort(-np.concatenate([d[2] for d in dets]), kind="stable")
        used = set()
        for k in order:
            img, r = divmod(int(k), 5)
            match = [j for j in range(3) if np.allclose(gts[img][0][j], dets[img][0][r])]
            flags.append(bool(match) and (img, match[0]) not in used)
            if flags[-1]:
                used.add((img, match[0]))
        assert class_ap(dets, gts, 0) == pytest.approx(_ap_brute(flags, 12))


def _op_outputs(boxes, classes, scores, m=4):
    """One TFLite_Detection_PostProcess output (rows past count are junk)."""
    k = len(scores)
    b = np.full((1, m, 4), 0.77, np.float32)
    c = np.full((1, m), 2, np.float32)
    s = np.full((1, m), 0.99, np.float32)
    b[0, :k], c[0, :k], s[0, :k] = boxes, classes, scores
    return [b, c, s, np.array([k], np.float32)]


def test_levels_from_postprocess_outputs():
    truth = [(np.array([[0, 0, 0.5, 0.5]]), np.array([0])),
             (np.array([[0.2, 0.2, 0.6, 0.6]]), np.array([1]))]
    good = [_op_outputs([[0, 0, 0.5, 0.5]], [0], [0.9]),
            _op_outputs([[0.2, 0.2, 0.6, 0.6]], [1], [0.8])]
    half = [good[0], _op_outputs([[0.7, 0.7, 0.9, 0.9]], [1], [0.8])]
    d = measure_detection(truth, good, n_classes=2, device_outs={"qemu": half},
                          float_outs=good, names=["cat", "dog"], truth_from="t_gt.npz")
    assert d.int8 == 1.0 and d.float == 1.0 and d.devices == {"qemu": 0.5}
    assert d.device == 0.5 and d.ap["qemu"] == [1.0, 0.0]
    assert d.detections == {"int8": 2, "float": 2, "qemu": 2}   # rows past count ignored
    assert d.as_dict()["metric"].startswith("mAP@0.5")
    with pytest.raises(TinygenError, match="ground truth holds class 1 but the detector has 1"):
        measure_detection(truth, good, n_classes=1)
    with pytest.raises(TinygenError, match="--labels names 3 classes but the detector has 2"):
        measure_detection(truth, good, n_classes=2, names=["a", "b", "c"])


def test_ground_truth_beside_the_data_and_inside_it(tmp_path):
    from tinygen.data import load_boxes, load_samples
    x = np.zeros((3, 4, 4, 3), np.float32)
    x[1, 0, 0, 0] = np.nan
    boxes = np.zeros((3, 2, 4), np.float32)
    boxes[:, 0] = [0.1, 0.1, 0.5, 0.5]
    classes = np.array([[0, -1], [2, -1], [1, 1]])
    np.savez(tmp_path / "test.npz", x=x)
    assert load_boxes(tmp_path / "test.npz") is None
    np.savez(tmp_path / "test_gt.npz", boxes=boxes, classes=classes, count=np.array([1, 1, 1]))
    truth, where = load_boxes(tmp_path / "test.npz")
    assert where == "test_gt.npz" and [t[1].tolist() for t in truth] == [[0], [2], [1]]
    s = load_samples(tmp_path / "test.npz", [(1, 4, 4, 3)], what="data", drop_nonfinite=True,
                     note=lambda _m: None)
    assert [t[1].tolist() for t in load_boxes(tmp_path / "test.npz", s)[0]] == [[0], [1]]
    np.savez(tmp_path / "all.npz", x=x, boxes=boxes, classes=classes)      # no count: -1 pads
    truth, where = load_boxes(tmp_path / "all.npz")
    assert where == "all.npz" and [t[1].tolist() for t in truth] == [[0], [2], [1, 1]]


@pytest.mark.parametrize("boxes, classes, message", [
    (np.zeros((2, 4)), np.zeros((2,)), "expected boxes [N, G, 4]"),
    (np.full((1, 1, 4), np.nan), np.zeros((1, 1)), "NaN or infinite"),
])
def test_bad_ground_truth_is_one_clear_error(tmp_path, boxes, classes, message):
    from tinygen.data import load_boxes
    np.savez(tmp_path / "d.npz", x=np.zeros((1, 2)), boxes=boxes, classes=classes)
    with pytest.raises(TinygenError, match=re.escape(message)):
        load_boxes(tmp_path / "d.npz")


def test_reports_carry_the_map(tmp_path):
    from tinygen.report.html import detection_html
    from tinygen.report.junit import write_junit
    from tinygen.report.text import format_report
    from tinygen.verify import VerifyReport
    truth = [(np.array([[0, 0, 0.5, 0.5]]), np.array([0]))]
    outs = [_op_outputs([[0, 0, 0.5, 0.5]], [0], [0.9])]
    d = measure_detection(truth, outs, n_classes=2, device_outs={"qemu:x": outs},
                          float_outs=outs, names=["cat", "dog"], truth_from="t_gt.npz").as_dict()
    rep = VerifyReport(passed=True, bit_exact=True, board="b", runtime="aot", port="qemu:x",
                       model_signature="0" * 64, vectors=1, tolerance_lsb=0, outputs=[],
                       latency={}, memory={}, detection=d)
    text = format_report(rep)
    assert "mAP@0.5" in text and "float 1.000, int8 1.000, device 1.000" in text
    assert "AP int8: cat 1.000, dog -" in text
    write_junit(rep, tmp_path / "j.xml")
    root = ET.parse(tmp_path / "j.xml").getroot()
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["map50.device"] == "1.000000" and props["classes"] == "cat,dog"
    html = "\n".join(detection_html(d))
    assert "Detection accuracy" in html and "<th>AP dog</th>" in html


@pytest.mark.slow
def test_ssd_map_at_three_levels_on_qemu(tmp_path):
    """The example detector on 12 held-out images on the emulated Cortex-M4:
    verify's float and int8 mAP@0.5 equal what the example's own evaluation code
    (evaluate.py: Keras heads + NumPy post-processing; the .tflite on TFLM; its
    ssd_utils AP) computes for the same images, and the device's equals int8's
    (bit-exact outputs, the same detections)."""
    import json
    import sys

    from conftest import run_cli

    from tinygen.convert import load_detection_spec
    from tinygen.ir import parse_tflite
    su = _example_utils()
    md_spec = importlib.util.spec_from_file_location("ssd_example_make_data_map",
                                                     SSD / "make_data.py")
    md = importlib.util.module_from_spec(md_spec)
    md_spec.loader.exec_module(md)
    # evaluate.py imports these by their plain names; other examples have a make_data too
    sys.modules["ssd_utils"], sys.modules["make_data"] = su, md
    spec = importlib.util.spec_from_file_location("ssd_example_evaluate", SSD / "evaluate.py")
    ev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ev)

    n = 12
    x = np.load(SSD / "test.npz")["x"][:n].astype(np.float32)
    g = np.load(SSD / "test_gt.npz")
    np.savez(tmp_path / "few.npz", x=x)
    np.savez(tmp_path / "few_gt.npz", boxes=g["boxes"][:n], classes=g["classes"][:n],
             count=g["count"][:n])
    (tmp_path / "labels.txt").write_text((SSD / "labels.txt").read_text())
    report = tmp_path / "v.json"
    r = run_cli("verify", SSD / "model.keras", "--board", "qemu-cortex-m4",
                "--calib", SSD / "calib.npy", "--detection", SSD / "ssd.json",
                "--data", tmp_path / "few.npz", "--min-accuracy", 10,
                "-o", tmp_path / "proj", "--json", report, timeout=2400)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(report.read_text())["detection"]
    assert d["images"] == n and d["classes"] == ["circle", "square", "triangle"]
    assert d["truth_from"] == "few_gt.npz"

    import keras
    anchors, opts, _ = load_detection_spec(SSD / "ssd.json")
    gt = [(g["boxes"][i][: g["count"][i]], g["classes"][i][: g["count"][i]]) for i in range(n)]
    model = keras.saving.load_model(SSD / "model.keras", compile=False)
    float_map, float_aps = su.mean_average_precision(
        ev.float_detections(model, x, anchors, opts), gt, 3)
    tflite = (tmp_path / "proj" / "model.tflite").read_bytes()
    int8_map, int8_aps = su.mean_average_precision(
        ev.int8_detections(tflite, parse_tflite(tflite), x), gt, 3)
    assert d["objects"] == sum(len(c) for _, c in gt)
    assert d["float"] == pytest.approx(float_map, abs=1e-9)
    assert d["ap"]["float"] == pytest.approx(float_aps, abs=1e-9)
    assert d["int8"] == pytest.approx(int8_map, abs=1e-9)
    assert d["ap"]["int8"] == pytest.approx(int8_aps, abs=1e-9)
    assert d["device"] == d["int8"] and list(d["devices"]) == ["qemu:mps2-an386"]
    assert "detection: mAP@0.5" in r.stdout and "circle" in r.stdout


@pytest.mark.slow
def test_pytest_plugin_evaluate_detections(tmp_path):
    """dut.evaluate_detections(): the plumbing from images and padded ground truth to
    mAP per level, with the tflite_micro interpreter standing in for the board's
    serial link (the emulated-board run is test_ssd_map_at_three_levels_on_qemu):
    device and int8 then agree, and equal the example's own evaluation."""
    from types import SimpleNamespace

    from tinygen.convert import convert
    from tinygen.load import load_model
    from tinygen.pytest_plugin import Dut
    from tinygen.reference import TflmReference
    su = _example_utils()
    conv = convert(load_model(SSD / "model.keras"), SSD / "calib.npy",
                   detection=SSD / "ssd.json")

    class InterpreterLink:
        def __init__(self):
            self.ref = TflmReference(conv.tflite)

        def infer(self, inputs):
            return SimpleNamespace(outputs=self.ref.run(inputs))

    n = 8
    x = np.load(SSD / "test.npz")["x"][:n].astype(np.float32)
    g = np.load(SSD / "test_gt.npz")
    dut = Dut(InterpreterLink(), board=None, url="loop://", ir=conv.ir)
    d = dut.evaluate_detections(x, g["boxes"][:n], g["classes"][:n], g["count"][:n],
                                class_names=["circle", "square", "triangle"])
    gt = [(g["boxes"][i][: g["count"][i]], g["classes"][i][: g["count"][i]]) for i in range(n)]
    ref = TflmReference(conv.tflite)
    from tinygen.convert import quantize
    tin = conv.ir.input_tensors()[0]
    want, _ = su.mean_average_precision(
        [tuple(np.asarray(v).reshape(-1, *([4] if k == 0 else []))[: int(o[3][0])]
               for k, v in enumerate(o[:3]))
         for o in (ref.run([quantize(img[None], tin)]) for img in x)], gt, 3)
    assert d.images == n and d.devices == {"loop://": d.int8}
    assert d.int8 == pytest.approx(want, abs=1e-9) and d.classes[0] == "circle"


def test_float_level_from_a_float_detector_tflite(tmp_path):
    """--float-model for a detector: a float .tflite ending in the post-processing
    op runs on the tflite_micro interpreter and its detections agree with the
    Keras heads decoded by the NumPy port of TFLM's kernel; wrong float models
    are one clear error each."""
    import keras

    from tinygen import tfenv
    from tinygen.convert import ssd_postprocess as sp
    from tinygen.ir import parse_tflite
    from tinygen.verify.detection import format_detection
    from tinygen.verify.device_run import run_float_detector_tflite
    tf = tfenv.tf()
    keras.utils.set_random_seed(1)
    L = keras.layers
    inp = keras.Input((16, 16, 3), name="image")
    f = L.Conv2D(8, 3, strides=4, padding="same", activation="relu")(inp)      # 4x4
    box = L.Reshape((-1, 4), name="box")(L.Conv2D(4, 3, padding="same")(f))
    cls = L.Activation("sigmoid")(L.Reshape((-1, 3))(L.Conv2D(3, 3, padding="same")(f)))
    model = keras.Model(inp, [box, cls])
    anchors = np.array([[(i + 0.5) / 4, (j + 0.5) / 4, 0.3, 0.3]
                        for i in range(4) for j in range(4)], np.float32)
    opts = sp.DetectionOptions(num_classes=2, max_detections=5, nms_score_threshold=0.55)
    conv = sp.tflite_converter(model, anchors, opts)
    with tfenv.quiet():
        float_tflite = sp.finalize(conv.convert(), opts)
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32) for _ in range(6)]
    int8 = sp.convert_int8(model, anchors, opts, lambda: ([x] for x in images))
    ir = parse_tflite(int8)
    (tmp_path / "float.tflite").write_bytes(float_tflite)
    outs = run_float_detector_tflite(tmp_path / "float.tflite", ir, [[x] for x in images])

    counts = []
    for x, (b, c, s, n) in zip(images, outs):
        heads = [np.asarray(h) for h in model(x)]
        rb, rc, rs, rn = sp.reference_postprocess(heads[0], heads[1], anchors, opts)
        k = int(n[0])
        assert k == int(rn[0]) and b.shape == (1, 5, 4) and s.shape == (1, 5)
        np.testing.assert_allclose(b[0, :k], rb[0, :k], atol=1e-4)
        np.testing.assert_array_equal(c[0, :k], rc[0, :k])
        np.testing.assert_allclose(s[0, :k], rs[0, :k], atol=1e-5)
        counts.append(k)
    assert sum(counts) > 0                      # the comparison compared something

    truth = [(o[0][0, : int(o[3][0])], o[1][0, : int(o[3][0])].astype(int)) for o in outs]
    d = measure_detection(truth, outs, n_classes=2, float_outs=outs,
                          float_from="float TFLite float.tflite").as_dict()
    assert d["float"] == 1.0 and d["float_from"] == "float TFLite float.tflite"
    assert "    float level: float TFLite float.tflite" in format_detection(d)

    (tmp_path / "int8.tflite").write_bytes(int8)
    with pytest.raises(TinygenError, match="is an int8 model"):
        run_float_detector_tflite(tmp_path / "int8.tflite", ir, [[images[0]]])
    model.save(tmp_path / "m.keras")
    with pytest.raises(TinygenError, match="verify the Keras model with --detection"):
        run_float_detector_tflite(tmp_path / "m.keras", ir, [[images[0]]])
    heads_only = tf.lite.TFLiteConverter.from_keras_model(model)
    with tfenv.quiet():
        (tmp_path / "heads.tflite").write_bytes(heads_only.convert())
    with pytest.raises(TinygenError, match="does not end in TFLite_Detection_PostProcess"):
        run_float_detector_tflite(tmp_path / "heads.tflite", ir, [[images[0]]])
