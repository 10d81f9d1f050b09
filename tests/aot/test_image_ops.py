"""RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, GATHER and the QUANTIZE pairs
uint8 -> int8 and int8 -> int32 on the aot runtime against the tflite_micro
interpreter, 0 LSB: the ops of a camera front end (`tinygen frontend
--image`).  Hypothesis draws sizes (up- and down-scaling, 1-pixel edges), the
corner/half-pixel options, gather axes and batch dims, and zero points; the
whole front end graphs then run on the host and on a QEMU Cortex-M4."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tflite_builder as tb
from ew_models import fast, options
from harness import assert_bit_exact, assert_bit_exact_m4, qemu_available
from hypothesis import given
from hypothesis import strategies as st
from tflite_builder import GraphBuilder

from tinygen.convert.image_frontend import ImageFrontendParams, build_image_frontend

for _op, _table in (("RESIZE_BILINEAR", "ResizeBilinearOptions"),
                    ("RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighborOptions"),
                    ("GATHER", "GatherOptions")):
    tb.OPTION_TABLES.setdefault(_op, _table)


def _check(model: bytes, inputs) -> None:
    work = Path(tempfile.mkdtemp(prefix="tg_image_"))
    try:
        assert_bit_exact(model, work, inputs=inputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def resize_model(op: str, n, h, w, c, oh, ow, corners: bool, half: bool, dtype="int8",
                 zp=0) -> bytes:
    b = GraphBuilder(op.lower())
    x = b.activation([n, h, w, c], dtype, scale=0.05, zero_point=zp)
    size = b.constant(np.asarray([oh, ow], np.int32), "int32")
    y = b.activation([n, oh, ow, c], dtype, scale=0.05, zero_point=zp)
    table = "ResizeBilinearOptions" if op == "RESIZE_BILINEAR" else \
        "ResizeNearestNeighborOptions"
    b.op(op, [x, size], [y], options(table, alignCorners=corners, halfPixelCenters=half),
         version=3)
    return b.build([x], [y])


@st.composite
def resize_case(draw):
    op = draw(st.sampled_from(["RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"]))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    h, w, oh, ow = (draw(st.integers(1, 13)) for _ in range(4))
    corners = draw(st.booleans())
    half = False if corners else draw(st.booleans())
    dtype = "int8" if op == "RESIZE_BILINEAR" else draw(st.sampled_from(["int8", "int16"]))
    return op, n, h, w, c, oh, ow, corners, half, dtype, draw(st.integers(-128, 127))


def _int_data(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


@fast(15)
@given(resize_case(), st.integers(0, 2**16))
def test_resize_matches_tflm(case, seed):
    op, n, h, w, c, oh, ow, corners, half, dtype, zp = case
    zp = zp if dtype == "int8" else 0
    model = resize_model(op, n, h, w, c, oh, ow, corners, half, dtype, zp)
    rng = np.random.default_rng(seed)
    npd = np.int8 if dtype == "int8" else np.int16
    # the extremes too: -128 everywhere is where int32 accumulation would overflow first
    inputs = [[_int_data(rng, (n, h, w, c), npd)], [np.full((n, h, w, c), -128, npd)]]
    _check(model, inputs)


@st.composite
def gather_case(draw):
    rank = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 5)) for _ in range(rank)]
    axis = draw(st.integers(0, rank - 1))
    bd = draw(st.integers(0, min(axis, 1)))
    coords = shape[:bd] + [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 2)))]
    dtype = draw(st.sampled_from(["int8", "int8", "float32"]))
    return shape, axis, bd, coords, dtype


@fast(15)
@given(gather_case(), st.integers(0, 2**16), st.booleans())
def test_gather_matches_tflm(case, seed, const_params):
    shape, axis, bd, cshape, dtype = case
    rng = np.random.default_rng(seed)
    b = GraphBuilder("gather")
    scale = 0.1 if dtype == "int8" else None
    npd = np.int8 if dtype == "int8" else np.float32
    data = _int_data(rng, shape, np.int8).astype(npd)
    x = b.constant(data, dtype, scale=scale) if const_params else \
        b.activation(shape, dtype, scale=scale)
    idx = b.activation(cshape, "int32")
    out_shape = shape[:axis] + cshape[bd:] + shape[axis + 1:]
    y = b.activation(out_shape, dtype, scale=scale)
    b.op("GATHER", [x, idx], [y], options("GatherOptions", axis=axis, batchDims=bd))
    model = b.build([idx] if const_params else [x, idx], [y])
    feeds = []
    for _ in range(2):
        ids = rng.integers(0, shape[axis], size=cshape).astype(np.int32)
        feeds.append([ids] if const_params else [data, ids])
    _check(model, feeds)


@fast(8)
@given(st.integers(0, 255), st.integers(-128, 127), st.floats(0.001, 1.0),
       st.floats(0.001, 1.0), st.integers(0, 2**16))
def test_quantize_u8_s8_and_s8_s32(zp_in, zp_out, s_in, s_out, seed):
    rng = np.random.default_rng(seed)
    s_in, s_out = float(np.float32(s_in)), float(np.float32(s_out))
    for src, dst, zin, zout in (("uint8", "int8", zp_in, zp_out),
                                ("int8", "int32", zp_out, zp_in)):
        b = GraphBuilder("quantize")
        x = b.activation([3, 17], src, scale=s_in, zero_point=zin)
        y = b.activation([3, 17], dst, scale=s_out if dst == "int8" else s_in,
                         zero_point=zout)
        b.op("QUANTIZE", [x], [y])
        npd = np.uint8 if src == "uint8" else np.int8
        _check(b.build([x], [y]), [[_int_data(rng, (3, 17), npd)]])


FRONT_ENDS = {
    "rgb565_bilinear_gray": ImageFrontendParams(
        frame_width=40, frame_height=30, pixel_format="rgb565", out_width=12, out_height=12,
        out_channels=1, resize="bilinear"),
    "rgb565_nearest_rgb_zp128": ImageFrontendParams(
        frame_width=40, frame_height=30, pixel_format="rgb565", out_width=12, out_height=12,
        out_channels=3, resize="nearest", pixel_zero_point=128, pixel_scale=1 / 128,
        out_scale=1 / 128, out_zero_point=0),
    "gray_upscale_rgb": ImageFrontendParams(
        frame_width=20, frame_height=16, pixel_format="grayscale", out_width=24, out_height=24,
        out_channels=3),
    "rgb888_gray_nearest": ImageFrontendParams(
        frame_width=33, frame_height=21, pixel_format="rgb888", out_width=10, out_height=7,
        out_channels=1, resize="nearest", out_scale=0.02, out_zero_point=-3),
}


def _frames(p: ImageFrontendParams, n: int, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    shape = (1, p.frame_height, p.frame_width, p.bytes_per_pixel)
    out = [[rng.integers(0, 256, size=shape, dtype=np.uint8)] for _ in range(n)]
    return out + [[np.zeros(shape, np.uint8)], [np.full(shape, 255, np.uint8)]]


@pytest.mark.parametrize("name", sorted(FRONT_ENDS))
def test_image_frontends_run_bit_exact_on_the_host(name):
    p = FRONT_ENDS[name]
    _check(build_image_frontend(p), _frames(p, 3))


@pytest.mark.slow
@pytest.mark.skipif(not qemu_available(), reason="qemu-system-arm not installed")
def test_image_frontends_on_cortex_m4():
    for name in ("rgb565_bilinear_gray", "rgb888_gray_nearest"):
        p = FRONT_ENDS[name]
        with tempfile.TemporaryDirectory() as d:
            assert_bit_exact_m4(build_image_frontend(p), Path(d), inputs=_frames(p, 2))
