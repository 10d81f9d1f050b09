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

A convolution whose output only another convolution reads is streamed into
it the same way (tg_stream_conv.c), and where the second convolution's
output only a residual ADD reads whose other operand is the first
convolution's input (identity skip) or a convolution of it (projection),
the ADD joins too (tg_stream_res.c): each chunk of the second convolution's
rows is added to the skip's matching rows and written as the block's
output, so neither inner map of the block is stored and the output may lie
over the block's input (stream_overlap: from the chunk schedule, the bytes
each chunk writes against the input bytes later chunks still read).

Every value is computed once by the same kernel as unfused, so the
outputs are the unfused operators' bits.  Fusions cost instructions (a call of
each kernel per chunk, the buffer's row shifts: ds_cnn_kws +2.5 %,
quickstart +1.8 %, the MobileNets +0.2 %, ResNet-8's blocks +0.26 %), so
they are taken only when together they shrink the arena by at least MIN_GAIN
of the unfused arena -- the mirror of memory_first's rule that scratch may
grow it by 1/8 for speed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

from ..ir import Model
from .lowering import KernelCall
from .memory import MemoryPlan, plan_memory
from .ops._elementwise_base import _bcast_init
from .ops.conv import raster_overlap

# producer kernel -> (fused kernel, its params type, its source)
PRODUCERS = {"tg_conv2d_dsp_s8": ("tg_stream_fc_conv_s8", "tg_stream_fc_conv_params",
                                  "tg_stream_fc_conv.c"),
             "tg_depthwise_dsp_s8": ("tg_stream_fc_dw_s8", "tg_stream_fc_dw_params",
                                     "tg_stream_fc_dw.c")}
CONSUMER = "tg_fully_connected_dsp_s8"
# the 16-bit weight FC streams with its int8 fallback (the stream adds chunks
# with the int8 dot product)
CONSUMER_W16 = "tg_fully_connected_dsp_w16_s8"
MIN_GAIN = 0.125
DEPTHWISE = "tg_depthwise_dsp_s8"
POOLS = {"tg_avg_pool2d_s8": "0", "tg_max_pool2d_s8": "1"}
CONV = "tg_conv2d_dsp_s8"
ADDS = ("tg_add_table_s8", "tg_add_s8")


def _readers(calls: list[KernelCall]) -> dict[int, list[int]]:
    readers: dict[int, list[int]] = {}
    for k, c in enumerate(calls):
        for t in c.inputs:
            readers.setdefault(t, []).append(k)
    return readers


def _int8_fc(call: KernelCall) -> KernelCall | None:
    """The int8 dsp FULLY_CONNECTED call `call` is, or has as its fallback."""
    if call.kernel == CONSUMER:
        return call
    if call.kernel == CONSUMER_W16 and call.fallback is not None \
            and call.fallback.kernel == CONSUMER:
        return call.fallback
    return None


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
        if _int8_fc(nxt) is None or nxt.params.get("batches") != "1" \
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
    prod, fc = calls[chain[0]], _int8_fc(calls[chain[-1]])
    assert fc is not None
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


def _shape(model: Model, t: int) -> list[int]:
    return [int(d) for d in model.tensors[t].shape]


def _own_map(model: Model, readers: dict[int, list[int]], t: int, reader: int) -> bool:
    """t is an intermediate map that only call `reader` reads."""
    return t not in set(model.outputs) and not model.tensors[t].is_variable \
        and readers.get(t, []) == [reader]


def _free(c: KernelCall) -> bool:
    return c.absorbed_by is None and not c.fused


def conv_conv_candidates(model: Model, calls: list[KernelCall], k: int) -> list[list[int]]:
    """When call k is a dsp convolution whose output only a dsp convolution
    reads: [k, consumer, (projection,) ADD] if the consumer's output only a
    residual ADD (one shape, no broadcast) reads whose other operand is call
    k's input or a dsp convolution of it that only the ADD reads; then
    [k, consumer]."""
    c1 = calls[k]
    if c1.kernel != CONV or not _free(c1) or len(c1.outputs) != 1 or len(c1.inputs) != 1:
        return []
    x, t1 = c1.inputs[0], c1.outputs[0]
    if model.tensors[x].is_constant or len(_shape(model, x)) != 4 or _shape(model, x)[0] != 1 \
            or len(_shape(model, t1)) != 4:
        return []
    readers = _readers(calls)
    r = readers.get(t1, [])
    if len(r) != 1 or not _own_map(model, readers, t1, r[0]):
        return []
    j = r[0]
    c2 = calls[j]
    if c2.kernel != CONV or not _free(c2) or c2.inputs != [t1] or len(c2.outputs) != 1:
        return []
    pair = [k, j]
    t2 = c2.outputs[0]
    r = readers.get(t2, [])
    if len(r) != 1 or not _own_map(model, readers, t2, r[0]):
        return [pair]
    a = r[0]
    add = calls[a]
    if add.kernel not in ADDS or not _free(add) or model.operators[a].opcode != "ADD" \
            or len(add.inputs) != 2 or t2 not in add.inputs \
            or any(_shape(model, t) != _shape(model, t2) for t in add.inputs + add.outputs):
        return [pair]
    skip = add.inputs[1] if add.inputs[0] == t2 else add.inputs[0]
    if skip == x:
        return [[k, j, a], pair]
    for p, cp in enumerate(calls):
        if cp.outputs == [skip]:
            if cp.kernel == CONV and _free(cp) and cp.inputs == [x] \
                    and _own_map(model, readers, skip, a):
                return [[k, j, p, a], pair]
            break
    return [pair]


