"""The Python-side fuzz target (tests/fuzz/py_fuzz.py, docs/fuzzing.md section 5):
its oracle, its seeds, the saved regression inputs, and a fixed fuzzing budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "tests" / "fuzz"
sys.path.insert(0, str(FUZZ))

import py_fuzz  # noqa: E402

CI_RUNS = 12000         # 25-50 s on a loaded 2-core machine


def test_seeds_reach_every_target():
    outcomes: dict[str, list[str]] = {}
    seeds = py_fuzz.seed_files()
    assert len(seeds) >= 20
    for f in seeds:
        data = f.read_bytes()
        outcome = py_fuzz.run_one(data)                 # a Finding fails the test
        outcomes.setdefault(py_fuzz.TARGETS[data[0] & 3], []).append(outcome)
    # every target has valid seeds, so mutations start past the first checks
    for target in py_fuzz.TARGETS:
        assert "accepted" in outcomes.get(target, []), (target, outcomes.get(target))


def test_example_tflite_files_are_accepted():
    files = sorted((ROOT / "examples").rglob("*.tflite"))
    assert files
    for f in files:
        assert py_fuzz.run_one(b"\x00" + f.read_bytes()) == "accepted", f


REGRESSIONS = sorted(p for p in py_fuzz.REGRESSIONS.glob("*") if p.is_file()
                     and not p.name.startswith(".") and p.suffix != ".md")


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_regression_input_is_handled(path):
    outcome = py_fuzz.run_one(path.read_bytes())
    assert outcome == "accepted" or outcome.startswith("refused: "), outcome


def test_oracle_reports_crashes_and_hangs(monkeypatch):
    from tinygen.ir.flexbuffer import FlexBufferError

    def refuse(payload, variant):
        raise FlexBufferError("bad")

    def crash(payload, variant):
        return [][len(payload)]

    def hang(payload, variant):
        while True:
            pass

    monkeypatch.setattr(py_fuzz, "_target_flexbuffer", refuse)
    assert py_fuzz.run_one(b"\x01abc") == "refused: FlexBufferError"
    monkeypatch.setattr(py_fuzz, "_target_flexbuffer", crash)
    with pytest.raises(py_fuzz.Finding) as f:
        py_fuzz.run_one(b"\x01abc")
    assert f.value.kind == "crash" and f.value.bucket.startswith("flexbuffer-IndexError@")
    monkeypatch.setattr(py_fuzz, "_target_flexbuffer", hang)
    with pytest.raises(py_fuzz.Finding) as f:
        py_fuzz.run_one(b"\x01abc", time_limit=0.2)
    assert f.value.kind == "hang"


def test_fuzz_fixed_budget(tmp_path):
    """The CI budget: CI_RUNS inputs from the seeds, libFuzzer seed 1; nothing found."""
    pytest.importorskip("atheris")
    found = tmp_path / "findings"
    r = subprocess.run([sys.executable, str(FUZZ / "py_fuzz.py"), "--runs", str(CI_RUNS),
                        "--seed", "1", "--seconds", "90", "--regressions", str(found),
                        "--work", str(tmp_path / "work")],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    text = r.stdout + r.stderr
    findings = [ln for ln in text.splitlines() if ln.startswith("FINDING")]
    assert not findings and not found.exists(), "\n".join(findings)
    assert r.returncode == 0, text[-3000:]
    assert f"Done {CI_RUNS} runs" in text, text[-3000:]
