"""STRIDED_SLICE, REVERSE_V2, BROADCAST_TO, UNPACK, SPLIT and SPLIT_V on the
aot runtime against the TFLM interpreter, 0 LSB (byte-for-byte: they move
elements, so int8/int16/int32/float32 are all checked).

Hypothesis draws shapes, begin/end/strides and every mask bit TFLM honours
(begin, end, shrink-axis); the output shape each model declares is the one
TFLM's Prepare computes, so a wrong shape rule shows up as TFLM refusing the
model.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tflite_builder as tb
from ew_models import fast, options, slow
from harness import build_host, run_host, run_tflm
from hypothesis import assume, given
from hypothesis import strategies as st
from tflite_builder import GraphBuilder

from tinygen.codegen.aot import generate_aot
from tinygen.ir import parse_tflite
from tinygen.plan.lowering import LoweringError
from tinygen.plan.ops.slicing import gather_plan, strided_slice_loops, strided_slice_out_shape

for _op, _table in (("STRIDED_SLICE", "StridedSliceOptions"), ("REVERSE_V2", "ReverseV2Options"),
                    ("BROADCAST_TO", "BroadcastToOptions"), ("UNPACK", "UnpackOptions"),
                    ("SPLIT", "SplitOptions"), ("SPLIT_V", "SplitVOptions"),
                    ("PACK", "PackOptions")):
    tb.OPTION_TABLES.setdefault(_op, _table)

DTYPES = ["int8", "int8", "int8", "int16", "int32", "float32"]
_NP = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "float32": np.float32}


def _data(seed: int, shape, dtype: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return rng.standard_normal(shape).astype(np.float32)
    info = np.iinfo(_NP[dtype])
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(_NP[dtype])


def _activation(b: GraphBuilder, shape, dtype: str, name=None) -> int:
    if dtype in ("int8", "int16"):
        return b.activation(shape, dtype, scale=0.05, zero_point=3 if dtype == "int8" else 0,
                            name=name)
    return b.activation(shape, dtype, scale=None, name=name)


def _run(model: bytes, seed: int) -> None:
    """Two input sets through TFLM and the host build; every output byte equal."""
    m = parse_tflite(model)
    feeds = []
    for k in range(2):
        feeds.append([_data(seed + 10 * k + j, m.tensors[i].shape, m.tensors[i].dtype)
                      for j, i in enumerate(m.inputs)])
    work = Path(tempfile.mkdtemp(prefix="tg_slice_"))
    try:
        ours = run_host(build_host(m, work), feeds)
        ref = run_tflm(model, feeds)
        for k, (r_row, o_row) in enumerate(zip(ref, ours)):
            for j, (r, o) in enumerate(zip(r_row, o_row)):
                r = np.ascontiguousarray(np.asarray(r, dtype=o.dtype)).reshape(-1)
                assert r.view(np.uint8).tobytes() == \
                    np.ascontiguousarray(o).reshape(-1).view(np.uint8).tobytes(), \
                    f"input set {k}, output {j}: tflm {r.tolist()[:12]} aot " \
                    f"{o.reshape(-1).tolist()[:12]}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------
# STRIDED_SLICE

def strided_slice_model(shape, begin, end, strides, bm, em, sm, dtype="int8", out_shape=None):
    b = GraphBuilder("strided_slice")
    x = _activation(b, shape, dtype)
    tb_ = b.constant(np.asarray(begin, np.int32), "int32")
    te = b.constant(np.asarray(end, np.int32), "int32")
    ts = b.constant(np.asarray(strides, np.int32), "int32")
    if out_shape is None:
        out_shape = strided_slice_out_shape(shape, begin, end, strides, bm, em, sm)
    y = _activation(b, out_shape, dtype)
    b.op("STRIDED_SLICE", [x, tb_, te, ts], [y],
         options("StridedSliceOptions", beginMask=bm, endMask=em, shrinkAxisMask=sm), version=2)
    return b.build([x], [y])


@st.composite
def slice_case(draw, max_rank=4):
    rank = draw(st.integers(1, max_rank))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank)))
    begin, end, strides = [], [], []
    for d in shape:
        begin.append(draw(st.integers(-d - 2, d + 2)))
        end.append(draw(st.integers(-d - 2, d + 2)))
        strides.append(draw(st.sampled_from([1, 1, 1, 2, 3, -1, -1, -2])))
    mask = st.integers(0, (1 << rank) - 1)
    bm, em = draw(mask), draw(mask)
    sm = draw(mask) if draw(st.booleans()) else 0
    dtype = draw(st.sampled_from(DTYPES))
    return shape, begin, end, strides, bm, em, sm, dtype


def _slice_selects_output(shape, begin, end, strides, bm, em, sm) -> bool:
    """TFLM's evaluation fills the output it declared (it does not when a
    shrunk axis starts past the end: such models are left out)."""
    want = strided_slice_out_shape(shape, begin, end, strides, bm, em, sm)
    loops = strided_slice_loops(shape, begin, end, strides, bm, em, sm)
    return int(np.prod([c for _, c, _ in loops])) == int(np.prod(want)) and int(np.prod(want)) > 0


@fast(60)
@given(slice_case(), st.integers(0, 2 ** 31))
def test_strided_slice_matches_tflm(case, seed):
    shape, begin, end, strides, bm, em, sm, dtype = case
    assume(_slice_selects_output(shape, begin, end, strides, bm, em, sm))
    _run(strided_slice_model(shape, begin, end, strides, bm, em, sm, dtype), seed)


def test_strided_slice_last_time_step_is_one_copy(tmp_path):
    """What Keras' return_sequences=False leaves after the fused LSTM: x[:, -1, :]."""
    model = strided_slice_model((1, 7, 6), [0, -1, 0], [0, 0, 0], [1, 1, 1], 5, 5, 2)
    calls = generate_aot(parse_tflite(model), tmp_path / "aot").calls
    assert calls[0].kernel == "tg_gather"
    assert calls[0].params["ndim"] == "0" and calls[0].params["run"] == "6"
    assert calls[0].params["start"] == str(6 * 6)
    _run(model, 1)


