"""Per-operator analysis: runtime support, TFLM resolver methods, parameters, MACs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import TinygenError
from ..ir import Model, Operator
from .tflm_resolver import tflm_method


@dataclass
class OpReport:
    index: int
    opcode: str
    version: int
    tflm_method: str | None
    supported: dict[str, bool]
    params: int                  # constant elements
    weights_biases_bytes: int    # the constant tensors (weights, biases)
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
            weights_biases_bytes=sum(t.nbytes for t in consts),
            macs=_checked_macs(model, op),
            output_shape=_shape(model, op.outputs[0]) if op.outputs else ()))
    return reports