def _geometry(c: KernelCall) -> dict[str, int]:
    return {k: int(c.params[k]) for k in ("filter_h", "filter_w", "stride_h", "stride_w",
                                          "pad_h", "pad_w", "dilation_h", "dilation_w")}


def _span(consumer: dict[str, int], map_h: int, rows: int) -> int:
    """Map rows one chunk of `rows` consumer rows reaches (tg_stream_buf_bytes)."""
    reach = (rows - 1) * consumer["stride_h"] + (consumer["filter_h"] - 1) \
        * consumer["dilation_h"] + 1
    return min(map_h, reach)


def _first_row(g: dict[str, int], r0: int) -> int:
    """First input row the windows of output rows >= r0 can read."""
    return max(0, r0 * g["stride_h"] - g["pad_h"])


def stream_schedule(producer: dict[str, int], consumer: dict[str, int], map_h: int, out_h: int,
                    rows: int) -> list[tuple[int, int, int, int]]:
    """Per chunk (r0, n, h0, h1): the consumer's output rows [r0, r0 + n) and
    the producer rows [h0, h1) computed just before them, as
    tg_stream_pair_chunk runs them."""
    out, lo, hi = [], 0, 0
    for r0 in range(0, out_h, rows):
        n = min(rows, out_h - r0)
        top = _first_row(consumer, r0)
        end = min(map_h, (r0 + n - 1) * consumer["stride_h"] - consumer["pad_h"]
                  + (consumer["filter_h"] - 1) * consumer["dilation_h"] + 1)
        end = max(end, top)
        if top > lo:
            hi = max(hi, top)
            lo = top
        h0 = hi
        hi = max(hi, end)
        out.append((r0, n, h0, hi))
    return out


def stream_overlap(in_shape, out_shape, map_h: int, producer: dict[str, int],
                   consumer: dict[str, int], rows: int, skip: str,
                   proj: dict[str, int] | None = None) -> int:
    """How far after the start of the block's input its output may start
    (KernelCall.overlap) for tg_stream_conv_conv_s8 (skip "none") and
    tg_stream_res_s8 ("identity", "projection").  A chunk writes its output
    rows after its producer rows were computed, so those rows must spare
    every input byte a later chunk reads; in a chunk the projection writes
    its rows while it reads (its own raster bound, for the chunk's
    geometry), and an identity skip is added element by element over
    itself, so the output may not start after it."""
    _, ih, iw, ic = (int(d) for d in in_shape)
    _, oh, ow, oc = (int(d) for d in out_shape)
    irow, orow = iw * ic, ow * oc
    chunks = stream_schedule(producer, consumer, map_h, oh, rows)
    bound = ih * irow                   # nothing read later: anywhere after
    later: int | None = None            # first input row a later chunk reads
    for r0, n, h0, h1 in reversed(chunks):
        if later is not None:
            bound = min(bound, later * irow - (r0 + n) * orow)
        first = [_first_row(producer, h0)] if h1 > h0 else []
        if skip == "identity":
            bound = min(bound, r0 * irow - r0 * orow)
            first.append(r0)
        elif skip == "projection":
            assert proj is not None
            top = _first_row(proj, r0)
            win = {**proj, "pad_h": proj["pad_h"] + top - r0 * proj["stride_h"]}
            chunk = raster_overlap((1, ih - top, iw, ic), (1, n, ow, oc), proj["filter_h"],
                                   proj["filter_w"], win)
            bound = min(bound, chunk + top * irow - r0 * orow)
            first.append(top)
        if first:
            later = min(first) if later is None else min(later, *first)
    return bound


