"""Habits that a tool checks: the C/C++ under firmware_templates/ is in the
style of .clang-format (ruff and mypy run before the tests, in the README's
test command)."""

import os
import shutil
import subprocess

import pytest
from conftest import ROOT

# Written by tools/derive_sigmoid_lut.py: its layout is the generator's.
GENERATED = {"firmware_templates/aot/kernels/tg_lstm_sigmoid_lut.h"}


def test_firmware_sources_are_clang_formatted():
    exe = shutil.which("clang-format")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("clang-format is missing; scripts/setup.sh installs it")
        pytest.skip("clang-format not installed (scripts/setup.sh installs it)")
    listed = subprocess.run(
        ["git", "ls-files", "firmware_templates/*.c", "firmware_templates/*.h",
         "firmware_templates/*.cc", "firmware_templates/*.cpp"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    files = [f for f in listed if f not in GENERATED]
    assert len(files) > 40
    r = subprocess.run([exe, "--dry-run", "--Werror", *files], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, ("run `clang-format -i` on these:\n"
                               + "\n".join(sorted({ln.split(":")[0] for ln in r.stderr.splitlines()
                                                   if ": error:" in ln})))
