#!/usr/bin/env python3
"""Write the seed corpus of py_fuzz.py (tests/fuzz/py_corpus/).

Each seed is a valid input of one target, so mutations start from files
that get past the first checks: small .tflite models of the ops tinygen
supports (built with the schema object API, plus one from the Keras
converter when --converted MODEL.tflite is given), FlexBuffers as the
converter writes custom options, and .npy/.npz files as users save them.
Byte 0 selects the target and its variant (see py_fuzz.py).

    python3 tests/fuzz/make_py_corpus.py [--converted quickstart.int8.tflite]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from flatbuffers import flexbuffers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "aot"))
sys.path.insert(0, str(HERE))

import py_fuzz  # noqa: E402
import tflite_builder as tb  # noqa: E402
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema  # noqa: E402

OUT = HERE / "py_corpus"
TFLITE, FLEX, NPY, NPZ = range(4)


def selector(target: int, variant: int = 0) -> bytes:
    return bytes([(variant << 2) | target])


def _opts(name, **fields):
    o = getattr(schema, name + "T")()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


def detection_options_map(float_width=0) -> bytes:
    b = flexbuffers.Builder()
    with b.Map():
        for k, v in dict(max_detections=10, max_classes_per_detection=1, num_classes=3,
                         nms_score_threshold=0.3, nms_iou_threshold=0.6, y_scale=10.0,
                         x_scale=10.0, h_scale=5.0, w_scale=5.0, use_regular_nms=False,
                         detections_per_class=20).items():
            if isinstance(v, bool):
                b.Bool(k, v)
            elif isinstance(v, int):
                b.Int(k, v)
            else:
                b.Float(k, v, float_width)
    return bytes(b.Finish())


def models() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    tb.OPTION_TABLES.setdefault("STRIDED_SLICE", "StridedSliceOptions")
    out = {
        "conv": tb.conv2d_model(rng, h=6, w=6, cin=2, cout=3, stride=(2, 1)),
        "depthwise": tb.depthwise_model(rng, h=5, w=5, cin=2, depth_multiplier=2),
        "fc": tb.fully_connected_model(rng, depth=6, units=3),
        "pool": tb.pool_model(rng, kind="AVERAGE_POOL_2D", h=4, w=4, c=2),
    }

    b = tb.GraphBuilder("ops")
    x = b.activation((1, 4, 4, 2), scale=0.1)
    y = b.activation((1, 1, 1, 2), scale=0.1)
    s = b.activation((1, 4, 4, 2), scale=0.2)
    b.op("ADD", [x, y], [s], _opts("AddOptions"))
    p = b.constant(np.asarray([[0, 0], [1, 0], [0, 1], [0, 0]], np.int32), "int32")
    padded = b.activation((1, 5, 5, 2), scale=0.2)
    b.op("PAD", [s, p], [padded], _opts("PadOptions"))
    cat = b.activation((1, 5, 5, 4), scale=0.2)
    b.op("CONCATENATION", [padded, padded], [cat], _opts("ConcatenationOptions", axis=3))
    axes = b.constant(np.asarray([1, 2], np.int32), "int32")
    mean = b.activation((1, 4), scale=0.2)
    b.op("MEAN", [cat, axes], [mean], _opts("ReducerOptions", keepDims=False))
    begin = b.constant(np.asarray([0, 1], np.int32), "int32")
    end = b.constant(np.asarray([1, 4], np.int32), "int32")
    strides = b.constant(np.asarray([1, 2], np.int32), "int32")
    sl = b.activation((1, 2), scale=0.2)
    b.op("STRIDED_SLICE", [mean, begin, end, strides], [sl],
         _opts("StridedSliceOptions", beginMask=1), version=2)
    sm = b.activation((1, 2), scale=1 / 256, zero_point=-128)
    b.op("SOFTMAX", [sl], [sm], _opts("SoftmaxOptions", beta=1.0))
    out["ops"] = b.build([x, y], [sm])

    # shape-changing ops the consistency check infers
    for op, table in (("TRANSPOSE", "TransposeOptions"), ("GATHER", "GatherOptions"),
                      ("SPLIT", "SplitOptions"), ("PACK", "PackOptions"),
                      ("UNPACK", "UnpackOptions"), ("SLICE", "SliceOptions"),
                      ("RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighborOptions")):
        tb.OPTION_TABLES.setdefault(op, table)
    b = tb.GraphBuilder("ops2")
    x = b.activation((1, 4, 6, 2), scale=0.1)
    perm = b.constant(np.asarray([0, 2, 1, 3], np.int32), "int32")
    xt = b.activation((1, 6, 4, 2), scale=0.1)
    b.op("TRANSPOSE", [x, perm], [xt], _opts("TransposeOptions"))
    size = b.constant(np.asarray([12, 8], np.int32), "int32")
    up = b.activation((1, 12, 8, 2), scale=0.1)
    b.op("RESIZE_NEAREST_NEIGHBOR", [xt, size], [up], _opts("ResizeNearestNeighborOptions"))
    axis = b.constant(np.asarray([1], np.int32), "int32")
    halves = [b.activation((1, 6, 8, 2), scale=0.1) for _ in range(2)]
    b.op("SPLIT", [axis, up], halves, _opts("SplitOptions", numSplits=2))
    packed = b.activation((2, 1, 6, 8, 2), scale=0.1)
    b.op("PACK", halves, [packed], _opts("PackOptions", valuesCount=2, axis=0))
    rows = [b.activation((1, 6, 8, 2), scale=0.1) for _ in range(2)]
    b.op("UNPACK", [packed], rows, _opts("UnpackOptions", num=2, axis=0))
    begin = b.constant(np.asarray([0, 1, 2, 0], np.int32), "int32")
    sizes = b.constant(np.asarray([1, 4, -1, 2], np.int32), "int32")
    sl = b.activation((1, 4, 6, 2), scale=0.1)
    b.op("SLICE", [rows[1], begin, sizes], [sl], _opts("SliceOptions"))
    idx = b.constant(np.asarray([3, 0, 1], np.int32), "int32")
    gathered = b.activation((1, 4, 3, 2), scale=0.1)
    b.op("GATHER", [sl, idx], [gathered], _opts("GatherOptions", axis=2))
    out["ops2"] = b.build([x], [gathered, rows[0]])

    # a custom op with FlexBuffer options, as SSD detectors end
    b = tb.GraphBuilder("detector")
    qboxes = b.activation((1, 6, 4), scale=0.05)
    qscores = b.activation((1, 6, 3), scale=1 / 256, zero_point=-128)
    boxes = b.activation((1, 6, 4), dtype="float32")
    scores = b.activation((1, 6, 3), dtype="float32")
    b.op("DEQUANTIZE", [qboxes], [boxes])
    b.op("DEQUANTIZE", [qscores], [scores])
    anchors = b.constant(rng.random((6, 4)).astype(np.float32), "float32")
    outs = [b.activation((1, 10, 4), dtype="float32"), b.activation((1, 10), dtype="float32"),
            b.activation((1, 10), dtype="float32"), b.activation((1,), dtype="float32")]
    oc = schema.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    oc.customCode = "TFLite_Detection_PostProcess"
    oc.version = 1
    b.opcode_list.append(oc)
    o = schema.OperatorT()
    o.opcodeIndex = len(b.opcode_list) - 1
    o.inputs, o.outputs = [boxes, scores, anchors], outs
    o.customOptions = list(detection_options_map())
    b.operators.append(o)
    out["detector"] = b.build([qboxes, qscores], outs)
    return out


def flexbuffers_seeds() -> dict[str, bytes]:
    out = {"detection-f32": detection_options_map(4), "detection-f64": detection_options_map(8)}
    b = flexbuffers.Builder()
    with b.Map():
        b.String("name", "tinygen")
        b.Blob("blob", b"\x00\x01\x02")
        with b.Vector("mixed"):
            b.Int(-5)
            b.Float(2.5)
            b.Bool(True)
            b.Null()
        b.TypedVectorFromElements("ints", [1, 2, 3])
        b.FixedTypedVectorFromElements("floats3", [1.0, 2.0, 3.0])
        with b.Map("inner"):
            b.UInt("u", 1 << 40)
    out["nested"] = bytes(b.Finish())
    out["list"] = bytes(flexbuffers.Dumps([1, "two", 3.0, [4, 5], {"six": 6}]))
    return out


def npy(arr, allow_pickle=False) -> bytes:
    f = io.BytesIO()
    np.save(f, arr, allow_pickle=allow_pickle)
    return f.getvalue()


def npz(compressed=False, **arrays) -> bytes:
    f = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(f, **arrays)
    return f.getvalue()


def samples() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    f32 = rng.standard_normal((6, 4)).astype(np.float32)
    nan = f32.copy()
    nan[2, 1] = np.nan
    # variant picks the model's input shapes (py_fuzz._SHAPES); +8 int8 test data; +16 drop
    return {
        "npy-float32": selector(NPY, 0) + npy(f32),
        "npy-one-sample": selector(NPY, 0) + npy(f32[0]),
        "npy-float64": selector(NPY, 0) + npy(f32.astype(np.float64)),
        "npy-int8-data": selector(NPY, 8) + npy(rng.integers(-128, 128, (3, 4), dtype=np.int8)),
        "npy-int64": selector(NPY, 0) + npy(np.arange(12, dtype=np.int64).reshape(3, 4)),
        "npy-nan-dropped": selector(NPY, 16) + npy(nan),
        "npy-image": selector(NPY, 1) + npy(rng.random((2, 16, 16, 1), dtype=np.float32)),
        "npy-fortran": selector(NPY, 2) + npy(np.asfortranarray(rng.random((2, 3, 2)))),
        "npy-object": selector(NPY, 0) + npy(np.array([1, "a"], dtype=object), allow_pickle=True),
        "npy-structured": selector(NPY, 0) + npy(np.zeros(3, dtype=[("a", "<f4"), ("b", "<i2")])),
        "npz-x-y": selector(NPZ, 0) + npz(x=f32, y=np.arange(6)),
        "npz-two-inputs": selector(NPZ, 4) + npz(a=f32, b=rng.random((6, 3, 2)).astype(np.float32)),
        "npz-compressed": selector(NPZ, 3, ) + npz(True, x=rng.random((4, 10)).astype(np.float32)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--converted", metavar="TFLITE", help="a .tflite from the Keras converter to add")
    args = p.parse_args()
    OUT.mkdir(exist_ok=True)
    seeds = {f"tflite-{k}": selector(TFLITE) + v for k, v in models().items()}
    seeds.update({f"flex-{k}": selector(FLEX) + v for k, v in flexbuffers_seeds().items()})
    seeds["flex-detection-options"] = selector(FLEX, 1) + detection_options_map()
    seeds.update(samples())
    if args.converted:
        seeds["tflite-converted"] = selector(TFLITE) + Path(args.converted).read_bytes()
    elif (OUT / "tflite-converted").exists():
        seeds["tflite-converted"] = (OUT / "tflite-converted").read_bytes()
    for old in OUT.iterdir():
        if old.name not in seeds:
            old.unlink()
    for name, data in sorted(seeds.items()):
        (OUT / name).write_bytes(data)
        print(f"{name:28} {len(data):7} bytes  {py_fuzz.run_one(data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
