"""Models for the differential acceptance test (tinygen.tools.differential).

Three kinds, each with a stable name so a run can be reproduced and a
finding re-run alone:

* ``built/<name>``: one- or few-operator int8 models written directly as
  flatbuffers (the schema Object API that ships with tflite_micro), with
  unusual but valid parameters: dilations, strides larger than the kernel,
  padding variants, depth multipliers, fused activations TFLM ignores,
  keep_dims, broadcasting, negative axes, per-channel quantization on
  unusual dimensions (a 1-D bias with quantized_dimension 3, as in TFLM's
  person_detect.tflite), ...
* ``zoo/<name>``: the MLPerf Tiny architectures of tinygen.models.zoo at a reduced
  width, converted by tinygen (slow: TensorFlow's converter).
* ``<base>~bytes<seed>`` / ``<base>~struct<seed>``: a base model with bytes
  flipped or truncated, or one field of its structure (an option, a shape,
  a quantization parameter, an operator's input) changed, deterministically
  from the seed; the mutation is described in the case.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Case:
    name: str
    tflite: bytes
    note: str = ""               # how it was made (mutation described here)


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    return schema


# ---------------------------------------------------------------------------
# a small flatbuffer writer

_TYPES = {"float32": 0, "int32": 2, "uint8": 3, "int64": 4, "int16": 7, "int8": 9, "bool": 6}
_NP = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "int64": np.int64,
       "int16": np.int16, "int8": np.int8, "bool": np.bool_}
_OPTIONS = {
    "CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions", "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions", "RESHAPE": "ReshapeOptions", "SOFTMAX": "SoftmaxOptions",
    "ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions",
    "CONCATENATION": "ConcatenationOptions", "MEAN": "ReducerOptions", "SUM": "ReducerOptions",
    "REDUCE_MAX": "ReducerOptions", "PAD": "PadOptions", "SQUEEZE": "SqueezeOptions",
    "STRIDED_SLICE": "StridedSliceOptions", "SPLIT": "SplitOptions", "PACK": "PackOptions",
    "UNPACK": "UnpackOptions", "LEAKY_RELU": "LeakyReluOptions", "TRANSPOSE": "TransposeOptions",
    "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions", "GATHER": "GatherOptions",
}


def _flexbuffer_map(values: dict) -> bytes:
    """A signal op's custom options: a FlexBuffer map of integers (the
    builder sorts the keys, which is the order TFLM reads them in)."""
    from flatbuffers import flexbuffers
    b = flexbuffers.Builder()
    with b.Map():
        for key, value in values.items():
            b.Int(key, int(value))
    return bytes(b.Finish())


class Graph:
    """Tensors and operators of one subgraph, written with the Object API."""

    def __init__(self):
        s = _schema()
        self.s = s
        self.tensors, self.ops, self.codes, self.code_list = [], [], {}, []
        self.buffers = [s.BufferT()]

    def tensor(self, shape, dtype="int8", scale=None, zp=0, axis=0, data=None) -> int:
        s = self.s
        t = s.TensorT()
        t.shape = [int(d) for d in shape]
        t.type = _TYPES[dtype]
        t.name = f"t{len(self.tensors)}"
        buf = s.BufferT()
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data, _NP[dtype]).reshape(shape))
            buf.data = np.frombuffer(arr.tobytes(), np.uint8).copy()
        t.buffer = len(self.buffers)
        self.buffers.append(buf)
        if scale is not None:
            q = s.QuantizationParametersT()
            sc = np.atleast_1d(np.asarray(scale, np.float32))
            z = np.atleast_1d(np.asarray(zp, np.int64))
            if z.size == 1 and sc.size > 1:
                z = np.repeat(z, sc.size)
            q.scale, q.zeroPoint, q.quantizedDimension = [float(v) for v in sc], \
                [int(v) for v in z], int(axis)
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, data, dtype, scale=None, zp=0, axis=0) -> int:
        data = np.asarray(data)
        return self.tensor(data.shape, dtype, scale, zp, axis, data)

    def op(self, opcode: str, inputs, outputs, version: int = 1, **options) -> None:
        s = self.s
        key = (opcode, version)
        custom = opcode.startswith("Signal")    # TFLM's signal library: custom ops
        if key not in self.codes:
            oc = s.OperatorCodeT()
            oc.builtinCode = s.BuiltinOperator.CUSTOM if custom else \
                getattr(s.BuiltinOperator, opcode)
            oc.deprecatedBuiltinCode = min(oc.builtinCode, 127)
            oc.version = version
            if custom:
                oc.customCode = opcode
            self.codes[key] = len(self.code_list)
            self.code_list.append(oc)
        o = s.OperatorT()
        o.opcodeIndex = self.codes[key]
        o.inputs, o.outputs = [int(i) for i in inputs], [int(i) for i in outputs]
        if custom:
            o.customOptions = np.frombuffer(_flexbuffer_map(options), np.uint8).copy()
            o.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
        elif opcode in _OPTIONS:
            table = _OPTIONS[opcode]
            opt = getattr(s, table + "T")()
            for k, v in options.items():
                if not hasattr(opt, k):
                    raise AttributeError(f"{table} has no field {k}")
                setattr(opt, k, v)
            o.builtinOptionsType = getattr(s.BuiltinOptions, table)
            o.builtinOptions = opt
        self.ops.append(o)

    def build(self, inputs, outputs) -> bytes:
        import flatbuffers
        s = self.s
        m = s.ModelT()
        m.version, m.description = 3, "tinygen differential corpus"
        m.buffers, m.operatorCodes = self.buffers, self.code_list
        sg = s.SubGraphT()
        sg.tensors, sg.operators, sg.name = self.tensors, self.ops, "main"
        sg.inputs, sg.outputs = [int(i) for i in inputs], [int(i) for i in outputs]
        m.subgraphs = [sg]
        b = flatbuffers.Builder(4096)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _out(n, k, stride, dil, pad):
    eff = (k - 1) * dil + 1
    return (n + stride - 1) // stride if pad == "SAME" else (n + stride - eff) // stride


_PAD = {"SAME": 0, "VALID": 1}


# ---------------------------------------------------------------------------
# built models


def conv(rng, h=8, w=8, cin=3, cout=4, k=(3, 3), stride=(1, 1), dil=(1, 1), pad="SAME", act=0,
         per_channel=True, bias=True, bias_axis=0, filt_axis=0, n=1, groups=1):
    g = Graph()
    ins = float(np.float32(rng.uniform(0.005, 0.05)))
    x = g.tensor((n, h, w, cin), scale=ins, zp=int(rng.integers(-128, 128)))
    ws = rng.uniform(0.002, 0.02, cout if per_channel else 1).astype(np.float32)
    wt = g.const(rng.integers(-127, 128, (cout, k[0], k[1], cin // groups)), "int8", ws, 0,
                 filt_axis)
    bt = g.const(rng.integers(-5000, 5000, cout), "int32",
                 (ins * np.broadcast_to(ws, (cout,))).astype(np.float32), 0, bias_axis) \
        if bias else -1
    oh, ow = _out(h, k[0], stride[0], dil[0], pad), _out(w, k[1], stride[1], dil[1], pad)
    y = g.tensor((n, oh, ow, cout), scale=float(np.mean(ws)) * ins * 40 * k[0] * k[1],
                 zp=int(rng.integers(-20, 20)))
    g.op("CONV_2D", [x, wt, bt], [y], 3, padding=_PAD[pad], strideH=stride[0], strideW=stride[1],
         dilationHFactor=dil[0], dilationWFactor=dil[1], fusedActivationFunction=act)
    return g.build([x], [y])


def depthwise(rng, h=8, w=8, cin=3, mult=1, k=(3, 3), stride=(1, 1), dil=(1, 1), pad="SAME",
              act=0, bias_axis=0, filt_axis=3):
    g = Graph()
    cout = cin * mult
    ins = float(np.float32(rng.uniform(0.005, 0.05)))
    x = g.tensor((1, h, w, cin), scale=ins, zp=int(rng.integers(-128, 128)))
    ws = rng.uniform(0.002, 0.02, cout).astype(np.float32)
    wt = g.const(rng.integers(-127, 128, (1, k[0], k[1], cout)), "int8", ws, 0, filt_axis)
    bt = g.const(rng.integers(-5000, 5000, cout), "int32", (ins * ws).astype(np.float32), 0,
                 bias_axis)
    oh, ow = _out(h, k[0], stride[0], dil[0], pad), _out(w, k[1], stride[1], dil[1], pad)
    y = g.tensor((1, oh, ow, cout), scale=float(np.mean(ws)) * ins * 30 * k[0],
                 zp=int(rng.integers(-20, 20)))
    g.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], 3, padding=_PAD[pad], strideH=stride[0],
         strideW=stride[1], dilationHFactor=dil[0], dilationWFactor=dil[1],
         depthMultiplier=mult, fusedActivationFunction=act)
    return g.build([x], [y])


def fully_connected(rng, in_shape=(1, 16), units=8, act=0, keep=False, per_channel=False,
                    bias_axis=0, filt_axis=0):
    g = Graph()
    depth = in_shape[-1]
    ins = float(np.float32(rng.uniform(0.005, 0.05)))
    x = g.tensor(in_shape, scale=ins, zp=int(rng.integers(-128, 128)))
    ws = rng.uniform(0.002, 0.02, units if per_channel else 1).astype(np.float32)
    wt = g.const(rng.integers(-127, 128, (units, depth)), "int8", ws, 0, filt_axis)
    bt = g.const(rng.integers(-5000, 5000, units), "int32",
                 (ins * np.broadcast_to(ws, (units,))).astype(np.float32), 0, bias_axis)
    rows = int(np.prod(in_shape)) // depth
    oshape = tuple(in_shape[:-1]) + (units,) if keep else (rows, units)
    y = g.tensor(oshape, scale=float(np.mean(ws)) * ins * 30 * np.sqrt(depth),
                 zp=int(rng.integers(-20, 20)))
    g.op("FULLY_CONNECTED", [x, wt, bt], [y], 4 if per_channel else 1,
         fusedActivationFunction=act, keepNumDims=keep)
    return g.build([x], [y])


def pool(rng, kind="MAX_POOL_2D", h=8, w=8, c=3, f=(2, 2), stride=(2, 2), pad="VALID", act=0):
    g = Graph()
    sc, zp = float(np.float32(rng.uniform(0.005, 0.1))), int(rng.integers(-128, 128))
    x = g.tensor((1, h, w, c), scale=sc, zp=zp)
    y = g.tensor((1, _out(h, f[0], stride[0], 1, pad), _out(w, f[1], stride[1], 1, pad), c),
                 scale=sc, zp=zp)
    g.op(kind, [x], [y], 2, padding=_PAD[pad], strideH=stride[0], strideW=stride[1],
         filterHeight=f[0], filterWidth=f[1], fusedActivationFunction=act)
    return g.build([x], [y])


def binary(rng, kind="ADD", a=(1, 4, 4, 3), b=(1, 4, 4, 3), out=None, act=0):
    g = Graph()
    x = g.tensor(a, scale=0.03, zp=int(rng.integers(-20, 20)))
    y = g.tensor(b, scale=0.05, zp=int(rng.integers(-20, 20)))
    z = g.tensor(out or np.broadcast_shapes(a, b), scale=0.07 if kind != "MUL" else 0.01,
                 zp=int(rng.integers(-20, 20)))
    g.op(kind, [x, y], [z], 2 if kind != "MUL" else 1, fusedActivationFunction=act)
    return g.build([x, y], [z])


def reduce(rng, kind="MEAN", shape=(1, 4, 4, 3), axes=(1, 2), keep=True, same_q=False):
    g = Graph()
    x = g.tensor(shape, scale=0.03, zp=2)
    ax = g.const(np.array(axes, np.int32), "int32")
    rank = len(shape)
    norm = {a % rank for a in axes}
    oshape = tuple(1 if i in norm else d for i, d in enumerate(shape)) if keep else \
        tuple(d for i, d in enumerate(shape) if i not in norm)
    y = g.tensor(oshape, scale=0.03 if same_q else 0.02, zp=2 if same_q else -1)
    g.op(kind, [x, ax], [y], 2, keepDims=keep)
    return g.build([x], [y])


def softmax(rng, beta=1.0, shape=(1, 10)):
    g = Graph()
    x = g.tensor(shape, scale=0.1, zp=int(rng.integers(-20, 20)))
    y = g.tensor(shape, scale=1 / 256, zp=-128)
    g.op("SOFTMAX", [x], [y], 1, beta=beta)
    return g.build([x], [y])


def concat(rng, axis=-1, shapes=((1, 2, 2, 3), (1, 2, 2, 5))):
    g = Graph()
    xs = [g.tensor(s, scale=0.04, zp=3) for s in shapes]
    rank = len(shapes[0])
    ax = axis % rank
    out = list(shapes[0])
    out[ax] = sum(s[ax] for s in shapes)
    y = g.tensor(out, scale=0.04, zp=3)
    g.op("CONCATENATION", xs, [y], 2, axis=axis)
    return g.build(xs, [y])


def delay(rng, shape=(2, 16), length=21):
    g = Graph()
    x, y = g.tensor(shape, "int16"), g.tensor(shape, "int16")
    g.op("SignalDelay", [x], [y], delay_length=length)
    return g.build([x], [y])


def overlap_add(rng, dtype="int16", frames=(1, 3, 12), step=5):
    g = Graph()
    x = g.tensor(frames, dtype)
    y = g.tensor(frames[:-2] + (frames[-2] * step,), dtype)
    g.op("SignalOverlapAdd", [x], [y], T=_TYPES[dtype], frame_step=step)
    return g.build([x], [y])


def irfft(rng, frames=2, fft=64, extra_bins=1):
    g = Graph()
    x = g.tensor((frames, fft + 2 + 2 * extra_bins), "int16")
    y = g.tensor((frames, fft), "int16")
    g.op("SignalIrfft", [x], [y], T=_TYPES["int16"], fft_length=fft)
    return g.build([x], [y])


def conv_chain(rng):
    """conv -> depthwise -> avg pool -> reshape -> fc -> softmax: a small network."""
    g = Graph()
    x = g.tensor((1, 12, 12, 2), scale=0.02, zp=-4)
    w1 = g.const(rng.integers(-127, 128, (6, 3, 3, 2)), "int8",
                 rng.uniform(0.005, 0.02, 6).astype(np.float32), 0, 0)
    b1 = g.const(rng.integers(-300, 300, 6), "int32", np.full(6, 2e-4, np.float32), 0, 3)
    y1 = g.tensor((1, 6, 6, 6), scale=0.05, zp=-128)
    g.op("CONV_2D", [x, w1, b1], [y1], 3, padding=0, strideH=2, strideW=2,
         dilationHFactor=1, dilationWFactor=1, fusedActivationFunction=1)
    w2 = g.const(rng.integers(-127, 128, (1, 3, 3, 6)), "int8",
                 rng.uniform(0.005, 0.02, 6).astype(np.float32), 0, 3)
    b2 = g.const(rng.integers(-300, 300, 6), "int32", np.full(6, 5e-4, np.float32), 0, 3)
    y2 = g.tensor((1, 6, 6, 6), scale=0.04, zp=-128)
    g.op("DEPTHWISE_CONV_2D", [y1, w2, b2], [y2], 3, padding=0, strideH=1, strideW=1,
         dilationHFactor=2, dilationWFactor=2, depthMultiplier=1, fusedActivationFunction=3)
    y3 = g.tensor((1, 1, 1, 6), scale=0.04, zp=-128)
    g.op("AVERAGE_POOL_2D", [y2], [y3], 2, padding=1, strideH=6, strideW=6, filterHeight=6,
         filterWidth=6, fusedActivationFunction=0)
    shp = g.const(np.array([1, 6], np.int32), "int32")
    y4 = g.tensor((1, 6), scale=0.04, zp=-128)
    g.op("RESHAPE", [y3, shp], [y4], 1, newShape=[1, 6])
    w5 = g.const(rng.integers(-127, 128, (4, 6)), "int8", 0.01)
    b5 = g.const(rng.integers(-300, 300, 4), "int32", 4e-4)
    y5 = g.tensor((1, 4), scale=0.08, zp=3)
    g.op("FULLY_CONNECTED", [y4, w5, b5], [y5], 1, fusedActivationFunction=0)
    y6 = g.tensor((1, 4), scale=1 / 256, zp=-128)
    g.op("SOFTMAX", [y5], [y6], 1, beta=1.0)
    return g.build([x], [y6])


def split(rng, shape=(1, 4, 6), axis=-1, num=3):
    g = Graph()
    x = g.tensor(shape, scale=0.03, zp=1)
    ax = g.const(np.array(axis, np.int32).reshape(()), "int32")
    part = list(shape)
    part[axis % len(shape)] //= num
    ys = [g.tensor(part, scale=0.03, zp=1) for _ in range(num)]
    g.op("SPLIT", [ax, x], ys, 2, numSplits=num)
    return g.build([x], ys)


def pack(rng, shape=(2, 3), axis=-1, num=3):
    g = Graph()
    xs = [g.tensor(shape, scale=0.03, zp=1) for _ in range(num)]
    out = list(shape)
    out.insert(axis % (len(shape) + 1), num)
    y = g.tensor(out, scale=0.03, zp=1)
    g.op("PACK", xs, [y], 2, valuesCount=num, axis=axis)
    return g.build(xs, [y])


def strided_slice(rng, shape=(1, 8, 6, 3), begin=(0, -1, 1, 0), end=(1, 0, 6, 3),
                  strides=(1, -2, 2, 1), out=(1, 4, 3, 3), begin_mask=0, end_mask=0,
                  shrink=0):
    g = Graph()
    x = g.tensor(shape, scale=0.03, zp=1)
    b = g.const(np.array(begin, np.int32), "int32")
    e = g.const(np.array(end, np.int32), "int32")
    st = g.const(np.array(strides, np.int32), "int32")
    y = g.tensor(out, scale=0.03, zp=1)
    g.op("STRIDED_SLICE", [x, b, e, st], [y], 4, beginMask=begin_mask, endMask=end_mask,
         shrinkAxisMask=shrink)
    return g.build([x], [y])


def resize(rng, kind="RESIZE_BILINEAR", shape=(1, 5, 7, 3), size=(8, 4), corners=False,
           half=True):
    g = Graph()
    x = g.tensor(shape, scale=0.03, zp=-5)
    sz = g.const(np.array(size, np.int32), "int32")
    y = g.tensor((shape[0], size[0], size[1], shape[3]), scale=0.03, zp=-5)
    g.op(kind, [x, sz], [y], 3, alignCorners=corners, halfPixelCenters=half)
    return g.build([x], [y])


def gather(rng, shape=(3, 6, 2), axis=1, coords=(2, 4), batch_dims=0):
    g = Graph()
    # the table is the model's input: tinygen takes int8 inputs only
    t = g.tensor(shape, scale=0.05, zp=2)
    i = g.const(rng.integers(0, shape[axis], size=coords).astype(np.int32), "int32")
    out = list(shape[:axis]) + list(coords[batch_dims:]) + list(shape[axis + 1:])
    y = g.tensor(out, scale=0.05, zp=2)
    g.op("GATHER", [t, i], [y], 1, axis=axis, batchDims=batch_dims)
    return g.build([t], [y])


def image_frontend(rng, **kw):
    from ..convert.image_frontend import ImageFrontendParams, build_image_frontend
    return build_image_frontend(ImageFrontendParams(**kw))


RELU, RELU_N1_TO_1, RELU6, TANH, SIGN_BIT = 1, 2, 3, 4, 5

# name -> builder(rng); every one of these is a valid model (TFLM runs it).
BUILT: dict[str, Callable] = {
    "conv_dilation2": lambda r: conv(r, dil=(2, 2)),
    "conv_dilation3x2_valid": lambda r: conv(r, h=12, w=12, dil=(3, 2), pad="VALID"),
    "conv_stride4x3_k2": lambda r: conv(r, h=9, w=9, k=(2, 2), stride=(4, 3)),
    "conv_stride5_k1_valid": lambda r: conv(r, h=11, w=11, k=(1, 1), stride=(5, 5), pad="VALID"),
    "conv_kernel_larger_than_input": lambda r: conv(r, h=2, w=2, k=(5, 5)),
    "conv_relu_n1_to_1": lambda r: conv(r, act=RELU_N1_TO_1),
    "conv_fused_tanh": lambda r: conv(r, act=TANH),
    "conv_fused_sign_bit": lambda r: conv(r, act=SIGN_BIT),
    "conv_grouped": lambda r: conv(r, cin=4, cout=4, groups=2),
    "conv_batch2": lambda r: conv(r, n=2),
    "conv_per_tensor_no_bias": lambda r: conv(r, per_channel=False, bias=False),
    "conv_bias_qdim3": lambda r: conv(r, bias_axis=3),
    "conv_filter_qdim3_square": lambda r: conv(r, cin=4, cout=4, filt_axis=3),
    "depthwise_mult3": lambda r: depthwise(r, mult=3),
    "depthwise_dil2_stride2": lambda r: depthwise(r, h=10, w=10, dil=(2, 2), stride=(2, 2)),
    "depthwise_valid_stride3x1": lambda r: depthwise(r, h=10, w=7, stride=(3, 1), pad="VALID"),
    "depthwise_relu6_bias_qdim3": lambda r: depthwise(r, act=RELU6, bias_axis=3),
    "fc_keep_num_dims": lambda r: fully_connected(r, in_shape=(1, 3, 16), keep=True),
    "fc_4d_input": lambda r: fully_connected(r, in_shape=(1, 2, 2, 16)),
    "fc_per_channel_relu_n1": lambda r: fully_connected(r, per_channel=True, act=RELU_N1_TO_1),
    "fc_bias_qdim3": lambda r: fully_connected(r, bias_axis=3),
    "fc_batches3": lambda r: fully_connected(r, in_shape=(3, 16)),
    "maxpool_same_stride1": lambda r: pool(r, f=(3, 3), stride=(1, 1), pad="SAME"),
    "maxpool_stride_gt_filter": lambda r: pool(r, h=9, w=9, stride=(4, 4)),
    "avgpool_same_stride3": lambda r: pool(r, "AVERAGE_POOL_2D", h=7, w=7, stride=(3, 3),
                                           pad="SAME"),
    "avgpool_relu_n1_to_1": lambda r: pool(r, "AVERAGE_POOL_2D", act=RELU_N1_TO_1),
    "add_broadcast_channel": lambda r: binary(r, "ADD", b=(1, 1, 1, 3)),
    "add_broadcast_both": lambda r: binary(r, "ADD", a=(1, 4, 1, 3), b=(1, 1, 5, 1)),
    "add_rank_differs": lambda r: binary(r, "ADD", a=(2, 3, 4), b=(4,)),
    "add_6d_broadcast": lambda r: binary(r, "ADD", a=(1, 2, 1, 2, 1, 3), b=(1, 1, 2, 1, 2, 1)),
    "add_fused_tanh": lambda r: binary(r, "ADD", a=(1, 8), b=(1, 8), act=TANH),
    "sub_broadcast_relu6": lambda r: binary(r, "SUB", b=(1, 4, 1, 1), act=RELU6),
    "mul_broadcast_vector": lambda r: binary(r, "MUL", b=(3,)),
    "mean_keep_dims": lambda r: reduce(r, "MEAN", axes=(1, 2), keep=True),
    "mean_axis_minus1": lambda r: reduce(r, "MEAN", axes=(-1,), keep=False),
    "mean_negative_axes_keep": lambda r: reduce(r, "MEAN", axes=(-2, -3), keep=True),
    "mean_all_axes": lambda r: reduce(r, "MEAN", axes=(0, 1, 2, 3), keep=False),
    "mean_repeated_axis": lambda r: reduce(r, "MEAN", axes=(1, 1, 2), keep=True),
    "sum_axis_minus1_keep": lambda r: reduce(r, "SUM", shape=(3, 4, 2), axes=(-1,), keep=True),
    "reduce_max": lambda r: reduce(r, "REDUCE_MAX", axes=(1, 2), keep=True, same_q=True),
    "softmax_beta0.5": lambda r: softmax(r, 0.5),
    "softmax_beta2_3d": lambda r: softmax(r, 2.0, (1, 3, 7)),
    "concat_axis_minus1": lambda r: concat(r, -1),
    "concat_axis_minus3": lambda r: concat(r, -3, ((1, 2, 2, 3), (1, 1, 2, 3))),
    "split_axis_minus1": lambda r: split(r),
    "pack_axis_minus1": lambda r: pack(r),
    "strided_slice_negative_stride": lambda r: strided_slice(r),
    "strided_slice_masks_shrink": lambda r: strided_slice(
        r, begin=(0, 2, 0, 1), end=(0, 0, 0, 2), strides=(1, 1, 1, 1), out=(1, 6, 6),
        begin_mask=0b0101, end_mask=0b0111, shrink=0b1000),
    "chain_conv_dw_pool_fc_softmax": conv_chain,
    "signal_delay_longer_than_frame": lambda r: delay(r),
    "signal_delay_3d": lambda r: delay(r, shape=(1, 2, 7), length=3),
    "signal_overlap_add_int16": lambda r: overlap_add(r),
    "signal_overlap_add_step_eq_size": lambda r: overlap_add(r, frames=(2, 4), step=4),
    "resize_bilinear_half_pixel_up_down": lambda r: resize(r),
    "resize_bilinear_align_corners": lambda r: resize(r, size=(3, 11), corners=True, half=False),
    "resize_nearest_half_pixel": lambda r: resize(r, "RESIZE_NEAREST_NEIGHBOR", size=(9, 2)),
    "resize_nearest_align_corners": lambda r: resize(r, "RESIZE_NEAREST_NEIGHBOR", size=(2, 13),
                                                     corners=True, half=False),
    "gather_axis1_index_matrix": lambda r: gather(r),
    "image_frontend_rgb565_gray": lambda r: image_frontend(
        r, frame_width=32, frame_height=24, pixel_format="rgb565", out_width=10, out_height=10),
    "image_frontend_rgb888_nearest": lambda r: image_frontend(
        r, frame_width=20, frame_height=20, pixel_format="rgb888", out_width=8, out_height=6,
        out_channels=3, resize="nearest", out_scale=0.02, out_zero_point=7),
    "signal_irfft_radix2_stage": lambda r: irfft(r),
}


def built_cases(names=None, seed: int = 0) -> list[Case]:
    cases = []
    for i, (name, fn) in enumerate(BUILT.items()):
        if names is not None and name not in names:
            continue
        cases.append(Case(f"built/{name}", fn(np.random.default_rng(seed * 1000 + i))))
    return cases


def zoo_cases(width: float = 0.25, names=None, cache_dir=None) -> list[Case]:
    """The zoo's architectures at `width`, saved as .keras files and converted
    by tinygen as a user's model would be (slow: TensorFlow's converter, so
    the .tflite is cached in cache_dir when one is given)."""
    import hashlib
    import tempfile
    from pathlib import Path

    from ..convert import convert
    from ..load import load_model
    from ..models import zoo
    key = hashlib.sha256(Path(zoo.__file__).read_bytes()).hexdigest()[:12]
    cases = []
    for name in zoo.MLPERF_TINY:
        if names is not None and name not in names:
            continue
        cached = Path(cache_dir) / f"zoo-{name}-{width}-{key}.tflite" if cache_dir else None
        if cached is not None and cached.is_file():
            tflite = cached.read_bytes()
        else:
            model = zoo.build(name, width)
            with tempfile.TemporaryDirectory() as d:
                path, calib = Path(d) / f"{name}.keras", Path(d) / "calib.npy"
                model.save(path)
                np.save(calib, zoo.calibration_data(model, 16))
                tflite = convert(load_model(path), calib).tflite
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_bytes(tflite)
        cases.append(Case(f"zoo/{name}", tflite, f"width {width}"))
    return cases


# ---------------------------------------------------------------------------
# mutations


def mutate_bytes(base: Case, seed: int) -> Case:
    r = random.Random(f"{base.name}/bytes/{seed}")
    data = bytearray(base.tflite)
    kind = r.choice(["flip", "flip", "word", "truncate"])
    if kind == "truncate":
        cut = r.randrange(8, len(data))
        return Case(f"{base.name}~bytes{seed}", bytes(data[:cut]), f"truncated to {cut} bytes")
    if kind == "word":
        pos = r.randrange(8, len(data) - 4) & ~3
        val = r.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, r.getrandbits(32)])
        data[pos:pos + 4] = val.to_bytes(4, "little")
        return Case(f"{base.name}~bytes{seed}", bytes(data), f"word at {pos} set to {val:#x}")
    n = r.randint(1, 4)
    spots = sorted(r.randrange(8, len(data)) for _ in range(n))
    for p in spots:
        data[p] ^= 1 << r.randrange(8)
    return Case(f"{base.name}~bytes{seed}", bytes(data), f"bit flips at {spots}")


def _name(t) -> str:
    return t.name.decode(errors="replace") if isinstance(t.name, bytes) else str(t.name)


def _option_fields(opt) -> list[str]:
    return [k for k in vars(opt) if not k.startswith("_")]


def mutate_structure(base: Case, seed: int) -> Case | None:
    """One field of the model changed through the Object API; None when the
    drawn mutation does not apply to this model."""
    import flatbuffers
    s = _schema()
    r = random.Random(f"{base.name}/struct/{seed}")
    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(base.tflite, 0))
    sg = m.subgraphs[0]
    op = r.choice(sg.operators)
    opname = next(k for k, v in vars(s.BuiltinOperator).items()
                  if v == m.operatorCodes[op.opcodeIndex].builtinCode)
    kind = r.choice(["option", "option", "option", "shape", "quant", "qdim", "input",
                     "version", "type"])
    note = ""
    if kind == "option":
        if op.builtinOptions is None or not _option_fields(op.builtinOptions):
            return None
        f = r.choice(_option_fields(op.builtinOptions))
        old = getattr(op.builtinOptions, f)
        if isinstance(old, bool):
            new = not old
        elif isinstance(old, (int, np.integer)):
            new = r.choice([0, 1, 2, 3, 4, 5, 6, 7, -1, -2, old + 1, old - 1])
        elif isinstance(old, float):
            new = r.choice([0.0, -1.0, 1e-6, 1e6, float("inf"), float("nan"), old * 3])
        elif isinstance(old, (list, np.ndarray)):
            new = [int(v) + r.choice([-1, 1]) for v in old] if len(old) else [1]
        else:
            return None
        setattr(op.builtinOptions, f, new)
        note = f"{opname} option {f}: {old!r} -> {new!r}"
    elif kind == "shape":
        ti = r.choice(list(op.inputs) + list(op.outputs))
        if ti < 0 or not len(sg.tensors[ti].shape):
            return None
        t = sg.tensors[ti]
        d = r.randrange(len(t.shape))
        old = int(t.shape[d])
        new = r.choice([1, 0, old + 1, max(old - 1, 1), old * 2])
        t.shape = [int(v) for v in t.shape]
        t.shape[d] = new
        note = f"{opname} tensor {_name(t)} dim {d}: {old} -> {new}"
    elif kind in ("quant", "qdim"):
        ti = r.choice([i for i in list(op.inputs) + list(op.outputs) if i >= 0])
        t = sg.tensors[ti]
        if t.quantization is None or t.quantization.scale is None:
            return None
        q = t.quantization
        if kind == "qdim":
            old = q.quantizedDimension
            q.quantizedDimension = r.choice([0, 1, 2, 3, 5, -1])
            note = f"{opname} tensor {_name(t)} quantized_dimension: {old} -> {q.quantizedDimension}"
        else:
            what = r.choice(["scale0", "zp", "scale_neg", "scale_count"])
            scales = [float(v) for v in q.scale]
            if what == "scale0":
                scales[0] = 0.0
            elif what == "scale_neg":
                scales[0] = -abs(scales[0])
            elif what == "scale_count":
                scales = scales + [scales[0]]
                q.zeroPoint = [int(v) for v in q.zeroPoint] + [0]
            else:
                q.zeroPoint = [int(v) for v in q.zeroPoint]
                q.zeroPoint[0] = r.choice([127, -128, 300, -1000])
            q.scale = scales
            note = f"{opname} tensor {_name(t)} quantization: {what}"
    elif kind == "input":
        if not len(op.inputs):
            return None
        k = r.randrange(len(op.inputs))
        old = int(op.inputs[k])
        new = r.choice([-1, 0, len(sg.tensors) - 1, old + 1])
        op.inputs = [int(v) for v in op.inputs]
        op.inputs[k] = new
        note = f"{opname} input {k}: tensor {old} -> {new}"
    elif kind == "version":
        oc = m.operatorCodes[op.opcodeIndex]
        old = oc.version
        oc.version = r.choice([1, 2, 7, 99])
        note = f"{opname} version {old} -> {oc.version}"
    else:
        ti = r.choice([i for i in list(op.inputs) + list(op.outputs) if i >= 0])
        t = sg.tensors[ti]
        old = t.type
        t.type = r.choice([0, 2, 3, 7, 9])
        note = f"{opname} tensor {_name(t)} type {old} -> {t.type}"
    b = flatbuffers.Builder(4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return Case(f"{base.name}~struct{seed}", bytes(b.Output()), note)


def mutations(bases: list[Case], per_base_bytes: int = 1, per_base_struct: int = 2) -> list[Case]:
    out = []
    for base in bases:
        for k in range(per_base_bytes):
            out.append(mutate_bytes(base, k))
        made, k = 0, 0
        while made < per_base_struct and k < per_base_struct * 6:
            c = mutate_structure(base, k)
            k += 1
            if c is not None:
                out.append(c)
                made += 1
    return out
