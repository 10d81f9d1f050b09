"""The generated code on an emulated Cortex-M4F (QEMU mps2-an386), 0 LSB vs TFLM.

The host tests prove the arithmetic; these prove the same sources built by
arm-none-eabi-gcc for the target (Thumb-2, hard float, DSP extension, its
own integer semantics) compute the same bytes.  generate_aot targets the
machine's core (mps2-an386: Cortex-M4F), so CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED run the dsp kernels here (SMLAD/SXTAB16 intrinsics, fast
requantization, outputs overlapping their inputs); memory_first=False keeps
the convolutions' im2col scratch, True may fall back to the scratch-free
portable kernels (see also test_dsp_kernels.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from harness import assert_bit_exact_m4, build_m4, qemu_available, random_inputs, run_m4
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras_models import keras_cnn, keras_mixed
from test_aot_ops import conv_cases, depthwise_cases, fc_cases, pool_cases
from tflite_builder import conv2d_model, depthwise_model, fully_connected_model, pool_model

pytestmark = pytest.mark.skipif(not qemu_available(), reason="qemu-system-arm not installed")

M4 = settings(max_examples=10, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
M4_SLOW = settings(max_examples=120, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _m4(tflite: bytes, seed: int, reference: bytes | None = None,
        memory_first: bool = True) -> None:
    with tempfile.TemporaryDirectory(prefix="tg_m4_") as d:
        assert_bit_exact_m4(tflite, Path(d), n_inputs=3, seed=seed, reference=reference,
                            memory_first=memory_first)


def _dw(kw, seed):
    ours = depthwise_model(np.random.default_rng(seed), **kw)
    ref = None if kw.get("with_bias", True) else \
        depthwise_model(np.random.default_rng(seed), **{**kw, "with_bias": "zero"})
    _m4(ours, seed, ref)


@M4
@given(conv_cases(), st.booleans())
def test_conv2d_m4(case, memory_first):
    kw, seed = case
    _m4(conv2d_model(np.random.default_rng(seed), **kw), seed, memory_first=memory_first)


@M4
@given(depthwise_cases())
def test_depthwise_conv2d_m4(case):
    _dw(*case)


@M4
@given(fc_cases())
def test_fully_connected_m4(case):
    kw, seed = case
    _m4(fully_connected_model(np.random.default_rng(seed), **kw), seed)


@M4
@given(pool_cases())
def test_pool2d_m4(case):
    kw, seed = case
    _m4(pool_model(np.random.default_rng(seed), **kw), seed)


@pytest.mark.slow
@M4_SLOW
@given(conv_cases(big=True), st.booleans())
def test_conv2d_m4_sweep(case, memory_first):
    kw, seed = case
    _m4(conv2d_model(np.random.default_rng(seed), **kw), seed, memory_first=memory_first)


@pytest.mark.slow
@M4_SLOW
@given(depthwise_cases(big=True))
def test_depthwise_conv2d_m4_sweep(case):
    _dw(*case)


@pytest.mark.slow
@M4_SLOW
@given(fc_cases(big=True))
def test_fully_connected_m4_sweep(case):
    kw, seed = case
    _m4(fully_connected_model(np.random.default_rng(seed), **kw), seed)


def test_keras_cnn_m4(tmp_path):
    binary = assert_bit_exact_m4(keras_cnn(), tmp_path, n_inputs=6)
    # guest instruction count per inference (QEMU icount; not real cycles)
    ticks: list[int] = []
    run_m4(binary, random_inputs(binary.model, np.random.default_rng(1), 2), icount=True,
           ticks_out=ticks)
    assert len(ticks) == 2 and all(t > 0 for t in ticks)


def test_build_m4_reports_sizes(tmp_path):
    binary = build_m4(conv2d_model(np.random.default_rng(0)), tmp_path)
    assert binary.exe.exists() and binary.exe.stat().st_size > 0


def test_keras_mixed_m4(tmp_path):
    assert_bit_exact_m4(keras_mixed(), tmp_path / "lean", n_inputs=4)
    assert_bit_exact_m4(keras_mixed(), tmp_path / "fast", n_inputs=4, memory_first=False)
