"""The dsp convolution kernels' narrow parameter structs (tinygen/plan/narrow.py).

Their shapes are 16-bit and their windows, flags and clamps 8-bit; a layer
with a value outside those types keeps the portable kernel (int32_t
fields).  Checked here: the Python widths are the C declarations, every
field is tested, and layers that do not fit fall back and stay bit-exact
with the tflite_micro interpreter on the host and on QEMU Cortex-M4 (the
fitting ones are covered by test_dsp_kernels.py's drawn shapes).
"""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path

import harness
import numpy as np
import pytest
from harness import assert_bit_exact, assert_bit_exact_m4, qemu_available
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tflite_builder import conv2d_model, depthwise_model

from tinygen.codegen import aot
from tinygen.ir import parse_tflite
from tinygen.plan.narrow import ADD_S8, CONV2D_DSP, DEPTHWISE_DSP, MUL_S8, RANGES, misfits

KERNELS = Path(__file__).resolve().parents[2] / "firmware_templates" / "aot" / "kernels"
FEW = settings(max_examples=6, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def dsp_core(monkeypatch):
    monkeypatch.setattr(harness, "generate_aot",
                        functools.partial(aot.generate_aot, core="cortex-m4f"))


def _c_fields(header: str, struct: str) -> dict[str, str]:
    """field -> C type of a typedef'd struct in a kernel header."""
    text = (KERNELS / header).read_text()
    body = re.search(r"typedef struct \{((?:(?!typedef).)*?)\} " + struct + ";", text,
                     re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    fields = {}
    for decl in body.split(";"):
        m = re.match(r"\s*(?:const\s+)?(\w+)\s*(\**)\s*(.*)$", decl.strip(), re.S)
        if not m:
            continue
        for name in m.group(3).split(","):
            fields[name.strip().lstrip("*")] = m.group(1) + m.group(2)
    return fields


@pytest.mark.parametrize("header,struct,widths", [
    ("tg_conv2d_dsp.h", "tg_conv2d_dsp_params", CONV2D_DSP),
    ("tg_depthwise_dsp.h", "tg_depthwise_dsp_params", DEPTHWISE_DSP),
])
def test_widths_are_the_c_declarations(header, struct, widths):
    fields = _c_fields(header, struct)
    assert {k: fields[k] for k in widths} == widths
    assert fields["in"] == fields["out"] == "tg_shape16"
    # every non-pointer field is range-checked
    assert set(fields) - {"filter", "rq"} == set(widths) | {"in", "out"}
    shape = re.search(r"typedef struct \{\s*(\w+) n, h, w, c;\s*\} tg_shape16;",
                      (KERNELS / "tg_dsp.h").read_text())
    assert shape and shape.group(1) == "uint16_t"


@pytest.mark.parametrize("struct,widths", [("tg_add_s8_params", ADD_S8),
                                            ("tg_mul_s8_params", MUL_S8)])
def test_add_mul_widths_are_the_c_declarations(struct, widths):
    fields = _c_fields("tg_elementwise.h", struct)
    assert {k: fields[k] for k in widths} == widths
    # the rest: the broadcast description and the Q31 multipliers
    assert {k: v for k, v in fields.items() if k not in widths} == \
        {"bc": "tg_bcast", **{k: "int32_t" for k in fields if k.endswith("multiplier")}}


def test_binary_lowering_refuses_what_its_struct_cannot_hold():
    from tinygen.plan.lowering import LoweringError
    from tinygen.plan.ops import binary
    with pytest.raises(LoweringError, match=r"output_shift=-200 \(int8_t\)"):
        binary._binary_call(_FakeOp(), None, "tg_add_s8", "tg_add_s8_params",
                            {**{k: "0" for k in ADD_S8}, "output_shift": "-200"},
                            _FakeTensor(), _FakeTensor(), _FakeTensor(), "")


class _FakeOp:
    inputs, outputs = [0, 1], [2]

    def describe(self) -> str:
        return "#0 ADD"


class _FakeTensor:
    is_constant, shape = False, (1,)


def _lowered(tflite: bytes):
    calls, _ = aot.plan_aot(parse_tflite(tflite), memory_first=False, core="cortex-m4f")
    return calls[0]


@pytest.mark.parametrize("widths,make", [
    (CONV2D_DSP, lambda: conv2d_model(np.random.default_rng(1), h=6, w=6, cin=8, cout=6)),
    (DEPTHWISE_DSP, lambda: depthwise_model(np.random.default_rng(1), h=6, w=6, cin=8)),
])
def test_each_field_outside_its_type_is_named(widths, make):
    call = _lowered(make())
    assert call.kernel in ("tg_conv2d_dsp_s8", "tg_depthwise_dsp_s8")
    assert misfits(call.params, widths) == []
    for key, ctype in widths.items():
        lo, hi = RANGES[ctype]
        for bad in (lo - 1, hi + 1):
            p = dict(call.params, **{key: str(bad)})
            assert misfits(p, widths) == [f"{key}={bad} ({ctype})"]
        for ok in (lo, hi):
            assert misfits(dict(call.params, **{key: str(ok)}), widths) == []
    for key in ("in", "out"):
        assert misfits(dict(call.params, **{key: "{1, 65536, 1, 8}"}), widths) == \
            [f"{key}=[1, 65536, 1, 8] (uint16_t)"]
        assert misfits(dict(call.params, **{key: "{1, 65535, 1, 8}"}), widths) == []


# layers a byte-wide window cannot describe: dilation (and SAME padding) past 255

def _wide_conv(seed: int, dilation: int, padding: str) -> bytes:
    return conv2d_model(np.random.default_rng(seed), h=3, w=2 * dilation + 7, cin=2, cout=3,
                        kh=1, kw=3, dilation=(1, dilation), padding=padding)


def _wide_dw(seed: int, dilation: int, padding: str) -> bytes:
    return depthwise_model(np.random.default_rng(seed), h=2, w=2 * dilation + 5, cin=4, kh=1,
                           kw=3, dilation=(1, dilation), padding=padding, with_bias=True)


def test_a_window_that_fits_gets_the_dsp_kernel_and_one_that_does_not_falls_back():
    assert _lowered(_wide_conv(0, 255, "VALID")).kernel == "tg_conv2d_dsp_s8"
    assert _lowered(_wide_conv(0, 256, "VALID")).kernel in ("tg_conv2d_s8",
                                                            "tg_conv2d_direct_s8")
    assert _lowered(_wide_dw(0, 255, "VALID")).kernel == "tg_depthwise_dsp_s8"
    assert _lowered(_wide_dw(0, 256, "VALID")).kernel == "tg_depthwise_conv2d_s8"
    # SAME: the padding (the dilation here) is what does not fit
    assert _lowered(_wide_conv(0, 300, "SAME")).kernel in ("tg_conv2d_s8",
                                                           "tg_conv2d_direct_s8")


@FEW
@given(st.integers(0, 2**16), st.integers(256, 400), st.sampled_from(["SAME", "VALID"]),
       st.booleans())
def test_fallback_is_bit_exact_host(seed, dilation, padding, depthwise):
    tfl = (_wide_dw if depthwise else _wide_conv)(seed, dilation, padding)
    with tempfile.TemporaryDirectory(prefix="tg_narrow_") as d:
        cmp = assert_bit_exact(tfl, Path(d), n_inputs=2, seed=seed, memory_first=False)
    kernels = [c.kernel for c in cmp.binary.result.calls]
    assert not any("dsp" in k for k in kernels), kernels


@pytest.mark.skipif(not qemu_available(), reason="qemu-system-arm or arm-none-eabi-gcc missing")
@pytest.mark.parametrize("depthwise", [False, True])
def test_fallback_is_bit_exact_m4(tmp_path, depthwise):
    tfl = (_wide_dw if depthwise else _wide_conv)(3, 300, "SAME")
    binary = assert_bit_exact_m4(tfl, tmp_path, n_inputs=2, seed=3, memory_first=False)
    kernels = [c.kernel for c in binary.result.calls]
    assert not any("dsp" in k for k in kernels), kernels
