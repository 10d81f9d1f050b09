"""`tinygen build` writes an application by default (docs/api.md).

The application calls the prefixed API the way a user's firmware would. It is
compiled here with -Wall -Wextra -Werror and run (on the host with a stand-in
HAL; in QEMU in the slow tests), and what it prints is compared with the
tflite_micro interpreter on the input it says it used: 0 LSB.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from tests.aot.harness import HOST_CFLAGS, run_tflm
from tests.aot.tflite_builder import conv2d_model, fully_connected_model
from tinygen.ir import parse_tflite

# The host's HAL for the application: text to stdout; the clock advances 600 ms
# a read, so the first wait takes three reads, and ends the program in the second.
HOST_HAL = r"""
#include <stdio.h>
#include <stdlib.h>
#include "tg_hal.h"
void tg_hal_init(void) {}
void tg_hal_uart_write(const uint8_t *data, size_t len) { fwrite(data, 1, len, stdout); }
int tg_hal_uart_read(uint32_t timeout_ms) { (void)timeout_ms; return -1; }
uint32_t tg_hal_millis(void) {
  static uint32_t calls;
  if (++calls > 4) exit(0);
  return calls * 600u;
}
uint64_t tg_hal_counter(void) { static uint64_t t; return t += 7; }
uint32_t tg_hal_counter_unit(void) { return TG_COUNTER_CYCLES; }
"""


def _models(tmp_path: Path):
    rng = np.random.default_rng(5)
    kws = conv2d_model(rng, h=4, w=4, cin=2, cout=3)            # 48 outputs: printed whole
    vib = fully_connected_model(rng, depth=24, units=6)        # a classifier: top class
    (tmp_path / "kws.tflite").write_bytes(kws)
    (tmp_path / "vib.tflite").write_bytes(vib)
    mk = parse_tflite(kws)
    t = mk.tensors[mk.inputs[0]]
    calib = np.random.default_rng(9).normal(0, 1, (4,) + tuple(t.shape[1:])).astype(np.float32)
    np.save(tmp_path / "calib.npy", calib)
    return kws, vib


def _printed(text: str, name: str, what: str) -> np.ndarray:
    m = re.search(rf"^{name}: {what} 0 int8:((?: -?\d+)+)$", text, re.M)
    assert m, text
    return np.array([int(v) for v in m.group(1).split()], np.int8)


def _check_against_reference(text: str, src: Path, kws: bytes, vib: bytes, calib: Path):
    mk, mv = parse_tflite(kws), parse_tflite(vib)
    tk, tv = mk.tensors[mk.inputs[0]], mv.tensors[mv.inputs[0]]
    # kws's example input: sample 0 of --calib, quantized (affine int8, as verify's vectors)
    x = np.load(calib)[0]
    qk = np.clip(np.round(x.astype(np.float64) / tk.scale) + tk.zero_point, -128, 127)
    qk = qk.astype(np.int8).reshape(tk.shape)
    assert "sample 0 of calib.npy" in (src / "kws_example_input.c").read_text()
    # vib got no --calib: zeros, i.e. the zero point everywhere
    qv = np.full(tv.shape, tv.zero_point, np.int8)
    assert "an input of zeros" in (src / "vib_example_input.c").read_text()
    ref_k = run_tflm(kws, [[qk]])[0][0].reshape(-1).astype(np.int8)
    ref_v = run_tflm(vib, [[qv]])[0][0].reshape(-1).astype(np.int8)
    assert np.array_equal(_printed(text, "kws", "output"), ref_k)          # 0 LSB
    assert np.array_equal(_printed(text, "vib", "output"), ref_v)
    ov = mv.tensors[mv.outputs[0]]
    best = int(np.argmax(ref_v))
    score = float(np.float32(ov.scale) * np.float32(int(ref_v[best]) - ov.zero_point))
    m = re.search(r"^vib: top class (\d+) score (-?\d+\.\d{4})$", text, re.M)
    if m is None:           # a core without floating point prints the int8 score
        m = re.search(r"^vib: top class (\d+) score \(int8\) (-?\d+)$", text, re.M)
        assert m and int(m.group(2)) == int(ref_v[best]), text
    else:
        assert abs(float(m.group(2)) - score) <= 6e-5, text
    assert int(m.group(1)) == best, text
    assert re.search(r"^kws: time \d+ (cycles|instructions \(emulated\))$", text, re.M), text
    assert "kws: top class" not in text          # [1, 4, 4, 3] is not a score vector


def _build(tmp_path: Path, *extra, board="qemu-cortex-m4", out="app"):
    r = run_cli("build", "--board", board, tmp_path / "kws.tflite", "--name", "kws",
                "--calib", tmp_path / "calib.npy", "--add", f"vib={tmp_path / 'vib.tflite'}",
                "-o", tmp_path / out, *extra)
    assert r.returncode == 0, r.stderr
    return tmp_path / out, r


def test_app_runs_two_models_bit_exact_on_the_host(tmp_path):
    kws, vib = _models(tmp_path)
    proj, r = _build(tmp_path, "--no-compile")
    src = proj / "src"
    assert "also:         vib (vib.tflite)" in r.stdout
    assert not (src / "tg_main.c").exists()
    ini = (proj / "platformio.ini").read_text()
    assert re.search(r"build_src_flags =(\n    .*)*\n    -DTG_NO_MAIN", ini), ini
    manifest = json.loads((proj / "tinygen.json").read_text())
    assert manifest["firmware"] == "app" and manifest["more_models"][0]["name"] == "vib"
    (tmp_path / "hal.c").write_text(HOST_HAL)
    exe = tmp_path / "app.exe"
    sources = [str(p) for p in sorted(src.glob("*.c"))]
    cc = subprocess.run(["gcc", *HOST_CFLAGS, "-DTG_NO_MAIN", "-O1", "-I", str(src), *sources,
                         str(tmp_path / "hal.c"), "-o", str(exe)], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res
    text = res.stdout
    assert text.startswith("tinygen app: kws, vib (aot) on qemu-cortex-m4\n"), text
    assert text.count("kws: output 0") == 2          # two rounds, the same result
    _check_against_reference(text, src, kws, vib, tmp_path / "calib.npy")


@pytest.mark.parametrize("board, runtime, app, entry", [
    ("nucleo_f446re", "aot", "app_main.cpp", "void setup()"),
    ("esp32cam", "tflm", "app_main.c", "void app_main(void)"),
])
def test_app_for_real_boards(tmp_path, board, runtime, app, entry):
    """Arduino cores get setup/loop (C++), ESP-IDF app_main; not compiled here
    (no Arduino core or ESP-IDF offline): the app file is syntax-checked."""
    _models(tmp_path)
    proj, _ = _build(tmp_path, "--runtime", runtime, board=board)
    src = proj / "src"
    text = (src / app).read_text()
    assert entry in text and "kws_read_input" in text and "vib_use_output" in text
    assert "kws_example_input.c" in [p.name for p in src.iterdir()]
    ini = (proj / "platformio.ini").read_text()
    assert "-DTG_NO_MAIN" in ini
    readme = (proj / "README.md").read_text()
    assert f"src/{app}" in readme and "--firmware protocol" in readme
    if board == "esp32cam":
        cmake = (src / "CMakeLists.txt").read_text()
        assert '"app_main.c"' in cmake and '"vib_tflm.cc"' in cmake
        # the glue's log hooks, without a second DebugLog beside esp-tflite-micro's
        assert '"tg_tflm_nolog.cc"' in cmake and (src / "tg_tflm_target.h").is_file()
        assert "tg_tflm_target.cc" not in cmake
        assert "CONFIG_ESP_CONSOLE_NONE" not in (proj / "sdkconfig.defaults").read_text()
        # ESP-IDF itself is not here: the app is syntax-checked as the C it is
        r = subprocess.run(["gcc", *HOST_CFLAGS, "-fsyntax-only", "-I", str(src), str(src / app)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    else:
        subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                        "-I", str(src), "-x", "c++", str(src / app)],
                       check=True, capture_output=True, text=True)


def test_protocol_firmware_on_request(tmp_path):
    _models(tmp_path)
    proj = tmp_path / "p"
    r = run_cli("build", "--board", "qemu-cortex-m4", tmp_path / "kws.tflite",
                "--firmware", "protocol", "--no-compile", "-o", proj)
    assert r.returncode == 0, r.stderr
    src = proj / "src"
    assert (src / "tg_main.c").is_file() and not (src / "app_main.c").exists()
    assert "TG_NO_MAIN" not in (proj / "platformio.ini").read_text()
    assert json.loads((proj / "tinygen.json").read_text())["firmware"] == "protocol"
    # an application (where the user's code goes) is not replaced by the protocol unasked
    app = tmp_path / "app"
    assert run_cli("build", "--board", "qemu-cortex-m4", tmp_path / "kws.tflite",
                   "--no-compile", "-o", app).returncode == 0
    r = run_cli("build", "--board", "qemu-cortex-m4", tmp_path / "kws.tflite", "--firmware",
                "protocol", "--no-compile", "-o", app)
    assert r.returncode == 2 and "holds the application project" in r.stderr, r.stderr
    assert (app / "src" / "app_main.c").is_file()
    r = run_cli("build", "--board", "qemu-cortex-m4", tmp_path / "kws.tflite", "--firmware",
                "protocol", "--no-compile", "-o", app, "--force")
    assert r.returncode == 0 and (app / "src" / "tg_main.c").is_file()
    r = run_cli("build", "--board", "esp32dev", tmp_path / "kws.tflite", "--firmware",
                "protocol", "-o", tmp_path / "e")
    assert r.returncode == 0, r.stderr
    assert "CONFIG_ESP_CONSOLE_NONE=y" in (tmp_path / "e" / "sdkconfig.defaults").read_text()


@pytest.mark.parametrize("args, says", [
    (["--add", "vib"], "--add 'vib': write it NAME=MODEL"),
    (["--add", "=x.tflite"], "write it NAME=MODEL"),
    (["--name", "kws", "--add", "kws={vib}"], "two models are named 'kws'"),
    (["--name", "kws", "--add", "KWS={vib}"], "differ only in case"),
    (["--add", "int={vib}"], "keyword"),
    (["--profile"], "add --firmware protocol"),
])
def test_bad_app_options_are_one_line(tmp_path, args, says):
    _models(tmp_path)
    args = [a.replace("{vib}", str(tmp_path / "vib.tflite")) for a in args]
    out = tmp_path / "p"
    r = run_cli("build", tmp_path / "kws.tflite", *args, "--no-compile", "-o", out)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinygen: error:") and says in lines[0], lines
    assert not out.exists()


def test_tflm_library_compiles_the_union_of_the_models_kernels(tmp_path):
    """kws has only CONV_2D, vib only FULLY_CONNECTED: one TFLM library for both."""
    from test_tflm_runtime import tree_path
    _models(tmp_path)
    proj, _ = _build(tmp_path, "--runtime", "tflm", "--tflm-source", tree_path("reference"),
                     "--no-compile")
    filt = json.loads((proj / "lib" / "tflite-micro" / "library.json").read_text())
    dropped = [f for f in filt["build"]["srcFilter"] if f.startswith("-<")]
    kernels = "tensorflow/lite/micro/kernels/"
    assert f"-<{kernels}conv.cc>" not in dropped
    assert f"-<{kernels}fully_connected.cc>" not in dropped
    assert f"-<{kernels}softmax.cc>" in dropped          # neither model uses it


# ---- in QEMU -----------------------------------------------------------------

def _serial_lines(board: str, elf: Path, until: str, timeout: float = 60) -> str:
    import serial

    from tinygen.boards import get_board
    from tinygen.device.qemu import QemuProcess
    text = ""
    with QemuProcess(get_board(board).qemu_machine, elf) as qemu:
        port = serial.serial_for_url(qemu.url, timeout=1)
        deadline = time.monotonic() + timeout
        while until not in text:
            assert time.monotonic() < deadline, text + qemu.output
            text += port.readline().decode(errors="replace")
        port.close()
    return text


def _flash_output(proj: Path, until: str, timeout: float = 90) -> str:
    """`tinygen flash -o PROJ` on an application shows what it prints; Ctrl-C stops it."""
    import os
    import select
    import signal
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "tinygen", "flash", "-o", str(proj)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    data = b""
    try:
        deadline = time.monotonic() + timeout
        while until.encode() not in data:
            assert time.monotonic() < deadline and proc.poll() is None, data
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                data += os.read(proc.stdout.fileno(), 4096)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    return data.decode()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["aot", "tflm"])
def test_app_two_models_in_qemu(tmp_path, runtime):
    """The application as built, two models (tflm: CONV_2D and FULLY_CONNECTED
    from one TFLM library), on the emulated Cortex-M4: 0 LSB."""
    kws, vib = _models(tmp_path)
    extra = []
    if runtime == "tflm":
        from test_tflm_runtime import tree_path
        extra = ["--runtime", "tflm", "--tflm-source", tree_path("cmsis-nn")]
    proj, r = _build(tmp_path, *extra)
    assert "(application)" in r.stdout
    elf = next(proj.glob(".pio/build/*/firmware.elf"))
    if runtime == "aot":         # as a user sees it: `tinygen flash` shows the output
        text = _flash_output(proj, "vib: time")
        assert "the application's output follows" in text
    else:
        text = _serial_lines("qemu-cortex-m4", elf, "vib: time")
    assert f"tinygen app: kws, vib ({runtime}) on qemu-cortex-m4" in text
    assert re.search(r"^vib: ready, arena \d+ of \d+ bytes$", text, re.M), text
    assert re.search(r"^kws: time \d+ instructions \(emulated\)$", text, re.M), text
    _check_against_reference(text, proj / "src", kws, vib, tmp_path / "calib.npy")


@pytest.mark.slow
@pytest.mark.parametrize("board", ["qemu-esp32c3", "qemu-esp8266"])
def test_app_on_the_espressif_cores(tmp_path, board):
    """The same application on the emulated ESP32-C3 (RISC-V) and ESP8266
    (LX106, whose Debian libgcc has no soft float: the int8 score is printed)."""
    import shutil
    tools = {"qemu-esp32c3": ("riscv64-unknown-elf-gcc", "qemu-system-riscv32"),
             "qemu-esp8266": ("xtensa-lx106-elf-gcc", "qemu-system-xtensa")}[board]
    if any(shutil.which(t) is None for t in tools):
        pytest.skip(f"{' or '.join(tools)} not installed")
    kws, vib = _models(tmp_path)
    proj, _ = _build(tmp_path, board=board)
    text = _serial_lines(board, next(proj.glob(".pio/build/*/firmware.elf")), "vib: time")
    assert ("score (int8)" in text) == (board == "qemu-esp8266"), text
    _check_against_reference(text, proj / "src", kws, vib, tmp_path / "calib.npy")
