"""A front end and a model as one streaming .tflite: raw samples in, the
frame's features and the model's answer out, every stride.

    audio int16 [1, stride] -> SignalFramer (window, stride, prefill) -> RESHAPE [1, window]
      -> the front end's ops -> features int8 [1, channels]              (output 0)
      -> RESHAPE [channels] -> QUANTIZE int16 (same scale: exact)
      -> SignalStacker (frames x channels, left context frames - 1)
      -> QUANTIZE int8 (exact back) -> RESHAPE (the model's input shape)
      -> the model's ops -> the model's outputs                          (outputs 1...)

One graph, so every runtime and the reference run the same thing: the
tflite_micro interpreter invoked once per stride is the pipeline's reference,
the device runs it with TFLM's or tinygen's kernels, and `verify` compares the
features and the answers of every stride.  The framer starts with
window - stride zero samples (prefill), so the first stride already gives a
frame: frame k covers samples [k*stride - (window - stride), k*stride + stride).
The stacker (TFLM's SignalStacker) stands the first frame in for the frames
it has not seen yet, so the model answers from the first stride; from the
`frames`-th stride on, its window holds the last `frames` frames.

The front end says its sample rate and stride in the .tflite's metadata
(`tinygen frontend` writes it); the model's input must take its features
(frames_per_input).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..errors import TinygenError
from ..ir import ModelFormatError, parse_tflite
from .frontend import (
    _TYPES,
    METADATA_NAME,
    _flexbuffer_map,
    feeding_tensors,
    frames_per_input,
)


@dataclass(frozen=True)
class FrontendInfo:
    sample_rate: int
    window_samples: int
    stride_samples: int


def frontend_info(tflite: bytes, what: str = "the front end") -> FrontendInfo:
    """The sample rate, window and stride a front end's metadata records."""
    d = tinygen_metadata(tflite) or {}
    try:
        return FrontendInfo(int(d["sample_rate"]), int(d["window_samples"]),
                            int(d["stride_samples"]))
    except (KeyError, TypeError, ValueError):
        raise TinygenError(f"{what} does not record its sample rate and stride (make it with "
                           "`tinygen frontend`)") from None


