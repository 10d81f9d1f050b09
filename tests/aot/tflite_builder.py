"""Build small .tflite models directly as flatbuffers (no converter).

Fast, and every detail is under the test's control: shapes, per-channel
scales, zero points, options.  Uses the schema Object API that ships with
tflite_micro (ModelT, SubGraphT, ...).

    b = GraphBuilder()
    x = b.activation((1, 8, 8, 3), scale=0.02, zero_point=-5)
    w = b.constant(np.int8 array, scale=[...per channel...], axis=0)
    y = b.activation((1, 8, 8, 4), scale=0.05, zero_point=3)
    b.op("CONV_2D", [x, w, bias], [y], conv2d_options(padding="SAME", ...))
    tflite = b.build(inputs=[x], outputs=[y])

Helpers at the bottom build one-operator models of each kind with random but
sensible quantization (the output scale follows the accumulator's spread so
outputs use the int8 range rather than saturating).
"""

from __future__ import annotations

from typing import Sequence

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

TYPE_CODES = {"float32": schema.TensorType.FLOAT32, "int32": schema.TensorType.INT32,
              "uint8": schema.TensorType.UINT8, "int64": schema.TensorType.INT64,
              "int16": schema.TensorType.INT16, "int8": schema.TensorType.INT8,
              "bool": schema.TensorType.BOOL}
NP_TYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "int64": np.int64,
            "int16": np.int16, "int8": np.int8, "bool": np.bool_}
ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PAD = {"SAME": 0, "VALID": 1}

# opcode -> name of its options table in the schema
OPTION_TABLES = {
    "CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions", "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions", "RESHAPE": "ReshapeOptions", "SQUEEZE": "SqueezeOptions",
    "EXPAND_DIMS": "ExpandDimsOptions", "SOFTMAX": "SoftmaxOptions", "ADD": "AddOptions",
    "MUL": "MulOptions", "CONCATENATION": "ConcatenationOptions", "PAD": "PadOptions",
    "MEAN": "ReducerOptions", "QUANTIZE": "QuantizeOptions", "DEQUANTIZE": "DequantizeOptions",
}


class GraphBuilder:
    """Accumulates tensors and operators of one subgraph."""

    def __init__(self, description: str = "tinygen aot test"):
        self.description = description
        self.tensors: list = []
        self.buffers: list = [schema.BufferT()]        # buffer 0: the empty sentinel
        self.opcodes: dict[str, int] = {}
        self.opcode_list: list = []
        self.operators: list = []

    # ---- tensors --------------------------------------------------------
    def _tensor(self, shape, dtype, scale, zero_point, axis, data, name, variable=False) -> int:
        t = schema.TensorT()
        t.shape = [int(d) for d in shape]
        t.type = TYPE_CODES[dtype]
        t.name = name or f"t{len(self.tensors)}"
        t.isVariable = variable
        buf = schema.BufferT()
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data, dtype=NP_TYPES[dtype]))
            assert arr.size == int(np.prod(shape, dtype=np.int64)), (arr.shape, shape)
            buf.data = np.frombuffer(arr.tobytes(), np.uint8).copy()
        t.buffer = len(self.buffers)
        self.buffers.append(buf)
        if scale is not None:
            q = schema.QuantizationParametersT()
            scales = np.atleast_1d(np.asarray(scale, np.float32))
            zps = np.atleast_1d(np.asarray(0 if zero_point is None else zero_point, np.int64))
            if zps.size == 1 and scales.size > 1:
                zps = np.repeat(zps, scales.size)
            q.scale = [float(s) for s in scales]
            q.zeroPoint = [int(z) for z in zps]
            q.quantizedDimension = int(axis)
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def activation(self, shape, dtype="int8", scale=None, zero_point=0, name=None) -> int:
        return self._tensor(shape, dtype, scale, zero_point, 0, None, name)

    def constant(self, data, dtype=None, scale=None, zero_point=0, axis=0, name=None) -> int:
        data = np.asarray(data)
        dtype = dtype or str(data.dtype)
        return self._tensor(data.shape, dtype, scale, zero_point, axis, data, name)

    def variable(self, shape, dtype="int8", scale=None, zero_point=0, name=None) -> int:
        return self._tensor(shape, dtype, scale, zero_point, 0, None, name, variable=True)

    # ---- operators ------------------------------------------------------
    def op(self, opcode: str, inputs: Sequence[int], outputs: Sequence[int], options=None,
           version: int = 1) -> None:
        key = f"{opcode}/{version}"
        if key not in self.opcodes:
            code = getattr(schema.BuiltinOperator, opcode)
            oc = schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = version
            self.opcodes[key] = len(self.opcode_list)
            self.opcode_list.append(oc)
        o = schema.OperatorT()
        o.opcodeIndex = self.opcodes[key]
        o.inputs = [int(i) for i in inputs]
        o.outputs = [int(i) for i in outputs]
        if options is not None:
            o.builtinOptionsType = getattr(schema.BuiltinOptions, OPTION_TABLES[opcode])
            o.builtinOptions = options
        self.operators.append(o)

    def build(self, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
        m = schema.ModelT()
        m.version = 3
        m.description = self.description
        m.buffers = self.buffers
        m.operatorCodes = self.opcode_list
        sg = schema.SubGraphT()
        sg.tensors = self.tensors
        sg.operators = self.operators
        sg.inputs = [int(i) for i in inputs]
        sg.outputs = [int(i) for i in outputs]
        sg.name = "main"
        m.subgraphs = [sg]
        b = flatbuffers.Builder(4096)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


# ---------------------------------------------------------------------------
# options

def conv2d_options(padding="SAME", stride=(1, 1), dilation=(1, 1), activation="NONE"):
    o = schema.Conv2DOptionsT()
    o.padding = PAD[padding]
    o.strideH, o.strideW = stride
    o.dilationHFactor, o.dilationWFactor = dilation
    o.fusedActivationFunction = ACT[activation]
    return o


def depthwise_options(padding="SAME", stride=(1, 1), dilation=(1, 1), depth_multiplier=1,
                      activation="NONE"):
    o = schema.DepthwiseConv2DOptionsT()
    o.padding = PAD[padding]
    o.strideH, o.strideW = stride
    o.dilationHFactor, o.dilationWFactor = dilation
    o.depthMultiplier = depth_multiplier
    o.fusedActivationFunction = ACT[activation]
    return o


def fc_options(activation="NONE", keep_num_dims=False):
    o = schema.FullyConnectedOptionsT()
    o.fusedActivationFunction = ACT[activation]
    o.keepNumDims = keep_num_dims
    return o


def pool_options(filter=(2, 2), stride=(2, 2), padding="VALID", activation="NONE"):
    o = schema.Pool2DOptionsT()
    o.filterHeight, o.filterWidth = filter
    o.strideH, o.strideW = stride
    o.padding = PAD[padding]
    o.fusedActivationFunction = ACT[activation]
    return o


def reshape_options(new_shape):
    o = schema.ReshapeOptionsT()
    o.newShape = [int(d) for d in new_shape]
    return o


# ---------------------------------------------------------------------------
# shape arithmetic (TFLite's)

def out_size(padding: str, n: int, k: int, stride: int, dilation: int = 1) -> int:
    eff = (k - 1) * dilation + 1
    return (n + stride - 1) // stride if padding == "SAME" else (n + stride - eff) // stride


# ---------------------------------------------------------------------------
# quantization helpers

def random_int8(rng: np.random.Generator, shape, lo=-128, hi=127) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64).astype(np.int8)


