"""mAP@0.5 of the example detector on the held-out set, float vs int8.

    python examples/mobilenet_ssd/evaluate.py          # writes results.json

float: the Keras model's heads + tinygen.convert.ssd_postprocess.reference_postprocess
       (a NumPy port of TFLM's TFLite_Detection_PostProcess kernel);
int8:  the .tflite tinygen converts with --calib calib.npy --detection ssd.json,
       run on the TFLM interpreter (tinygen.reference.TflmReference), input
       quantized with tinygen.convert.quantize; its outputs are the float
       boxes, classes, scores and count of the post-processing op.
Both use the score/IoU thresholds and max_detections of ssd.json.  AP is
VOC-style (all-point interpolation) per class, mAP the mean over the classes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))         # tinygen from this checkout

import make_data  # noqa: E402
import ssd_utils  # noqa: E402


def rows(boxes, classes, scores, count):
    """The defined detections of one op output: (boxes [k, 4], classes [k], scores [k])."""
    k = int(np.asarray(count).reshape(-1)[0])
    return (np.asarray(boxes).reshape(-1, 4)[:k], np.asarray(classes).reshape(-1)[:k],
            np.asarray(scores).reshape(-1)[:k])


def float_detections(model, x, anchors, opts, batch: int = 50):
    from tinygen.convert import ssd_postprocess as sp
    dets = []
    for i in range(0, len(x), batch):
        box, cls = model.predict(x[i:i + batch].astype(np.float32), verbose=0)
        for j in range(len(box)):
            dets.append(rows(*sp.reference_postprocess(box[j:j + 1], cls[j:j + 1], anchors, opts)))
    return dets


def int8_detections(tflite: bytes, ir, x):
    from tinygen.convert import quantize
    from tinygen.reference import TflmReference
    ref = TflmReference(tflite)
    tin = ir.input_tensors()[0]
    return [rows(*ref.run([quantize(img[None].astype(np.float32), tin)])) for img in x]


def summarize(dets, gt, num_classes):
    m, aps = ssd_utils.mean_average_precision(dets, gt, num_classes)
    return {"map50": round(m, 4),
            "ap50_per_class": {make_data.CLASSES[c]: (None if a is None else round(a, 4))
                               for c, a in enumerate(aps)},
            "detections": int(sum(len(d[0]) for d in dets))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(HERE), help="folder with model.keras, ssd.json, ...")
    ap.add_argument("-o", "--out", default=None, help="results file (default DIR/results.json)")
    ap.add_argument("--tflite", default=None, help="also write the int8 .tflite here")
    ap.add_argument("--verify-json", default=None, metavar="FILE",
                    help="a `tinygen verify --json` report to record next to the mAP")
    args = ap.parse_args(argv)
    d = Path(args.dir)

    import keras

    from tinygen.convert import convert, load_detection_spec
    from tinygen.load import load_model

    anchors, opts, _ = load_detection_spec(d / "ssd.json")
    x = np.load(d / "test.npz")["x"]
    g = np.load(d / "test_gt.npz")
    gt = make_data.ground_truth(g["boxes"], g["classes"], g["count"])

    t0 = time.time()
    model = keras.saving.load_model(d / "model.keras", compile=False)
    fdets = float_detections(model, x, anchors, opts)
    t_float = time.time() - t0

    t0 = time.time()
    conv = convert(load_model(d / "model.keras"), d / "calib.npy", detection=d / "ssd.json")
    t_convert = time.time() - t0
    if args.tflite:
        Path(args.tflite).write_bytes(conv.tflite)
    t0 = time.time()
    qdets = int8_detections(conv.tflite, conv.ir, x)
    t_int8 = time.time() - t0

    same_count = np.mean([len(a[0]) == len(b[0]) for a, b in zip(fdets, qdets)])
    results = {
        "test_images": int(len(x)),
        "objects": int(g["count"].sum()),
        "objects_per_class": {make_data.CLASSES[c]: int(np.sum(g["classes"] == c))
                              for c in range(len(make_data.CLASSES))},
        "postprocess": {"nms_score_threshold": opts.nms_score_threshold,
                        "nms_iou_threshold": opts.nms_iou_threshold,
                        "max_detections": opts.max_detections,
                        "use_regular_nms": opts.use_regular_nms, "anchors": int(len(anchors))},
        "float": summarize(fdets, gt, opts.num_classes),
        "int8": summarize(qdets, gt, opts.num_classes),
        "detection_count_equal_float_vs_int8": round(float(same_count), 4),
        "tflite_bytes": len(conv.tflite),
        "seconds": {"float_inference": round(t_float, 1), "convert": round(t_convert, 1),
                    "int8_tflm_inference": round(t_int8, 1)},
    }
    if args.verify_json:
        v = json.loads(Path(args.verify_json).read_text())
        results["device_verify"] = {
            "board": v["board"], "runtime": v["runtime"], "port": v["port"],
            "vectors": v["vectors"], "bit_exact": v["bit_exact"], "passed": v["passed"],
            "model_signature": v["model_signature"],
            "latency": {k: v["latency"][k] for k in ("unit", "mean", "min", "max")},
            "memory": v["memory"]}
        if v["model_signature"] != conv.ir.signature:
            raise SystemExit(f"{args.verify_json} is the report of another model")
    out = Path(args.out) if args.out else d / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
