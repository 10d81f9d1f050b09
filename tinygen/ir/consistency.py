"""Graph consistency: does each operator's declared output agree with its inputs?

The parser checks that a .tflite is readable (offsets, indices, buffer sizes);
this module checks that what it says is coherent: the output shape each op
would compute from its input shapes, options and constant operands against
the shape the file declares, constant buffers against shapes and types,
per-channel quantization against the quantized dimension, and that every
tensor an op reads exists by then.  An edited or hand-built model can be
readable and still wrong, and neither TFLM (which trusts declared shapes)
nor the aot runtime (which sizes its buffers from them) would notice: the
firmware would read or write past a tensor.

Only what is certain is checked.  An op whose output cannot be inferred here
(custom ops, data-dependent shapes, masks this code does not model) is
skipped, never guessed: a false alarm on a valid model is worse than a miss.

    problem = find_inconsistency(model)      # None, or the first Inconsistency
    check_consistency(model)                  # raises InconsistentModel
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .model import Model, ModelFormatError, Operator, Tensor

__all__ = ["Inconsistency", "InconsistentModel", "find_inconsistency", "check_consistency"]


class InconsistentModel(ModelFormatError):
    """The model parses but contradicts itself (shapes, buffers, quantization)."""


@dataclass
class Inconsistency:
    what: str                    # "shape", "channels", "buffer", ...
    tensor: Tensor | None
    expected: str
    found: str
    op: Operator | None = None
    role: str = ""               # "output 0", "input 1 (filter)", ...

    def line(self) -> str:
        where = f" at operator #{self.op.index} ({self.op.opcode})" if self.op else ""
        tensor = ""
        if self.tensor is not None:
            name = self.tensor.name
            if len(name) > 60:          # converter names join every fused op with ';'
                name = name[:57] + "..."
            tensor = f"{self.role + ' ' if self.role else ''}tensor {self.tensor.index} '{name}'"
            tensor = (", " if where else ": ") + tensor
        return (f"inconsistent model{where}{tensor}: {self.what} expected "
                f"{self.expected}, found {self.found}")


class _Skip(Exception):
    """This op's output cannot be inferred with certainty: do not check it."""


class _Bad(Exception):
    def __init__(self, problem: Inconsistency):
        self.problem = problem


def check_consistency(model: Model) -> None:
    problem = find_inconsistency(model)
    if problem is not None:
        raise InconsistentModel(problem.line())


def find_inconsistency(model: Model) -> Inconsistency | None:
    """The first inconsistency in graph order, or None."""
    n = len(model.tensors)
    for i, t in enumerate(model.tensors):
        p = _check_tensor(t)
        if p is not None:
            return p
        if t.index != i:
            return Inconsistency("tensor index", t, str(i), str(t.index))
    for role, indices in (("subgraph input", model.inputs), ("subgraph output", model.outputs)):
        for ix in indices:
            if not 0 <= ix < n:
                return Inconsistency(f"{role} index", None, f"0..{n - 1}", str(ix))

    # Tensors that hold a value before the first op runs.
    ready = {t.index for t in model.tensors
             if t.is_constant or t.is_variable or t.num_elements == 0}
    ready.update(model.inputs)
    for op in model.operators:
        for role, indices, optional in (("input", op.inputs, True), ("output", op.outputs, False),
                                        ("intermediate", op.intermediates, True)):
            for k, ix in enumerate(indices):
                if not (0 <= ix < n or optional and ix == -1):
                    return Inconsistency(f"{role} {k} tensor index", None, f"0..{n - 1}",
                                         str(ix), op)
        for k, ix in enumerate(op.inputs):
            if ix != -1 and ix not in ready:
                return Inconsistency("value", model.tensors[ix],
                                     "one computed by an earlier operator or given as input",
                                     "none (no earlier operator writes it)", op, f"input {k}")
        ready.update(op.outputs)
        if op.is_custom:
            continue
        rule = _RULES.get(op.opcode)
        if rule is None:
            continue
        try:
            rule(model, op)
        except _Skip:
            continue
        except _Bad as bad:
            return bad.problem
    for k, ix in enumerate(model.outputs):
        if ix not in ready:
            return Inconsistency("value", model.tensors[ix], "one written by an operator",
                                 "none (no operator writes it)", None, f"model output {k}")
    return None