def tinygen_metadata(tflite: bytes) -> dict | None:
    """The JSON object tinygen writes into a front end's or pipeline's
    metadata; None for any other graph.  Read from a model the user gave, so
    whatever its bytes are (a damaged buffer index, a name that is not UTF-8,
    a truncated table) the answer is None, never an exception: the checked
    parser in tinygen.ir has already refused what cannot be a model."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    try:
        m = s.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
        for md in m.metadata or []:
            name = md.name.decode(errors="replace") if isinstance(md.name, bytes) else md.name
            if name == METADATA_NAME:
                raw = bytes(np.asarray(m.buffers[md.buffer].data, np.uint8))
                d = json.loads(raw.decode())
                return d if isinstance(d, dict) else None
    except Exception:  # untrusted bytes: the object API raises anything
        return None
    return None


def _parse(tflite: bytes, what: str):
    try:
        return parse_tflite(tflite)
    except ModelFormatError as e:
        raise TinygenError(f"{what}: {e}") from None


def _load(tflite: bytes, what: str):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    try:
        return s, s.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    except Exception:  # untrusted bytes: the object API raises anything
        raise TinygenError(f"{what} is not a readable .tflite (damaged or truncated?)") from None


def pipeline_parts(tflite: bytes) -> dict | None:
    """A pipeline's metadata (op ranges of the front end, the stacking and the
    model); None for other graphs."""
    d = tinygen_metadata(tflite)
    return d if d and d.get("pipeline") else None


class _Join:
    """One .tflite assembled from whole graphs (their tensors, buffers and ops
    appended, operator codes shared) and a few new tensors and ops between them."""

    def __init__(self, s):
        self.s = s
        self.out = s.ModelT()
        self.out.version = 3
        self.out.buffers = [s.BufferT()]
        self.out.operatorCodes = []
        self.tensors: list = []
        self.ops: list = []
        self.codes: dict = {}

    def code_index(self, oc) -> int:
        custom = oc.customCode.decode() if isinstance(oc.customCode, bytes) else oc.customCode
        key = (max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)), custom, int(oc.version))
        if key not in self.codes:
            self.codes[key] = len(self.out.operatorCodes)
            self.out.operatorCodes.append(oc)
        return self.codes[key]

    def take(self, graph, prefix: str) -> int:
        """Append a graph's tensors, buffers and ops; returns its tensor offset."""
        s, out = self.s, self.out
        sg = graph.subgraphs[0]
        t0 = len(self.tensors)
        for t in sg.tensors:
            buf = graph.buffers[t.buffer] if t.buffer < len(graph.buffers) else None
            nb = s.BufferT()
            if buf is not None and buf.data is not None and len(buf.data):
                nb.data = buf.data
            t.buffer = len(out.buffers)
            out.buffers.append(nb)
            name = t.name.decode() if isinstance(t.name, bytes) else t.name
            t.name = f"{prefix}{name}"
            self.tensors.append(t)
        for o in sg.operators:
            o.opcodeIndex = self.code_index(graph.operatorCodes[o.opcodeIndex])
            o.inputs = [i + t0 if i >= 0 else i for i in (o.inputs if o.inputs is not None else [])]
            o.outputs = [i + t0 for i in (o.outputs if o.outputs is not None else [])]
            if o.intermediates is not None:
                o.intermediates = [i + t0 for i in o.intermediates]
            self.ops.append(o)
        return t0

    def tensor(self, name, shape, dtype, data=None, scale=None, zp=0) -> int:
        s = self.s
        t = s.TensorT()
        t.name, t.shape, t.type = name, [int(d) for d in shape], _TYPES[dtype]
        buf = s.BufferT()
        if data is not None:
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8).copy()
        t.buffer = len(self.out.buffers)
        self.out.buffers.append(buf)
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint = [float(scale)], [int(zp)]
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code: str, inputs, outputs, options: dict | None = None) -> None:
        s = self.s
        oc = s.OperatorCodeT()
        if code.startswith("Signal"):
            oc.builtinCode = oc.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
            oc.customCode = code
        else:
            oc.builtinCode = oc.deprecatedBuiltinCode = getattr(s.BuiltinOperator, code)
        oc.version = 1
        o = s.OperatorT()
        o.opcodeIndex = self.code_index(oc)
        o.inputs, o.outputs = list(inputs), list(outputs)
        if options is not None:
            o.customOptions = np.frombuffer(_flexbuffer_map(options), np.uint8).copy()
            o.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
        self.ops.append(o)

    def finish(self, inputs, outputs, name: str, description: str, meta: dict) -> bytes:
        import flatbuffers
        s, out = self.s, self.out
        sg = s.SubGraphT()
        sg.name = name
        sg.tensors, sg.operators = self.tensors, self.ops
        sg.inputs, sg.outputs = list(inputs), list(outputs)
        out.subgraphs = [sg]
        out.description = description
        md = s.MetadataT()
        md.name = METADATA_NAME
        md.buffer = len(out.buffers)
        mb = s.BufferT()
        mb.data = np.frombuffer(json.dumps(meta).encode(), np.uint8).copy()
        out.buffers.append(mb)
        out.metadata = [md]
        b = flatbuffers.Builder(1 << 16)
        b.Finish(out.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def build_pipeline(frontend: bytes, model: bytes,
                   model_every: int = 1) -> tuple[bytes, FrontendInfo, int]:
    """(the pipeline's .tflite, the front end's sample rate/window/stride, frames per
    model input); TinygenError in one line when they do not fit together.
    model_every N: the metadata asks the firmware to run the model's operators
    at every N-th stride only (the front end and the stacker run every stride)."""
    if model_every < 1:
        raise TinygenError(f"--model-every {model_every}: give a whole number of strides, 1 "
                           "or more")
    info = frontend_info(frontend)
    fe_ir, m_ir = _parse(frontend, "the front end"), _parse(model, "the model")
    frames = frames_per_input(fe_ir, m_ir)
    if fe_ir.num_subgraphs != 1 or m_ir.num_subgraphs != 1:
        raise TinygenError("a pipeline joins single-subgraph graphs; the model has "
                           f"{m_ir.num_subgraphs} subgraphs")
    fe_in = fe_ir.input_tensors()[0]
    if fe_in.dtype != "int16" or [int(d) for d in fe_in.shape] != [1, info.window_samples]:
        raise TinygenError(f"the front end's input is {fe_in.dtype} {list(fe_in.shape)}; a "
                           f"pipeline needs int16 [1, {info.window_samples}]")
    feat = fe_ir.output_tensors()[0]
    ch = int(np.prod(feat.shape))

    s, fe = _load(frontend, "the front end")
    _, mm = _load(model, "the model")
    j = _Join(s)
    take, new_tensor, new_op, tensors, ops = j.take, j.tensor, j.op, j.tensors, j.ops

    # samples -> frame
    audio = new_tensor("audio", [1, info.stride_samples], "int16")
    frame = new_tensor("frame", [1, 1, info.window_samples], "int16")
    frame_valid = new_tensor("frame_valid", [], "bool")
    new_op("SignalFramer", [audio], [frame, frame_valid],
           {"frame_size": info.window_samples, "frame_step": info.stride_samples,
            "prefill": True})
    frame_shape = new_tensor("frame_shape", [2], "int32",
                             np.array([1, info.window_samples], np.int32))
    fe0 = len(tensors)       # where take() puts the front end's tensors
    new_op("RESHAPE", [frame, frame_shape], [fe0 + fe_ir.inputs[0]])
    take(fe, "frontend/")
    features = fe0 + fe_ir.outputs[0]
    stacking_start = len(ops)
    # features -> the model's window (int16 only for SignalStacker: exact round trip)
    flat8 = new_tensor("features_flat", [ch], "int8", scale=feat.scale, zp=feat.zero_point)
    new_op("RESHAPE", [features, new_tensor("features_shape", [1], "int32",
                                            np.array([ch], np.int32))], [flat8])
    flat16 = new_tensor("features_int16", [ch], "int16", scale=feat.scale, zp=feat.zero_point)
    new_op("QUANTIZE", [flat8], [flat16])
    stacked16 = new_tensor("window_int16", [frames * ch], "int16", scale=feat.scale,
                           zp=feat.zero_point)
    window_valid = new_tensor("window_valid", [], "bool")
    new_op("SignalStacker", [flat16], [stacked16, window_valid],
           {"num_channels": ch, "stacker_left_context": frames - 1,
            "stacker_right_context": 0, "stacker_step": 1})
    stacked8 = new_tensor("window", [frames * ch], "int8", scale=feat.scale, zp=feat.zero_point)
    new_op("QUANTIZE", [stacked16], [stacked8])
    in_shape = [int(d) for d in m_ir.input_tensors()[0].shape]
    window_shape = new_tensor("window_shape", [len(in_shape)], "int32",
                              np.array(in_shape, np.int32))
    m0 = len(tensors)        # where take() puts the model's tensors
    new_op("RESHAPE", [stacked8, window_shape], [m0 + m_ir.inputs[0]])
    model_start = len(ops)
    take(mm, "model/")
    ops_model_outputs = [m0 + i for i in m_ir.outputs]

    desc = (f"tinygen pipeline: {info.sample_rate} Hz, {info.stride_samples} samples per "
            f"stride, window of {info.window_samples}; {frames} frames x {ch} features")
    meta = dict(sample_rate=info.sample_rate, window_samples=info.window_samples,
                stride_samples=info.stride_samples, frames=frames, channels=ch, pipeline=True,
                # operator index ranges [start, end): what each part costs on the device
                frontend_ops=[0, stacking_start], stacking_ops=[stacking_start, model_start],
                model_ops=[model_start, len(ops)], model_every=model_every)
    joined = j.finish([audio], [features] + ops_model_outputs, "pipeline", desc, meta)
    return joined, info, frames


# ---------------------------------------------------------------------------
# camera front ends: one frame in, one answer out


@dataclass(frozen=True)
class ImageInfo:
    frame_width: int
    frame_height: int
    pixel_format: str
    bytes_per_pixel: int


def image_frontend_info(tflite: bytes) -> ImageInfo | None:
    """The frame a camera front end (or its pipeline) takes; None for other graphs."""
    d = tinygen_metadata(tflite)
    if not d or not d.get("image"):
        return None
    try:
        return ImageInfo(int(d["frame_width"]), int(d["frame_height"]), str(d["pixel_format"]),
                         int(d["bytes_per_pixel"]))
    except (KeyError, TypeError, ValueError):
        return None


def check_image_fits(frontend, model) -> None:
    """TinygenError, one line naming what differs, when the front end's image
    cannot be the model's input as it is."""
    f, m, fd, md = feeding_tensors(frontend, model, "the image")
    what = f"the front end's image {fd} does not fit {md}"
    fix = "make the front end with `tinygen frontend --image --model MODEL.tflite`"
    if f.dtype != m.dtype:
        raise TinygenError(f"{what}: type {f.dtype} vs {m.dtype}")
    if [int(d) for d in f.shape] != [int(d) for d in m.shape]:
        raise TinygenError(f"{what}: shape {list(f.shape)} vs {list(m.shape)} ({fix})")
    if f.scale != m.scale and abs(f.scale - m.scale) > 1e-6 * max(abs(m.scale), 1e-30):
        raise TinygenError(f"{what}: scale {f.scale:.6g} vs {m.scale:.6g} ({fix}, or "
                           f"--out-scale {m.scale:.9g})")
    if f.zero_point != m.zero_point:
        raise TinygenError(f"{what}: zero point {f.zero_point} vs {m.zero_point} ({fix}, or "
                           f"--out-zero-point {m.zero_point})")


def build_image_pipeline(frontend: bytes, model: bytes) -> tuple[bytes, ImageInfo]:
    """(frame -> front end -> model as one .tflite, the frame it takes):

        frame uint8 [1, H, W, bytes per pixel] -> the front end's ops -> image  (output 0)
          -> RESHAPE (same shape: a view) -> the model's ops -> its outputs   (outputs 1...)

    TinygenError in one line when they do not fit together."""
    info = image_frontend_info(frontend)
    if info is None:
        raise TinygenError("the front end does not record its frame (make it with "
                           "`tinygen frontend --image`)")
    fe_ir, m_ir = _parse(frontend, "the front end"), _parse(model, "the model")
    if fe_ir.num_subgraphs != 1 or m_ir.num_subgraphs != 1:
        raise TinygenError("a pipeline joins single-subgraph graphs; the model has "
                           f"{m_ir.num_subgraphs} subgraphs")
    check_image_fits(fe_ir, m_ir)
    s, fe = _load(frontend, "the front end")
    _, mm = _load(model, "the model")
    j = _Join(s)
    j.take(fe, "frontend/")
    frame, image = fe_ir.inputs[0], fe_ir.outputs[0]
    shape = [int(d) for d in m_ir.input_tensors()[0].shape]
    image_shape = j.tensor("image_shape", [len(shape)], "int32", np.array(shape, np.int32))
    m0 = len(j.tensors)       # where take() puts the model's tensors
    model_start = len(j.ops)
    # the RESHAPE counts with the model: it is where the model's input comes from
    j.op("RESHAPE", [image, image_shape], [m0 + m_ir.inputs[0]])
    j.take(mm, "model/")
    outputs = [m0 + i for i in m_ir.outputs]
    desc = (f"tinygen pipeline: {info.frame_width}x{info.frame_height} {info.pixel_format} "
            f"frames -> {shape}")
    meta = dict(image=True, pipeline=True, frame_width=info.frame_width,
                frame_height=info.frame_height, pixel_format=info.pixel_format,
                bytes_per_pixel=info.bytes_per_pixel,
                frontend_ops=[0, model_start], model_ops=[model_start, len(j.ops)])
    return j.finish([frame], [image] + outputs, "pipeline", desc, meta), info


def clip_features(frontend: bytes, clip: np.ndarray, reference=None) -> np.ndarray:
    """The int8 features [strides, channels] a pipeline computes for one clip
    streamed from a fresh start: the front end, run in order by the
    tflite_micro interpreter (its noise estimate carried from frame to frame),
    on frame k = samples [k*stride - (window - stride), k*stride + stride),
    zeros before the clip and after it up to a whole stride.  The model's window
    after the clip is the last `frames` rows.  Training on these is training on
    what the device computes."""
    from ..reference import TflmReference
    info = frontend_info(frontend)
    clip = np.asarray(clip)
    if clip.dtype != np.int16 or clip.ndim != 1:
        raise TinygenError(f"a clip is int16 samples [N]; got {clip.dtype} {list(clip.shape)}")
    stride, window = info.stride_samples, info.window_samples
    n = -(-len(clip) // stride) * stride
    padded = np.zeros(window - stride + n, np.int16)
    padded[window - stride:window - stride + len(clip)] = clip
    ref = reference if reference is not None else TflmReference(frontend)
    ref.reset()
    rows = [ref.run([padded[k * stride:k * stride + window][None]])[0].reshape(-1)
            for k in range(n // stride)]
    return np.stack(rows)
