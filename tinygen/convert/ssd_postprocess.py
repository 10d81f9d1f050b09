"""SSD post-processing as the TFLite_Detection_PostProcess custom op inside the .tflite.

An SSD-style detector ends in box decoding + non-max suppression.  TFLite and
TFLM run that as the custom op ``TFLite_Detection_PostProcess`` (TFLM:
``MicroMutableOpResolver::AddDetectionPostprocess()``; the tflite_micro Python
interpreter has it built in, no ``custom_op_registerers`` needed).

How the op gets into the model
------------------------------
The TF 2.21 converter's composite-function pass turns a ``tf.function`` whose
``experimental_implements`` names ``TFLite_Detection_PostProcess`` (with the
attributes max_detections, max_classes_per_detection, num_classes,
nms_score_threshold, nms_iou_threshold, y/x/h/w_scale, use_regular_nms) into
the custom op, with flexbuffer options built from those attributes.  Three
conditions, all checked here by experiment:

* the function must survive until that pass: only the SavedModel lowering
  route keeps it (``from_concrete_functions([cf], trackable)`` with the default
  ``experimental_lower_to_saved_model=True``); the frozen route inlines it;
* on that route Keras 3 variables stay READ_VARIABLE ops and int8 calibration
  fails, so the network is frozen to constants first
  (``convert_variables_to_constants_v2``) and called from the outer function;
* the stub's results must have the real static shapes: TFLM cannot resize
  output tensors, so scalar placeholders would be far too small.

The op's inputs and outputs are float32 (TFLM's kernel rejects int8 inputs):
the converter puts DEQUANTIZE in front of it, so the model is int8 everywhere
except the op itself, and the model outputs are float32.  Quantizing the
outputs (``inference_output_type=tf.int8``) adds QUANTIZE ops that destroy
classes/count: keep them float32.

Contract with the convert stage
-------------------------------
::

    opts = DetectionOptions(num_classes=3, max_detections=10)
    conv = ssd_postprocess.tflite_converter(model, anchors, opts)   # route + allow_custom_ops
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = ...       # yields [float32 (1, H, W, C)] lists
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.float32  # the op's outputs are float
    tflite = ssd_postprocess.finalize(conv.convert(), opts)

(or ``convert_int8(model, anchors, opts, representative_dataset)`` for all of
it).  ``finalize`` puts the model outputs in the fixed order
boxes, classes, scores, count (the converter's order is not stable) and checks
the op.  The float reference for verification is
``reference_postprocess(*model(x), anchors, opts)``, a NumPy port of TFLM's kernel.

Tensor contract
---------------
* model: one image input; two of its outputs are the raw SSD heads,
  box encodings ``[1, N, 4]`` as (ty, tx, th, tw) relative to the anchors, and
  class scores ``[1, N, C]`` *after* sigmoid/softmax, where C = num_classes or
  num_classes + 1 (column 0 is then background and is ignored).
* anchors: ``[N, 4]`` float32, (y_center, x_center, height, width), normalized;
  heights/widths > 0.  Decoding: yc = ty / y_scale * ha + ya,
  h = exp(th / h_scale) * ha (the same for x, w).
* outputs, M = max_detections * max_classes_per_detection:
  ``detection_boxes [1, M, 4]`` (ymin, xmin, ymax, xmax),
  ``detection_classes [1, M]`` (class index, background excluded, as float),
  ``detection_scores [1, M]``, ``num_detections [1]`` (float).  Rows at or past
  num_detections are undefined with fast NMS (TFLM leaves them as they were).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CUSTOM_CODE", "OUTPUT_NAMES", "DetectionOptions", "SSDError",
    "detection_function", "tflite_converter", "finalize", "convert_int8",
    "decode_boxes", "reference_postprocess",
]

CUSTOM_CODE = "TFLite_Detection_PostProcess"
OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")


class SSDError(ValueError):
    """The model, anchors or options do not fit the detection post-processing (one line)."""


@dataclass(frozen=True)
class DetectionOptions:
    """The op's attributes (names as in TFLite's kernel)."""

    num_classes: int                      # real classes, background excluded
    max_detections: int = 10
    max_classes_per_detection: int = 1    # must be 1: see __post_init__
    detections_per_class: int = 100       # regular NMS only; fixed (see __post_init__)
    nms_score_threshold: float = 0.5
    nms_iou_threshold: float = 0.5
    y_scale: float = 10.0
    x_scale: float = 10.0
    h_scale: float = 5.0
    w_scale: float = 5.0
    use_regular_nms: bool = False

    def __post_init__(self):
        if self.num_classes < 1:
            raise SSDError("num_classes must be at least 1")
        if self.max_detections < 1:
            raise SSDError("max_detections must be at least 1")
        if self.max_classes_per_detection != 1:
            # TFLM's fast-NMS loop advances its output row once per class as well as
            # per box and writes past the outputs for values > 1 (memory corruption).
            raise SSDError("max_classes_per_detection must be 1 (TFLM's kernel writes out of "
                           "bounds for larger values)")
        if self.detections_per_class != 100:
            # the converter writes only the ten other attributes into the custom
            # options; the kernel then uses its default of 100
            raise SSDError("detections_per_class must be 100 (the converter does not pass it "
                           "on; TFLM's kernel then uses 100)")
        if not 0.0 < self.nms_iou_threshold <= 1.0:
            raise SSDError("nms_iou_threshold must be in (0, 1] (TFLM checks it)")
        if min(self.y_scale, self.x_scale, self.h_scale, self.w_scale) <= 0:
            raise SSDError("y/x/h/w scales must be positive")

    @property
    def num_outputs(self) -> int:
        """M: rows of the boxes/classes/scores outputs (what TFLite's kernel allocates)."""
        return self.max_detections * self.max_classes_per_detection

    def implements_signature(self) -> str:
        """The ``experimental_implements`` text (a NameAttrList proto in text form)."""
        ints = {"max_detections": self.max_detections,
                "max_classes_per_detection": self.max_classes_per_detection,
                "detections_per_class": self.detections_per_class,
                "num_classes": self.num_classes}
        floats = {"nms_score_threshold": self.nms_score_threshold,
                  "nms_iou_threshold": self.nms_iou_threshold,
                  "y_scale": self.y_scale, "x_scale": self.x_scale,
                  "h_scale": self.h_scale, "w_scale": self.w_scale}
        parts = [f'name: "{CUSTOM_CODE}"']
        parts += [f'attr {{ key: "{k}" value {{ i: {int(v)} }} }}' for k, v in ints.items()]
        parts += [f'attr {{ key: "{k}" value {{ f: {float(v)!r} }} }}' for k, v in floats.items()]
        parts.append('attr { key: "use_regular_nms" value { b: %s } }'
                     % ("true" if self.use_regular_nms else "false"))
        return " ".join(parts)


# ---------------------------------------------------------------------------
# the TF side


def _check_anchors(anchors, num_boxes: int | None) -> np.ndarray:
    a = np.asarray(anchors, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] != 4:
        raise SSDError(f"anchors must have shape [N, 4] (y, x, h, w), got {list(a.shape)}")
    if num_boxes is not None and a.shape[0] != num_boxes:
        raise SSDError(f"{a.shape[0]} anchors for {num_boxes} predicted boxes")
    if not np.all(np.isfinite(a)) or np.any(a[:, 2:] <= 0):
        raise SSDError("anchor heights and widths must be finite and positive "
                       "(TFLM rejects empty decoded boxes)")
    return a


def _heads(model, outputs: tuple[int, int], options: DetectionOptions):
    outs = list(model.outputs)
    try:
        box_t, cls_t = outs[outputs[0]], outs[outputs[1]]
    except IndexError:
        raise SSDError(f"model has {len(outs)} outputs; box/class outputs {outputs} "
                       "do not exist") from None
    b, c = tuple(box_t.shape), tuple(cls_t.shape)
    if len(b) != 3 or b[2] != 4:
        raise SSDError(f"box encodings output must be [1, N, 4], got {list(b)}")
    if len(c) != 3 or c[1] != b[1]:
        raise SSDError(f"class scores output must be [1, N, C] with N = {b[1]}, got {list(c)}")
    if c[2] not in (options.num_classes, options.num_classes + 1):
        raise SSDError(f"class scores have {c[2]} columns; num_classes={options.num_classes} "
                       "needs num_classes or num_classes + 1 (background first)")
    if b[1] is None:
        raise SSDError("the number of boxes N must be static")
    return int(b[1]), len(outs)


def detection_function(model, anchors, options: DetectionOptions,
                       outputs: tuple[int, int] = (0, 1), batch: int = 1):
    """``(concrete_function, trackable)``: image -> (boxes, classes, scores, count).

    The network is traced with a fixed batch (1) and frozen to constants; its
    box/class outputs (indices ``outputs`` into ``model.outputs``) and the
    constant anchors feed the composite stub that the converter replaces with
    the custom op.  Pass both to ``TFLiteConverter.from_concrete_functions([cf],
    trackable)`` with the default SavedModel lowering (or use :func:`tflite_converter`).
    In TF (not TFLite) the function returns zeros: it is for conversion only.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from . import keras_compat
    if keras_compat.needs_legacy_conversion(model):
        raise SSDError("detectors with recurrent layers are not supported")
    num_boxes, n_out = _heads(model, outputs, options)
    anchors = _check_anchors(anchors, num_boxes)
    if len(model.inputs) != 1:
        raise SSDError(f"a detector takes one image input, this model has {len(model.inputs)}")

    net = keras_compat.concrete_function_for(model, batch)
    frozen = convert_variables_to_constants_v2(net)
    m = options.num_outputs

    @tf.function(experimental_implements=options.implements_signature())
    def detection_postprocess(box_encodings, class_predictions, anchor_boxes):
        # placeholder body with the real static shapes (TFLM cannot resize outputs)
        return (tf.zeros([1, m, 4], tf.float32), tf.zeros([1, m], tf.float32),
                tf.zeros([1, m], tf.float32), tf.zeros([1], tf.float32))

    spec = net.structured_input_signature[0][0]

    def detect(image):
        raw = frozen(image)
        raw = raw if isinstance(raw, (list, tuple)) else [raw]
        if len(raw) != n_out:
            raise SSDError("the frozen network returned an unexpected number of outputs")
        box = tf.cast(raw[outputs[0]], tf.float32)
        cls = tf.cast(raw[outputs[1]], tf.float32)
        return detection_postprocess(box, cls, tf.constant(anchors))

    fn = tf.function(detect, input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name="image")])
    holder = tf.Module()
    holder.detect = fn
    holder.postprocess = detection_postprocess
    return fn.get_concrete_function(), holder


def tflite_converter(model, anchors, options: DetectionOptions,
                     outputs: tuple[int, int] = (0, 1), batch: int = 1):
    """A TFLiteConverter for the detector + custom op; the caller sets quantization.

    Use ``inference_input_type = tf.int8`` and ``inference_output_type =
    tf.float32`` (the op's outputs are float), then run :func:`finalize` on the bytes.
    """
    import tensorflow as tf
    cf, holder = detection_function(model, anchors, options, outputs, batch)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], holder)
    conv.allow_custom_ops = True
    conv._tinygen_holder = holder   # keep the functions alive with the converter
    return conv


def convert_int8(model, anchors, options: DetectionOptions, representative_dataset,
                 outputs: tuple[int, int] = (0, 1)) -> bytes:
    """int8 backbone + float TFLite_Detection_PostProcess, finalized (see module doc)."""
    import tensorflow as tf

    from .. import tfenv
    conv = tflite_converter(model, anchors, options, outputs)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.float32
    with tfenv.quiet():
        tflite = conv.convert()
    return finalize(tflite, options)


# ---------------------------------------------------------------------------
# after conversion


def finalize(tflite: bytes, options: DetectionOptions | None = None) -> bytes:
    """Check the custom op and order the model outputs boxes, classes, scores, count.

    The converter emits the outputs in an order that depends on tensor names;
    the subgraph's output vector is rewritten in place (same length, so nothing
    else in the flatbuffer moves).  Raises SSDError if the op is missing, is not
    fed by the model's last op, or has wrong shapes.
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    buf = bytearray(tflite)
    model = fb.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() < 1:
        raise SSDError("the model has no subgraph")
    sg = model.Subgraphs(0)
    post = None
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        if (code.CustomCode() or b"").decode() == CUSTOM_CODE:
            if post is not None:
                raise SSDError(f"more than one {CUSTOM_CODE} op")
            post = op
    if post is None:
        raise SSDError(f"the converted model has no {CUSTOM_CODE} op (the composite function "
                       "was inlined: convert through the SavedModel route)")
    op_outputs = [int(post.Outputs(i)) for i in range(post.OutputsLength())]
    if len(op_outputs) != 4 or post.InputsLength() != 3:
        raise SSDError(f"{CUSTOM_CODE} must have 3 inputs and 4 outputs")
    for i in range(3):
        t = sg.Tensors(post.Inputs(i))
        if t.Type() != fb.TensorType.FLOAT32:
            raise SSDError(f"{CUSTOM_CODE} input {i} is not float32 (TFLM needs float inputs)")
    if options is not None:
        m = options.num_outputs
        want = [(1, m, 4), (1, m), (1, m), (1,)]
        got = [tuple(int(d) for d in sg.Tensors(t).ShapeAsNumpy()) for t in op_outputs]
        if got != want:
            raise SSDError(f"{CUSTOM_CODE} output shapes {got}, expected {want}")
    current = [int(sg.Outputs(i)) for i in range(sg.OutputsLength())]
    if sorted(current) != sorted(op_outputs):
        raise SSDError("the model outputs are not exactly the post-processing outputs")
    pos = sg._tab.Vector(sg._tab.Offset(8))       # SubGraph.outputs (field 2)
    np.frombuffer(buf, dtype="<i4", count=4, offset=pos)[:] = op_outputs
    return bytes(buf)


# ---------------------------------------------------------------------------
# NumPy reference of TFLM's kernel (float reference for verification)


def decode_boxes(box_encodings, anchors, options: DetectionOptions) -> np.ndarray:
    """[N, 4] encodings + anchors -> [N, 4] (ymin, xmin, ymax, xmax), as the kernel does."""
    e = np.asarray(box_encodings, np.float32).reshape(-1, 4).astype(np.float64)
    a = np.asarray(anchors, np.float32).reshape(-1, 4).astype(np.float64)
    yc = (e[:, 0] / options.y_scale * a[:, 2] + a[:, 0]).astype(np.float32)
    xc = (e[:, 1] / options.x_scale * a[:, 3] + a[:, 1]).astype(np.float32)
    hh = (0.5 * np.exp(e[:, 2] / options.h_scale) * a[:, 2]).astype(np.float32)
    hw = (0.5 * np.exp(e[:, 3] / options.w_scale) * a[:, 3]).astype(np.float32)
    return np.stack([yc - hh, xc - hw, yc + hh, xc + hw], axis=1).astype(np.float32)


def _iou(boxes: np.ndarray, i: int, j: int) -> np.float32:
    bi, bj = boxes[i], boxes[j]
    area_i = (bi[2] - bi[0]) * (bi[3] - bi[1])
    area_j = (bj[2] - bj[0]) * (bj[3] - bj[1])
    if area_i <= 0 or area_j <= 0:
        return np.float32(0.0)
    inter = (max(min(bi[2], bj[2]) - max(bi[0], bj[0]), np.float32(0))
             * max(min(bi[3], bj[3]) - max(bi[1], bj[1]), np.float32(0)))
    return np.float32(inter / (area_i + area_j - inter))


def _desc_order(values: np.ndarray) -> np.ndarray:
    """Indices by decreasing value, ties by increasing index (the kernel's sorts)."""
    idx = np.arange(len(values))
    return np.lexsort((idx, -values.astype(np.float64)))


def _nms_single(boxes, scores, options: DetectionOptions, max_detections: int) -> list[int]:
    keep = np.nonzero(scores >= np.float32(options.nms_score_threshold))[0]
    order = keep[_desc_order(scores[keep])]
    out_size = min(len(keep), max_detections)
    active = np.ones(len(order), bool)
    selected: list[int] = []
    thr = np.float32(options.nms_iou_threshold)
    for i in range(len(order)):
        if not active.any() or len(selected) >= out_size:
            break
        if not active[i]:
            continue
        selected.append(int(order[i]))
        active[i] = False
        for j in range(i + 1, len(order)):
            if active[j] and _iou(boxes, order[i], order[j]) > thr:
                active[j] = False
    return selected


def reference_postprocess(box_encodings, class_scores, anchors, options: DetectionOptions):
    """(boxes [1,M,4], classes [1,M], scores [1,M], count [1]) like TFLM's kernel.

    Inputs as the op gets them: [1, N, 4] encodings, [1, N, C] scores, [N, 4]
    anchors.  Rows past the count are zero here (undefined on TFLM with fast NMS).
    """
    enc = np.asarray(box_encodings, np.float32).reshape(-1, 4)
    sc = np.asarray(class_scores, np.float32)
    n = enc.shape[0]
    sc = sc.reshape(n, -1)
    ncwb = sc.shape[1]
    offset = ncwb - options.num_classes
    if offset not in (0, 1):
        raise SSDError(f"class scores have {ncwb} columns for num_classes={options.num_classes}")
    boxes = decode_boxes(enc, _check_anchors(anchors, n), options)
    if np.any(boxes[:, 0] >= boxes[:, 2]) or np.any(boxes[:, 1] >= boxes[:, 3]):
        raise SSDError("a decoded box is empty (TFLM's kernel fails on it)")
    m = options.num_outputs
    out_boxes = np.zeros((1, m, 4), np.float32)
    out_classes = np.zeros((1, m), np.float32)
    out_scores = np.zeros((1, m), np.float32)
    cls_scores = sc[:, offset:]

    if not options.use_regular_nms:
        per_anchor = min(options.max_classes_per_detection, options.num_classes)
        class_order = np.stack([_desc_order(row)[:per_anchor] for row in cls_scores])
        max_scores = cls_scores[np.arange(n), class_order[:, 0]]
        selected = _nms_single(boxes, max_scores, options, options.max_detections)
        k = 0
        for s in selected:
            for col in range(per_anchor):
                out_boxes[0, k] = boxes[s]
                out_classes[0, k] = class_order[s, col]
                out_scores[0, k] = cls_scores[s, class_order[s, col]]
                k += 1
        return out_boxes, out_classes, out_scores, np.array([k], np.float32)

    kept_idx: list[int] = []      # flat index anchor * ncwb + col + offset
    kept_sc: list[np.float32] = []
    for col in range(options.num_classes):
        col_scores = cls_scores[:, col]
        sel = _nms_single(boxes, col_scores, options, options.detections_per_class)
        idx = kept_idx + [s * ncwb + col + offset for s in sel]
        vals = kept_sc + [col_scores[s] for s in sel]
        order = _desc_order(np.asarray(vals, np.float32))[:min(len(idx), options.max_detections)]
        kept_idx = [idx[o] for o in order]
        kept_sc = [vals[o] for o in order]
    for k, (flat, s) in enumerate(zip(kept_idx, kept_sc)):
        anchor = flat // ncwb
        out_boxes[0, k] = boxes[anchor]
        out_classes[0, k] = flat - anchor * ncwb - offset
        out_scores[0, k] = s
    return out_boxes, out_classes, out_scores, np.array([len(kept_idx)], np.float32)
