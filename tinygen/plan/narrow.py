"""The narrow parameter structs of the dsp convolution kernels.

Every kernel takes one const struct of parameters, one per layer in flash
(CMSIS-NN's argument structs are the model).  The dsp convolution and
depthwise kernels' structs hold shapes in 16 bits and windows, flags and
clamps in 8 (tg_shape16 in tg_dsp.h): mobilenet_ssd has 44 of them, and
int32_t fields took 108 B per convolution.  The widths below are the C
types of tg_conv2d_dsp.h and tg_depthwise_dsp.h; a layer with a value
outside them is not given a dsp kernel (the lowering keeps the portable
kernel, whose struct is int32_t throughout).
"""

from __future__ import annotations

# C type -> inclusive range
RANGES = {
    "uint8_t": (0, 0xFF),
    "int8_t": (-0x80, 0x7F),
    "uint16_t": (0, 0xFFFF),
    "int16_t": (-0x8000, 0x7FFF),
}

_SHAPE = "uint16_t"     # tg_shape16
_WINDOW = {k: "uint8_t" for k in ("filter_h", "filter_w", "stride_h", "stride_w",
                                  "dilation_h", "dilation_w", "pad_h", "pad_w")}
_FLAGS_ACT = {"fast": "uint8_t", "act_full": "uint8_t", "act_min": "int8_t",
              "act_max": "int8_t", "input_offset": "int16_t"}

CONV2D_DSP = {**_WINDOW, **_FLAGS_ACT, "groups4": "uint16_t", "row_k": "uint16_t",
              "direct_rows": "uint8_t", "pointwise": "uint8_t"}
DEPTHWISE_DSP = {**_WINDOW, **_FLAGS_ACT, "rq_words": "uint8_t"}

SHAPES = ("in", "out")

# ADD / SUB and MUL (tg_elementwise.h): int8 zero points and clamps, shifts
# within [-31, 31]; always true of an int8 model, checked all the same
_ZP = {k: "int16_t" for k in ("input1_offset", "input2_offset", "output_offset")}
ADD_S8 = {**_ZP, "input1_shift": "int8_t", "input2_shift": "int8_t", "output_shift": "int8_t",
          "act_min": "int8_t", "act_max": "int8_t", "subtract": "uint8_t"}
MUL_S8 = {**_ZP, "output_shift": "int8_t", "act_min": "int8_t", "act_max": "int8_t"}


def misfits(params: dict[str, str], widths: dict[str, str]) -> list[str]:
    """The fields of a lowering's params (C literals) that do not fit their C
    type: `name=value (type)`, empty when the narrow struct can hold them."""
    bad = []
    for key in SHAPES if SHAPES[0] in params else ():
        dims = [int(v) for v in params[key].strip("{}").split(",")]
        lo, hi = RANGES[_SHAPE]
        if any(not lo <= d <= hi for d in dims):
            bad.append(f"{key}={dims} ({_SHAPE})")
    for key, ctype in widths.items():
        v = int(params[key])
        lo, hi = RANGES[ctype]
        if not lo <= v <= hi:
            bad.append(f"{key}={v} ({ctype})")
    return bad
