"""What the stream-fusion tests (test_stream_*.py) share: the hypothesis
profiles, the Cortex-M4F code with every candidate fusion forced, and one
host run against TFLM that reports which kernels were called."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import harness
import numpy as np
from harness import assert_bit_exact
from hypothesis import HealthCheck, settings
from tflite_builder import (
    bias_for,
    conv2d_options,
    filter_scales,
    out_size,
    output_scale_for,
    random_int8,
)

from tinygen.codegen import aot
from tinygen.plan import aot as plan_aot_mod
from tinygen.plan import fuse

FAST = settings(max_examples=20, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def sweep(examples: int) -> settings:
    """The opt-in sweeps' profile (marked slow, run with --sweeps)."""
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def force_streams(monkeypatch) -> None:
    """Cortex-M4F code (dsp kernels, portable intrinsics on the host), every
    candidate fusion kept whether or not it saves RAM, so that every draw
    runs a fused kernel."""
    monkeypatch.setattr(plan_aot_mod, "fuse_streams",
                        functools.partial(fuse.fuse_streams, force=True))
    monkeypatch.setattr(harness, "generate_aot",
                        functools.partial(aot.generate_aot, core="cortex-m4f"))


def bit_exact_on_host(tfl: bytes, seed: int, sanitize: bool):
    """0 LSB against TFLM on three inputs; returns the comparison."""
    with tempfile.TemporaryDirectory(prefix="tg_stream_") as d:
        # memory_first=False: the dsp convolutions keep their scratch rather
        # than falling back to the portable scratch-free kernel (not streamed)
        return assert_bit_exact(tfl, Path(d), n_inputs=3, seed=seed, sanitize=sanitize,
                                memory_first=False)


def top_level_kernels(cmp) -> list[str]:
    """The kernels the firmware calls, fused calls' parts left out."""
    return [c.kernel for c in cmp.binary.result.calls if c.absorbed_by is None]


def input_and_conv(b, rng, h: int, w: int, cin: int, cout: int, kh: int, kw: int,
                   stride: tuple[int, int], padding: str, activation: str):
    """The model's input and the CONV_2D a stream starts with, scales and
    zero points drawn: returns (input, map, map scale, map zero point)."""
    in_scale = float(np.float32(rng.uniform(0.005, 0.05)))
    x = b.activation((1, h, w, cin), scale=in_scale, zero_point=int(rng.integers(-128, 128)))
    wq = filter_scales(rng, cout, True)
    bias = bias_for(rng, in_scale, wq, cout, True)
    assert bias
    wt = b.constant(random_int8(rng, (cout, kh, kw, cin), -127, 127), "int8", scale=wq,
                    zero_point=0, axis=0)
    bt = b.constant(bias[0], "int32", scale=bias[1], zero_point=0, axis=0)
    mh, mw = out_size(padding, h, kh, stride[0]), out_size(padding, w, kw, stride[1])
    m_scale = output_scale_for(in_scale, wq, kh * kw * cin, 1.0)
    m_zp = int(rng.integers(-128, 128))
    m = b.activation((1, mh, mw, cout), scale=m_scale, zero_point=m_zp)
    b.op("CONV_2D", [x, wt, bt], [m], conv2d_options(padding, stride, (1, 1), activation),
         version=3)
    return x, m, m_scale, m_zp
