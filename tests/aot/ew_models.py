"""Shared pieces of the element-wise kernel tests (tests/aot/test_elementwise_*.py).

One-operator models are built with tests/aot/tflite_builder.py and checked
with tests/aot/harness.py: generate_aot + host build + TFLM on the same
inputs, 0 LSB difference.  Hypothesis draws shapes and quantization; the
int8 input data comes from a drawn seed (plus exhaustive/edge patterns where
they matter), which keeps examples cheap.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import tflite_builder as tb
from harness import assert_bit_exact
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

schema = tb.schema
# option tables of operators the shared builder does not list
tb.OPTION_TABLES.setdefault("SUM", "ReducerOptions")
tb.OPTION_TABLES.setdefault("PADV2", "PadV2Options")
tb.OPTION_TABLES.setdefault("LEAKY_RELU", "LeakyReluOptions")

ACTIVATIONS = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]

# Default runs are deterministic (CI must not discover new examples at
# random); the @slow sweeps draw fresh examples.
FAST = dict(deadline=None, derandomize=True, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = dict(deadline=None, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fast(n: int):
    return settings(max_examples=n, **FAST)


def slow(n: int):
    return settings(max_examples=n, **SLOW)


# ---- strategies -----------------------------------------------------------

def scales(lo_exp: float = -3.0, hi_exp: float = 0.0):
    """Log-uniform positive scales, rounded to float32."""
    return st.floats(lo_exp, hi_exp).map(lambda e: float(np.float32(10.0 ** e)))


zero_points = st.integers(-128, 127)
seeds = st.integers(0, 2 ** 32 - 1)


def shapes(min_rank=1, max_rank=4, min_dim=1, max_dim=6):
    return st.lists(st.integers(min_dim, max_dim), min_size=min_rank, max_size=max_rank) \
        .map(tuple)


# ---- data -----------------------------------------------------------------

def int8_data(seed: int, shape, pattern: str = "random") -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape, dtype=np.int64))
    if pattern == "extremes":
        flat = rng.choice(np.array([-128, -127, -1, 0, 1, 126, 127]), size=n)
    elif pattern == "constant":
        flat = np.full(n, rng.integers(-128, 128))
    elif pattern == "all":      # every int8 value, cycled
        flat = (np.arange(n) % 256) - 128
        rng.shuffle(flat)
    else:
        flat = rng.integers(-128, 128, size=n)
    return flat.astype(np.int8).reshape(shape)


patterns = st.sampled_from(["random", "random", "random", "extremes", "constant", "all"])


# ---- running ----------------------------------------------------------------

def check(tflite: bytes, batches) -> None:
    """0 LSB between TFLM and the aot runtime on the given input sets."""
    work = Path(tempfile.mkdtemp(prefix="tg_ew_"))
    try:
        assert_bit_exact(tflite, work, inputs=batches)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def options(name: str, **fields):
    obj = getattr(schema, name + "T")()
    for k, v in fields.items():
        setattr(obj, k, v)
    return obj
