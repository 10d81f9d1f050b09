"""examples/mobilenet_ssd: anchors, box coding, IoU, AP, the data generator; and a
tiny MobileNetV2-SSD trained for a few steps, converted with --detection and
verified bit for bit on the emulated Cortex-M4 (slow)."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest
from conftest import ROOT, run_cli

EXAMPLE = ROOT / "examples" / "mobilenet_ssd"


def _load(name: str, file: str, alias: str | None = None):
    """Import an example script under a unique name: other examples also have a
    make_data.py and a train.py.  `alias` also registers it under the plain name
    the example's own scripts import it by."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, EXAMPLE / file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    if alias:
        sys.modules[alias] = mod
    spec.loader.exec_module(mod)
    return mod


su = _load("ssd_example_utils", "ssd_utils.py", "ssd_utils")
make_data = _load("ssd_example_make_data", "make_data.py", "make_data")


# ---------------------------------------------------------------------------
# anchors


def test_anchor_grid_layout():
    a = su.make_anchors((12, 6), (0.12, 0.24, 0.45), (1.0, 2.0, 0.5))
    per_cell = su.anchors_per_cell((1.0, 2.0, 0.5))
    assert per_cell == 4
    assert a.shape == ((144 + 36) * 4, 4) and a.dtype == np.float32
    # first cell of the 12x12 map: center (1/24, 1/24); its four shapes
    np.testing.assert_allclose(a[:4, :2], [[1 / 24, 1 / 24]] * 4, rtol=1e-6)
    s = np.sqrt(0.12 * 0.24)
    np.testing.assert_allclose(a[:4, 2:], [[0.12, 0.12], [s, s],
                                           [0.12 / np.sqrt(2), 0.12 * np.sqrt(2)],
                                           [0.12 * np.sqrt(2), 0.12 / np.sqrt(2)]], rtol=1e-6)
    # anchor (i, j, k) of a map sits at row-major index (i * W + j) * A + k, like a
    # conv head [1, H, W, A*4] reshaped to [1, H*W*A, 4]
    i, j = 7, 3
    np.testing.assert_allclose(a[(i * 12 + j) * 4, :2], [(i + 0.5) / 12, (j + 0.5) / 12])
    second = a[144 * 4:]
    np.testing.assert_allclose(second[(2 * 6 + 5) * 4, :2], [2.5 / 6, 5.5 / 6])
    np.testing.assert_allclose(second[0, 2:], [0.24, 0.24])
    np.testing.assert_allclose(second[1, 2:], [np.sqrt(0.24 * 0.45)] * 2, rtol=1e-6)
    # equal area per scale, w/h = aspect
    np.testing.assert_allclose(a[2, 2] * a[2, 3], 0.12 ** 2, rtol=1e-6)
    np.testing.assert_allclose(a[2, 3] / a[2, 2], 2.0, rtol=1e-6)
    assert np.all(a[:, 2:] > 0)


def test_committed_anchors_and_spec_match_the_code():
    from tinygen.convert import load_detection_spec
    anchors, opts, outputs = load_detection_spec(EXAMPLE / "ssd.json")
    expected = su.make_anchors((12, 6), (0.12, 0.24, 0.45), (1.0, 2.0, 0.5))
    np.testing.assert_array_equal(anchors, expected)
    assert opts.num_classes == 3 and outputs == (0, 1)
    assert (opts.y_scale, opts.x_scale, opts.h_scale, opts.w_scale) == su.SCALES
    x = np.load(EXAMPLE / "calib.npy")
    assert x.dtype == np.float32 and x.shape[1:] == (96, 96, 3) and 50 <= len(x) <= 100
    assert x.min() >= 0 and x.max() <= 255
    results = json.loads((EXAMPLE / "results.json").read_text())
    assert 0.0 <= results["int8"]["map50"] <= 1.0


# ---------------------------------------------------------------------------
# box coding


def _random_boxes(rng, n):
    y0, x0 = rng.uniform(0, 0.7, (2, n))
    h, w = rng.uniform(0.05, 0.3, (2, n))
    return np.stack([y0, x0, y0 + h, x0 + w], axis=1).astype(np.float32)


def test_encode_decode_round_trip_and_kernel_decoding():
    from tinygen.convert import ssd_postprocess as sp
    rng = np.random.default_rng(0)
    anchors = su.make_anchors((4, 2), (0.2, 0.4, 0.7))
    boxes = _random_boxes(rng, len(anchors))
    enc = su.encode(boxes, anchors)
    np.testing.assert_allclose(su.decode(enc, anchors), boxes, atol=1e-5)
    # tinygen's NumPy port of TFLM's decoding gives the same boxes
    opts = sp.DetectionOptions(num_classes=3)
    np.testing.assert_allclose(sp.decode_boxes(enc, anchors, opts), boxes, atol=1e-5)
    # zero encodings are the anchors themselves; hand-computed encodings
    np.testing.assert_allclose(su.decode(np.zeros_like(anchors), anchors),
                               su.center_to_corners(anchors), atol=1e-7)
    a = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    b = np.array([[0.42, 0.35, 0.62, 0.85]], np.float32)   # center (0.52, 0.6), h 0.2, w 0.5
    np.testing.assert_allclose(su.encode(b, a),
                               [[1.0, 2.5, 0.0, 5 * np.log(1.25)]], atol=1e-5)


