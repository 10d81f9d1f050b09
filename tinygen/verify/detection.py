"""Detector accuracy: mAP@0.5 on ground-truth boxes at the three levels a
detector ships through (the float model with the same post-processing, the
int8 model on the tflite_micro interpreter, the int8 model on each device).

AP is VOC-style: detections of a class sorted by score, each a true positive
when the best-overlapping ground truth of that class is unmatched and overlaps
it by IoU >= 0.5, precision made non-increasing from the right and summed over
the recall steps (all-point interpolation); mAP is the mean over the classes
that have ground truth.  The post-processing op's outputs are taken as
(boxes [1, M, 4] ymin/xmin/ymax/xmax, classes [1, M], scores [1, M], count [1]),
TFLite_Detection_PostProcess's order."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import TinygenError
from ..ir import Model

IOU_THRESHOLD = 0.5

# (boxes [k, 4], classes [k], scores [k]) of one image
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]
# (boxes [g, 4], classes [g]) of one image
Truth = tuple[np.ndarray, np.ndarray]


@dataclass
class DetectionAccuracy:
    """mAP@0.5 per level; ``ap`` per level and class (None: no ground truth)."""
    images: int
    objects: int
    classes: list[str]
    int8: float
    devices: dict[str, float] = field(default_factory=dict)
    float: float | None = None
    ap: dict[str, list[float | None]] = field(default_factory=dict)
    detections: dict[str, int] = field(default_factory=dict)
    truth_from: str = ""
    float_from: str = ""                 # which float model gave the float level

    @property
    def device(self) -> float | None:
        """The worst device's mAP (what a floor must hold for)."""
        return min(self.devices.values()) if self.devices else None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["device"] = self.device
        d["metric"] = f"mAP@{IOU_THRESHOLD:g} (VOC all-point AP, mean over classes)"
        return d


def detection_outputs(ir: Model) -> bool:
    """Whether the model ends in TFLite_Detection_PostProcess (its four outputs)."""
    return any(op.opcode == "TFLite_Detection_PostProcess" for op in ir.operators) \
        and len(ir.outputs) == 4


def detector_classes(ir: Model) -> int:
    """num_classes from the post-processing op's own options (its flexbuffer)."""
    from ..ir.flexbuffer import FlexBufferError, loads
    for op in ir.operators:
        if op.opcode == "TFLite_Detection_PostProcess":
            try:
                return int(loads(op.custom_options)["num_classes"])
            except (FlexBufferError, KeyError, TypeError, ValueError):
                break
    raise TinygenError("the model's TFLite_Detection_PostProcess options name no num_classes")


def rows(outs) -> Detections:
    """The defined detections of one post-processing output (the first ``count`` rows)."""
    boxes, classes, scores, count = outs[:4]
    k = int(np.asarray(count).reshape(-1)[0])
    return (np.asarray(boxes, np.float64).reshape(-1, 4)[:k],
            np.asarray(classes).reshape(-1)[:k].astype(np.int64),
            np.asarray(scores, np.float64).reshape(-1)[:k])


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one corner box with each of ``others`` [g, 4]."""
    h = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    w = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = h * w
    union = ((box[2] - box[0]) * (box[3] - box[1])
             + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]) - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def class_ap(dets: list[Detections], truth: list[Truth], cls: int,
             threshold: float = IOU_THRESHOLD) -> float | None:
    """AP of one class over all images; None when the class has no ground truth."""
    gts = [np.asarray(b, np.float64).reshape(-1, 4)[np.asarray(c).reshape(-1) == cls]
           for b, c in truth]
    n_gt = sum(len(g) for g in gts)
    if n_gt == 0:
        return None
    found = [(float(s), img, b) for img, (bs, cs, ss) in enumerate(dets)
             for b, c, s in zip(bs, cs, ss) if int(c) == cls]
    found.sort(key=lambda d: -d[0])          # stable: equal scores keep image order
    matched = [np.zeros(len(g), bool) for g in gts]
    hit = np.zeros(len(found))
    for k, (_score, img, box) in enumerate(found):
        if len(gts[img]) == 0:
            continue
        overlaps = iou(box, gts[img])
        j = int(overlaps.argmax())
        if overlaps[j] >= threshold and not matched[img][j]:
            matched[img][j] = True
            hit[k] = 1
    tp = np.cumsum(hit)
    recall = np.concatenate([[0.0], tp / n_gt, [1.0]])
    precision = np.concatenate([[0.0], tp / np.maximum(np.arange(1, len(found) + 1), 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def mean_ap(dets: list[Detections], truth: list[Truth], n_classes: int) -> tuple[float, list]:
    aps = [class_ap(dets, truth, c) for c in range(n_classes)]
    scored = [a for a in aps if a is not None]
    return (float(np.mean(scored)) if scored else 0.0), aps


def measure_detection(truth: list[Truth], int8_outs: list, *, n_classes: int,
                      device_outs: dict[str, list] | None = None, float_outs: list | None = None,
                      names: list[str] | None = None, truth_from: str = "",
                      float_from: str = "") -> DetectionAccuracy:
    """mAP per level from the post-processing outputs of every image."""
    if len(truth) != len(int8_outs):
        raise TinygenError(f"ground truth for {len(truth):,} images, {len(int8_outs):,} vectors")
    top = max((int(np.max(c)) for _, c in truth if len(c)), default=-1)
    if top >= n_classes:
        raise TinygenError(f"the ground truth holds class {top} but the detector has "
                           f"{n_classes} classes (0..{n_classes - 1})")
    if names is not None and len(names) != n_classes:
        raise TinygenError(f"--labels names {len(names)} classes but the detector has "
                           f"{n_classes}")
    levels: dict[str, list] = {"int8": int8_outs}
    if float_outs is not None:
        levels["float"] = float_outs
    levels.update(device_outs or {})
    res = DetectionAccuracy(images=len(truth), objects=sum(len(c) for _, c in truth),
                            classes=list(names) if names else [str(i) for i in range(n_classes)],
                            int8=0.0, truth_from=truth_from,
                            float_from=float_from if float_outs is not None else "")
    for level, outs in levels.items():
        dets = [rows(o) for o in outs]
        m, aps = mean_ap(dets, truth, n_classes)
        res.ap[level] = aps
        res.detections[level] = sum(len(d[0]) for d in dets)
        if level == "int8":
            res.int8 = m
        elif level == "float":
            res.float = m
        else:
            res.devices[level] = m
    return res


def format_detection(d: dict, port: str | None = None) -> list[str]:
    """Text report lines: mAP per level, AP per class."""
    levels = [("float", d.get("float")), ("int8", d["int8"])]
    levels += [(f"device {lbl}" if port is None or lbl != port else "device", v)
               for lbl, v in d["devices"].items()]
    lines = [f"  detection: {d['metric']} on {d['images']:,} images, {d['objects']:,} objects "
             f"({d['truth_from']})"]
    lines.append("    " + ", ".join(f"{name} {v:.3f}" for name, v in levels if v is not None))
    if d.get("float") is not None and d.get("float_from"):
        lines.append(f"    float level: {d['float_from']}")
    for level in ("float", "int8"):
        if level in d["ap"]:
            lines.append(f"    AP {level}: " + ", ".join(
                f"{c} {'-' if a is None else f'{a:.3f}'}" for c, a in zip(d["classes"], d["ap"][level])))
    return lines