def test_strided_slice_reversed_and_strided_rows():
    for case in [((4, 5), [3, 4], [0, 0], [-1, -2], 0, 3, 0),
                 ((2, 3, 4, 5), [0, 0, 1, 0], [2, 3, 4, 5], [1, 2, 1, 2], 0, 0, 0),
                 ((6,), [-1], [-7], [-1], 0, 0, 0),
                 ((3, 4), [1, 0], [2, 4], [1, 1], 0, 0, 1)]:
        _run(strided_slice_model(*case), 3)


def test_strided_slice_rank_5_is_refused(tmp_path):
    """TFLM's STRIDED_SLICE stops at rank 4 (its Prepare fails on rank 5)."""
    model = strided_slice_model((1, 1, 1, 2, 2), [0] * 5, [1, 1, 1, 2, 2], [1] * 5, 0, 0, 0)
    with pytest.raises(LoweringError, match="rank 1 to 4"):
        generate_aot(parse_tflite(model), tmp_path / "aot")


def test_strided_slice_wrong_output_shape_is_refused(tmp_path):
    model = strided_slice_model((4, 5), [0, 0], [2, 5], [1, 1], 0, 0, 0, out_shape=(3, 5))
    with pytest.raises(LoweringError, match="TFLM computes"):
        generate_aot(parse_tflite(model), tmp_path / "aot")


# ---------------------------------------------------------------------------
# REVERSE_V2

def reverse_model(shape, axes, dtype="int8"):
    b = GraphBuilder("reverse")
    x = _activation(b, shape, dtype)
    ax = b.constant(np.asarray(axes, np.int32), "int32")
    y = _activation(b, shape, dtype)
    b.op("REVERSE_V2", [x, ax], [y], options("ReverseV2Options"), version=1)
    return b.build([x], [y])


@fast(40)
@given(st.data())
def test_reverse_matches_tflm(data):
    rank = data.draw(st.integers(1, 5))
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    first = data.draw(st.integers(0, rank - 1))
    n = data.draw(st.integers(1, rank - first))
    axes = [a - rank if data.draw(st.booleans()) else a for a in range(first, first + n)]
    axes = data.draw(st.permutations(axes))
    _run(reverse_model(shape, axes, data.draw(st.sampled_from(DTYPES))),
         data.draw(st.integers(0, 2 ** 31)))


def test_reverse_non_contiguous_axes_refused(tmp_path):
    with pytest.raises(LoweringError, match="contiguous"):
        generate_aot(parse_tflite(reverse_model((2, 3, 4), [0, 2])), tmp_path / "aot")


# ---------------------------------------------------------------------------
# BROADCAST_TO

def broadcast_model(in_shape, out_shape, dtype="int8"):
    b = GraphBuilder("broadcast_to")
    x = _activation(b, in_shape, dtype)
    shp = b.constant(np.asarray(out_shape, np.int32), "int32")
    y = _activation(b, out_shape, dtype)
    b.op("BROADCAST_TO", [x, shp], [y], options("BroadcastToOptions"), version=2)
    return b.build([x], [y])