def _iou_brute(a, b, res=200):
    """IoU by counting the cells of a res x res grid (boxes on that grid)."""
    def mask(box):
        m = np.zeros((res, res), bool)
        y0, x0, y1, x1 = np.round(np.asarray(box) * res).astype(int)
        m[y0:y1, x0:x1] = True
        return m
    ma, mb = mask(a), mask(b)
    union = (ma | mb).sum()
    return (ma & mb).sum() / union if union else 0.0


def test_iou_against_hand_and_brute_force():
    iou = su.iou_matrix
    assert iou([[0, 0, 1, 1]], [[0, 0, 1, 1]])[0, 0] == 1.0
    assert iou([[0, 0, 0.5, 0.5]], [[0.5, 0.5, 1, 1]])[0, 0] == 0.0       # touching corners
    np.testing.assert_allclose(iou([[0, 0, 0.5, 1]], [[0, 0, 1, 1]]), [[0.5]])
    np.testing.assert_allclose(iou([[0, 0, 0.2, 0.2]], [[0.1, 0.1, 0.3, 0.3]]), [[1 / 7]])
    assert iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 0.0               # empty boxes
    rng = np.random.default_rng(1)
    grid = rng.integers(0, 201, (40, 4)) / 200
    boxes = np.concatenate([np.minimum(grid[:, :2], grid[:, 2:]),
                            np.maximum(grid[:, :2], grid[:, 2:])], axis=1)
    m = iou(boxes[:20], boxes[20:])
    assert m.shape == (20, 20)
    for i, j in itertools.product(range(20), range(20)):
        assert abs(m[i, j] - _iou_brute(boxes[i], boxes[20 + j])) < 1e-9


def test_match_targets():
    anchors = su.make_anchors((4, 2), (0.2, 0.4, 0.7))
    corners = su.center_to_corners(anchors)
    # an object exactly on anchor 5 and one that overlaps nothing well
    gt = np.stack([corners[5], [0.0, 0.0, 0.04, 0.04]]).astype(np.float32)
    box_t, cls_t, w = su.match(gt, np.array([2, 0]), anchors, num_classes=3)
    assert w[5] == 1 and cls_t[5].tolist() == [0, 0, 1]
    np.testing.assert_allclose(box_t[5], 0, atol=1e-5)
    iou = su.iou_matrix(corners, gt)
    forced = int(iou[:, 1].argmax())
    assert w[forced] == 1 and cls_t[forced].tolist() == [1, 0, 0]   # small object: best anchor
    np.testing.assert_allclose(su.decode(box_t[forced:forced + 1], anchors[forced:forced + 1]),
                               gt[1:], atol=1e-5)
    # positives: IoU >= 0.5 (or forced); ignored: 0.4 <= IoU < 0.5; the rest negative
    best = iou.max(axis=1)
    assert np.all(w[(best >= 0.5)] == 1)
    assert np.all(w[(best < 0.4) & (np.arange(len(w)) != forced)] == 0)
    assert np.all(cls_t[w <= 0] == 0)
    # no objects: all negatives
    _, c0, w0 = su.match(np.zeros((0, 4)), np.zeros(0, int), anchors, 3)
    assert not w0.any() and not c0.any()


# ---------------------------------------------------------------------------
# average precision


def _ap_brute(tp_flags, n_gt):
    """All-point interpolated AP written the other way round: each true positive
    adds 1/n_gt of recall at the best precision reached at or after it."""
    tp = np.asarray(tp_flags, float)
    prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    return sum(prec[k:].max() / n_gt for k in range(len(tp)) if tp[k])


