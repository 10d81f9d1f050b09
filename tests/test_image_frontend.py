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


# ---------------------------------------------------------------------------
# the pipeline: frame -> front end -> model, one graph


def _tiny_model(h=12, w=12, c=1) -> bytes:
    """A small int8 conv model (the differential corpus' builder, a valid TFLM model)."""
    from tinygen.tools import corpus
    return corpus.conv(np.random.default_rng(0), h=h, w=w, cin=c, cout=4, stride=(2, 2))


def _fe_for(model: bytes, **kw) -> ImageFrontendParams:
    from tinygen.ir import parse_tflite as parse
    t = parse(model).input_tensors()[0]
    return ImageFrontendParams(out_height=int(t.shape[1]), out_width=int(t.shape[2]),
                               out_channels=int(t.shape[3]), out_scale=t.scale,
                               out_zero_point=t.zero_point, **kw)


def test_image_pipeline_is_the_front_end_then_the_model():
    from tinygen.convert.pipeline import build_image_pipeline, image_frontend_info
    model = _tiny_model()
    p = _fe_for(model, frame_width=40, frame_height=30, pixel_format="rgb565")
    fe = build_image_frontend(p)
    joined, info = build_image_pipeline(fe, model)
    assert info.pixel_format == "rgb565" and image_frontend_info(joined) == info
    frames = np.random.default_rng(3).integers(0, 256, (3, 1, 30, 40, 2), dtype=np.uint8)
    ref_fe, ref_m, ref_j = TflmReference(fe), TflmReference(model), TflmReference(joined)
    for f in frames:
        image = ref_fe.run([f])[0]
        got = ref_j.run([f])
        assert np.array_equal(got[0], image)
        assert np.array_equal(got[1], ref_m.run([image])[0])


@pytest.mark.parametrize("change, needle", [
    (dict(out_width=10), "shape [1, 12, 10, 1] vs [1, 12, 12, 1]"),
    (dict(out_channels=3), "shape [1, 12, 12, 3] vs [1, 12, 12, 1]"),
    (dict(out_scale=0.5), "scale 0.5 vs"),
    (dict(out_zero_point=-7), "zero point -7 vs 2"),
])
def test_a_front_end_that_does_not_fit_the_model_is_one_line(change, needle):
    from dataclasses import replace

    from tinygen.convert.pipeline import build_image_pipeline
    model = _tiny_model()
    p = replace(_fe_for(model, frame_width=40, frame_height=30), **change)
    with pytest.raises(TinygenError) as e:
        build_image_pipeline(build_image_frontend(p), model)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and "does not fit the model's input" in msg, msg


def test_raw_frames_from_npy_and_pnm(tmp_path):
    from tinygen.data import pack_rgb565, read_raw_frames
    rgb = np.random.default_rng(4).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    ppm = tmp_path / "f.ppm"
    ppm.write_bytes(b"P6\n# a comment\n8 6\n255\n" + rgb.tobytes())
    got = read_raw_frames(ppm, 8, 6, "rgb565", 2)
    assert got.shape == (1, 1, 6, 8, 2) and np.array_equal(got[0, 0], pack_rgb565(rgb))
    assert np.array_equal(read_raw_frames(ppm, 8, 6, "rgb888", 3)[0, 0], rgb)
    pgm = tmp_path / "f.pgm"
    pgm.write_bytes(b"P5 8 6 255\n" + rgb[..., 0].tobytes())
    assert np.array_equal(read_raw_frames(pgm, 8, 6, "grayscale", 1)[0, 0, ..., 0], rgb[..., 0])
    npy = tmp_path / "f.npy"
    np.save(npy, rgb)
    assert read_raw_frames(npy, 8, 6, "rgb888", 3).shape == (1, 1, 6, 8, 3)
    npz_named_npy = tmp_path / "z.npy"
    np.savez(tmp_path / "z.npz", x=rgb)
    (tmp_path / "z.npz").rename(npz_named_npy)
    for path, args, needle in ((ppm, (8, 6, "grayscale", 1), "an RGB PPM"),
                               (npz_named_npy, (8, 6, "rgb888", 3), "is not a NumPy .npy file"),
                               (pgm, (8, 6, "rgb888", 3), "a grayscale PGM"),
                               (npy, (9, 6, "rgb888", 3), "frames of shape [1, 6, 8, 3]")):
        with pytest.raises(TinygenError) as e:
            read_raw_frames(path, *args)
        assert needle in str(e.value) and "\n" not in str(e.value)
    # the RGB565 bytes decode to the colour the front end sees: numpy's own unpacking
    from tinygen.convert.image_frontend import unpack_rgb565
    back = unpack_rgb565(pack_rgb565(rgb)).astype(int)
    assert np.abs(back - rgb.astype(int)).max() <= 7


