"""A camera front end as a .tflite graph of builtin ops.

One frame (uint8 [1, H, W, C], the bytes the camera driver hands over) in, the
model's int8 input out:

    QUANTIZE uint8 -> int8        (exact: the same scale, zero point - 128; TFLM's
                                   STRIDED_SLICE, RESIZE_* and CAST take no uint8)
    STRIDED_SLICE                 the crop box (left out when it is the whole frame)
    RESIZE_NEAREST_NEIGHBOR       nearest: on the packed pixels, RGB565 included
    RGB565 only: UNPACK (high and low bytes) -> per byte QUANTIZE int8 -> int32
                 (the byte values) and GATHER (its share of (R, G, B) expanded
                 to 8 bits, from a [256, 3] table) -> ADD (the shares add up to
                 the pixel): RGB888 from here on
    RESIZE_BILINEAR               bilinear: on the unpacked channels
    CONV_2D 1x1                   the colour mix (identity, BT.601 luma, gray to
                                  three channels) and the
                                  requantization to the model's input scale and
                                  zero point, in one rounding

RGB565 is two bytes per pixel, big-endian (the high byte first), as
esp32-camera gives it: R = hi >> 3, G = (hi & 7) << 3 | lo >> 5, B = lo & 31,
expanded to 8 bits by repeating the top bits (R8 = R << 3 | R >> 2, and so on).
G8 splits into a part from each byte, so each byte's table row holds its share.

The graph is the one definition: the tflite_micro interpreter running it is
the reference and the device runs the same ops.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import TinygenError
from .frontend import _Graph

FORMATS = {"grayscale": 1, "rgb888": 3, "rgb565": 2}   # bytes per pixel
RESIZE_METHODS = ("bilinear", "nearest")
# BT.601 luma, the weights esp32-camera's and PIL's RGB -> L conversions use
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ImageFrontendParams:
    frame_width: int = 160
    frame_height: int = 120
    pixel_format: str = "grayscale"
    out_width: int = 96
    out_height: int = 96
    out_channels: int = 1
    crop: tuple[int, int, int, int] | None = None   # x, y, width, height; None: centre crop
    resize: str = "bilinear"
    # the real value of a pixel p is (p - pixel_zero_point) * pixel_scale: what the
    # model was trained on (default: pixels / 255, the [0, 1] images Keras models take)
    pixel_scale: float = 1.0 / 255.0
    pixel_zero_point: int = 0
    out_scale: float = 1.0 / 255.0
    out_zero_point: int = -128

    @property
    def bytes_per_pixel(self) -> int:
        return FORMATS[self.pixel_format]

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        """The crop box; by default the largest centred box of the output's aspect."""
        if self.crop is not None:
            return tuple(int(v) for v in self.crop)  # type: ignore[return-value]
        fw, fh, ow, oh = self.frame_width, self.frame_height, self.out_width, self.out_height
        if fw * oh >= fh * ow:          # the frame is wider than the output: trim the sides
            w, h = max(1, fh * ow // oh), fh
        else:
            w, h = fw, max(1, fw * oh // ow)
        return (fw - w) // 2, (fh - h) // 2, w, h

    def check(self) -> None:
        """One line for parameters the graph cannot be built from."""
        if self.pixel_format not in FORMATS:
            raise TinygenError(f"image front end: pixel format '{self.pixel_format}'; use one of "
                               f"{', '.join(FORMATS)}")
        if self.resize not in RESIZE_METHODS:
            raise TinygenError(f"image front end: resize '{self.resize}'; use bilinear or nearest")
        for what, v in (("frame width", self.frame_width), ("frame height", self.frame_height),
                        ("output width", self.out_width), ("output height", self.out_height)):
            if not 1 <= v <= 4096:
                raise TinygenError(f"image front end: {what} {v} is outside 1..4096")
        if self.out_channels not in (1, 3):
            raise TinygenError(f"image front end: {self.out_channels} output channels; use 1 "
                               "(grayscale) or 3 (RGB)")
        x, y, w, h = self.crop_box
        if w < 1 or h < 1 or x < 0 or y < 0 or x + w > self.frame_width \
                or y + h > self.frame_height:
            raise TinygenError(f"image front end: crop box x={x} y={y} {w}x{h} is not inside the "
                               f"{self.frame_width}x{self.frame_height} frame")
        for what, s in (("pixel scale", self.pixel_scale), ("output scale", self.out_scale)):
            if not (s > 0 and math.isfinite(s)):
                raise TinygenError(f"image front end: {what} {s} must be positive")
        if not 0 <= self.pixel_zero_point <= 255:
            raise TinygenError(f"image front end: pixel zero point {self.pixel_zero_point} is "
                               "outside the uint8 range")
        if not -128 <= self.out_zero_point <= 127:
            raise TinygenError(f"image front end: output zero point {self.out_zero_point} is "
                               "outside the int8 range")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(image=True, crop=list(self.crop_box), bytes_per_pixel=self.bytes_per_pixel)
        return d


def rgb565_tables() -> np.ndarray:
    """[512, 3] uint8: row b is the high byte b's share of (R8, G8, B8), row
    256 + b the low byte's; the two shares of a pixel add up to its colour."""
    t = np.zeros((512, 3), np.int64)
    for b in range(256):
        r5, g_hi = b >> 3, b & 7
        t[b, 0] = (r5 << 3) | (r5 >> 2)
        # G8 = G6 << 2 | G6 >> 4 with G6 = g_hi << 3 | lo >> 5; G6 >> 4 = g_hi >> 1
        t[b, 1] = (g_hi << 5) | (g_hi >> 1)
        g_lo, b5 = b >> 5, b & 31
        t[256 + b, 1] = g_lo << 2
        t[256 + b, 2] = (b5 << 3) | (b5 >> 2)
    return t.astype(np.uint8)


def unpack_rgb565(frame: np.ndarray) -> np.ndarray:
    """[..., 2] big-endian RGB565 bytes -> [..., 3] uint8 RGB (for tests and docs)."""
    f = np.asarray(frame, np.uint16)
    v = (f[..., 0] << 8) | f[..., 1]
    r, g, b = v >> 11, (v >> 5) & 63, v & 31
    return np.stack([(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)],
                    -1).astype(np.uint8)


def _mix_weights(in_ch: int, out_ch: int) -> np.ndarray:
    """Real [out_ch, in_ch] colour mix."""
    if in_ch == 1:
        return np.ones((out_ch, 1))
    return np.array([_LUMA]) if out_ch == 1 else np.eye(3)


def _quantize_mix(real: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Per output channel int8 weights whose real values add up to exactly the
    row's sum, so a white pixel stays white."""
    wq = np.zeros(real.shape, np.int64)
    scales = []
    for o, row in enumerate(real):
        wq[o] = np.round(row * 127.0 / np.abs(row).max())
        scales.append(float(row.sum() / wq[o].sum()))
    return wq, scales


def build_image_frontend(p: ImageFrontendParams) -> bytes:
    """The front end's .tflite: uint8 [1, H, W, bytes per pixel] in, int8
    [1, out_height, out_width, out_channels] out."""
    p.check()
    g = _Graph()
    s = g.s
    fw, fh, bpp = p.frame_width, p.frame_height, p.bytes_per_pixel
    rgb565 = p.pixel_format == "rgb565"
    s_in, zp8 = p.pixel_scale, p.pixel_zero_point - 128

    frame = g.tensor("frame", [1, fh, fw, bpp], "uint8", scale=s_in, zp=p.pixel_zero_point)
    x = g.tensor("frame_int8", [1, fh, fw, bpp], "int8", scale=s_in, zp=zp8)
    g.op("QUANTIZE", [frame], [x])
    cx, cy, cw, ch = p.crop_box
    if (cw, ch) != (fw, fh):
        crop = g.tensor("crop", [1, ch, cw, bpp], "int8", scale=s_in, zp=zp8)
        opts = s.StridedSliceOptionsT()
        g.op("STRIDED_SLICE", [x, g.tensor("crop_begin", [4], "int32", [0, cy, cx, 0]),
                               g.tensor("crop_end", [4], "int32", [1, cy + ch, cx + cw, bpp]),
                               g.tensor("crop_strides", [4], "int32", [1, 1, 1, 1])],
             [crop], builtin=("StridedSliceOptions", opts))
        x = crop
    h, w, c = ch, cw, bpp
    size = g.tensor("out_size", [2], "int32", [p.out_height, p.out_width]) \
        if (h, w) != (p.out_height, p.out_width) else None

    def resize(x: int, method: str) -> int:
        out = g.tensor(f"resized_{method}", [1, p.out_height, p.out_width, c], "int8",
                       scale=s_in, zp=zp8)
        if method == "nearest":
            o = s.ResizeNearestNeighborOptionsT()
            o.halfPixelCenters = True
            g.op("RESIZE_NEAREST_NEIGHBOR", [x, size], [out],
                 builtin=("ResizeNearestNeighborOptions", o))
        else:
            o = s.ResizeBilinearOptionsT()
            o.halfPixelCenters = True
            g.op("RESIZE_BILINEAR", [x, size], [out], builtin=("ResizeBilinearOptions", o))
        return out

    if size is not None and p.resize == "nearest":
        x, h, w = resize(x, "nearest"), p.out_height, p.out_width
    if rgb565:
        # the high and low bytes apart (int8), then each byte - 128 -> its int32 value
        # (the same scale, zero point + 128: exact) just before its lookup: one
        # int32 index tensor alive at a time keeps the arena down
        pz = p.pixel_zero_point
        halves = [g.tensor(f"rgb565_{n}_byte", [1, h, w], "int8", scale=s_in, zp=zp8)
                  for n in ("high", "low")]
        up = s.UnpackOptionsT()
        up.num, up.axis = 2, 3
        g.op("UNPACK", [x], halves, builtin=("UnpackOptions", up))
        tables = rgb565_tables().astype(np.int64) - 128
        # a share v is stored as v - 128; the high byte's zero point makes its share
        # (v - pixel_zero_point) * scale, the low byte's v * scale: they add up to the
        # pixel's real value, and the ADD's output has the frame's quantization
        shares = []
        for half, (name, rows, zp) in zip(halves, (("high", slice(0, 256), zp8),
                                                   ("low", slice(256, 512), -128))):
            idx = g.tensor(f"rgb565_{name}_index", [1, h, w], "int32", scale=s_in, zp=pz)
            g.op("QUANTIZE", [half], [idx])
            tab = g.tensor(f"rgb565_{name}_table", [256, 3], "int8", tables[rows],
                           scale=s_in, zp=zp)
            share = g.tensor(f"rgb565_{name}_share", [1, h, w, 3], "int8", scale=s_in, zp=zp)
            g.op("GATHER", [tab, idx], [share], builtin=("GatherOptions", s.GatherOptionsT()))
            shares.append(share)
        x = g.tensor("rgb", [1, h, w, 3], "int8", scale=s_in, zp=zp8)
        g.op("ADD", shares, [x], builtin=("AddOptions", s.AddOptionsT()))
        c = 3
    if size is not None and p.resize == "bilinear":
        x, h, w = resize(x, "bilinear"), p.out_height, p.out_width

    real = _mix_weights(1 if p.pixel_format == "grayscale" else 3, p.out_channels)
    wq, w_scales = _quantize_mix(real)
    oc = p.out_channels
    weights = g.tensor("mix_weights", [oc, 1, 1, c], "int8", wq.reshape(oc, 1, 1, c),
                       scale=w_scales, zp=0, axis=0)
    bias = g.tensor("mix_bias", [oc], "int32", [0] * oc, scale=[s_in * v for v in w_scales],
                    zp=0, axis=0)
    out = g.tensor("image", [1, p.out_height, p.out_width, oc], "int8", scale=p.out_scale,
                   zp=p.out_zero_point)
    co = s.Conv2DOptionsT()
    co.padding, co.strideW, co.strideH = s.Padding.VALID, 1, 1
    g.op("CONV_2D", [x, weights, bias], [out], builtin=("Conv2DOptions", co))
    desc = (f"tinygen image front end: {fw}x{fh} {p.pixel_format}, crop {cw}x{ch} at "
            f"({cx}, {cy}), {p.resize} to {p.out_width}x{p.out_height}x{oc}")
    return g.build([frame], [out], desc, metadata=p.as_dict())


def make_image_frontend(p: ImageFrontendParams):
    """The front end's bytes and IR, checked like any model tinygen takes and
    run once (a black frame) by the tflite_micro interpreter, its reference."""
    from ..reference import TflmReference
    from . import check_full_int8, parse_checked
    tflite = build_image_frontend(p)
    ir = parse_checked(tflite, "the image front end")
    check_full_int8(ir, "the image front end")
    TflmReference(tflite).run([np.zeros((1, p.frame_height, p.frame_width, p.bytes_per_pixel),
                                        np.uint8)])
    return tflite, ir
