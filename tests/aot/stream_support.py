"""What the stream-fusion tests (test_stream_*.py) share: the hypothesis
profiles, the Cortex-M4F code with every candidate fusion forced, and one
host run against TFLM that reports which kernels were called."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import harness
from harness import assert_bit_exact
from hypothesis import HealthCheck, settings

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
