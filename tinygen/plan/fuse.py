"""Operator fusion over the aot plan: a map nobody stores.

A convolution or depthwise convolution whose output is read by nothing but a
FULLY_CONNECTED layer (directly or through reshapes) can run without storing
that output: the producer computes a few rows at a time into scratch and the
FC adds each chunk's part of its dot products to int32 accumulators
(tg_stream_fc_*.c).  The arena then needs the producer's input, the chunk and
the accumulators instead of the whole map, which is what holds the peak of
models like tiny_conv (a 4,000 B depthwise output before a 12-unit FC).
Integer accumulation does not depend on how the sum is split, and the FC's
requantization still runs once on the whole sum.

A convolution whose output only a depthwise reads (MobileNet's pointwise or
expansion layer before its depthwise) is streamed the same way the other
direction round (tg_stream_dw.c): the depthwise runs one output row at a
time and the convolution computes, just before, the map rows that row's
windows reach into a buffer of filter_h rows.

A convolution whose output only an average or max pool reads (the
quickstart's pointwise layer before its 2x2 pool) is streamed like the
depthwise case (tg_stream_pool.c), and since each pool row is written after
the input rows it needs were read, the pool's output may lie over the start
of the convolution's input (stream_pool_overlap).

Either way every value is computed once by the same kernel as unfused, so the
outputs are the unfused pair's bits.  Fusions cost instructions (a call of
each kernel per chunk, the buffer's row shifts: ds_cnn_kws +2.5 %,
quickstart +1.8 %, the MobileNets +0.2 %), so they are taken only when
together they shrink the arena by at least MIN_GAIN of the unfused arena --
the mirror of memory_first's rule that scratch may grow it by 1/8 for speed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

from ..ir import Model
from .lowering import KernelCall
from .memory import MemoryPlan, plan_memory

# producer kernel -> (fused kernel, its params type, its source)
PRODUCERS = {"tg_conv2d_dsp_s8": ("tg_stream_fc_conv_s8", "tg_stream_fc_conv_params",
                                  "tg_stream_fc_conv.c"),
             "tg_depthwise_dsp_s8": ("tg_stream_fc_dw_s8", "tg_stream_fc_dw_params",
                                     "tg_stream_fc_dw.c")}
CONSUMER = "tg_fully_connected_dsp_s8"
MIN_GAIN = 0.125
DEPTHWISE = "tg_depthwise_dsp_s8"
POOLS = {"tg_avg_pool2d_s8": "0", "tg_max_pool2d_s8": "1"}


def _readers(calls: list[KernelCall]) -> dict[int, list[int]]:
    readers: dict[int, list[int]] = {}
    for k, c in enumerate(calls):
        for t in c.inputs:
            readers.setdefault(t, []).append(k)
    return readers


def stream_candidate(model: Model, calls: list[KernelCall], k: int) -> list[int] | None:
    """[producer, views..., FC] operator indices when call k's output map is
    read only by a FULLY_CONNECTED of batch 1 (through view operators)."""
    prod = calls[k]
    if prod.kernel not in PRODUCERS or prod.absorbed_by is not None or len(prod.outputs) != 1:
        return None
    shape = [int(d) for d in model.tensors[prod.outputs[0]].shape]
    if len(shape) != 4 or shape[0] != 1:
        return None
    readers = _readers(calls)
    outputs = set(model.outputs)
    chain = [k]
    t = prod.outputs[0]
    while True:
        if t in outputs or model.tensors[t].is_variable:
            return None
        r = readers.get(t, [])
        if len(r) != 1:
            return None
        nxt = calls[r[0]]
        if nxt.absorbed_by is not None or nxt.fused or nxt.inputs[:1] != [t] \
                or t in nxt.inputs[1:]:
            return None
        chain.append(r[0])
        if nxt.view and len(nxt.outputs) == 1:
            t = nxt.outputs[0]
            continue
        if nxt.kernel != CONSUMER or nxt.params.get("batches") != "1" \
                or int(nxt.params["depth"]) != math.prod(shape):
            return None
        return chain


def stream_rows(out_w: int, out_c: int, out_h: int) -> int:
    """Fewest output rows per chunk such that every chunk but the last ends on
    a whole group of four map bytes (the FC's weight words) and an even number
    of pixels (the conv kernel computes pixel pairs)."""
    for r in range(1, out_h + 1):
        if (r * out_w * out_c) % 4 == 0 and (r * out_w) % 2 == 0:
            return r
    return out_h


def fuse_stream(model: Model, calls: list[KernelCall], chain: list[int]) -> list[KernelCall]:
    """calls with chain[0] .. chain[-1] replaced by one streamed call at chain[-1]."""
    prod, fc = calls[chain[0]], calls[chain[-1]]
    kernel, params_type, source = PRODUCERS[prod.kernel]
    _, oh, ow, oc = (int(d) for d in model.tensors[prod.outputs[0]].shape)
    rows = stream_rows(ow, oc, oh)
    units = int(fc.params["units"])
    chunk = -(-rows * ow * oc // 16) * 16
    scratch = 16 * (-(-units // 4)) + chunk + prod.scratch_bytes
    params = {**{f"producer.{k}": v for k, v in prod.params.items()},
              **{f"fc.{k}": v for k, v in fc.params.items()},
              "rows": str(rows)}
    sources = list(dict.fromkeys(prod.sources + fc.sources + [source, "tg_stream_fc.h"]))
    fused = KernelCall(
        kernel=kernel, params_type=params_type, params=params,
        inputs=list(prod.inputs), outputs=list(fc.outputs), sources=sources,
        constants=list(prod.constants) + list(fc.constants), scratch_bytes=scratch,
        comment=f"{fc.comment}, fed {rows} row(s) at a time by #{chain[0]} "
                f"{prod.comment} (its map never stored)",
        fused=tuple(chain[:-1]))
    out = list(calls)
    for i in chain[:-1]:
        out[i] = replace(calls[i], constants=[], scratch_bytes=0, fallback=None,
                         absorbed_by=chain[-1])
    out[chain[-1]] = fused
    return out


def depthwise_candidate(model: Model, calls: list[KernelCall], k: int,
                        consumers: frozenset[str] = frozenset({DEPTHWISE})) -> list[int] | None:
    """[producer, consumer] when call k is a dsp convolution whose output only
    a dsp depthwise (or another of `consumers`) reads, as its input."""
    prod = calls[k]
    if prod.kernel != "tg_conv2d_dsp_s8" or prod.absorbed_by is not None or prod.fused \
            or len(prod.outputs) != 1:
        return None
    t = prod.outputs[0]
    shape = [int(d) for d in model.tensors[t].shape]
    if len(shape) != 4 or shape[0] != 1 or t in set(model.outputs) \
            or model.tensors[t].is_variable:
        return None
    r = _readers(calls).get(t, [])
    if len(r) != 1:
        return None
    nxt = calls[r[0]]
    if nxt.kernel not in consumers or nxt.inputs[:1] != [t] or t in nxt.inputs[1:] \
            or nxt.absorbed_by is not None:
        return None
    return [k, r[0]]


def fuse_depthwise(model: Model, calls: list[KernelCall], chain: list[int]) -> list[KernelCall]:
    """calls with the producer absorbed into one tg_stream_conv_dw_s8 call at
    the depthwise's place, one depthwise output row per chunk."""
    prod, dw = calls[chain[0]], calls[chain[1]]
    _, mh, mw, mc = (int(d) for d in model.tensors[prod.outputs[0]].shape)
    fh = int(dw.params["filter_h"])
    span = min(mh, (fh - 1) * int(dw.params["dilation_h"]) + 1)
    scratch = -(-span * mw * mc // 16) * 16 + prod.scratch_bytes
    params = {**{f"producer.{k}": v for k, v in prod.params.items()},
              **{f"consumer.{k}": v for k, v in dw.params.items()},
              "rows": "1"}
    sources = list(dict.fromkeys(prod.sources + dw.sources + [
        "tg_stream_fc.h", "tg_stream_dw.c", "tg_stream_dw.h"]))
    fused = KernelCall(
        kernel="tg_stream_conv_dw_s8", params_type="tg_stream_conv_dw_params", params=params,
        inputs=list(prod.inputs), outputs=list(dw.outputs), sources=sources,
        constants=list(prod.constants) + list(dw.constants), scratch_bytes=scratch,
        comment=f"{dw.comment}, its input made {span} row(s) ahead by #{chain[0]} "
                f"{prod.comment} (the map never stored)",
        fused=(chain[0],))
    out = list(calls)
    out[chain[0]] = replace(prod, constants=[], scratch_bytes=0, fallback=None,
                            absorbed_by=chain[1])
    out[chain[1]] = fused
    return out


def _window_rows(oy: int, stride: int, pad: int, span: int, size: int) -> tuple[int, int]:
    top = oy * stride - pad
    return max(0, top), max(max(0, top), min(size, top + span))


def stream_pool_overlap(prod: KernelCall, pool: KernelCall, in_shape, map_shape,
                        out_shape) -> int:
    """How far after the convolution's input the pool's output may start:
    tg_stream_conv_pool_s8 writes pool row oy once the convolution has read
    every input row map rows [0, hi) need, so row oy must end before the
    first input byte a later map row reads (the planner's overlap bound,
    as raster_overlap gives it for one kernel)."""
    _, ih, iw, ic = in_shape
    _, mh, _, _ = map_shape
    _, oh, ow, oc = out_shape
    s, pad = int(prod.params["stride_h"]), int(prod.params["pad_h"])
    qs, qpad, qf = (int(pool.params[k]) for k in ("stride_h", "pad_h", "filter_h"))
    bound = ih * iw * ic               # no later reads: anywhere after the input
    hi = 0
    for oy in range(oh):
        _, end = _window_rows(oy, qs, qpad, qf, mh)
        hi = max(hi, end)
        if hi < mh:                    # later producer rows start reading here
            first = max(0, hi * s - pad) * iw * ic
            bound = min(bound, first - (oy + 1) * ow * oc)
    return bound


def fuse_pool(model: Model, calls: list[KernelCall], chain: list[int]) -> list[KernelCall]:
    """calls with the producer absorbed into one tg_stream_conv_pool_s8 call at
    the pool's place."""
    prod, pool = calls[chain[0]], calls[chain[1]]
    map_shape = [int(d) for d in model.tensors[prod.outputs[0]].shape]
    _, mh, mw, mc = map_shape
    span = min(mh, int(pool.params["filter_h"]))
    scratch = -(-span * mw * mc // 16) * 16 + prod.scratch_bytes
    params = {**{f"producer.{k}": v for k, v in prod.params.items()},
              **{f"consumer.{k}": v for k, v in pool.params.items()},
              "max": POOLS[pool.kernel]}
    sources = list(dict.fromkeys(prod.sources + pool.sources + [
        "tg_stream_fc.h", "tg_stream_pool.c", "tg_stream_pool.h"]))
    fused = KernelCall(
        kernel="tg_stream_conv_pool_s8", params_type="tg_stream_conv_pool_params",
        params=params, inputs=list(prod.inputs), outputs=list(pool.outputs), sources=sources,
        constants=list(prod.constants), scratch_bytes=scratch,
        comment=f"{pool.comment}, its input made {span} row(s) ahead by #{chain[0]} "
                f"{prod.comment} (the map never stored)",
        fused=(chain[0],),
        overlap=stream_pool_overlap(
            prod, pool, [int(d) for d in model.tensors[prod.inputs[0]].shape], map_shape,
            [int(d) for d in model.tensors[pool.outputs[0]].shape]))
    out = list(calls)
    out[chain[0]] = replace(prod, constants=[], scratch_bytes=0, fallback=None,
                            absorbed_by=chain[1])
    out[chain[1]] = fused
    return out


def fuse_streams(model: Model, calls: list[KernelCall], plan: MemoryPlan, alignment: int,
                 overlap: bool = True, force: bool = False) -> tuple[list[KernelCall], MemoryPlan]:
    """Each candidate fusion that makes the arena smaller, kept in turn, if
    together they save at least MIN_GAIN of it (force: every candidate, for
    the tests).  A fusion kept early can stop paying once a later one moved
    the peak elsewhere; such fusions are undone, since each costs
    instructions."""
    unfused_calls, unfused = calls, plan
    taken: list[tuple[Callable[..., list[KernelCall]], list[int]]] = []
    for k in range(len(calls)):
        fn: Callable[..., list[KernelCall]]
        if (chain := stream_candidate(model, calls, k)) is not None:
            fn = fuse_stream
        elif (chain := depthwise_candidate(model, calls, k)) is not None:
            fn = fuse_depthwise
        elif (chain := depthwise_candidate(model, calls, k, frozenset(POOLS))) is not None:
            fn = fuse_pool
        else:
            continue
        trial = fn(model, calls, chain)
        p = plan_memory(model, trial, alignment=alignment, overlap=overlap)
        if force or p.arena_bytes < plan.arena_bytes:
            calls, plan = trial, p
            taken.append((fn, chain))
    if force:
        return calls, plan
    for drop in list(taken):
        rest = [t for t in taken if t is not drop]
        trial = unfused_calls
        for fn, chain in rest:
            trial = fn(model, trial, chain)
        p = plan_memory(model, trial, alignment=alignment, overlap=overlap)
        if p.arena_bytes <= plan.arena_bytes:
            calls, plan, taken = trial, p, rest
    if plan.arena_bytes > unfused.arena_bytes * (1 - MIN_GAIN):
        return unfused_calls, unfused
    return calls, plan
