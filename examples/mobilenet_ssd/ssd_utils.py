"""NumPy side of the example SSD: anchors, IoU, target encoding, matching, mAP.

No TensorFlow here: the tests import this module in milliseconds.

Conventions (those of TFLite_Detection_PostProcess, see tinygen/convert/ssd_postprocess.py):
* boxes are (ymin, xmin, ymax, xmax), normalized to [0, 1];
* anchors are (yc, xc, h, w), normalized, one row per (cell row, cell column,
  anchor) in that order, which is the order of a conv head [1, H, W, A*k]
  reshaped to [1, H*W*A, k];
* encodings are (ty, tx, th, tw) = ((yc - ya) / ha * 10, (xc - xa) / wa * 10,
  log(h / ha) * 5, log(w / wa) * 5).
"""

from __future__ import annotations

import numpy as np

SCALES = (10.0, 10.0, 5.0, 5.0)          # y, x, h, w: as in ssd.json


# ---------------------------------------------------------------------------
# anchors


def anchor_shapes(scale: float, next_scale: float, aspects=(1.0, 2.0, 0.5)):
    """(h, w) of the anchors of one feature map, SSD style: every aspect ratio
    at `scale`, plus a square one at sqrt(scale * next_scale)."""
    shapes = []
    for a in aspects:
        r = np.sqrt(a)
        shapes.append((scale / r, scale * r))          # aspect = w / h
        if a == 1.0:
            s = float(np.sqrt(scale * next_scale))
            shapes.append((s, s))
    return shapes


def make_anchors(grids=(12, 6), scales=(0.12, 0.24, 0.45),
                 aspects=(1.0, 2.0, 0.5)) -> np.ndarray:
    """[N, 4] float32 (yc, xc, h, w) for the square feature maps `grids`.

    `scales` has one entry per grid plus one (the size used for the extra square
    anchor of the last map).  Anchors per cell: len(aspects) + 1.
    """
    if len(scales) != len(grids) + 1:
        raise ValueError("scales needs one entry per grid plus one")
    rows = []
    for k, g in enumerate(grids):
        shapes = anchor_shapes(scales[k], scales[k + 1], aspects)
        for i in range(g):
            for j in range(g):
                for h, w in shapes:
                    rows.append(((i + 0.5) / g, (j + 0.5) / g, h, w))
    return np.asarray(rows, np.float32)


def anchors_per_cell(aspects=(1.0, 2.0, 0.5)) -> int:
    return len(aspects) + (1 if 1.0 in aspects else 0)


# ---------------------------------------------------------------------------
# boxes


def corners_to_center(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64)
    return np.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2,
                     b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], axis=-1)


def center_to_corners(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64)
    return np.stack([c[..., 0] - c[..., 2] / 2, c[..., 1] - c[..., 3] / 2,
                     c[..., 0] + c[..., 2] / 2, c[..., 1] + c[..., 3] / 2], axis=-1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] IoU of corner boxes (ymin, xmin, ymax, xmax)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ih = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iw = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ih * iw
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def encode(boxes: np.ndarray, anchors: np.ndarray, scales=SCALES) -> np.ndarray:
    """Corner boxes [N, 4] -> (ty, tx, th, tw) [N, 4] against anchors [N, 4]."""
    c = corners_to_center(boxes)
    a = np.asarray(anchors, np.float64)
    sy, sx, sh, sw = scales
    return np.stack([(c[:, 0] - a[:, 0]) / a[:, 2] * sy, (c[:, 1] - a[:, 1]) / a[:, 3] * sx,
                     np.log(c[:, 2] / a[:, 2]) * sh, np.log(c[:, 3] / a[:, 3]) * sw],
                    axis=1).astype(np.float32)


def decode(enc: np.ndarray, anchors: np.ndarray, scales=SCALES) -> np.ndarray:
    """Inverse of encode (the decoding TFLite_Detection_PostProcess does)."""
    e = np.asarray(enc, np.float64).reshape(-1, 4)
    a = np.asarray(anchors, np.float64)
    sy, sx, sh, sw = scales
    c = np.stack([e[:, 0] / sy * a[:, 2] + a[:, 0], e[:, 1] / sx * a[:, 3] + a[:, 1],
                  np.exp(e[:, 2] / sh) * a[:, 2], np.exp(e[:, 3] / sw) * a[:, 3]], axis=1)
    return center_to_corners(c).astype(np.float32)