def filter_scales(rng: np.random.Generator, channels: int, per_channel: bool) -> np.ndarray:
    if per_channel:
        return (rng.uniform(0.5, 2.0, channels) * 10.0 ** rng.uniform(-3.5, -1.5, channels)
                ).astype(np.float32)
    return np.full(1, rng.uniform(0.5, 2.0) * 10.0 ** rng.uniform(-3.5, -1.5), np.float32)


def output_scale_for(in_scale: float, w_scales: np.ndarray, taps: int, spread: float) -> float:
    """An output scale that makes the accumulator span roughly the int8 range
    (spread > 1 squeezes it, < 1 saturates on purpose)."""
    acc_std = 127.0 * 73.0 * np.sqrt(max(taps, 1)) * float(np.mean(w_scales)) * in_scale
    return float(np.float32(acc_std / 60.0 * spread))


def bias_for(rng: np.random.Generator, in_scale: float, w_scales: np.ndarray, channels: int,
             with_bias: bool | str, big: bool = False):
    """(values, scales) of an int32 bias, or None.  with_bias="zero" gives an
    all-zero bias without drawing from rng, so the same seed builds the same
    model as with_bias=False except for the (neutral) bias tensor."""
    if not with_bias:
        return None
    # bias scale = input scale * weight scale (what the converter writes)
    scales = (np.float32(in_scale) * np.broadcast_to(w_scales, (channels,))).astype(np.float32)
    if with_bias == "zero":
        return np.zeros(channels, np.int32), scales
    lim = 1 << 20 if big else 1 << 14
    values = rng.integers(-lim, lim, channels).astype(np.int32)
    return values, scales


# ---------------------------------------------------------------------------
# one-operator models

