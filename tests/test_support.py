"""One truth about op support: inspect, build and the aot generator agree, and
a model TFLM runs is either run by aot or refused in one line that names the
operator, its index, the parameter and what to do.

The models are written directly as flatbuffers (tinygen/tools/corpus.py) and
TFLM's verdict on each is taken from the tflite_micro interpreter here, not
assumed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tinygen.tools import corpus
from tinygen.tools.differential import BOTH_ACCEPT, check_case, run_tflm

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinygen", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def _tflm_runs(tflite: bytes) -> bool:
    try:
        run_tflm(tflite, seed=0)
    except Exception:  # noqa: BLE001 - any refusal of the interpreter
        return False
    return True


@pytest.fixture(scope="module")
def tanh_conv(tmp_path_factory):
    path = tmp_path_factory.mktemp("support") / "conv_tanh.tflite"
    path.write_bytes(corpus.BUILT["conv_fused_tanh"](np.random.default_rng(3)))
    return path


def test_tflm_runs_conv_with_fused_tanh(tanh_conv):
    assert _tflm_runs(tanh_conv.read_bytes())


def test_inspect_and_build_agree_on_a_lowering_refusal(tanh_conv, tmp_path):
    """The bug of issue 13: inspect said "aot yes" and build said the board
    "does not offer the aot runtime (it has: aot)"."""
    ins = _cli("inspect", tanh_conv, "--board", "qemu-stm32f405", "--json", "-q")
    assert ins.returncode == 0, ins.stderr
    a = json.loads(ins.stdout)
    assert a["ops"][0]["supported"] == {"tflm": True, "aot": False}
    assert "TANH" in a["ops"][0]["reasons"]["aot"]
    aot_fit = next(f for f in a["fits"] if f["runtime"] == "aot")
    assert not aot_fit["fits"]

    out = tmp_path / "p"
    b = _cli("build", tanh_conv, "--board", "qemu-stm32f405", "--no-compile", "-o", out, "-q")
    assert b.returncode == 2
    lines = b.stderr.strip().splitlines()
    assert len(lines) == 1, b.stderr
    line = lines[0]
    assert "does not offer" not in line
    for part in ("CONV_2D", "operator #0", "fused_activation_function TANH", "--runtime tflm"):
        assert part in line, (part, line)
    assert line in ("tinygen: error: cannot build for qemu-stm32f405: " + aot_fit["problems"][0],)
    assert not out.exists()



def test_aot_support_is_what_the_generator_does(tmp_path):
    """Every built model: analysis says aot runs it exactly when generate_aot
    succeeds, and a refusal is one line naming the operator's index."""
    from tinygen.analyze.support import aot_support, unsupported_message
    from tinygen.codegen.aot import generate_aot
    from tinygen.ir import parse_tflite
    from tinygen.plan.lowering import LoweringError
    for case in corpus.built_cases():
        ir = parse_tflite(case.tflite)
        s = aot_support(ir)
        try:
            generate_aot(ir, tmp_path / case.name.replace("/", "_"))
            generated = True
        except LoweringError as exc:
            generated = False
            assert f"#{min(s.op_reasons)}" in str(exc), (case.name, str(exc))
        assert s.ok == generated, case.name
        if not s.ok:
            msg = unsupported_message(ir, s)
            assert "\n" not in msg and f"operator #{min(s.op_reasons)} of" in msg
            assert not s.internal, (case.name, s.op_reasons)


def test_person_detect_bias_dimension_3_bit_exact():
    """TFLM's person_detect.tflite quantizes its 1-D conv biases along
    dimension 3; TFLM runs that, so tinygen must too, bit-exactly."""
    from tinygen.ir import parse_tflite
    for name in ("conv_bias_qdim3", "depthwise_relu6_bias_qdim3", "fc_bias_qdim3"):
        tfl = corpus.BUILT[name](np.random.default_rng(7))
        bias = [t for t in parse_tflite(tfl).tensors if t.dtype == "int32" and t.is_constant][0]
        assert bias.quant.axis == 3 and len(bias.shape) == 1
        r = check_case(corpus.Case(name, tfl))
        assert r.tflm == "runs", r
        assert r.outcome == BOTH_ACCEPT, r


@pytest.mark.parametrize("axis,runs", [(3, True), (1, True), (5, False)])
def test_conv_filter_quantized_dimension_follows_tflm(axis, runs):
    """TFLM checks that the filter's quantized_dimension has as many entries
    as output channels (and then scales per output channel); a square filter
    passes on dimension 3 or 1, an out-of-range one does not."""
    rng = np.random.default_rng(11)
    tfl = corpus.conv(rng, cin=4, cout=4, k=(4, 4), filt_axis=axis)
    assert _tflm_runs(tfl) == runs
    r = check_case(corpus.Case(f"conv_filter_qdim{axis}", tfl))
    if runs:
        assert r.outcome == BOTH_ACCEPT, r
    else:
        assert r.outcome == "refused by both", r
        assert f"quantized_dimension {axis}" in r.detail