# ---------------------------------------------------------------------------
# matching


def match(gt_boxes: np.ndarray, gt_classes: np.ndarray, anchors: np.ndarray,
          num_classes: int, pos_iou: float = 0.5, neg_iou: float = 0.4):
    """Training targets of one image.

    Returns (box_targets [N, 4], class_targets [N, num_classes] one-hot, weights [N]):
    weights 1 = positive, 0 = negative (all-zero class target), -1 = ignored
    (IoU between neg_iou and pos_iou).  An anchor is positive when its best IoU
    with a ground-truth box reaches pos_iou; every ground-truth box also gets its
    best anchor, so no object goes unmatched.
    """
    n = len(anchors)
    box_t = np.zeros((n, 4), np.float32)
    cls_t = np.zeros((n, num_classes), np.float32)
    weight = np.zeros(n, np.float32)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    if len(gt_boxes) == 0:
        return box_t, cls_t, weight
    iou = iou_matrix(center_to_corners(anchors), gt_boxes)          # [N, G]
    best_gt = iou.argmax(axis=1)
    best_iou = iou.max(axis=1)
    # force each ground truth onto its best anchor
    forced = iou.argmax(axis=0)
    best_gt[forced] = np.arange(len(gt_boxes))
    best_iou[forced] = 1.0
    pos = best_iou >= pos_iou
    ignore = (best_iou >= neg_iou) & ~pos
    weight[pos] = 1.0
    weight[ignore] = -1.0
    box_t[pos] = encode(gt_boxes[best_gt[pos]], anchors[pos])
    cls_t[pos, np.asarray(gt_classes)[best_gt[pos]]] = 1.0
    return box_t, cls_t, weight


# ---------------------------------------------------------------------------
# evaluation


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision/recall curve, all-point interpolation (VOC 2010+):
    precision made monotonically non-increasing from the right, summed over the
    recall steps."""
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def average_precision(detections, ground_truth, cls: int, iou_threshold: float = 0.5):
    """AP of one class.

    detections: per image a tuple (boxes [k, 4], classes [k], scores [k]);
    ground_truth: per image (boxes [g, 4], classes [g]).  A detection is a true
    positive when its best-overlapping not-yet-matched ground truth of the same
    class has IoU >= iou_threshold (greedy in decreasing score order, as VOC).
    Returns None when the class has no ground truth.
    """
    dets = []                                   # (score, image, box)
    for img, (b, c, s) in enumerate(detections):
        for box, k, score in zip(np.asarray(b).reshape(-1, 4), np.asarray(c).reshape(-1),
                                 np.asarray(s).reshape(-1)):
            if int(k) == cls:
                dets.append((float(score), img, box))
    gts = [np.asarray(b).reshape(-1, 4)[np.asarray(c).reshape(-1) == cls]
           for b, c in ground_truth]
    n_gt = sum(len(g) for g in gts)
    if n_gt == 0:
        return None
    # stable sort by decreasing score (ties keep image order)
    dets.sort(key=lambda d: -d[0])
    used = [np.zeros(len(g), bool) for g in gts]
    tp = np.zeros(len(dets))
    for k, (_, img, box) in enumerate(dets):
        g = gts[img]
        if len(g) == 0:
            continue
        ious = iou_matrix(box[None], g)[0]
        j = int(ious.argmax())
        if ious[j] >= iou_threshold and not used[img][j]:
            tp[k] = 1
            used[img][j] = True
    ctp = np.cumsum(tp)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(dets) + 1)
    return voc_ap(recall, precision)


def mean_average_precision(detections, ground_truth, num_classes: int,
                           iou_threshold: float = 0.5):
    """(mAP over the classes that have ground truth, [AP per class or None])."""
    aps = [average_precision(detections, ground_truth, c, iou_threshold)
           for c in range(num_classes)]
    valid = [a for a in aps if a is not None]
    return (float(np.mean(valid)) if valid else 0.0), aps
