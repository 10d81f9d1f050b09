"""The aot runtime's generated C under AddressSanitizer and UndefinedBehaviorSanitizer.

For every example model in examples/*/model.* (quickstart, and the others
present in the checkout): convert it as `tinygen build` would (its calib.npy,
and its ssd.json detection spec when there is one), generate the aot sources
for the host, compile them with clang -fsanitize=address,undefined
-fno-sanitize-recover=all together with a driver (tests/aot/harness.py: inputs
from stdin, outputs to stdout, one inference after another, the model's
state carried as on the device), run a few inferences with random inputs,
and require a clean run (any sanitizer report aborts the driver) whose
outputs are bit-exact with the tflite_micro reference (compared as `tinygen
verify` compares).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "aot"))

EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*/model.*")
                  if p.suffix in (".h5", ".keras", ".tflite"))
INFERENCES = 4

pytestmark = pytest.mark.slow


def _convert(model_path: Path) -> bytes:
    from tinygen.convert import convert
    from tinygen.load import load_model
    here = model_path.parent
    calib = here / "calib.npy"
    detection = here / "ssd.json"
    result = convert(load_model(model_path), calib if calib.exists() else None,
                     detection=detection if detection.exists() else None)
    return result.tflite


@pytest.mark.parametrize("model_path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_generated_code_is_clean_under_asan_and_ubsan(model_path, tmp_path, monkeypatch):
    if shutil.which("clang") is None:
        pytest.skip("clang not installed")
    from harness import build_host, random_inputs, run_host, run_tflm

    tflite = _convert(model_path)
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1")
    monkeypatch.setenv("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    monkeypatch.setenv("TG_AOT_TEST_CACHE", str(tmp_path / "objcache"))  # no stale objects
    binary = build_host(tflite, tmp_path, opt="-O1", sanitize=True, cc="clang",
                        extra_flags=("-g", "-fno-omit-frame-pointer"))
    assert b"__asan_init" in binary.exe.read_bytes() and b"__ubsan" in binary.exe.read_bytes()
    batches = random_inputs(binary.model, np.random.default_rng(0), INFERENCES)
    ours = run_host(binary, batches)  # raises with the sanitizer's report if it aborts
    reference = run_tflm(tflite, batches)
    # verify's own comparison (it knows which detection rows are defined)
    from tinygen.verify import compare_outputs
    for m in compare_outputs(binary.model, ours, reference, tolerance=0):
        assert m.passed and m.max_abs_diff_lsb == 0, \
            f"{model_path.parent.name}: output {m.index} ({m.name}) differs from TFLM: {m}"
    assert os.path.getsize(binary.exe) > 0