@fast(40)
@given(st.data())
def test_broadcast_to_matches_tflm(data):
    rank = data.draw(st.integers(1, 5))
    out = tuple(data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    in_rank = data.draw(st.integers(1, rank))
    ins = tuple(d if data.draw(st.booleans()) else 1 for d in out[rank - in_rank:])
    _run(broadcast_model(ins, out, data.draw(st.sampled_from(DTYPES))),
         data.draw(st.integers(0, 2 ** 31)))


def test_repeat_vector_broadcast():
    """Keras RepeatVector after an LSTM: [1, 1, units] -> [1, steps, units]."""
    _run(broadcast_model((1, 1, 12), (1, 10, 12)), 5)


# ---------------------------------------------------------------------------
# UNPACK / SPLIT / SPLIT_V

def unpack_model(shape, axis, dtype="int8"):
    b = GraphBuilder("unpack")
    x = _activation(b, shape, dtype)
    ax = axis + len(shape) if axis < 0 else axis
    part = [d for i, d in enumerate(shape) if i != ax]
    ys = [_activation(b, part, dtype) for _ in range(shape[ax])]
    b.op("UNPACK", [x], ys, options("UnpackOptions", num=shape[ax], axis=axis), version=2)
    return b.build([x], ys)


def split_model(shape, axis, n, dtype="int8"):
    b = GraphBuilder("split")
    ax_t = b.constant(np.asarray([axis], np.int32), "int32")
    x = _activation(b, shape, dtype)
    ax = axis + len(shape) if axis < 0 else axis
    part = list(shape)
    part[ax] //= n
    ys = [_activation(b, part, dtype) for _ in range(n)]
    b.op("SPLIT", [ax_t, x], ys, options("SplitOptions", numSplits=n), version=2)
    return b.build([x], ys)


def split_v_model(shape, axis, sizes, dtype="int8", minus_one=None):
    b = GraphBuilder("split_v")
    x = _activation(b, shape, dtype)
    given_sizes = list(sizes)
    if minus_one is not None:
        given_sizes[minus_one] = -1
    sz = b.constant(np.asarray(given_sizes, np.int32), "int32")
    ax_t = b.constant(np.asarray([axis], np.int32), "int32")
    ax = axis + len(shape) if axis < 0 else axis
    ys = []
    for s in sizes:
        part = list(shape)
        part[ax] = s
        ys.append(_activation(b, part, dtype))
    b.op("SPLIT_V", [x, sz, ax_t], ys, options("SplitVOptions", numSplits=len(sizes)),
         version=2)
    return b.build([x], ys)


@fast(25)
@given(st.data())
def test_unpack_matches_tflm(data):
    rank = data.draw(st.integers(1, 4))
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    axis = data.draw(st.integers(-rank, rank - 1))
    _run(unpack_model(shape, axis, data.draw(st.sampled_from(DTYPES))),
         data.draw(st.integers(0, 2 ** 31)))


@fast(25)
@given(st.data())
def test_split_matches_tflm(data):
    rank = data.draw(st.integers(1, 4))
    shape = list(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    axis = data.draw(st.integers(-rank, rank - 1))
    n = data.draw(st.integers(1, 3))
    shape[axis] *= n
    _run(split_model(tuple(shape), axis, n, data.draw(st.sampled_from(DTYPES))),
         data.draw(st.integers(0, 2 ** 31)))


@fast(25)
@given(st.data())
def test_split_v_matches_tflm(data):
    rank = data.draw(st.integers(1, 4))
    shape = list(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    axis = data.draw(st.integers(-rank, rank - 1))
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    shape[axis] = sum(sizes)
    minus_one = data.draw(st.one_of(st.none(), st.integers(0, len(sizes) - 1)))
    _run(split_v_model(tuple(shape), axis, sizes, data.draw(st.sampled_from(DTYPES)),
                       minus_one), data.draw(st.integers(0, 2 ** 31)))


def pack_model(shape, n, axis, dtype="int8"):
    b = GraphBuilder("pack")
    xs = [_activation(b, shape, dtype) for _ in range(n)]
    ax = axis + len(shape) + 1 if axis < 0 else axis
    out = list(shape[:ax]) + [n] + list(shape[ax:])
    y = _activation(b, out, dtype)
    b.op("PACK", xs, [y], options("PackOptions", valuesCount=n, axis=axis), version=2)
    return b.build(xs, [y])


@fast(25)
@given(st.data())
def test_pack_matches_tflm(data):
    rank = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    n = data.draw(st.integers(1, 12))
    axis = data.draw(st.integers(-rank - 1, rank))
    _run(pack_model(shape, n, axis, data.draw(st.sampled_from(DTYPES))),
         data.draw(st.integers(0, 2 ** 31)))


# ---------------------------------------------------------------------------
# the gather plan itself

def test_gather_plan_merges_and_runs():
    # a contiguous 3-D block is one run
    p = gather_plan([(2, 12), (3, 4), (4, 1)], 0, 1)
    assert p["ndim"] == 0 and p["run"] == 24
    # a broadcast dimension stays a loop with step 0
    p = gather_plan([(5, 0), (6, 1)], 0, 2)
    assert p["ndim"] == 1 and p["count"] == [5] and p["step"] == [0] and p["run"] == 12
    # reversal walks backwards one element at a time
    p = gather_plan([(4, -1)], 3, 4)
    assert p["ndim"] == 1 and p["step"] == [-4] and p["start"] == 12 and p["run"] == 4
    # empty selections copy nothing
    assert gather_plan([(0, 1)], 0, 1)["run"] == 0


# ---------------------------------------------------------------------------
# longer sweeps

@pytest.mark.slow
@slow(400)
@given(slice_case(max_rank=4), st.integers(0, 2 ** 31))
def test_strided_slice_sweep(case, seed):
    shape, begin, end, strides, bm, em, sm, dtype = case
    assume(_slice_selects_output(shape, begin, end, strides, bm, em, sm))
    _run(strided_slice_model(shape, begin, end, strides, bm, em, sm, dtype), seed)