def test_voc_ap_hand_computed():
    # ranks TP, FP, TP with 2 objects: recall 0.5 at precision 1, 1.0 at 2/3
    assert su.voc_ap([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # FP, TP, TP with 3 objects: the envelope lifts the first point to 2/3
    assert su.voc_ap([0, 1 / 3, 2 / 3], [0, 0.5, 2 / 3]) == pytest.approx(2 / 3 * 2 / 3)
    assert su.voc_ap([], []) == 0.0


def test_average_precision_on_detections():
    gt = [(np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]), np.array([0, 1])),
          (np.array([[0.1, 0.1, 0.4, 0.4]]), np.array([0]))]
    perfect = [(g[0], g[1], np.array([0.9, 0.8])[:len(g[1])]) for g in gt]
    m, aps = su.mean_average_precision(perfect, gt, 3)
    assert aps[:2] == [1.0, 1.0] and aps[2] is None and m == 1.0
    dets = [
        (np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.52], [0.5, 0.5, 1, 1], [0.6, 0, 0.9, 0.3]]),
         np.array([0, 0, 0, 1]), np.array([0.9, 0.85, 0.3, 0.6])),
        (np.array([[0.1, 0.1, 0.4, 0.45]]), np.array([0]), np.array([0.7])),
    ]
    # class 0 by score: 0.9 TP, 0.85 duplicate FP, 0.7 TP (IoU 0.3*0.3/(0.3*0.35) = 0.857),
    # 0.3 FP (right box, wrong class); 2 objects
    assert su.average_precision(dets, gt, 0) == pytest.approx(_ap_brute([1, 0, 1, 0], 2))
    assert su.average_precision(dets, gt, 0) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert su.average_precision(dets, gt, 1) == 0.0               # only a miss
    assert su.average_precision(dets, gt, 0, iou_threshold=0.9) == pytest.approx(0.5)
    # random detections against the brute-force formula
    rng = np.random.default_rng(3)
    for _ in range(20):
        gts, detections, flags = [], [], []
        for _img in range(4):
            g = _random_boxes(rng, 3)
            gts.append((g, np.zeros(3, int)))
            hit = rng.random(5) < 0.5
            b = np.where(hit[:, None], g[rng.integers(0, 3, 5)], _random_boxes(rng, 5) + 2)
            detections.append((b, np.zeros(5, int), rng.random(5)))
        scores = np.concatenate([d[2] for d in detections])
        order = np.argsort(-scores, kind="stable")
        used = set()
        for k in order:
            img, r = divmod(int(k), 5)
            box = detections[img][0][r]
            match = [j for j in range(3) if np.allclose(gts[img][0][j], box)]
            ok = bool(match) and (img, match[0]) not in used
            if ok:
                used.add((img, match[0]))
            flags.append(ok)
        assert su.average_precision(detections, gts, 0) == pytest.approx(_ap_brute(flags, 12))


# ---------------------------------------------------------------------------
# data generator


def test_generator_boxes_contain_the_drawn_objects():
    rng = np.random.default_rng(7)
    seen = np.zeros(3, int)
    for _ in range(40):
        img, boxes, classes, bg, masks = make_data.make_image(rng, with_masks=True)
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        assert len(boxes) == len(classes) == len(masks) <= 3
        seen += np.bincount(classes, minlength=3)
        inside = np.zeros((96, 96), bool)
        for box, mask in zip(boxes, masks):
            y0, x0, y1, x1 = np.round(box * 96).astype(int)
            assert 0 <= y0 < y1 <= 96 and 0 <= x0 < x1 <= 96
            ys, xs = np.nonzero(mask)
            # the box is the tight box of the object's pixels
            assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == (y0, x0, y1, x1)
            # and the object is visible: its color differs from the background
            assert np.abs(img[mask].astype(int) - bg[mask].astype(int)).sum(-1).mean() > 60
            inside[y0:y1, x0:x1] = True
        # nothing was drawn outside the boxes
        changed = (img != bg).any(-1)
        assert not (changed & ~inside).any()
        for a, b in itertools.combinations(boxes, 2):          # objects do not overlap
            assert su.iou_matrix(a[None], b[None])[0, 0] == 0
    assert seen.min() > 5


def test_make_set_padding_and_ground_truth():
    x, boxes, classes, count = make_data.make_set(12, seed=5, size=64)
    assert x.shape == (12, 64, 64, 3)
    for i in range(12):
        assert np.all(classes[i, count[i]:] == -1) and np.all(classes[i, :count[i]] >= 0)
        assert np.all(boxes[i, count[i]:] == 0)
    gt = make_data.ground_truth(boxes, classes, count)
    assert [len(g[0]) for g in gt] == count.tolist()


# ---------------------------------------------------------------------------
# a tiny detector end to end on the emulated Cortex-M4


@pytest.mark.slow
def test_tiny_ssd_verifies_bit_exact_on_qemu(tmp_path):
    sys.modules["ssd_utils"], sys.modules["make_data"] = su, make_data
    train = _load("ssd_example_train", "train.py")
    from tinygen.convert import convert, quantize
    from tinygen.load import load_model
    from tinygen.reference import TflmReference

    size = 32
    # a few steps; prior 0.5 keeps the untrained scores around the threshold so the
    # post-processing has boxes to sort and suppress
    model, anchors = train.train(size=size, alpha=0.35, steps=4, batch=8, train_images=32,
                                 prior=0.5, log=lambda *_: None)
    assert model.outputs[0].shape[1] == len(anchors) == (16 + 4) * 4
    model.save(tmp_path / "model.keras")
    spec = train.write_spec(tmp_path, anchors, score_threshold=0.45)
    calib = tmp_path / "calib.npy"
    np.save(calib, make_data.make_set(16, seed=11, size=size)[0].astype(np.float32))

    conv = convert(load_model(tmp_path / "model.keras"), calib, detection=spec)
    ref = TflmReference(conv.tflite)
    tin = conv.ir.input_tensors()[0]
    counts = [int(ref.run([quantize(x[None], tin)])[3][0]) for x in np.load(calib)[:3]]
    assert max(counts) > 0, "the test model should detect something"

    r = run_cli("verify", tmp_path / "model.keras", "--board", "qemu-cortex-m4",
                "--calib", calib, "--detection", spec, "--samples", 3,
                "--json", tmp_path / "verify.json", "-o", tmp_path / "proj")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "verify.json").read_text())
    assert report["bit_exact"] and report["passed"] and report["vectors"] == 3
