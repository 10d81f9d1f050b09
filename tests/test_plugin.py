"""tinygen's pytest plugin (tinygen/pytest_plugin.py, pytest11 entry point).

Each case runs pytest in a subprocess, as a user would, so the installed
entry point is what loads the plugin.  The end-to-end case runs the example
HIL suite (examples/hil_tests/) against the quickstart model in QEMU.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT

QUICKSTART = ROOT / "examples" / "quickstart"


def run_pytest(*args, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


def write_tests(tmp_path, body: str):
    path = tmp_path / "test_user.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_plugin_is_loaded_and_inert_without_options(tmp_path):
    """Loaded in every session, it imports nothing heavy and its fixtures skip."""
    write_tests(tmp_path, """
        import sys

        def test_loaded_but_nothing_imported(request):
            assert request.config.pluginmanager.hasplugin("tinygen")
            heavy = [m for m in ("tensorflow", "tinygen.project", "tinygen.device.protocol",
                                 "tinygen.boards", "matplotlib") if m in sys.modules]
            assert heavy == []

        def test_board(tinygen_board):
            pass

        def test_dut(dut):
            pass
    """)
    r = run_pytest("-rs", "test_user.py", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 2 skipped" in r.stdout
    assert "no --tinygen-board given" in r.stdout
    assert "tinygen:" not in r.stdout.split("collected")[0]   # no report header line


def test_options_are_documented_in_help(tmp_path):
    r = run_pytest("--help", cwd=tmp_path)
    assert r.returncode == 0
    for opt in ("--tinygen-board", "--tinygen-port", "--tinygen-model", "--tinygen-calib",
                "--tinygen-runtime", "--tinygen-build-dir"):
        assert opt in r.stdout


def test_board_without_model_allows_a_test_that_only_builds(tmp_path):
    write_tests(tmp_path, """
        def test_board_is_given(tinygen_board):
            assert tinygen_board.id == "qemu-cortex-m4" and tinygen_board.emulated

        def test_build_needs_a_model(tinygen_build):
            pass

        def test_dut_needs_a_model(dut):
            pass
    """)
    r = run_pytest("-rs", "--tinygen-board", "qemu-cortex-m4", "test_user.py", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 2 skipped" in r.stdout
    assert "no --tinygen-model given" in r.stdout
    assert "tinygen: board qemu-cortex-m4" in r.stdout


def test_unknown_board_is_one_clear_error(tmp_path):
    write_tests(tmp_path, """
        def test_board(tinygen_board):
            pass
    """)
    r = run_pytest("--tinygen-board", "esp33", "test_user.py", cwd=tmp_path)
    assert r.returncode == 1
    assert "--tinygen-board:" in r.stdout and "esp33" in r.stdout
    assert "Traceback" not in r.stdout


def test_dut_quantizes_float_inputs_like_the_converter():
    """Dut.quantize: float -> int8 with the input's scale/zero point, int8 passed
    through, a batch dimension of 1 optional."""
    from tinygen.device.protocol import DeviceInfo, TensorInfo
    from tinygen.pytest_plugin import Dut

    tin = TensorInfo(0, (1, 2, 2, 1), np.dtype(np.int8), 0.5, -3, 4)
    tout = TensorInfo(0, (1, 3), np.dtype(np.int8), 0.25, 10, 3)
    info = DeviceInfo(1, 0, "b", "aot", "0" * 64, 0, "instructions", (tin,), (tout,), 16384, 0)

    class Client:
        def info(self):
            return info

        def infer(self, xs):
            self.sent = xs
            return "result"

    client = Client()
    dut = Dut(client, board=None, url="test://")
    q = dut.quantize(np.array([[0.0, 1.0], [-70.0, 70.0]], np.float32))
    assert q[0].dtype == np.int8 and q[0].shape == (1, 2, 2, 1)
    assert q[0].reshape(-1).tolist() == [-3, -1, -128, 127]
    raw = np.array([1, 2, 3, 4], np.int8).reshape(1, 2, 2, 1)
    assert dut.infer(raw) == "result" and client.sent[0].tolist() == raw.tolist()
    assert dut.dequantize([np.array([[10, 14, 6]], np.int8)])[0].tolist() == [[0.0, 1.0, -1.0]]
    with pytest.raises(ValueError, match="does not fit"):
        dut.quantize(np.zeros(5, np.float32))


@pytest.mark.slow
def test_example_hil_suite_passes_on_qemu(tmp_path):
    """The documented command, on the emulated Cortex-M4: the plugin builds the
    firmware, starts QEMU, and the user's tests pass; a tight latency bound fails."""
    common = ["--tinygen-board", "qemu-cortex-m4", "--tinygen-model", QUICKSTART / "model.h5",
              "--tinygen-calib", QUICKSTART / "calib.npy"]
    r = run_pytest(*common, "--tinygen-build-dir", tmp_path / "build", "examples/hil_tests/",
                   cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "13 passed" in r.stdout
    assert (tmp_path / "build" / "tinygen.json").exists()

    r = run_pytest(*common, "--tinygen-build-dir", tmp_path / "build", "--max-latency", "1000",
                   "-k", "latency", "examples/hil_tests/", cwd=ROOT, timeout=900)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "1 failed" in r.stdout and "instructions per inference > 1,000" in r.stdout

    # a board that is already running (as a flashed one would be): --tinygen-port
    from tinygen.device.qemu import QemuProcess
    elf = next((tmp_path / "build").glob(".pio/build/*/firmware.elf"))
    with QemuProcess("mps2-an386", elf) as qemu:
        r = run_pytest(*common, "--tinygen-port", qemu.url, "--tinygen-build-dir", tmp_path / "b2",
                       "-k", "bit_exact or runs_this_model", "examples/hil_tests/", cwd=ROOT,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "2 passed" in r.stdout and f"device {qemu.url}" in r.stdout
    assert not list((tmp_path / "b2").glob(".pio/build/*/firmware.elf"))   # rendered only


def test_documented_example_is_the_one_that_runs():
    """docs/pytest-plugin.md shows the example suite verbatim."""
    doc = (ROOT / "docs" / "pytest-plugin.md").read_text()
    for name in ("test_quickstart_hil.py", "conftest.py"):
        assert (ROOT / "examples" / "hil_tests" / name).read_text() in doc
