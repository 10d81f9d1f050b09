"""Camera front ends: .tflite graphs of builtin ops (a uint8 frame in, the
model's int8 image out) made by `tinygen frontend --image` and run by the
tflite_micro interpreter, the reference.  Where the graph's answer is known
without it (no resize, identity or gray mixes) the expected values come from
numpy's own unpacking of the pixels, not from tinygen's graph."""

import numpy as np
import pytest
from conftest import run_cli

from tinygen.convert.image_frontend import (
    ImageFrontendParams,
    build_image_frontend,
    make_image_frontend,
)
from tinygen.errors import TinygenError
from tinygen.ir import parse_tflite
from tinygen.reference import TflmReference


def _rgb565_bytes(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> big-endian RGB565 bytes, and the RGB those bytes stand for."""
    r, g, b = (rgb[..., i].astype(np.uint16) for i in range(3))
    v = ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)
    packed = np.stack([v >> 8, v & 255], -1).astype(np.uint8)
    r5, g6, b5 = r >> 3, g >> 2, b >> 3
    back = np.stack([(r5 << 3) | (r5 >> 2), (g6 << 2) | (g6 >> 4), (b5 << 3) | (b5 >> 2)], -1)
    return packed, back.astype(np.uint8)


@pytest.mark.parametrize("fmt", ["grayscale", "rgb888", "rgb565"])
def test_crop_without_resize_is_the_pixels_exactly(fmt):
    """A crop of the output's size: every output is the frame's pixel - 128
    (scale 1/255, zero point -128), RGB565 unpacked to 8 bits per channel."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (1, 12, 20, 3), dtype=np.uint8)
    if fmt == "rgb565":
        frame, pixels = _rgb565_bytes(rgb)
    elif fmt == "rgb888":
        frame = pixels = rgb
    else:
        frame = pixels = rgb[..., :1]
    out_ch = 1 if fmt == "grayscale" else 3
    p = ImageFrontendParams(frame_width=20, frame_height=12, pixel_format=fmt, out_width=8,
                            out_height=10, out_channels=out_ch, crop=(5, 1, 8, 10))
    tflite, ir = make_image_frontend(p)
    assert "RESIZE_BILINEAR" not in ir.op_names()
    got = TflmReference(tflite).run([frame])[0]
    want = pixels[:, 1:11, 5:13].astype(np.int16) - 128
    assert got.dtype == np.int8 and np.array_equal(got, want)


def test_every_format_and_mix_runs_and_keeps_black_and_white():
    for fmt in ("grayscale", "rgb888", "rgb565"):
        for out_ch in (1, 3):
            for resize in ("bilinear", "nearest"):
                p = ImageFrontendParams(frame_width=40, frame_height=30, pixel_format=fmt,
                                        out_width=16, out_height=16, out_channels=out_ch,
                                        resize=resize)
                tflite, ir = make_image_frontend(p)
                t = ir.input_tensors()[0]
                assert t.dtype == "uint8" and list(t.shape) == [1, 30, 40, p.bytes_per_pixel]
                assert list(ir.output_tensors()[0].shape) == [1, 16, 16, out_ch]
                assert p.crop_box == (5, 0, 30, 30)    # centred, the output's aspect
                ref = TflmReference(tflite)
                for v, q in ((0, -128), (255, 127)):
                    frame = np.full((1, 30, 40, p.bytes_per_pixel), v, np.uint8)
                    assert (ref.run([frame])[0] == q).all(), (fmt, out_ch, resize, v)


def test_gray_mix_is_bt601_luma_within_one_step():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (1, 6, 6, 3), dtype=np.uint8)
    p = ImageFrontendParams(frame_width=6, frame_height=6, pixel_format="rgb888", out_width=6,
                            out_height=6, out_channels=1)
    got = TflmReference(build_image_frontend(p)).run([rgb])[0].astype(float) + 128
    luma = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(got[..., 0] - luma).max() <= 1.0


@pytest.mark.parametrize("kwargs, needle", [
    (dict(pixel_format="yuv422"), "pixel format 'yuv422'"),
    (dict(out_channels=2), "2 output channels"),
    (dict(crop=(100, 0, 100, 100)), "not inside the 160x120 frame"),
    (dict(out_zero_point=200), "output zero point 200"),
    (dict(frame_width=0), "frame width 0"),
])
def test_bad_parameters_are_one_line(kwargs, needle):
    with pytest.raises(TinygenError) as e:
        build_image_frontend(ImageFrontendParams(**kwargs))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_image_frontend_cli(tmp_path):
    model = tmp_path / "m.tflite"
    # a model whose int8 input the front end takes its size, channels and quantization from
    model.write_bytes(build_image_frontend(ImageFrontendParams(
        frame_width=24, frame_height=24, out_width=24, out_height=24, out_channels=3,
        out_scale=0.02, out_zero_point=5)))
    r = run_cli("frontend", "--image", "--frame", "64x48", "--format", "rgb565", "-o",
                tmp_path / "cam.tflite", "--model", tmp_path / "fe_as_model.tflite")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--model" in r.stderr
    src = tmp_path / "src.tflite"
    src.write_bytes(model.read_bytes())
    # the stand-in model's input is uint8: refused in one line
    r = run_cli("frontend", "--image", "-o", tmp_path / "cam.tflite", "--model", src)
    assert r.returncode == 2 and "uint8" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("frontend", "--image", "--frame", "64x48", "--format", "rgb565", "--size",
                "24x24", "--out-channels", "3", "--out-scale", "0.02", "--out-zero-point", "5",
                "-o", tmp_path / "cam.tflite")
    assert r.returncode == 0, r.stderr
    ir = parse_tflite((tmp_path / "cam.tflite").read_bytes())
    o = ir.output_tensors()[0]
    assert list(o.shape) == [1, 24, 24, 3] and o.zero_point == 5 and abs(o.scale - 0.02) < 1e-9
    assert "GATHER" in ir.op_names() and "crop 48x48 at (8, 0)" in r.stdout
    bad = run_cli("frontend", "--image", "--crop", "1,2,3")
    assert bad.returncode == 2 and "X,Y,WIDTH,HEIGHT" in bad.stderr
    bad = run_cli("frontend", "--image", "--channels", "40")
    assert bad.returncode == 2 and "audio front end option" in bad.stderr
    h = run_cli("frontend", "--help")
    assert h.returncode == 0 and "--image" in h.stdout and "rgb565" in h.stdout
