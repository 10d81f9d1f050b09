"""Differential acceptance against the tflite_micro interpreter (the contract is
in tinygen/tools/differential.py): every model TFLM runs is 0 LSB in the aot
runtime compiled for the host or refused in one line; every model TFLM
rejects is refused in one line; no traceback, crash or hang.

Default: the small fixed corpus (`--quick`, ~30 models, seconds).  Slow: the
whole built corpus with more mutations, and the zoo's models."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tinygen.tools import corpus
from tinygen.tools.differential import (
    BOTH_ACCEPT,
    BOTH_REFUSE,
    FINDINGS,
    TINYGEN_REFUSES,
    check_case,
    make_corpus,
    summarize,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _run(cases):
    results = [check_case(c) for c in cases]
    summary = summarize(results)
    assert not summary["findings"], "\n".join(
        f"{f['name']} ({f['note']}): {f['outcome']}: {f['detail']}" for f in summary["findings"])
    return results


def test_quick_corpus_holds_the_contract():
    cases = make_corpus(quick=True)
    assert len(cases) >= 25
    results = _run(cases)
    outcomes = {r.outcome for r in results}
    # the corpus exercises every branch of the contract, not just one
    assert {BOTH_ACCEPT, BOTH_REFUSE, TINYGEN_REFUSES} <= outcomes
    by_name = {r.name: r for r in results}
    # the built (unmutated) models are all valid: TFLM runs every one
    for r in results:
        if "~" not in r.name:
            assert r.tflm == "runs", r
    assert by_name["built/conv_bias_qdim3"].outcome == BOTH_ACCEPT
    assert by_name["built/chain_conv_dw_pool_fc_softmax"].outcome == BOTH_ACCEPT
    assert "fused_activation_function TANH" in by_name["built/conv_fused_tanh"].detail


def test_the_checker_catches_a_wrong_answer(monkeypatch):
    """A differential test that cannot fail proves nothing: make the host
    program's output differ from TFLM's by one LSB and expect a finding."""
    from tinygen.tools import differential
    real = differential.run_host

    def off_by_one(exe, ir, vectors):
        outs = real(exe, ir, vectors)
        outs[0][0] = outs[0][0].copy()
        flat = outs[0][0].reshape(-1)
        flat[0] = flat[0] + 1 if flat[0] < 127 else flat[0] - 1
        return outs

    monkeypatch.setattr(differential, "run_host", off_by_one)
    case = corpus.built_cases(["conv_dilation2"])[0]
    r = check_case(case)
    assert r.outcome == "wrong answer" and "1 LSB" in r.detail, r
    assert r.outcome in FINDINGS


def test_cli_help_and_exit_status(tmp_path):
    h = subprocess.run([sys.executable, "-m", "tinygen.tools.differential", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert h.returncode == 0 and "--zoo" in h.stdout
    md = tmp_path / "d.md"
    r = subprocess.run([sys.executable, "-m", "tinygen.tools.differential", "--quick",
                        "--only", "conv_stride4x3_k2", "--markdown", str(md)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    text = md.read_text()
    assert "| built/conv_stride4x3_k2 | runs | 0 LSB |" in text


@pytest.mark.slow
def test_full_built_corpus_holds_the_contract():
    _run(make_corpus(per_base_bytes=2, per_base_struct=4))


@pytest.mark.slow
def test_zoo_models_and_their_mutations_hold_the_contract(tmp_path):
    cases = corpus.zoo_cases(0.25)
    results = _run(cases + corpus.mutations(cases, 2, 3))
    for r in results[:len(cases)]:
        assert r.outcome == BOTH_ACCEPT, r
