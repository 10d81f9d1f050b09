"""The int16 logistic table of tg_lstm.c is measured, not copied: re-derive
it from the TFLM interpreter's behaviour with tools/derive_sigmoid_lut.py and
check the generated header holds exactly that table (derive_table() itself
checks each entry is the only value explaining its outputs and replays the
table against LOGISTIC/TANH on every int16 input)."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
from harness import REPO

SCRIPT = REPO / "tools" / "derive_sigmoid_lut.py"


@pytest.fixture(scope="module")
def lut():
    spec = importlib.util.spec_from_file_location("derive_sigmoid_lut", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def derived(lut):
    return lut.derive_table()


def test_header_table_is_the_derived_one(lut, derived):
    assert len(derived) == 256
    assert lut.read_header_table() == derived


def test_header_is_exactly_what_the_script_writes(lut, derived):
    assert lut.HEADER.read_text() == lut.render_header(derived)


def test_table_shape(derived):
    t = np.asarray(derived)
    assert t[0] == 32768 and t[-1] == 65535
    assert (np.diff(t) >= 0).all()
    # close to the logistic function it samples (but not any exact rounding of it)
    ideal = 65536.0 / (1.0 + np.exp(-np.arange(256) / 24.0))
    assert np.abs(t - ideal).max() <= 2.0


def test_kernel_uses_the_header_and_the_backend_ships_it(lut):
    src = (lut.HEADER.parent / "tg_lstm.c").read_text()
    assert '#include "tg_lstm_sigmoid_lut.h"' in src
    assert f"{{{lut.MACRO}}}" in src
    from tinygen.codegen.aot import _kernel_files
    files, _ = _kernel_files([SimpleNamespace(sources=["tg_lstm.c", "tg_lstm.h"])])
    assert "tg_lstm_sigmoid_lut.h" in files
