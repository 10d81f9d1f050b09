"""Lowerings of the operators that select, reorder or replicate elements
without changing them: STRIDED_SLICE, REVERSE_V2, BROADCAST_TO (onto
tg_gather), UNPACK, SPLIT, SPLIT_V (onto tg_split) and PACK (tg_pack), in
firmware_templates/aot/kernels/tg_slice.c.

TFLM's kernels copy the bytes of these operators and never requantize, so
the aot kernels copy bytes too and work for every element type.  Which
elements are picked follows TFLM's own index arithmetic (for STRIDED_SLICE:
the clamping and mask rules of its evaluation, its output-shape check, and
the masks it ignores: ellipsis_mask, new_axis_mask and `offset`).
"""

from __future__ import annotations

import math

import numpy as np

from ...ir import Operator, Tensor
from ..c_literals import c_ints
from ..lowering import ConstArray, KernelCall, LoweringContext, LoweringError, lowers

MAX_GATHER_DIMS = 6   # TG_GATHER_MAX_DIMS
_SOURCES = ["tg_slice.c", "tg_slice.h"]
_COPYABLE = {"int8", "uint8", "int16", "int32", "float32", "bool", "int64"}
INT_MAX = (1 << 31) - 1
INT_MIN = -(1 << 31)


def _fail(op: Operator, why: str) -> LoweringError:
    return LoweringError(f"{op.describe()}: {why}")




def _io(op: Operator, ctx: LoweringContext, k: int, out: bool = False) -> Tensor:
    idx = (op.outputs if out else op.inputs)
    if k >= len(idx) or idx[k] < 0:
        raise _fail(op, f"{'output' if out else 'input'} {k} is missing")
    return ctx.model.tensors[idx[k]]


def _const_ints(op: Operator, t: Tensor, what: str) -> list[int]:
    if not t.is_constant:
        raise _fail(op, f"the {what} tensor is not a constant (the aot runtime needs it at "
                        "build time)")
    if t.dtype not in ("int32", "int64"):
        raise _fail(op, f"the {what} tensor is {t.dtype}; expected int32")
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def _check_copy(op: Operator, x: Tensor, ys: list[Tensor]) -> None:
    if x.dtype not in _COPYABLE:
        raise _fail(op, f"element type {x.dtype} is not supported")
    for y in ys:
        if y.dtype != x.dtype:
            raise _fail(op, f"input {x.dtype} and output {y.dtype} differ")


def _strides(shape) -> list[int]:
    out, acc = [], 1
    for d in reversed([int(v) for v in shape]):
        out.append(acc)
        acc *= d
    return list(reversed(out))


# ---------------------------------------------------------------------------
# the gather plan


def gather_plan(loops: list[tuple[int, int]], start: int, itemsize: int) -> dict:
    """Reduce a loop nest (count, element step), outermost first, starting at
    element `start`, to tg_gather's fields (bytes).  Size-1 loops vanish,
    loops that continue each other merge, a contiguous innermost loop becomes
    the copy run."""
    if any(c <= 0 for c, _ in loops):
        return {"ndim": 0, "count": [], "step": [], "start": 0, "run": 0}
    dims = [(int(c), int(s)) for c, s in loops if c != 1]
    i = len(dims) - 2
    while i >= 0:
        c_out, s_out = dims[i]
        c_in, s_in = dims[i + 1]
        if s_out == s_in * c_in:
            dims[i + 1] = (c_in * c_out, s_in)
            del dims[i]
        i -= 1
    run = itemsize
    if dims and dims[-1][1] == 1:
        run = dims[-1][0] * itemsize
        dims.pop()
    if len(dims) > MAX_GATHER_DIMS:
        raise LoweringError(f"the selection needs {len(dims)} loop dimensions (the kernel "
                            f"iterates over {MAX_GATHER_DIMS})")
    return {"ndim": len(dims), "count": [c for c, _ in dims],
            "step": [s * itemsize for _, s in dims], "start": int(start) * itemsize,
            "run": run}


