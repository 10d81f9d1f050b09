"""ssd_postprocess: TFLite_Detection_PostProcess inside an int8 model, run on TFLM."""

from __future__ import annotations

import numpy as np
import pytest

from tinygen.convert import ssd_postprocess as sp

A = 3          # anchors per cell
C = 4          # class columns: background + 3 classes


def _anchors():
    rows = []
    for grid in (8, 4):
        for i in range(grid):
            for j in range(grid):
                for size in (0.2, 0.35, 0.5):
                    s = size * (8 / grid) / 2
                    rows.append([(i + 0.5) / grid, (j + 0.5) / grid, s, s])
    return np.array(rows, np.float32)


@pytest.fixture(scope="module")
def tf():
    from tinygen import tfenv
    return tfenv.tf()


@pytest.fixture(scope="module")
def detector(tf):
    """A tiny SSD: 3 strided convs, two feature maps (8x8, 4x4), box and class heads."""
    import keras
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    f1 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    f2 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(f1)
    boxes, scores = [], []
    for f in (f1, f2):
        boxes.append(L.Reshape((-1, 4))(L.Conv2D(A * 4, 3, padding="same")(f)))
        scores.append(L.Reshape((-1, C))(L.Conv2D(A * C, 3, padding="same")(f)))
    box = L.Concatenate(axis=1, name="box_encodings")(boxes)
    cls = L.Activation("sigmoid", name="class_scores")(L.Concatenate(axis=1)(scores))
    return keras.Model(inp, [box, cls], name="tiny_ssd")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 1, (1, 32, 32, 3)).astype(np.float32) for _ in range(24)]


OPTS = sp.DetectionOptions(num_classes=C - 1, max_detections=10, nms_score_threshold=0.3)


# ---------------------------------------------------------------------------
# options and reference


def test_options_validation_and_signature():
    sig = OPTS.implements_signature()
    assert sig.startswith('name: "TFLite_Detection_PostProcess"')
    for key in ("max_detections", "max_classes_per_detection", "num_classes",
                "nms_score_threshold", "nms_iou_threshold", "y_scale", "x_scale", "h_scale",
                "w_scale", "use_regular_nms", "detections_per_class"):
        assert f'key: "{key}"' in sig
    assert OPTS.num_outputs == 10
    with pytest.raises(sp.SSDError, match="max_classes_per_detection"):
        sp.DetectionOptions(num_classes=3, max_classes_per_detection=2)
    with pytest.raises(sp.SSDError, match="detections_per_class"):
        sp.DetectionOptions(num_classes=3, detections_per_class=20)
    with pytest.raises(sp.SSDError, match="iou"):
        sp.DetectionOptions(num_classes=3, nms_iou_threshold=0.0)


def test_reference_decodes_and_suppresses():
    anchors = np.array([[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]],
                       np.float32)
    enc = np.zeros((1, 3, 4), np.float32)
    # background column first: anchor 0 and 1 overlap (class 1), anchor 2 is class 0
    scores = np.array([[[0.1, 0.1, 0.9], [0.1, 0.2, 0.8], [0.0, 0.7, 0.1]]], np.float32)
    opts = sp.DetectionOptions(num_classes=2, max_detections=5, nms_score_threshold=0.3,
                               nms_iou_threshold=0.5)
    boxes, classes, sc, count = sp.reference_postprocess(enc, scores, anchors, opts)
    assert count[0] == 2
    np.testing.assert_allclose(boxes[0, 0], [0.4, 0.4, 0.6, 0.6], atol=1e-6)
    assert classes[0, :2].tolist() == [1.0, 0.0]
    np.testing.assert_allclose(sc[0, :2], [0.9, 0.7], atol=1e-7)
    # regular NMS suppresses per class: the overlapping box of class 1 goes, 3 stay
    reg = sp.DetectionOptions(num_classes=2, max_detections=5, nms_score_threshold=0.15,
                              use_regular_nms=True)
    _, classes, sc, count = sp.reference_postprocess(enc, scores, anchors, reg)
    assert count[0] == 3
    np.testing.assert_allclose(sc[0, :3], [0.9, 0.7, 0.2], atol=1e-7)
    assert classes[0, :3].tolist() == [1.0, 0.0, 0.0]
    # box decoding with scales: ty = 10 moves the center by one anchor height
    dec = sp.decode_boxes(np.array([[10.0, 0, 0, 0]], np.float32), anchors[:1], opts)
    np.testing.assert_allclose(dec[0], [0.6, 0.4, 0.8, 0.6], atol=1e-6)


def test_bad_inputs_are_one_line_errors(detector):
    with pytest.raises(sp.SSDError, match="anchors"):
        sp.detection_function(detector, _anchors()[:10], OPTS)
    with pytest.raises(sp.SSDError, match="columns"):
        sp.detection_function(detector, _anchors(), sp.DetectionOptions(num_classes=7))
    bad = _anchors().copy()
    bad[0, 2] = 0
    with pytest.raises(sp.SSDError, match="positive"):
        sp.detection_function(detector, bad, OPTS)