@pytest.mark.slow
def test_verify_runs_frames_through_the_pipeline_on_the_device(tmp_path):
    """A camera front end + a small conv model, verified with raw frames on
    qemu-cortex-m4 with aot and with TFLM's reference tree: 0 LSB on the
    front end's image and on the model's output, costs split per part."""
    import json

    from test_tflm_runtime import tree_path
    model = tmp_path / "tiny.tflite"
    model.write_bytes(_tiny_model())
    fe = tmp_path / "cam.tflite"
    r = run_cli("frontend", "--image", "--frame", "40x30", "--format", "rgb565", "--model", model,
                "-o", fe)
    assert r.returncode == 0, r.stderr
    frames = tmp_path / "frames.npy"
    np.save(frames, np.random.default_rng(5).integers(0, 256, (3, 30, 40, 2), dtype=np.uint8))
    for runtime in ("aot", "tflm"):
        extra = ["--tflm-source", str(tree_path("reference"))] if runtime == "tflm" else []
        report = tmp_path / f"{runtime}.json"
        r = run_cli("verify", model, "--frontend", fe, "--raw", frames, "--board",
                    "qemu-cortex-m4", "--runtime", runtime, "-o", tmp_path / runtime, "--json",
                    report, *extra, timeout=1800)
        assert r.returncode == 0, r.stdout + r.stderr
        d = json.loads(report.read_text())
        assert d["passed"] and d["bit_exact"] and d["runtime"] == runtime
        assert len(d["outputs"]) == 2
        for o in d["outputs"]:
            assert o["max_abs_diff_lsb"] == 0 and o["exact_match_pct"] == 100.0
        p = d["pipeline"]
        assert p["instructions_per_frame"] > 0 and set(p["parts"]) == {"frontend", "model"}
        assert "instructions per 40x30 frame" not in r.stdout
        assert "per 40x30 frame" in r.stdout


# ---------------------------------------------------------------------------
# the esp32cam application: frames from the camera through esp32-camera

# Declarations only, as esp32-camera's esp_camera.h and sensor.h name them: the
# generated app must compile against them (the real Xtensa build is not run here).
ESP_CAMERA_STANDIN = r"""
#include <stddef.h>
#include <stdint.h>
typedef int esp_err_t;
#define ESP_OK 0
typedef enum { PIXFORMAT_RGB565, PIXFORMAT_YUV422, PIXFORMAT_YUV420, PIXFORMAT_GRAYSCALE,
               PIXFORMAT_JPEG, PIXFORMAT_RGB888 } pixformat_t;
typedef enum { FRAMESIZE_96X96, FRAMESIZE_QQVGA, FRAMESIZE_QCIF, FRAMESIZE_HQVGA,
               FRAMESIZE_240X240, FRAMESIZE_QVGA, FRAMESIZE_CIF, FRAMESIZE_HVGA,
               FRAMESIZE_VGA, FRAMESIZE_SVGA } framesize_t;
typedef enum { LEDC_TIMER_0, LEDC_TIMER_1 } ledc_timer_t;
typedef enum { LEDC_CHANNEL_0, LEDC_CHANNEL_1 } ledc_channel_t;
typedef enum { CAMERA_FB_IN_PSRAM, CAMERA_FB_IN_DRAM } camera_fb_location_t;
typedef enum { CAMERA_GRAB_WHEN_EMPTY, CAMERA_GRAB_LATEST } camera_grab_mode_t;
typedef struct {
  int pin_pwdn, pin_reset, pin_xclk, pin_sccb_sda, pin_sccb_scl;
  int pin_d7, pin_d6, pin_d5, pin_d4, pin_d3, pin_d2, pin_d1, pin_d0;
  int pin_vsync, pin_href, pin_pclk;
  int xclk_freq_hz;
  ledc_timer_t ledc_timer;
  ledc_channel_t ledc_channel;
  pixformat_t pixel_format;
  framesize_t frame_size;
  int jpeg_quality;
  size_t fb_count;
  camera_fb_location_t fb_location;
  camera_grab_mode_t grab_mode;
} camera_config_t;
typedef struct {
  uint8_t *buf;
  size_t len;
  size_t width;
  size_t height;
  pixformat_t format;
} camera_fb_t;
esp_err_t esp_camera_init(const camera_config_t *config);
camera_fb_t *esp_camera_fb_get(void);
void esp_camera_fb_return(camera_fb_t *fb);
"""


