"""One size vocabulary (issue 15): the words of tinygen/sizes.py are the ones
--help, docs/sizes.md, the terminal report and the HTML report print."""

import re

import pytest
from conftest import ROOT, run_cli

from tinygen.sizes import TERMS, summary_lines

MEM = {"model_flash": 3408, "code_flash": 16532, "flash_total": 19940, "arena": 3280,
       "ram_total": 36584, "stack_used": 604, "stack_size": 32768}


def test_docs_define_every_word_with_its_json_key():
    doc = (ROOT / "docs" / "sizes.md").read_text()
    for key, name, _ in TERMS:
        assert re.search(rf"\*\*{name}\*\* \| `{key}`", doc), (key, name)


@pytest.mark.parametrize("command", ["inspect", "build", "verify"])
def test_help_defines_the_words(command):
    r = run_cli(command, "--help")
    assert r.returncode == 0
    for _, name, _ in TERMS:
        assert re.search(rf"^  {name} +\S", r.stdout, re.M), (command, name)


def test_terminal_lines_use_the_words_and_leave_out_what_was_not_measured():
    lines = summary_lines(MEM)
    assert lines == ["total flash 19,940 B = model flash 3,408 B + code flash 16,532 B",
                     "total RAM 36,584 B, arena 3,280 B, stack 604 B used of 32,768 B"]
    # a flashed board whose ELF is not here: only what the manifest knows
    assert summary_lines({"model_flash": 3408, "arena": 3280}) == [
        "model flash 3,408 B (not linked: no code flash)", "arena 3,280 B"]
    assert not any("weights" in line for line in lines)


def test_inspect_says_model_flash_per_runtime(cnn_tflite):
    r = run_cli("inspect", cnn_tflite)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("model flash: "))
    assert f"tflm {cnn_tflite.stat().st_size:,} B (the .tflite)" in line
    assert re.search(r"aot [\d,]+ B \(weights\+biases", line)
