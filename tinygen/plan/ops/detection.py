"""Lowering of the TFLite_Detection_PostProcess custom operator (SSD box
decoding + non-max suppression) onto firmware_templates/aot/kernels/
tg_detection_postprocess.c.

The options come from the operator's FlexBuffer map and are read as TFLM's
Init reads them (AsInt32/AsFloat/AsBool; a missing detections_per_class is
100, a missing use_regular_nms is false).  Every setting TFLM would reject at
run time (or that would make it write outside its outputs) is a
LoweringError here, at build time.  The kernel's scratch (decoded boxes, the
candidate lists, the sort buffer, the NMS flags) is sized here and placed in
the arena by the memory planner; its layout is passed as byte offsets.
"""

from __future__ import annotations

from ...ir import Operator, Tensor
from ...ir.flexbuffer import FlexBufferError, read_map
from ..c_literals import c_float
from ..lowering import KernelCall, LoweringContext, LoweringError, lowers

CUSTOM_CODE = "TFLite_Detection_PostProcess"
_SRC = "tg_detection_postprocess.c"
DEFAULT_DETECTIONS_PER_CLASS = 100       # TFLM's kNumDetectionsPerClass
MAX_INDEX = 65535                        # anchors and classes are stored as uint16
CANDIDATE_BYTES = 8                      # sizeof(tg_dp_candidate)
KERNELS = {False: "tg_detection_postprocess_fast", True: "tg_detection_postprocess_regular"}


def detection_options(op: Operator) -> dict:
    """The operator's options as TFLM's kernel reads them (Python values)."""
    try:
        m = read_map(op.custom_options)
        opts = {
            "max_detections": m["max_detections"].as_int32(),
            "max_classes_per_detection": m["max_classes_per_detection"].as_int32(),
            "detections_per_class": (DEFAULT_DETECTIONS_PER_CLASS
                                     if m["detections_per_class"].is_null
                                     else m["detections_per_class"].as_int32()),
            "use_regular_nms": (False if m["use_regular_nms"].is_null
                                else m["use_regular_nms"].as_bool()),
            "nms_score_threshold": m["nms_score_threshold"].as_float(),
            "nms_iou_threshold": m["nms_iou_threshold"].as_float(),
            "num_classes": m["num_classes"].as_int32(),
        }
        for k in ("y_scale", "x_scale", "h_scale", "w_scale"):
            opts[k] = m[k].as_float()
    except FlexBufferError as exc:
        raise LoweringError(f"{op.describe()}: unreadable custom options ({exc})") from None
    return opts




def _align(n: int, a: int = 4) -> int:
    return (n + a - 1) // a * a


def scratch_layout(num_boxes: int, max_detections: int, nms_limit: int,
                   regular: bool) -> tuple[dict[str, int], int]:
    """Byte offsets of the kernel's scratch parts and the total size."""
    n, d = num_boxes, max_detections
    parts = [
        ("off_decoded", 16 * n),
        ("off_max_scores", 0 if regular else 4 * n),
        ("off_candidates", 2 * d * CANDIDATE_BYTES if regular else 0),
        ("off_keep", 2 * n),
        ("off_sort_tmp", 2 * n),
        ("off_selected", 2 * min(n, nms_limit)),
        ("off_active", n),
    ]
    offsets, at = {}, 0
    for name, size in parts:
        offsets[name] = at
        at = _align(at + size)
    return offsets, at


def _float_tensor(op: Operator, t: Tensor, what: str) -> None:
    if t.dtype != "float32":
        raise LoweringError(f"{op.describe()}: {what} '{t.name}' is {t.dtype}; the kernel "
                            "takes float32 (put DEQUANTIZE in front, as the converter does)")