# ---------------------------------------------------------------------------
# tensors on their own

def _check_tensor(t: Tensor) -> Inconsistency | None:
    if any(d < 0 for d in t.shape):
        return Inconsistency("shape", t, "non-negative dimensions", _fmt(t.shape))
    if t.data is not None:
        if t.data.size != t.num_elements or (t.itemsize and t.data.dtype.itemsize != t.itemsize):
            return Inconsistency(
                "constant buffer", t, f"{t.nbytes} bytes ({_fmt(t.shape)} of {t.dtype})",
                f"{t.data.nbytes} bytes")
    q = t.quant
    if q is not None:
        if len(q.zero_point) != len(q.scale):
            return Inconsistency("quantization", t, f"{len(q.scale)} zero points (one per scale)",
                                 str(len(q.zero_point)))
        # Per-channel parameters along a dimension of the tensor must count its
        # channels.  A quantized_dimension beyond the tensor's rank is left
        # alone: TFLM copies it unchecked (its person_detect.tflite has 1-D
        # biases with quantized_dimension 3) and only kernels that read
        # per-channel scales check them.
        if len(q.scale) > 1 and 0 <= q.axis < len(t.shape) and t.shape[q.axis] != len(q.scale):
            return Inconsistency(
                "per-channel quantization", t,
                f"{t.shape[q.axis]} scales (one per entry of dimension {q.axis} of "
                f"{_fmt(t.shape)})", f"{len(q.scale)}")
    return None


# ---------------------------------------------------------------------------
# helpers for the op rules

def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _tensor(model: Model, op: Operator, k: int, what: str | None = None,
            optional: bool = False) -> Tensor | None:
    """Input k, or None for an omitted optional input."""
    if k >= len(op.inputs) or op.inputs[k] == -1:
        if optional:
            return None
        found = (f"only {len(op.inputs)} input{'s' if len(op.inputs) != 1 else ''}"
                 if k >= len(op.inputs) else "it omitted (-1)")
        raise _Bad(Inconsistency(f"input {k}" + (f" ({what})" if what else ""), None,
                                 "a tensor", found, op))
    return model.tensors[op.inputs[k]]


def _input(model: Model, op: Operator, k: int, what: str | None = None) -> Tensor:
    t = _tensor(model, op, k, what)
    assert t is not None
    return t


def _const_ints(t: Tensor | None) -> list[int]:
    """A constant integer operand (axes, paddings, shape); _Skip when not constant."""
    if t is None or t.data is None or not np.issubdtype(t.data.dtype, np.integer):
        raise _Skip
    return [int(v) for v in t.data.reshape(-1)]


def _outputs(model: Model, op: Operator, n: int | None = None) -> list[Tensor]:
    outs = [model.tensors[i] for i in op.outputs]
    if n is not None and len(outs) < n:
        raise _Bad(Inconsistency("outputs", None, f"at least {n}", f"{len(outs)}", op))
    return outs


def _expect_shape(op: Operator, out: Tensor, expected, k: int = 0) -> None:
    expected = tuple(int(d) for d in expected)
    if tuple(out.shape) != expected:
        raise _Bad(Inconsistency("shape", out, f"{_fmt(expected)} (from its inputs and options)",
                                 _fmt(out.shape), op, f"output {k}"))


def _expect_rank(op: Operator, t: Tensor, rank: int, role: str) -> None:
    if len(t.shape) != rank:
        raise _Bad(Inconsistency("rank", t, f"{rank} ({_fmt(t.shape)} given)", str(len(t.shape)),
                                 op, role))


def _bad_input(op: Operator, t: Tensor, role: str, what: str, expected, found) -> None:
    raise _Bad(Inconsistency(what, t, str(expected), str(found), op, role))


