"""libFuzzer on the device side of the serial protocol (docs/fuzzing.md).

tests/fuzz/fuzz_protocol.c drives tg_protocol.c's step API with a fake model
under ASan and UBSan, with oracles of its own (well-formed replies, one reply
per frame, acknowledged chunks are valid, INVOKE runs only on delivered
input, at most once).  Here: the seed corpus is what make_corpus.py makes
from the host's codec, it replays cleanly and reaches every command, and (slow)
a bounded fuzzing run finds nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "tests" / "fuzz"
COMMON = ROOT / "firmware_templates" / "common"
CORPUS = FUZZ / "corpus"
FLAGS = ["-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
         "-Wall", "-Wextra", "-Werror"]
ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
BAD = re.compile(r"ORACLE|ERROR: (AddressSanitizer|libFuzzer|UndefinedBehaviorSanitizer)|runtime error|"
                 r"deadly signal|Test unit written")


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory):
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang not installed")
    exe = tmp_path_factory.mktemp("fuzz") / "fuzz_protocol"
    r = subprocess.run([clang, *FLAGS, f"-I{COMMON}", str(FUZZ / "fuzz_protocol.c"),
                        str(COMMON / "tg_protocol.c"), "-o", str(exe)], capture_output=True, text=True)
    if r.returncode != 0 and "fuzzer" in r.stderr and "cannot find" in r.stderr:
        pytest.skip("libFuzzer runtime not installed (Debian: libclang-rt-14-dev)")
    assert r.returncode == 0, r.stderr
    return exe


def run_fuzzer(exe: Path, *args, timeout: float, env: dict | None = None, cwd=None):
    r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **ENV, **(env or {})}, cwd=cwd)
    text = r.stdout + r.stderr
    assert r.returncode == 0 and not BAD.search(text), text[-4000:]
    return text


def test_corpus_is_what_make_corpus_writes(tmp_path):
    """The seeds are frames of the host's own codec: regenerate and compare."""
    r = subprocess.run([sys.executable, str(FUZZ / "make_corpus.py"), str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    stored = {p.name: p.read_bytes() for p in CORPUS.iterdir()}
    assert fresh == stored, "tests/fuzz/corpus is stale: run python3 tests/fuzz/make_corpus.py"


def test_corpus_replays_cleanly_and_reaches_every_command(fuzzer):
    """Every seed once under ASan/UBSan and the harness's oracles; together
    they get every reply type out of the device and run the model."""
    seeds = sorted(CORPUS.iterdir())
    text = run_fuzzer(fuzzer, *seeds, timeout=120, env={"TG_FUZZ_TRACE": "1"})
    assert text.count("Executed ") == len(seeds)
    replies = set(re.findall(r"reply (0x[0-9a-f]{2})", text))
    assert {"0xf0", "0x81", "0x82", "0x83", "0x84", "0x85", "0xff"} <= replies, replies
    assert "model run" in text


@pytest.mark.slow
def test_bounded_fuzzing_run_finds_nothing(fuzzer, tmp_path):
    """About a minute of fuzzing from the seed corpus (docs/fuzzing.md has
    the long run)."""
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    text = run_fuzzer(fuzzer, corpus, "-max_total_time=60", "-max_len=2048", "-print_final_stats=1",
                      f"-artifact_prefix={tmp_path}/", timeout=300, cwd=tmp_path)
    runs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", text).group(1))
    assert runs > 1000, text[-2000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("leak-*"))
    print(f"\n{runs} executions in 60 s, no crash")