def test_esp32cam_app_captures_frames_and_compiles(tmp_path):
    import shutil
    import subprocess
    model = tmp_path / "tiny.tflite"
    model.write_bytes(_tiny_model())
    fe = tmp_path / "cam.tflite"
    assert run_cli("frontend", "--image", "--frame", "160x120", "--format", "rgb565",
                   "--model", model, "-o", fe).returncode == 0
    out = tmp_path / "proj"
    r = run_cli("build", "--board", "esp32cam", "--frontend", fe, model, "--runtime", "aot",
                "--no-compile", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "a frame in, the image and answers out" in r.stdout
    src = out / "src"
    app = (src / "app_main.c").read_text()
    for part in ('#include "esp_camera.h"', "esp_camera_init(&config)", "esp_camera_fb_get()",
                 "esp_camera_fb_return(fb)", "PIXFORMAT_RGB565", "FRAMESIZE_QQVGA",
                 "config.pin_sccb_sda = 26;", "config.pin_pwdn = 32;", "config.pin_d0 = 5;",
                 'put_tensor("model", "output", 1'):
        assert part in app, part
    assert 'put_tensor("model", "output", 0' not in app      # the image is not the answer
    assert 'espressif/esp32-camera: "^2.0.0"' in (src / "idf_component.yml").read_text()
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "esp_camera.h").write_text(ESP_CAMERA_STANDIN)
    compilers = [["gcc", "-pedantic"]]
    if shutil.which("riscv64-unknown-elf-gcc"):
        # a 32-bit core like the ESP32's (RV32IMC: the ESP32-C3's)
        compilers.append(["riscv64-unknown-elf-gcc", "-march=rv32imc", "-mabi=ilp32",
                          "--specs=picolibc.specs"])
    sources = ["app_main.c", "model.c"] + sorted(
        p.name for p in src.glob("tg_*.c") if p.name not in ("tg_hal_espidf.c",))
    for cc in compilers:
        for f in sources:
            c = subprocess.run([*cc, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{stub}",
                                f"-I{src}", "-c", str(src / f), "-o", str(tmp_path / "x.o")],
                               capture_output=True, text=True)
            assert c.returncode == 0, (cc[0], f, c.stderr)


def test_esp32cam_refuses_frames_its_camera_does_not_give(tmp_path):
    model = tmp_path / "tiny.tflite"
    model.write_bytes(_tiny_model())
    for frame, fmt, needle in (("100x80", "grayscale", "gives 96x96, 160x120"),
                               ("160x120", "rgb888", "OV2640 gives grayscale or rgb565")):
        fe = tmp_path / f"{fmt}.tflite"
        assert run_cli("frontend", "--image", "--frame", frame, "--format", fmt, "--model",
                       model, "-o", fe).returncode == 0
        r = run_cli("build", "--board", "esp32cam", "--frontend", fe, model, "--runtime", "aot",
                    "--no-compile", "-q", "-o", tmp_path / f"p_{fmt}")
        assert r.returncode == 2 and needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert not (tmp_path / f"p_{fmt}").exists()