def _conv_out(padding: str, size: int, k: int, stride: int, dilation: int) -> int:
    """TFLite's ComputeOutSize (kernels/padding.h)."""
    if stride <= 0 or dilation <= 0:
        raise _Skip
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        return (size + stride - 1) // stride
    if padding == "VALID":
        return max((size + stride - eff) // stride, 0)
    raise _Skip


def _broadcast(op: Operator, a: Tensor, b: Tensor) -> tuple[int, ...]:
    ra, rb = a.shape[::-1], b.shape[::-1]
    out = []
    for i in range(max(len(ra), len(rb))):
        x = ra[i] if i < len(ra) else 1
        y = rb[i] if i < len(rb) else 1
        if x != y and x != 1 and y != 1:
            _bad_input(op, b, "input 1", "shape broadcastable with input 0",
                       f"one broadcastable with {_fmt(a.shape)}", _fmt(b.shape))
        out.append(max(x, y) if x != 1 and y != 1 else (y if x == 1 else x))
    return tuple(out[::-1])


# ---------------------------------------------------------------------------
# op rules: each raises _Bad for an inconsistency, _Skip when it cannot tell

def _conv_2d(model, op):
    x = _input(model, op, 0, "input")
    w = _input(model, op, 1, "filter")
    bias = _tensor(model, op, 2, optional=True)
    out = _outputs(model, op, 1)[0]
    _expect_rank(op, x, 4, "input 0")
    _expect_rank(op, w, 4, "input 1 (filter)")
    cout, kh, kw, cin_f = w.shape
    if cin_f == 0 or x.shape[3] % cin_f:
        _bad_input(op, w, "input 1 (filter)", "input channels",
                   f"a divisor of the input's {x.shape[3]}", cin_f)
    _check_bias(op, bias, cout)
    o = op.options
    oh = _conv_out(o.get("padding"), x.shape[1], kh, o.get("stride_h", 0),
                   o.get("dilation_h_factor", 1))
    ow = _conv_out(o.get("padding"), x.shape[2], kw, o.get("stride_w", 0),
                   o.get("dilation_w_factor", 1))
    _expect_shape(op, out, (x.shape[0], oh, ow, cout))


def _depthwise(model, op):
    x = _input(model, op, 0, "input")
    w = _input(model, op, 1, "filter")
    bias = _tensor(model, op, 2, optional=True)
    out = _outputs(model, op, 1)[0]
    _expect_rank(op, x, 4, "input 0")
    _expect_rank(op, w, 4, "input 1 (filter)")
    if w.shape[0] != 1:
        _bad_input(op, w, "input 1 (filter)", "filter shape", "[1, H, W, C]", _fmt(w.shape))
    cout = w.shape[3]
    _check_bias(op, bias, cout)
    o = op.options
    oh = _conv_out(o.get("padding"), x.shape[1], w.shape[1], o.get("stride_h", 0),
                   o.get("dilation_h_factor", 1))
    ow = _conv_out(o.get("padding"), x.shape[2], w.shape[2], o.get("stride_w", 0),
                   o.get("dilation_w_factor", 1))
    _expect_shape(op, out, (x.shape[0], oh, ow, cout))


def _check_bias(op, bias, channels):
    if bias is not None and bias.num_elements != channels:
        _bad_input(op, bias, "input 2 (bias)", "element count", channels, bias.num_elements)


def _pool(model, op):
    x = _input(model, op, 0, "input")
    out = _outputs(model, op, 1)[0]
    _expect_rank(op, x, 4, "input 0")
    o = op.options
    oh = _conv_out(o.get("padding"), x.shape[1], o.get("filter_height", 0), o.get("stride_h", 0), 1)
    ow = _conv_out(o.get("padding"), x.shape[2], o.get("filter_width", 0), o.get("stride_w", 0), 1)
    _expect_shape(op, out, (x.shape[0], oh, ow, x.shape[3]))


def _fully_connected(model, op):
    x = _input(model, op, 0, "input")
    w = _input(model, op, 1, "weights")
    bias = _tensor(model, op, 2, optional=True)
    out = _outputs(model, op, 1)[0]
    if op.options.get("weights_format", 0) != 0 or len(w.shape) != 2:
        raise _Skip                 # shuffled or sparse weights: another layout
    units, depth = w.shape
    _check_bias(op, bias, units)
    if depth == 0 or x.num_elements % depth:
        _bad_input(op, x, "input 0", "element count", f"a multiple of the weights' depth {depth}",
                   f"{x.num_elements} ({_fmt(x.shape)})")
    if op.options.get("keep_num_dims"):
        if not x.shape or x.shape[-1] != depth:
            _bad_input(op, x, "input 0", "last dimension", depth, _fmt(x.shape))
        _expect_shape(op, out, tuple(x.shape[:-1]) + (units,))
        return
    batches = x.num_elements // depth
    # TFLite resizes the output to [batches, units]; TFLM keeps the declared
    # shape and reads its last dimension and size, so any shape with those is run.
    if not out.shape or out.shape[-1] != units or out.num_elements != batches * units:
        _expect_shape(op, out, (batches, units))


def _same_elements(model, op):
    x = _input(model, op, 0, "input")
    out = _outputs(model, op, 1)[0]
    if out.num_elements != x.num_elements:
        raise _Bad(Inconsistency(
            "element count", out, f"{x.num_elements} (input {_fmt(x.shape)})",
            f"{out.num_elements} ({_fmt(out.shape)})", op, "output 0"))


def _same_shape(model, op):
    x = _input(model, op, 0, "input")
    for k, out in enumerate(_outputs(model, op, 1)[:1]):
        _expect_shape(op, out, x.shape, k)


def _binary(model, op):
    a = _input(model, op, 0, "first operand")
    b = _input(model, op, 1, "second operand")
    out = _outputs(model, op, 1)[0]
    expected = _broadcast(op, a, b)
    # TFLM broadcasts over shapes extended with leading 1s to a fixed rank and
    # keeps the declared output, so an output of higher rank is the same tensor.
    if _strip_ones(out.shape) != _strip_ones(expected):
        _expect_shape(op, out, expected)


def _strip_ones(shape) -> tuple[int, ...]:
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _add_n(model, op):
    ins = [model.tensors[i] for i in op.inputs if i != -1]
    out = _outputs(model, op, 1)[0]
    for k, t in enumerate(ins[1:], 1):
        if t.shape != ins[0].shape:
            _bad_input(op, t, f"input {k}", "shape", _fmt(ins[0].shape), _fmt(t.shape))
    if ins:
        _expect_shape(op, out, ins[0].shape)


def _reduce(model, op):
    x = _input(model, op, 0, "input")
    axes = _const_ints(_input(model, op, 1, "axes"))
    out = _outputs(model, op, 1)[0]
    rank = len(x.shape)
    norm = set()
    for a in axes:
        if not -rank <= a < rank:
            _bad_input(op, model.tensors[op.inputs[1]], "input 1 (axes)", "axis",
                       f"in [{-rank}, {rank})", a)
        norm.add(a % rank)
    if op.options.get("keep_dims"):
        expected = tuple(1 if i in norm else d for i, d in enumerate(x.shape))
    else:
        expected = tuple(d for i, d in enumerate(x.shape) if i not in norm)
    _expect_shape(op, out, expected)


def _concatenation(model, op):
    ins = [model.tensors[i] for i in op.inputs if i != -1]
    out = _outputs(model, op, 1)[0]
    if not ins:
        raise _Skip
    rank = len(ins[0].shape)
    axis = op.options.get("axis", 0)
    if not -rank <= axis < rank:
        raise _Bad(Inconsistency("concatenation axis", None, f"in [{-rank}, {rank})",
                                 str(axis), op))
    axis %= rank
    first = ins[0].shape
    for k, t in enumerate(ins[1:], 1):
        if len(t.shape) != rank or any(d != e for i, (d, e) in enumerate(zip(t.shape, first))
                                       if i != axis):
            _bad_input(op, t, f"input {k}", "shape",
                       f"{_fmt(first)} except along axis {axis}", _fmt(t.shape))
    expected = list(first)
    expected[axis] = sum(t.shape[axis] for t in ins)
    _expect_shape(op, out, expected)


def _pad(model, op):
    x = _input(model, op, 0, "input")
    pads = _const_ints(_input(model, op, 1, "paddings"))
    out = _outputs(model, op, 1)[0]
    rank = len(x.shape)
    if len(pads) != 2 * rank:
        _bad_input(op, model.tensors[op.inputs[1]], "input 1 (paddings)", "element count",
                   f"{2 * rank} (rank {rank} x 2)", len(pads))
    if any(p < 0 for p in pads):
        raise _Skip
    _expect_shape(op, out, [d + pads[2 * i] + pads[2 * i + 1] for i, d in enumerate(x.shape)])


def _transpose(model, op):
    x = _input(model, op, 0, "input")
    perm = _const_ints(_input(model, op, 1, "permutation"))
    out = _outputs(model, op, 1)[0]
    rank = len(x.shape)
    if sorted(p % rank if rank else p for p in perm) != list(range(rank)) or \
            any(not -rank <= p < rank for p in perm):
        _bad_input(op, model.tensors[op.inputs[1]], "input 1 (permutation)", "permutation",
                   f"of 0..{rank - 1}", perm)
    _expect_shape(op, out, [x.shape[p % rank] for p in perm])


def _strided_slice(model, op):
    x = _input(model, op, 0, "input")
    begin = _const_ints(_input(model, op, 1, "begin"))
    end = _const_ints(_input(model, op, 2, "end"))
    strides = _const_ints(_input(model, op, 3, "strides"))
    out = _outputs(model, op, 1)[0]
    o = op.options
    if o.get("ellipsis_mask") or o.get("new_axis_mask") or o.get("offset"):
        raise _Skip
    rank = len(x.shape)
    if not (len(begin) == len(end) == len(strides) == rank) or 0 in strides:
        raise _Skip
    lo, hi = -(1 << 31), (1 << 31) - 1
    shape = []
    for i, size in enumerate(x.shape):
        s = strides[i]
        shrink = bool(o.get("shrink_axis_mask", 0) & (1 << i))
        # StartForAxis / StopForAxis of strided_slice_logic.h
        if size == 0:
            start = stop = 0
        else:
            start = begin[i]
            if o.get("begin_mask", 0) & (1 << i):
                start = lo if s > 0 else hi
            if start < 0:
                start += size
            start = min(max(start, 0), size) if s > 0 else min(max(start, -1), size - 1)
            if shrink:
                stop = start + 1
            else:
                stop = end[i]
                if o.get("end_mask", 0) & (1 << i):
                    stop = hi if s > 0 else lo
                if stop < 0:
                    stop += size
                stop = min(max(stop, 0), size) if s > 0 else min(max(stop, -1), size - 1)
        if shrink:
            continue
        shape.append(max(math.ceil((stop - start) / s), 0))
    _expect_shape(op, out, shape)


def _slice(model, op):
    x = _input(model, op, 0, "input")
    begin = _const_ints(_input(model, op, 1, "begin"))
    size = _const_ints(_input(model, op, 2, "size"))
    out = _outputs(model, op, 1)[0]
    rank = len(x.shape)
    if len(begin) != rank or len(size) != rank:
        raise _Skip
    shape = []
    for b, s, d in zip(begin, size, x.shape):
        if s == -1:
            s = d - b
        if b < 0 or s < 0 or b + s > d:
            raise _Skip
        shape.append(s)
    _expect_shape(op, out, shape)


def _gather(model, op):
    params = _input(model, op, 0, "params")
    indices = _input(model, op, 1, "indices")
    out = _outputs(model, op, 1)[0]
    rank = len(params.shape)
    axis, batch_dims = op.options.get("axis", 0), op.options.get("batch_dims", 0)
    if not -rank <= axis < rank:
        raise _Skip
    axis %= rank
    if batch_dims < 0:
        batch_dims += len(indices.shape)
    if not 0 <= batch_dims <= axis:
        raise _Skip
    _expect_shape(op, out, params.shape[:axis] + indices.shape[batch_dims:]
                  + params.shape[axis + 1:])


def _split(model, op):
    axis = _const_ints(_input(model, op, 0, "axis"))
    x = _input(model, op, 1, "input")
    outs = _outputs(model, op, 1)
    rank = len(x.shape)
    if len(axis) != 1 or not -rank <= axis[0] < rank:
        raise _Skip
    a = axis[0] % rank
    n = len(outs)
    if x.shape[a] % n:
        raise _Bad(Inconsistency("split", x, f"dimension {a} divisible into {n} parts",
                                 _fmt(x.shape), op, "input 1"))
    for k, out in enumerate(outs):
        shape = list(x.shape)
        shape[a] //= n
        _expect_shape(op, out, shape, k)


def _pack(model, op):
    ins = [model.tensors[i] for i in op.inputs if i != -1]
    out = _outputs(model, op, 1)[0]
    if not ins:
        raise _Skip
    first = ins[0].shape
    for k, t in enumerate(ins[1:], 1):
        if t.shape != first:
            _bad_input(op, t, f"input {k}", "shape", _fmt(first), _fmt(t.shape))
    rank = len(first) + 1
    axis = op.options.get("axis", 0)
    if not -rank <= axis < rank:
        raise _Skip
    axis %= rank
    _expect_shape(op, out, first[:axis] + (len(ins),) + first[axis:])


def _unpack(model, op):
    x = _input(model, op, 0, "input")
    outs = _outputs(model, op, 1)
    rank = len(x.shape)
    axis = op.options.get("axis", 0)
    if not -rank <= axis < rank:
        raise _Skip
    axis %= rank
    for k, out in enumerate(outs):
        _expect_shape(op, out, x.shape[:axis] + x.shape[axis + 1:], k)


def _resize(model, op):
    x = _input(model, op, 0, "input")
    size = _const_ints(_input(model, op, 1, "size"))
    out = _outputs(model, op, 1)[0]
    if len(x.shape) != 4 or len(size) != 2:
        raise _Skip
    _expect_shape(op, out, (x.shape[0], size[0], size[1], x.shape[3]))


def _arg_minmax(model, op):
    x = _input(model, op, 0, "input")
    axis = _const_ints(_input(model, op, 1, "axis"))
    out = _outputs(model, op, 1)[0]
    rank = len(x.shape)
    if len(axis) != 1 or not -rank <= axis[0] < rank:
        raise _Skip
    a = axis[0] % rank
    _expect_shape(op, out, x.shape[:a] + x.shape[a + 1:])


def _lstm(model, op):
    x = _input(model, op, 0, "input")
    rec_out = _tensor(model, op, 8, optional=True)   # recurrent_to_output_weights
    out = _outputs(model, op, 1)[0]
    if rec_out is None or len(x.shape) != 3 or len(rec_out.shape) != 2:
        raise _Skip
    _expect_shape(op, out, x.shape[:2] + (rec_out.shape[1],))


_RULES: dict[str, Callable[[Model, Operator], None]] = {
    "CONV_2D": _conv_2d,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool, "L2_POOL_2D": _pool,
    "RESHAPE": _same_elements, "SQUEEZE": _same_elements, "EXPAND_DIMS": _same_elements,
    "MEAN": _reduce, "SUM": _reduce, "REDUCE_MAX": _reduce, "REDUCE_MIN": _reduce,
    "REDUCE_PROD": _reduce, "REDUCE_ANY": _reduce,
    "CONCATENATION": _concatenation,
    "PAD": _pad, "PADV2": _pad,
    "TRANSPOSE": _transpose,
    "STRIDED_SLICE": _strided_slice,
    "SLICE": _slice,
    "GATHER": _gather,
    "SPLIT": _split,
    "PACK": _pack,
    "UNPACK": _unpack,
    "RESIZE_NEAREST_NEIGHBOR": _resize, "RESIZE_BILINEAR": _resize,
    "ARG_MAX": _arg_minmax, "ARG_MIN": _arg_minmax,
    "ADD_N": _add_n,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _lstm,
}
for _name in ("ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM",
              "FLOOR_DIV", "FLOOR_MOD", "POW", "EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL",
              "GREATER", "GREATER_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "PRELU"):
    _RULES[_name] = _binary
for _name in ("SOFTMAX", "LOG_SOFTMAX", "LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1",
              "RELU_0_TO_1", "LEAKY_RELU", "HARD_SWISH", "ELU", "ABS", "NEG", "SQRT", "RSQRT",
              "EXP", "LOG", "SIN", "COS", "FLOOR", "CEIL", "ROUND", "SQUARE", "LOGICAL_NOT",
              "QUANTIZE", "DEQUANTIZE", "L2_NORMALIZATION", "LOCAL_RESPONSE_NORMALIZATION",
              "ZEROS_LIKE", "ONES_LIKE", "SIGN", "GELU"):
    _RULES[_name] = _same_shape