def fuse_conv_conv(model: Model, calls: list[KernelCall], chain: list[int],
                   rows: int = 1) -> list[KernelCall]:
    """calls with chain (conv_conv_candidates) done by one call at its last
    operator: tg_stream_conv_conv_s8 for a pair, tg_stream_res_s8 for a
    residual block."""
    c1, c2 = calls[chain[0]], calls[chain[1]]
    x = c1.inputs[0]
    _, mh, mw, mc = _shape(model, c1.outputs[0])
    _, oh, ow, oc = _shape(model, c2.outputs[0])
    g1, g2 = _geometry(c1), _geometry(c2)
    buf = -(-_span(g2, mh, rows) * mw * mc // 16) * 16
    pair = {**{f"producer.{k}": v for k, v in c1.params.items()},
            **{f"consumer.{k}": v for k, v in c2.params.items()},
            "rows": str(rows)}
    absorbed = chain[:-1]
    last = calls[chain[-1]]
    constants = [c for i in chain for c in calls[i].constants]
    sources = [s for i in chain for s in calls[i].sources] + [
        "tg_stream_fc.h", "tg_stream_conv.c", "tg_stream_conv.h"]
    if len(chain) == 2:
        kernel, params_type, params = ("tg_stream_conv_conv_s8", "tg_stream_conv_conv_params",
                                       pair)
        scratch = buf + max(c1.scratch_bytes, c2.scratch_bytes)
        overlap = stream_overlap(_shape(model, x), (1, oh, ow, oc), mh, g1, g2, rows, "none")
        comment = f"{c2.comment}, its input made {rows} row(s) ahead"
    else:
        add = last
        proj = calls[chain[2]] if len(chain) == 4 else None
        skip = proj.outputs[0] if proj is not None else x
        table = add.kernel == "tg_add_table_s8"
        params = {**{f"pair.{k}": v for k, v in pair.items()},
                  **({f"proj.{k}": v for k, v in proj.params.items()} if proj else {}),
                  **{f"add.{k}": v for k, v in add.params.items()},
                  # the kernel adds one output row per call
                  "add.bc": _bcast_init([ow * oc], [1], [1]),
                  "projected": "1" if proj else "0",
                  "skip_first": "1" if add.inputs[0] == skip else "0"}
        kernel = "tg_stream_res_s8" if table else "tg_stream_res_direct_s8"
        params_type = "tg_stream_res_params"
        inner = max(c1.scratch_bytes, c2.scratch_bytes, proj.scratch_bytes if proj else 0)
        scratch = buf + -(-rows * ow * oc // 16) * 16 + (add.scratch_bytes if table else 0) \
            + inner
        overlap = stream_overlap(_shape(model, x), (1, oh, ow, oc), mh, g1, g2, rows,
                                 "projection" if proj else "identity",
                                 _geometry(proj) if proj else None)
        sources += ["tg_stream_res.c"]
        comment = (f"{add.comment}, {rows} row(s) at a time of #{chain[1]} {c2.comment} "
                   f"fed by #{chain[0]} {c1.comment}"
                   + (f", skip #{chain[2]} {proj.comment}" if proj else ", skip its input"))
    fused = KernelCall(
        kernel=kernel, params_type=params_type, params=params, inputs=[x],
        outputs=list(last.outputs), sources=list(dict.fromkeys(sources)),
        constants=constants, scratch_bytes=scratch,
        comment=f"{comment} (inner maps never stored)", overlap=overlap,
        fused=tuple(absorbed))
    out = list(calls)
    for i in absorbed:
        out[i] = replace(calls[i], constants=[], scratch_bytes=0, fallback=None,
                         absorbed_by=chain[-1])
    out[chain[-1]] = fused
    return out


def _candidates(model: Model, calls: list[KernelCall], k: int
                ) -> list[tuple[Callable[..., list[KernelCall]], list[int]]]:
    """The fusions that could start at call k, in order of preference."""
    if (chain := stream_candidate(model, calls, k)) is not None:
        return [(fuse_stream, chain)]
    if (chain := depthwise_candidate(model, calls, k)) is not None:
        return [(fuse_depthwise, chain)]
    if (chain := depthwise_candidate(model, calls, k, frozenset(POOLS))) is not None:
        return [(fuse_pool, chain)]
    return [(fuse_conv_conv, chain) for chain in conv_conv_candidates(model, calls, k)]


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
        for fn, chain in _candidates(model, calls, k):
            trial = fn(model, calls, chain)
            p = plan_memory(model, trial, alignment=alignment, overlap=overlap)
            if force or p.arena_bytes < plan.arena_bytes:
                calls, plan = trial, p
                taken.append((fn, chain))
                break
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
