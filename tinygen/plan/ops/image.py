"""RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR and GATHER onto tg_image.c: the
ops a camera front end (`tinygen frontend --image`) needs beyond the rest.

The resizes' source rows, columns and weights depend on the shapes only, so
they are computed here with TFLM's arithmetic (reference_ops::
GetNearestNeighbor in single precision, ResizeBilinearInteger's Q10 scale with
C's truncating division) and baked into flash; the kernels index.
"""

from __future__ import annotations

import math

import numpy as np

from ...ir import Operator, Tensor
from ..lowering import ConstArray, KernelCall, LoweringContext, LoweringError, lowers

_SOURCES = ["tg_image.c", "tg_image.h"]


def _fail(op: Operator, why: str) -> LoweringError:
    return LoweringError(f"{op.describe()}: {why}")


def _io(op: Operator, ctx: LoweringContext, k: int, out: bool = False) -> Tensor:
    idx = op.outputs if out else op.inputs
    if k >= len(idx) or idx[k] < 0:
        raise _fail(op, f"{'output' if out else 'input'} {k} is missing")
    return ctx.model.tensors[idx[k]]


def _cdiv(a: int, b: int) -> int:
    """C's integer division (toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def nearest_sources(out_size: int, in_size: int, align_corners: bool,
                    half_pixel_centers: bool) -> list[int]:
    """reference_ops::GetNearestNeighbor for every output index."""
    f = np.float32
    if align_corners and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    else:
        scale = f(in_size) / f(out_size)
    offset = f(0.5) if half_pixel_centers else f(0.0)
    out = []
    for v in range(out_size):
        x = f(f(v) + offset) * scale
        if align_corners:
            r = int(math.floor(abs(float(x)) + 0.5)) * (1 if x >= 0 else -1)  # std::round
        else:
            r = int(math.floor(float(x)))
        r = min(r, in_size - 1)
        if half_pixel_centers:
            r = max(0, r)
        out.append(r)
    return out


def bilinear_sources(out_size: int, in_size: int, align_corners: bool,
                     half_pixel_centers: bool) -> tuple[list[int], list[int], list[int]]:
    """ResizeBilinearInteger's (lower, upper, Q10 distance from lower) per output index."""
    scale = _cdiv((1 << 10) * in_size + out_size // 2, out_size)
    if align_corners and out_size > 1:
        scale = _cdiv((1 << 10) * (in_size - 1) + (out_size - 1) // 2, out_size - 1)
    lo, hi, d = [], [], []
    for v in range(out_size):
        scaled = v * scale + _cdiv(scale, 2) - (1 << 9) if half_pixel_centers else v * scale
        lower = max(_cdiv(scaled, 1 << 10), 0)
        upper = min(_cdiv(scaled + (1 << 10) - 1, 1 << 10), in_size - 1)
        lo.append(lower)
        hi.append(upper)
        d.append(scaled - (1 << 10) * lower)
    return lo, hi, d


def _resize_common(op: Operator, ctx: LoweringContext):
    if len(op.inputs) != 2 or len(op.outputs) != 1:
        raise _fail(op, "expects 2 inputs (image, size) and 1 output")
    x, size, y = _io(op, ctx, 0), _io(op, ctx, 1), _io(op, ctx, 0, out=True)
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise _fail(op, f"input {list(x.shape)} / output {list(y.shape)} are not 4-D images")
    if not size.is_constant or size.dtype != "int32" or size.num_elements != 2:
        raise _fail(op, "the size tensor is not a constant int32 [2] (TFLM requires one)")
    oh, ow = (int(v) for v in np.asarray(size.data).reshape(-1))
    b, ih, iw, c = (int(d) for d in x.shape)
    if [int(d) for d in y.shape] != [b, oh, ow, c]:
        raise _fail(op, f"output {list(y.shape)} is not [{b}, {oh}, {ow}, {c}]")
    if y.dtype != x.dtype:
        raise _fail(op, f"input {x.dtype} and output {y.dtype} differ")
    ac = bool(op.options.get("align_corners", False))
    hp = bool(op.options.get("half_pixel_centers", False))
    if ac and hp:
        raise _fail(op, "align_corners and half_pixel_centers are both set (TFLM refuses it)")
    dims = {"batches": str(b), "in_height": str(ih), "in_width": str(iw),
            "out_height": str(oh), "out_width": str(ow)}
    return x, y, (b, ih, iw, c, oh, ow), ac, hp, dims


def _consts(ctx: LoweringContext, op: Operator, **arrays) -> tuple[dict, list[ConstArray]]:
    params, consts = {}, []
    for key, vals in arrays.items():
        name = ctx.name(op, key)
        params[key] = name
        consts.append(ConstArray(name, "int32_t", np.asarray(vals, np.int32), is_weight=False))
    return params, consts


@lowers("RESIZE_NEAREST_NEIGHBOR")
def lower_resize_nearest(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y, (b, ih, iw, c, oh, ow), ac, hp, dims = _resize_common(op, ctx)
    if x.dtype not in ("int8", "int16", "float32"):
        raise _fail(op, f"element type {x.dtype} (TFLM takes int8, int16, float32)")
    p, consts = _consts(ctx, op, src_y=nearest_sources(oh, ih, ac, hp),
                        src_x=nearest_sources(ow, iw, ac, hp))
    return KernelCall(
        kernel="tg_resize_nearest", params_type="tg_resize_nearest_params",
        params={**dims, "pixel_bytes": str(c * x.itemsize), **p},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=list(_SOURCES),
        constants=consts,
        comment=f"RESIZE_NEAREST_NEIGHBOR {list(x.shape)} -> {list(y.shape)} "
                f"align_corners {ac} half_pixel_centers {hp}")


@lowers("RESIZE_BILINEAR")
def lower_resize_bilinear(op: Operator, ctx: LoweringContext) -> KernelCall:
    x, y, (b, ih, iw, c, oh, ow), ac, hp, dims = _resize_common(op, ctx)
    if x.dtype != "int8":
        raise _fail(op, f"element type {x.dtype} (the aot kernel takes int8)")
    y0, y1, dy = bilinear_sources(oh, ih, ac, hp)
    x0, x1, dx = bilinear_sources(ow, iw, ac, hp)
    p, consts = _consts(ctx, op, y0=y0, y1=y1, dy=dy, x0=x0, x1=x1, dx=dx)
    return KernelCall(
        kernel="tg_resize_bilinear_s8", params_type="tg_resize_bilinear_params",
        params={**dims, "depth": str(c), **p},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]], sources=list(_SOURCES),
        constants=consts,
        comment=f"RESIZE_BILINEAR {list(x.shape)} -> {list(y.shape)} "
                f"align_corners {ac} half_pixel_centers {hp}")


@lowers("GATHER")
def lower_gather(op: Operator, ctx: LoweringContext) -> KernelCall:
    if len(op.inputs) != 2 or len(op.outputs) != 1:
        raise _fail(op, "expects 2 inputs (params, indices) and 1 output")
    x, idx, y = _io(op, ctx, 0), _io(op, ctx, 1), _io(op, ctx, 0, out=True)
    if x.dtype not in ("int8", "float32"):
        raise _fail(op, f"params of type {x.dtype} (TFLM takes int8 and float32)")
    if idx.dtype != "int32":
        raise _fail(op, f"indices of type {idx.dtype} (TFLM takes int32)")
    if y.dtype != x.dtype:
        raise _fail(op, f"params {x.dtype} and output {y.dtype} differ")
    xs, cs = [int(d) for d in x.shape], [int(d) for d in idx.shape]
    axis, bd = int(op.options.get("axis", 0)), int(op.options.get("batch_dims", 0))
    axis += len(xs) if axis < 0 else 0
    bd += len(cs) if bd < 0 else 0
    if not (0 <= bd <= axis < len(xs) and bd <= len(cs)) or xs[:bd] != cs[:bd]:
        raise _fail(op, f"axis {axis} / batch_dims {bd} do not fit params {xs} and "
                        f"indices {cs}")
    want = xs[:axis] + cs[bd:] + xs[axis + 1:]
    if [int(d) for d in y.shape] != want:
        raise _fail(op, f"output {list(y.shape)} is not the {want} GATHER gives")
    prod = math.prod
    params = {"batch_size": str(prod(xs[:bd])), "outer_size": str(prod(xs[bd:axis])),
              "axis_size": str(xs[axis]), "coord_size": str(prod(cs[bd:])),
              "inner_bytes": str(prod(xs[axis + 1:]) * x.itemsize)}
    return KernelCall(
        kernel="tg_gather_rows", params_type="tg_gather_rows_params", params=params,
        inputs=[op.inputs[0], op.inputs[1]], outputs=[op.outputs[0]], sources=list(_SOURCES),
        comment=f"GATHER {xs}[{cs}] axis {axis} batch_dims {bd}")
