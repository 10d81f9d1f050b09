"""End to end on the emulated boards: build, start QEMU, verify over the serial protocol.

The verdicts compare the device's outputs with the tflite_micro interpreter
(0 LSB for the aot runtime); nothing here compares tinygen with itself.
"""

import json

import numpy as np
import pytest
from conftest import ROOT, run_cli

from tinygen.sizes import KEYS as SIZE_KEYS

pytestmark = pytest.mark.slow

QUICKSTART = ROOT / "examples" / "quickstart"


def verify(tmp_path, model, calib, board, samples=6, extra=()):
    report = tmp_path / f"{board}.json"
    junit = tmp_path / f"{board}.xml"
    r = run_cli("verify", "--board", board, model, "--calib", calib, "--samples", samples,
                "-o", tmp_path / f"proj-{board}", "--json", report, "--junit", junit, *extra,
                timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and data["bit_exact"], data
    assert data["vectors"] == samples
    for o in data["outputs"]:
        assert o["max_abs_diff_lsb"] == 0 and o["exact_match_pct"] == 100.0
    assert data["latency"]["instructions"] > 0
    m = data["memory"]
    # the size vocabulary (tinygen/sizes.py): total flash = model flash + code flash
    assert set(m) <= set(SIZE_KEYS) | {"stack_size"}, m
    assert m["code_flash"] > 0 and m["model_flash"] > 0
    assert m["flash_total"] == m["model_flash"] + m["code_flash"]
    assert 0 < m["arena"] <= m["ram_total"]
    # the startup code alone uses a few hundred bytes; a run cannot exceed the reservation
    assert 200 < m["stack_used"] < m["stack_size"], m
    assert len(data["model_signature"]) == 64
    assert "<testsuite" in junit.read_text()
    return data, r


@pytest.mark.parametrize("board", ["qemu-stm32f405", "qemu-cortex-m4", "qemu-cortex-m7"])
def test_quickstart_verifies_bit_exact(board, tmp_path):
    data, r = verify(tmp_path, QUICKSTART / "model.h5", QUICKSTART / "calib.npy", board)
    assert "PASS: bit-exact" in r.stdout


def _zoo_model(tmp_path, name, width=1.0):
    from tinygen.models import zoo
    model = zoo.build(name, width)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    calib = tmp_path / f"{name}_calib.npy"
    np.save(calib, zoo.calibration_data(model, 32))
    return path, calib


@pytest.mark.parametrize("name", ["ds_cnn_kws", "resnet8_cifar", "fc_autoencoder_ad"])
def test_mlperf_shapes_verify_on_cortex_m4(name, tmp_path):
    path, calib = _zoo_model(tmp_path, name)
    data, _ = verify(tmp_path, path, calib, "qemu-cortex-m4", samples=3)
    if name == "resnet8_cifar":
        from tinygen.ir import parse_tflite
        proj = tmp_path / "proj-qemu-cortex-m4"
        assert "ADD" in parse_tflite((proj / "model.tflite").read_bytes()).op_names()


def test_ds_cnn_verifies_on_stm32f405(tmp_path):
    path, calib = _zoo_model(tmp_path, "ds_cnn_kws")
    verify(tmp_path, path, calib, "qemu-stm32f405", samples=3)


def test_build_prints_sizes_and_default_board(tmp_path):
    out = tmp_path / "p"
    r = run_cli("build", QUICKSTART / "model.h5", "--calib", QUICKSTART / "calib.npy", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "board qemu-stm32f405, runtime aot" in r.stdout
    assert "(from the ELF)" in r.stdout
    for line in ("model flash:", "code flash:", "arena:"):
        assert line in r.stdout
    manifest = json.loads((out / "tinygen.json").read_text())
    assert manifest["code_flash"] > 0 and manifest["arena_bytes"] > 0


def test_signature_mismatch_is_refused(tmp_path):
    """A device running another model: one clear line, no verdict."""
    from tinygen.device.qemu import QemuProcess
    out = tmp_path / "p"
    r = run_cli("build", QUICKSTART / "model.h5", "--calib", QUICKSTART / "calib.npy", "-o", out,
                "--firmware", "protocol")
    assert r.returncode == 0, r.stderr
    elf = next(out.glob(".pio/build/*/firmware.elf"))
    other = tmp_path / "other.tflite"
    # Any other int8 model: the quickstart converted with a different calibration set.
    np.save(tmp_path / "c2.npy", np.load(QUICKSTART / "calib.npy")[:10] * 0.5)
    assert run_cli("convert", QUICKSTART / "model.h5", "--calib", tmp_path / "c2.npy",
                   "-o", other).returncode == 0
    with QemuProcess("netduinoplus2", elf) as q:
        r = run_cli("verify", "--board", "qemu-stm32f405", "--port", q.url, other)
    assert r.returncode != 0
    assert "different model" in r.stderr and "Traceback" not in r.stderr
    assert "PASS" not in r.stdout and "FAIL" not in r.stdout


def test_flash_emulated_then_verify_over_its_port(tmp_path):
    """`tinygen flash` starts QEMU and prints a pyserial URL; verify --port uses it."""
    import re
    import signal
    import subprocess
    import sys
    out = tmp_path / "p"
    r = run_cli("build", QUICKSTART / "model.h5", "--calib", QUICKSTART / "calib.npy", "-o", out,
                "--firmware", "protocol")
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen([sys.executable, "-m", "tinygen", "flash", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for _ in range(20):
            line = proc.stdout.readline()
            m = re.search(r"serial port: (socket://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, proc.stderr.read() if proc.poll() is not None else "no URL printed"
        r = run_cli("verify", "--board", "qemu-stm32f405", "--port", url, out / "model.tflite",
                    "--samples", 3)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "PASS: bit-exact" in r.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        # generous: QEMU gets SIGTERM, then SIGKILL after 5 s, on a machine that may be
        # running the rest of the suite beside it
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"tinygen flash did not stop within 60 s of Ctrl-C:\n{out}\n{err}") from None
        assert rc == 0, proc.stderr.read()
