"""Classifier accuracy on labelled test data at the three levels a user ships
through: the float model, the int8 model on the tflite_micro interpreter (host)
and the int8 model on each device; their top-1 agreement, confusion matrices,
and the warnings that belong in the verdict (synthetic calibration, float/int8
disagreement).

Bit-exactness says the device computes what TFLM computes; only these figures
say whether what TFLM computes is still a good classifier."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..convert import is_classifier_shape
from ..errors import TinygenError
from ..ir import Model

# Below this float-vs-int8 top-1 agreement the verdict carries a warning
# (--min-agreement turns a threshold into a failure instead).
WARN_AGREEMENT = 0.90
# An int8 accuracy this many points below the float model's is worth a warning.
WARN_ACCURACY_DROP = 0.02
# Confusion matrices larger than this are summarised (their largest cells) in text.
MAX_PRINTED_CLASSES = 16


@dataclass
class Accuracy:
    """Top-1 accuracy of one classifier output against the labels."""
    output: str
    samples: int
    classes: list[str]
    int8: float                              # the tflite_micro interpreter on the host
    devices: dict[str, float] = field(default_factory=dict)
    float: float | None = None               # the Keras/SavedModel model, when it ran
    float_vs_int8_top1: float | None = None
    labels_from: str = ""
    # rows: true class, columns: predicted class; per level ("float", "int8", board label)
    confusion: dict[str, list[list[int]]] = field(default_factory=dict)

    @property
    def device(self) -> float | None:
        """The worst device's accuracy (what a floor must hold for)."""
        return min(self.devices.values()) if self.devices else None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["device"] = self.device
        return d


def classifier_output(ir: Model) -> int | None:
    """Index of the output accuracy is measured on: the first int8 classifier output."""
    for k, t in enumerate(ir.output_tensors()):
        if is_classifier_shape(t.shape) and t.dtype == "int8":
            return k
    return None


def top1(outs: list, k: int) -> np.ndarray:
    return np.asarray([int(np.asarray(v[k]).reshape(-1).argmax()) for v in outs], np.int64)


def confusion(labels: np.ndarray, pred: np.ndarray, n: int) -> list[list[int]]:
    m = np.zeros((n, n), np.int64)
    np.add.at(m, (labels, pred), 1)
    return m.tolist()