# ---------------------------------------------------------------------------
# conversion and TFLM


def _run(buf, x, preserve=False):
    from tflite_micro.python.tflite_micro import runtime
    cfg = (runtime.InterpreterConfig.kPreserveAllTensors if preserve
           else runtime.InterpreterConfig.kAllocationRecording)
    interp = runtime.Interpreter.from_bytes(buf, arena_size=200_000, intrepreter_config=cfg)
    interp.set_input(x, 0)
    interp.invoke()
    return interp, [interp.get_output(k) for k in range(4)]


def test_int8_detector_runs_on_tflm(detector, images):
    from tinygen.ir import parse_tflite
    anchors = _anchors()
    buf = sp.convert_int8(detector, anchors, OPTS, lambda: ([x] for x in images))
    ir = parse_tflite(buf)
    ops = [op.opcode for op in ir.operators]
    assert ops[-1] == sp.CUSTOM_CODE and ir.operators[-1].is_custom
    assert set(ops) == {"CONV_2D", "RESHAPE", "CONCATENATION", "LOGISTIC", "DEQUANTIZE",
                        sp.CUSTOM_CODE}
    assert ops.count("DEQUANTIZE") == 2
    assert ir.num_subgraphs == 1
    # int8 everywhere but the op and its float inputs/outputs
    post = ir.operators[-1]
    float_ok = set(post.inputs) | set(post.outputs)
    for t in ir.tensors:
        if t.index not in float_ok and t.dtype == "float32":
            assert any(op.opcode == "DEQUANTIZE" and t.index in op.outputs for op in ir.operators)
    assert ir.input_tensors()[0].dtype == "int8"
    outs = ir.output_tensors()
    assert [t.index for t in outs] == post.outputs            # boxes, classes, scores, count
    assert [t.shape for t in outs] == [(1, 10, 4), (1, 10), (1, 10), (1,)]
    assert all(t.dtype == "float32" for t in outs)
    assert b"nms_iou_threshold" in post.custom_options
    assert ir.tensors[post.inputs[2]].is_constant and ir.tensors[post.inputs[2]].shape == (240, 4)

    ti = ir.input_tensors()[0]
    for x in images[:4]:
        q = np.clip(np.round(x / ti.scale) + ti.zero_point, -128, 127).astype(np.int8)
        interp, (boxes, classes, scores, count) = _run(buf, q, preserve=True)
        # the op on TFLM computes exactly what the NumPy reference computes on its inputs
        enc = interp.GetTensor(post.inputs[0], 0)["tensor_data"]
        cls = interp.GetTensor(post.inputs[1], 0)["tensor_data"]
        rb, rc, rs, rn = sp.reference_postprocess(enc, cls, anchors, OPTS)
        n = int(count[0])
        assert n == int(rn[0]) == 10
        np.testing.assert_array_equal(classes[0, :n], rc[0, :n])
        np.testing.assert_allclose(scores[0, :n], rs[0, :n], atol=1e-6)
        np.testing.assert_allclose(boxes[0, :n], rb[0, :n], atol=1e-5)
        # and the int8 detections stay close to the float model's
        fb, fc = (np.asarray(t) for t in detector(x))
        _, _, fs, fnum = sp.reference_postprocess(fb, fc, anchors, OPTS)
        assert int(fnum[0]) == n
        np.testing.assert_allclose(np.sort(scores[0, :n]), np.sort(fs[0, :n]), atol=0.02)


def test_float_detector_matches_reference_exactly_regular_nms(tf, detector, images):
    opts = sp.DetectionOptions(num_classes=C - 1, max_detections=8, nms_score_threshold=0.3,
                               use_regular_nms=True)
    anchors = _anchors()
    conv = sp.tflite_converter(detector, anchors, opts)
    from tinygen import tfenv
    with tfenv.quiet():
        buf = sp.finalize(conv.convert(), opts)
    for x in images[:3]:
        _, (boxes, classes, scores, count) = _run(buf, x)
        fb, fc = (np.asarray(t) for t in detector(x))
        rb, rc, rs, rn = sp.reference_postprocess(fb, fc, anchors, opts)
        n = int(count[0])
        assert n == int(rn[0]) == 8
        np.testing.assert_array_equal(classes[0, :n], rc[0, :n])
        np.testing.assert_allclose(scores[0, :n], rs[0, :n], atol=1e-6)
        np.testing.assert_allclose(boxes[0, :n], rb[0, :n], atol=1e-5)


def test_finalize_rejects_models_without_the_op(tf):
    import keras
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    from tinygen import tfenv
    from tinygen.convert import keras_compat
    with tfenv.quiet():
        buf = keras_compat.tflite_converter(m).convert()
    with pytest.raises(sp.SSDError, match="no TFLite_Detection_PostProcess"):
        sp.finalize(buf)