def gather_call(op: Operator, x: Tensor, y: Tensor, plan: dict, comment: str) -> KernelCall:
    total = plan["run"]
    for c in plan["count"]:
        total *= c
    if total != y.nbytes:
        raise _fail(op, f"the selection yields {total} bytes but the output "
                        f"{list(y.shape)} holds {y.nbytes}")
    params = {"ndim": str(plan["ndim"]),
              "count": c_ints(plan["count"], MAX_GATHER_DIMS),
              "step": c_ints(plan["step"], MAX_GATHER_DIMS),
              "start": str(plan["start"]), "run": str(plan["run"])}
    return KernelCall(kernel="tg_gather", params_type="tg_gather_params", params=params,
                      inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=list(_SOURCES),
                      comment=comment)


# ---------------------------------------------------------------------------
# STRIDED_SLICE (TFLM: reference_ops::StridedSlice on the shape padded to 5-D)


def _clamp(v: int, lo: int, hi: int) -> int:
    return hi if v > hi else (lo if v < lo else v)


def strided_slice_loops(shape, begin, end, strides, begin_mask: int, end_mask: int,
                        shrink_mask: int) -> list[tuple[int, int]]:
    """(first index, iteration count, index step) per axis of the input, as
    TFLM's evaluation walks them (ellipsis/new-axis masks and `offset`
    ignored, as TFLM does)."""
    rank = len(shape)
    pad = 5 - rank
    shape5 = [1] * pad + [int(d) for d in shape]
    b5 = [0] * pad + list(begin)
    e5 = [1] * pad + list(end)
    s5 = [1] * pad + list(strides)
    bm = (begin_mask << pad) | ((1 << pad) - 1)
    em = (end_mask << pad) | ((1 << pad) - 1)
    sm = shrink_mask << pad
    out = []
    for a in range(5):
        size, stride = shape5[a], s5[a]
        if stride == 0:
            raise LoweringError("a stride of 0")
        start = b5[a]
        if start < 0:
            start += size
        start = _clamp(start, 0, size) if stride > 0 else _clamp(start, -1, size - 1)
        if bm & (1 << a):
            start = 0 if stride > 0 else size - 1
        if sm & (1 << a):
            stop = start if start >= size else start + 1
        else:
            stop = e5[a]
            if stop < 0:
                stop += size
            stop = _clamp(stop, 0, size) if stride > 0 else _clamp(stop, -1, size - 1)
            if em & (1 << a):
                stop = size if stride > 0 else -1
        if stride > 0:
            count = max(0, -(-(stop - start) // stride))
        else:
            count = max(0, -(-(start - stop) // -stride))
        out.append((start, count, stride))
    return out[pad:] if pad >= 0 else out


def strided_slice_out_shape(shape, begin, end, strides, begin_mask: int, end_mask: int,
                            shrink_mask: int) -> list[int]:
    """The output shape TFLM's Prepare requires (StartForAxis/StopForAxis,
    ceil in float32)."""
    dims = []
    for a, size in enumerate(int(d) for d in shape):
        stride = strides[a]
        if size == 0:
            start = stop = 0
        else:
            start = begin[a]
            if begin_mask & (1 << a):
                start = INT_MIN if stride > 0 else INT_MAX
            if start < 0:
                start += size
            start = _clamp(start, 0, size) if stride > 0 else _clamp(start, -1, size - 1)
            shrink = bool(shrink_mask & (1 << a))
            if shrink:
                stop = start + 1
            else:
                stop = end[a]
                if end_mask & (1 << a):
                    stop = INT_MAX if stride > 0 else INT_MIN
                if stop < 0:
                    stop += size
                stop = _clamp(stop, 0, size) if stride > 0 else _clamp(stop, -1, size - 1)
        if shrink_mask & (1 << a):
            continue
        q = np.float32(stop - start) / np.float32(stride)
        dims.append(max(0, int(math.ceil(float(q)))))
    return dims


@lowers("STRIDED_SLICE")
def lower_strided_slice(op: Operator, ctx: LoweringContext) -> KernelCall:
    if len(op.inputs) != 4 or len(op.outputs) != 1:
        raise _fail(op, "expects 4 inputs (input, begin, end, strides) and 1 output")
    x, y = _io(op, ctx, 0), _io(op, ctx, 0, out=True)
    _check_copy(op, x, [y])
    rank = len(x.shape)
    if not 1 <= rank <= 4:
        raise _fail(op, f"input of rank {rank} (TFLM's STRIDED_SLICE takes rank 1 to 4)")
    begin = _const_ints(op, _io(op, ctx, 1), "begin")
    end = _const_ints(op, _io(op, ctx, 2), "end")
    strides = _const_ints(op, _io(op, ctx, 3), "strides")
    if not len(begin) == len(end) == len(strides) == rank:
        raise _fail(op, f"begin/end/strides have {len(begin)}/{len(end)}/{len(strides)} "
                        f"entries for an input of rank {rank}")
    if any(s == 0 for s in strides):
        raise _fail(op, "a stride is 0")
    o = op.options
    bm, em, sm = (int(o.get(k, 0) or 0) for k in ("begin_mask", "end_mask", "shrink_axis_mask"))
    want = strided_slice_out_shape(x.shape, begin, end, strides, bm, em, sm)
    if [int(d) for d in y.shape] != want:
        raise _fail(op, f"output shape {list(y.shape)} differs from the {want} TFLM computes "
                        "(ellipsis and new-axis masks are not supported)")
    axes = strided_slice_loops(x.shape, begin, end, strides, bm, em, sm)
    st = _strides(x.shape)
    start = sum(a[0] * s for a, s in zip(axes, st) if a[1] > 0)
    plan = gather_plan([(c, step * s) for (_, c, step), s in zip(axes, st)], start, x.itemsize)
    return gather_call(op, x, y, plan,
                       f"STRIDED_SLICE {list(x.shape)} -> {list(y.shape)} begin {begin} end "
                       f"{end} strides {strides} masks b{bm} e{em} s{sm}")


# ---------------------------------------------------------------------------
# REVERSE_V2


@lowers("REVERSE_V2")
def lower_reverse(op: Operator, ctx: LoweringContext) -> KernelCall:
    if len(op.inputs) != 2 or len(op.outputs) != 1:
        raise _fail(op, "expects 2 inputs (input, axes) and 1 output")
    x, y = _io(op, ctx, 0), _io(op, ctx, 0, out=True)
    _check_copy(op, x, [y])
    if tuple(x.shape) != tuple(y.shape):
        raise _fail(op, f"output shape {list(y.shape)} differs from input {list(x.shape)}")
    rank = len(x.shape)
    axes = _const_ints(op, _io(op, ctx, 1), "axis")
    if len(axes) > rank:
        raise _fail(op, f"{len(axes)} axes for a rank-{rank} input")
    axes = sorted(a + rank if a < 0 else a for a in axes)
    if any(not 0 <= a < rank for a in axes):
        raise _fail(op, f"axis out of range for rank {rank}")
    if any(b != a + 1 for a, b in zip(axes, axes[1:])):
        raise _fail(op, f"axes {axes} are not contiguous (TFLM reverses contiguous axes only)")
    st = _strides(x.shape)
    loops, start = [], 0
    for d, (size, s) in enumerate(zip(x.shape, st)):
        if d in axes:
            start += (int(size) - 1) * s
            loops.append((int(size), -s))
        else:
            loops.append((int(size), s))
    plan = gather_plan(loops, start, x.itemsize)
    return gather_call(op, x, y, plan, f"REVERSE_V2 {list(x.shape)} axes {axes}")


# ---------------------------------------------------------------------------
# BROADCAST_TO


@lowers("BROADCAST_TO")
def lower_broadcast_to(op: Operator, ctx: LoweringContext) -> KernelCall:
    if len(op.inputs) != 2 or len(op.outputs) != 1:
        raise _fail(op, "expects 2 inputs (input, shape) and 1 output")
    x, y = _io(op, ctx, 0), _io(op, ctx, 0, out=True)
    _check_copy(op, x, [y])
    out = [int(d) for d in y.shape]
    shape_t = _io(op, ctx, 1)
    if shape_t.is_constant and _const_ints(op, shape_t, "shape") != out:
        raise _fail(op, f"the shape tensor disagrees with the output shape {out}")
    if len(x.shape) > len(out) or len(out) > 5:
        raise _fail(op, f"cannot broadcast {list(x.shape)} to {out} (TFLM: rank <= 5)")
    ins = [1] * (len(out) - len(x.shape)) + [int(d) for d in x.shape]
    st = _strides(ins)
    loops = []
    for i, o, s in zip(ins, out, st):
        if i not in (1, o):
            raise _fail(op, f"cannot broadcast {list(x.shape)} to {out}")
        loops.append((o, 0 if i == 1 else s))
    plan = gather_plan(loops, 0, x.itemsize)
    return gather_call(op, x, y, plan, f"BROADCAST_TO {list(x.shape)} -> {out}")


# ---------------------------------------------------------------------------
# UNPACK, SPLIT, SPLIT_V


def split_call(op: Operator, ctx: LoweringContext, x: Tensor, ys: list[Tensor], axis: int,
               sizes: list[int], comment: str) -> KernelCall:
    _check_copy(op, x, ys)
    rank = len(x.shape)
    if not 0 <= axis < rank:
        raise _fail(op, f"axis {axis} out of range for rank {rank}")
    if sum(sizes) != int(x.shape[axis]) or any(s < 0 for s in sizes):
        raise _fail(op, f"split sizes {sizes} do not add up to dimension {axis} "
                        f"({int(x.shape[axis])})")
    outer = int(np.prod([int(d) for d in x.shape[:axis]], dtype=np.int64))
    inner = int(np.prod([int(d) for d in x.shape[axis + 1:]], dtype=np.int64)) * x.itemsize
    for y, s in zip(ys, sizes):
        if y.nbytes != outer * s * inner:
            raise _fail(op, f"output '{y.name}' {list(y.shape)} does not hold a part of "
                            f"{s} along axis {axis}")
    parts = np.asarray([s * inner for s in sizes], np.int32)
    name = ctx.name(op, "parts")
    return KernelCall(
        kernel="tg_split", params_type="tg_split_params",
        params={"num_outputs": str(len(ys)), "outer": str(outer),
                "row_bytes": str(int(x.shape[axis]) * inner), "part_bytes": name},
        inputs=[x.index], outputs=list(op.outputs), sources=list(_SOURCES),
        constants=[ConstArray(name, "int32_t", parts, is_weight=False)], comment=comment)


@lowers("UNPACK")
def lower_unpack(op: Operator, ctx: LoweringContext) -> KernelCall:
    x = _io(op, ctx, 0)
    rank = len(x.shape)
    axis = int(op.options.get("axis", 0) or 0)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise _fail(op, f"axis out of range for rank {rank}")
    n = int(x.shape[axis])
    if len(op.outputs) != n:
        raise _fail(op, f"{len(op.outputs)} outputs for a dimension of {n}")
    ys = [_io(op, ctx, k, out=True) for k in range(n)]
    want = [int(d) for i, d in enumerate(x.shape) if i != axis]
    for y in ys:
        if [int(d) for d in y.shape] != want:
            raise _fail(op, f"output '{y.name}' {list(y.shape)}, expected {want}")
    return split_call(op, ctx, x, ys, axis, [1] * n, f"UNPACK {list(x.shape)} axis {axis}")


def _split_axis(op: Operator, ctx: LoweringContext, t: Tensor, rank: int) -> int:
    vals = _const_ints(op, t, "axis")
    if len(vals) != 1:
        raise _fail(op, "the axis tensor must hold one value")
    return vals[0] + rank if vals[0] < 0 else vals[0]


@lowers("SPLIT")
def lower_split(op: Operator, ctx: LoweringContext) -> KernelCall:
    if len(op.inputs) != 2:
        raise _fail(op, "expects 2 inputs (axis, input)")
    x = _io(op, ctx, 1)
    axis = _split_axis(op, ctx, _io(op, ctx, 0), len(x.shape))
    n = len(op.outputs)
    if n == 0 or not 0 <= axis < len(x.shape) or int(x.shape[axis]) % n:
        raise _fail(op, f"cannot split {list(x.shape)} into {n} equal parts along axis {axis}")
    ys = [_io(op, ctx, k, out=True) for k in range(n)]
    call = split_call(op, ctx, x, ys, axis, [int(x.shape[axis]) // n] * n,
                      f"SPLIT {list(x.shape)} axis {axis} into {n}")
    call.inputs = [op.inputs[1]]
    return call


@lowers("SPLIT_V")
def lower_split_v(op: Operator, ctx: LoweringContext) -> KernelCall:
    if len(op.inputs) != 3:
        raise _fail(op, "expects 3 inputs (input, size_splits, axis)")
    x = _io(op, ctx, 0)
    rank = len(x.shape)
    axis = _split_axis(op, ctx, _io(op, ctx, 2), rank)
    if not 0 <= axis < rank:
        raise _fail(op, f"axis out of range for rank {rank}")
    n = len(op.outputs)
    ys = [_io(op, ctx, k, out=True) for k in range(n)]
    # the outputs' shapes are authoritative (size_splits may hold one -1)
    sizes = [int(y.shape[axis]) if len(y.shape) == rank else -1 for y in ys]
    if any(s < 0 for s in sizes):
        raise _fail(op, "outputs must keep the input's rank")
    splits_t = _io(op, ctx, 1)
    if splits_t.is_constant:
        given = _const_ints(op, splits_t, "size_splits")
        if len(given) != n or any(g not in (-1, s) for g, s in zip(given, sizes)):
            raise _fail(op, f"size_splits {given} disagree with the output shapes {sizes}")
    return split_call(op, ctx, x, ys, axis, sizes,
                      f"SPLIT_V {list(x.shape)} axis {axis} into {sizes}")


@lowers("PACK")
def lower_pack(op: Operator, ctx: LoweringContext) -> KernelCall:
    ins = list(op.inputs)
    if not ins or any(i < 0 for i in ins) or len(op.outputs) != 1:
        raise _fail(op, "expects one or more inputs and 1 output")
    xs = [ctx.model.tensors[i] for i in ins]
    y = _io(op, ctx, 0, out=True)
    _check_copy(op, xs[0], [y] + xs[1:])
    rank = len(xs[0].shape)
    axis = int(op.options.get("axis", 0) or 0)
    axis = axis + rank + 1 if axis < 0 else axis
    if not 0 <= axis <= rank:
        raise _fail(op, f"axis out of range for inputs of rank {rank}")
    shape = [int(d) for d in xs[0].shape]
    for x in xs:
        if [int(d) for d in x.shape] != shape:
            raise _fail(op, f"input '{x.name}' {list(x.shape)} differs from {shape}")
    want = shape[:axis] + [len(xs)] + shape[axis:]
    if [int(d) for d in y.shape] != want:
        raise _fail(op, f"output {list(y.shape)}, expected {want}")
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    part = int(np.prod(shape[axis:], dtype=np.int64)) * xs[0].itemsize
    return KernelCall(
        kernel="tg_pack", params_type="tg_pack_params",
        params={"num_inputs": str(len(xs)), "outer": str(outer), "part_bytes": str(part)},
        inputs=ins, outputs=[op.outputs[0]], sources=list(_SOURCES),
        comment=f"PACK {len(xs)} x {shape} axis {axis}")