def class_names_for(n_classes: int, names: list[str] | None, where: str = "--labels") -> list[str]:
    if names is None:
        return [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise TinygenError(f"{where} names {len(names)} classes but the model's classifier "
                           f"output has {n_classes}")
    return list(names)


def measure_accuracy(labels: np.ndarray, int8_pred: np.ndarray, n_classes: int, *,
                     output: str, device_preds: dict[str, np.ndarray] | None = None,
                     float_pred: np.ndarray | None = None, names: list[str] | None = None,
                     labels_from: str = "") -> Accuracy:
    """Accuracy and confusion per level from top-1 predictions."""
    labels = np.asarray(labels, np.int64)
    if len(labels) != len(int8_pred):
        raise TinygenError(f"{len(labels):,} labels for {len(int8_pred):,} vectors")
    if labels.size and int(labels.max()) >= n_classes:
        raise TinygenError(f"the labels hold class {int(labels.max())} but the model's "
                           f"classifier output {output!r} has {n_classes} classes (0..{n_classes - 1})")
    classes = class_names_for(n_classes, names)
    acc = Accuracy(output=output, samples=len(labels), classes=classes,
                   int8=float(np.mean(int8_pred == labels)) if labels.size else 0.0,
                   labels_from=labels_from)
    acc.confusion["int8"] = confusion(labels, int8_pred, n_classes)
    for label, pred in (device_preds or {}).items():
        acc.devices[label] = float(np.mean(pred == labels))
        acc.confusion[label] = confusion(labels, pred, n_classes)
    if float_pred is not None:
        acc.float = float(np.mean(float_pred == labels))
        acc.float_vs_int8_top1 = float(np.mean(float_pred == int8_pred))
        acc.confusion["float"] = confusion(labels, float_pred, n_classes)
    return acc


def verify_accuracy(ir: Model, labels: np.ndarray, ref_outs: list, device_outs: dict[str, list],
                    float_outs: list | None, names: list[str] | None,
                    labels_from: str = "") -> Accuracy:
    k = classifier_output(ir)
    if k is None:
        raise TinygenError("the data file holds labels but the model has no int8 classifier "
                           "output to score them against (a [1, classes] or [classes] output)")
    t = ir.output_tensors()[k]
    n = int(np.prod(t.shape))
    return measure_accuracy(
        labels, top1(ref_outs, k), n, output=t.name,
        device_preds={lbl: top1(outs, k) for lbl, outs in device_outs.items()},
        float_pred=top1(float_outs, k) if float_outs else None, names=names,
        labels_from=labels_from)


def quality_notes(*, synthetic: bool, float_check: dict | None, accuracy: Accuracy | None,
                  min_agreement: float | None = None,
                  min_accuracy: float | None = None,
                  detection=None) -> tuple[list[str], list[str]]:
    """(warnings, failures) for the verdict line: what a PASS does not cover, and
    what a threshold the user set turns into a FAIL."""
    warnings: list[str] = []
    failures: list[str] = []
    if synthetic:
        warnings.append("accuracy unknown: synthetic calibration")
    agreement = None
    if accuracy is not None and accuracy.float_vs_int8_top1 is not None:
        agreement = accuracy.float_vs_int8_top1
    elif float_check:
        agreement = min(e["float_vs_reference_top1"] for e in float_check.values())
    if agreement is not None:
        text = f"float/int8 top-1 agreement {agreement:.1%}"
        if min_agreement is not None and agreement < min_agreement:
            failures.append(f"{text} < --min-agreement {min_agreement:.0%}")
        elif min_agreement is None and agreement < WARN_AGREEMENT:
            warnings.append(f"{text} (below {WARN_AGREEMENT:.0%})")
    if accuracy is not None:
        if accuracy.float is not None and accuracy.float - accuracy.int8 >= WARN_ACCURACY_DROP:
            warnings.append(f"int8 accuracy {accuracy.int8:.1%} vs float {accuracy.float:.1%}")
        worst = accuracy.device if accuracy.device is not None else accuracy.int8
        if min_accuracy is not None and worst < min_accuracy:
            failures.append(f"device accuracy {worst:.1%} < --min-accuracy {min_accuracy:.0%}")
    if detection is not None:           # a DetectionAccuracy: the same rules on mAP@0.5
        if detection.float is not None and detection.float - detection.int8 >= WARN_ACCURACY_DROP:
            warnings.append(f"int8 mAP@0.5 {detection.int8:.3f} vs float {detection.float:.3f}")
        worst = detection.device if detection.device is not None else detection.int8
        if min_accuracy is not None and worst < min_accuracy:
            failures.append(f"device mAP@0.5 {worst:.1%} < --min-accuracy {min_accuracy:.0%}")
    return warnings, failures


def format_confusion(acc: Accuracy, level: str) -> list[str]:
    """A confusion matrix as text lines (rows: true class, columns: predicted)."""
    m = np.asarray(acc.confusion[level])
    n = len(acc.classes)
    if n > MAX_PRINTED_CLASSES:
        off = [(int(m[i, j]), i, j) for i in range(n) for j in range(n) if i != j and m[i, j]]
        off.sort(reverse=True)
        if not off:
            return ["    no confusions"]
        return ["    most confused: " + ", ".join(
            f"{acc.classes[i]}->{acc.classes[j]} {c}" for c, i, j in off[:8])]
    width = max(4, max(len(c) for c in acc.classes[:n]) + 1)
    width = min(width, 10)
    names = [c[: width - 1] for c in acc.classes]
    lines = ["    " + " " * width + "predicted"]
    lines.append("    " + " " * width + "".join(f"{c:>{width}}" for c in names))
    for i, c in enumerate(names):
        lines.append(f"    {c:<{width}}" + "".join(f"{int(v):>{width}}" for v in m[i]))
    return lines