@lowers(CUSTOM_CODE)
def lower_detection_postprocess(op: Operator, ctx: LoweringContext) -> KernelCall:
    tensors = ctx.model.tensors
    if len(op.inputs) != 3 or any(i < 0 for i in op.inputs):
        raise LoweringError(f"{op.describe()}: needs 3 inputs (box encodings, class scores, "
                            "anchors)")
    if len(op.outputs) != 4 or any(i < 0 for i in op.outputs):
        raise LoweringError(f"{op.describe()}: needs 4 outputs (boxes, classes, scores, count)")
    enc, cls, anc = (tensors[i] for i in op.inputs)
    out_boxes, out_classes, out_scores, out_count = (tensors[i] for i in op.outputs)
    for t, what in ((enc, "box encodings"), (cls, "class scores"), (anc, "anchors"),
                    (out_boxes, "output boxes"), (out_classes, "output classes"),
                    (out_scores, "output scores"), (out_count, "output count")):
        _float_tensor(op, t, what)

    o = detection_options(op)
    nc, d = o["num_classes"], o["max_detections"]
    regular = bool(o["use_regular_nms"])

    # ---- shapes (TFLM's Prepare/Eval checks, plus what keeps writes in bounds)
    if len(enc.shape) != 3 or enc.shape[0] != 1 or enc.shape[2] < 4:
        raise LoweringError(f"{op.describe()}: box encodings must be [1, N, >=4], got "
                            f"{list(enc.shape)}")
    n = int(enc.shape[1])
    if not 1 <= n <= MAX_INDEX:
        raise LoweringError(f"{op.describe()}: {n} boxes; the aot kernel takes 1..{MAX_INDEX}")
    if len(cls.shape) != 3 or cls.shape[0] != 1 or cls.shape[1] != n:
        raise LoweringError(f"{op.describe()}: class scores must be [1, {n}, C], got "
                            f"{list(cls.shape)}")
    ncwb = int(cls.shape[2])
    if len(anc.shape) != 2 or anc.shape[1] != 4 or anc.shape[0] < n:
        raise LoweringError(f"{op.describe()}: anchors must be [{n}, 4], got {list(anc.shape)}")
    if not 1 <= nc <= MAX_INDEX:
        raise LoweringError(f"{op.describe()}: num_classes is {nc}")
    if ncwb - nc not in (0, 1):
        raise LoweringError(f"{op.describe()}: class scores have {ncwb} columns for "
                            f"num_classes={nc} (TFLM needs num_classes or num_classes + 1)")
    if d < 1:
        raise LoweringError(f"{op.describe()}: max_detections is {d}")
    rows = out_scores.num_elements
    if (out_classes.num_elements != rows or out_boxes.num_elements != 4 * rows
            or rows < d or out_count.num_elements < 1):
        raise LoweringError(
            f"{op.describe()}: outputs {list(out_boxes.shape)}, {list(out_classes.shape)}, "
            f"{list(out_scores.shape)}, {list(out_count.shape)} cannot hold max_detections="
            f"{d} rows (TFLM would write past them)")

    # ---- options TFLM rejects (or mishandles) at run time
    iou = o["nms_iou_threshold"]
    if not 0.0 < iou <= 1.0:
        raise LoweringError(f"{op.describe()}: nms_iou_threshold is {iou!r}; TFLM needs (0, 1]")
    if regular:
        dpc = o["detections_per_class"]
        if dpc < 1:
            raise LoweringError(f"{op.describe()}: detections_per_class is {dpc}; TFLM "
                                "needs > 0")
        limit = min(dpc, d)
    else:
        mcpd = o["max_classes_per_detection"]
        if mcpd < 1:
            raise LoweringError(f"{op.describe()}: max_classes_per_detection is {mcpd}; TFLM "
                                "needs > 0")
        if min(mcpd, nc) != 1:
            raise LoweringError(
                f"{op.describe()}: max_classes_per_detection={mcpd} with {nc} classes: TFLM's "
                "fast NMS writes its rows out of bounds for more than one class per "
                "detection, so there is no result to reproduce")
        limit = d

    offsets, scratch = scratch_layout(n, d, limit, regular)
    params = {
        "num_boxes": str(n), "box_stride": str(int(enc.shape[2])), "num_classes": str(nc),
        "num_classes_with_background": str(ncwb), "max_detections": str(d),
        "nms_limit": str(limit), "output_rows": str(rows),
        "score_threshold": c_float(o["nms_score_threshold"], "nms_score_threshold"),
        "iou_threshold": c_float(iou, "nms_iou_threshold"),
    }
    for k in ("y_scale", "x_scale", "h_scale", "w_scale"):
        params[k] = c_float(o[k], k)
    params.update({k: f"{v}u" for k, v in offsets.items()})
    return KernelCall(
        kernel=KERNELS[regular], params_type="tg_detection_postprocess_params",
        params=params, inputs=list(op.inputs), outputs=list(op.outputs), sources=[_SRC],
        scratch_bytes=scratch,
        comment=(f"{CUSTOM_CODE} {n} boxes, {nc} classes, max {d} detections, "
                 f"{'regular' if regular else 'fast'} NMS"))