def conv2d_model(rng, n=1, h=8, w=8, cin=3, cout=4, kh=3, kw=3, stride=(1, 1), dilation=(1, 1),
                 padding="SAME", activation="NONE", per_channel=True, with_bias=True,
                 in_zp=None, out_zp=None, spread=1.0, groups=1) -> bytes:
    b = GraphBuilder("conv2d")
    in_scale = float(np.float32(rng.uniform(0.005, 0.05)))
    in_zp = int(rng.integers(-128, 128)) if in_zp is None else in_zp
    wq = filter_scales(rng, cout, per_channel)
    fc = cin // groups
    x = b.activation((n, h, w, cin), scale=in_scale, zero_point=in_zp)
    wt = b.constant(random_int8(rng, (cout, kh, kw, fc), -127, 127), "int8", scale=wq,
                    zero_point=0, axis=0)
    bias = bias_for(rng, in_scale, wq, cout, with_bias)
    bt = b.constant(bias[0], "int32", scale=bias[1], zero_point=0, axis=0) if bias else -1
    oh = out_size(padding, h, kh, stride[0], dilation[0])
    ow = out_size(padding, w, kw, stride[1], dilation[1])
    out_scale = output_scale_for(in_scale, wq, kh * kw * fc, spread)
    out_zp = int(rng.integers(-128, 128)) if out_zp is None else out_zp
    y = b.activation((n, oh, ow, cout), scale=out_scale, zero_point=out_zp)
    b.op("CONV_2D", [x, wt, bt], [y], conv2d_options(padding, stride, dilation, activation),
         version=3)
    return b.build([x], [y])


def depthwise_model(rng, n=1, h=8, w=8, cin=3, depth_multiplier=1, kh=3, kw=3, stride=(1, 1),
                    dilation=(1, 1), padding="SAME", activation="NONE", per_channel=True,
                    with_bias=True, in_zp=None, out_zp=None, spread=1.0) -> bytes:
    b = GraphBuilder("depthwise")
    cout = cin * depth_multiplier
    in_scale = float(np.float32(rng.uniform(0.005, 0.05)))
    in_zp = int(rng.integers(-128, 128)) if in_zp is None else in_zp
    wq = filter_scales(rng, cout, per_channel)
    x = b.activation((n, h, w, cin), scale=in_scale, zero_point=in_zp)
    wt = b.constant(random_int8(rng, (1, kh, kw, cout), -127, 127), "int8", scale=wq,
                    zero_point=0, axis=3)
    bias = bias_for(rng, in_scale, wq, cout, with_bias)
    bt = b.constant(bias[0], "int32", scale=bias[1], zero_point=0, axis=0) if bias else -1
    oh = out_size(padding, h, kh, stride[0], dilation[0])
    ow = out_size(padding, w, kw, stride[1], dilation[1])
    out_scale = output_scale_for(in_scale, wq, kh * kw, spread)
    out_zp = int(rng.integers(-128, 128)) if out_zp is None else out_zp
    y = b.activation((n, oh, ow, cout), scale=out_scale, zero_point=out_zp)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y],
         depthwise_options(padding, stride, dilation, depth_multiplier, activation), version=3)
    return b.build([x], [y])


def fully_connected_model(rng, batches=1, depth=16, units=8, activation="NONE", with_bias=True,
                          in_zp=None, out_zp=None, spread=1.0, input_shape=None,
                          keep_num_dims=False, per_channel=False) -> bytes:
    b = GraphBuilder("fully_connected")
    in_scale = float(np.float32(rng.uniform(0.005, 0.05)))
    in_zp = int(rng.integers(-128, 128)) if in_zp is None else in_zp
    wq = filter_scales(rng, units, per_channel)
    shape = input_shape or (batches, depth)
    x = b.activation(shape, scale=in_scale, zero_point=in_zp)
    wt = b.constant(random_int8(rng, (units, depth), -127, 127), "int8", scale=wq,
                    zero_point=0, axis=0)
    bias = bias_for(rng, in_scale, wq, units, with_bias)
    bt = b.constant(bias[0], "int32", scale=bias[1], zero_point=0, axis=0) if bias else -1
    out_scale = output_scale_for(in_scale, wq, depth, spread)
    out_zp = int(rng.integers(-128, 128)) if out_zp is None else out_zp
    rows = int(np.prod(shape)) // depth
    out_shape = tuple(shape[:-1]) + (units,) if keep_num_dims else (rows, units)
    y = b.activation(out_shape, scale=out_scale, zero_point=out_zp)
    b.op("FULLY_CONNECTED", [x, wt, bt], [y], fc_options(activation, keep_num_dims), version=4)
    return b.build([x], [y])


def pool_model(rng, kind="MAX_POOL_2D", n=1, h=8, w=8, c=3, filter=(2, 2), stride=(2, 2),
               padding="VALID", activation="NONE", zp=None) -> bytes:
    b = GraphBuilder("pool")
    scale = float(np.float32(rng.uniform(0.005, 0.1)))
    zp = int(rng.integers(-128, 128)) if zp is None else zp
    x = b.activation((n, h, w, c), scale=scale, zero_point=zp)
    oh = out_size(padding, h, filter[0], stride[0])
    ow = out_size(padding, w, filter[1], stride[1])
    y = b.activation((n, oh, ow, c), scale=scale, zero_point=zp)
    b.op(kind, [x], [y], pool_options(filter, stride, padding, activation), version=2)
    return b.build([x], [y])
