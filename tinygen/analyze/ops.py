"""Per-operator analysis: runtime support, TFLM resolver methods, parameters, MACs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import TinygenError
from ..ir import Model, Operator

# Builtin operator -> MicroMutableOpResolver method, for the ops TFLM has kernels for.
TFLM_RESOLVER = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce", "CAST": "AddCast",
    "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv", "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill",
    "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOG_SOFTMAX": "AddLogSoftmax", "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D", "MAXIMUM": "AddMaximum", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2",
    "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth", "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt", "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub",
    "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
    # custom ops TFLM ships
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
}


def tflm_method(opcode: str) -> str | None:
    return TFLM_RESOLVER.get(opcode)


@dataclass
class OpReport:
    index: int
    opcode: str
    version: int
    tflm_method: str | None
    supported: dict[str, bool]
    params: int                  # constant elements
    weights_bytes: int
    macs: int
    output_shape: tuple[int, ...]
    reasons: dict[str, str] = field(default_factory=dict)   # runtime -> why it does not run the op


def _shape(model: Model, idx: int) -> tuple[int, ...]:
    return model.tensors[idx].shape if idx >= 0 else ()


def macs(model: Model, op: Operator) -> int:
    """Multiply-accumulates of one operator (0 for ops without a dot product)."""
    out = _shape(model, op.outputs[0]) if op.outputs else ()
    out_elems = int(np.prod(out)) if out else 0
    if op.opcode == "CONV_2D":
        _, kh, kw, ic = _shape(model, op.inputs[1])
        return out_elems * kh * kw * ic
    if op.opcode == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = _shape(model, op.inputs[1])
        return out_elems * kh * kw
    if op.opcode == "TRANSPOSE_CONV":
        oc, kh, kw, ic = _shape(model, op.inputs[1])
        n, ih, iw, _ = _shape(model, op.inputs[2])
        return n * ih * iw * kh * kw * ic * oc
    if op.opcode == "FULLY_CONNECTED":
        units, depth = _shape(model, op.inputs[1])[-2:]
        batches = out_elems // units if units else 0
        return batches * units * depth
    if op.opcode == "BATCH_MATMUL":
        a = _shape(model, op.inputs[0])
        return out_elems * a[-1]
    if op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        x = _shape(model, op.inputs[0])
        time_major = op.options.get("time_major", False)
        steps = x[0] if time_major else x[1]
        batch = x[1] if time_major else x[0]
        total = 0
        for w in op.inputs[1:9]:              # 4 input and 4 recurrent weight matrices
            if w >= 0:
                r, c = _shape(model, w)
                total += r * c
        if len(op.inputs) > 16 and op.inputs[16] >= 0:   # projection weights
            r, c = _shape(model, op.inputs[16])
            total += r * c
        return steps * batch * total
    return 0


def _checked_macs(model: Model, op: Operator) -> int:
    """macs(), with a one-line error for an operator whose operands do not
    have the ranks its kind implies (only a damaged model has those)."""
    try:
        return macs(model, op)
    except (ValueError, IndexError):
        shapes = [list(_shape(model, i)) if i < len(model.tensors) else "?" for i in op.inputs]
        raise TinygenError(f"{op.describe()} has malformed operands (input shapes {shapes}); "
                           "the model file is damaged") from None


def op_reports(model: Model, runtimes=("tflm", "aot"), support: dict | None = None,
               core: str | None = None) -> list[OpReport]:
    """support: runtime -> analyze.support.Support (computed here when not given),
    so that the per-op answers are the ones build and verify act on."""
    from .support import runtime_support
    support = dict(support or {})
    for rt in runtimes:
        if rt not in support:
            support[rt] = runtime_support(model, rt, core)
    reports = []
    for op in model.operators:
        consts = [model.tensors[i] for i in op.inputs if i >= 0 and model.tensors[i].is_constant]
        sup = {rt: support[rt].runs(op.index) for rt in runtimes}
        reasons = {rt: support[rt].op_reasons[op.index] for rt in runtimes
                   if not support[rt].runs(op.index)}
        reports.append(OpReport(
            index=op.index, opcode=op.opcode, version=op.version,
            tflm_method=tflm_method(op.opcode), supported=sup, reasons=reasons,
            params=sum(t.num_elements for t in consts),
            weights_bytes=sum(t.nbytes for t in consts),
            macs=_checked_macs(model, op),
            output_shape=_shape(model, op.outputs[0]) if op.outputs else ()))
    return reports
