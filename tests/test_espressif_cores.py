"""The Espressif-class emulated boards: qemu-esp32c3 (RV32IMC on QEMU virt)
and qemu-esp8266 (Xtensa LX106 on QEMU lx60-nommu).

Fast: board files, platformio.ini lines, the ESP8266 fit check.  Slow: the
echo firmware (tests/firmware/echo) built by the tinygen-qemu platform and
run in QEMU (exact instruction counts, timeouts, faults), quickstart verified
0 LSB against the tflite_micro interpreter, and where the ESP8266 firmware
puts its constants (docs/espressif-cores.md).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
from conftest import ROOT, run_cli

from tinygen.boards import get_board
from tinygen.device.qemu import QemuProcess, machine_for_board
from tinygen.project import pio_offline

ESP_BOARDS = ("qemu-esp32c3", "qemu-esp8266")
TOOLS = {"qemu-esp32c3": ("qemu-system-riscv32", "riscv64-unknown-elf-gcc"),
         "qemu-esp8266": ("qemu-system-xtensa", "xtensa-lx106-elf-gcc")}
QUICKSTART = ROOT / "examples" / "quickstart"


def _need(board):
    missing = [t for t in TOOLS[board] if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup.sh installs them)")


# ---------------------------------------------------------------------------
# fast


@pytest.mark.parametrize("board", ESP_BOARDS)
def test_board_files_agree(board):
    b = get_board(board)
    assert b.emulated and b.family == "qemu" and b.runtimes == ("aot",)
    assert machine_for_board(board) == b.qemu_machine
    assert board in pio_offline.EMULATED_BOARDS


@pytest.mark.parametrize("board,package", [("qemu-esp32c3", "toolchain-riscv64-unknown-elf"),
                                           ("qemu-esp8266", "toolchain-xtensa-lx106-elf")])
def test_platformio_ini_lines_name_the_core_toolchain(board, package, tmp_path):
    _need(board)
    lines = pio_offline.platformio_ini_lines(board, tmp_path)
    assert lines[1] == (f"platform_packages = platformio/{package}@symlink://"
                        f"{tmp_path.resolve()}/tinygen-packages/{package}")
    assert lines[2] == f"board = {board}"


def test_esp8266_memory_limits():
    b = get_board("qemu-esp8266")
    assert b.ram_bytes == 80 * 1024 and b.weights_in_flash
    c3 = get_board("qemu-esp32c3")
    assert c3.ram_bytes == 320 * 1024 and c3.flash_bytes == 4 * 1024 * 1024


def test_model_too_big_for_esp8266_refused_with_figures(keras, tmp_path):
    """One layer of 80 KB of weights fits the ESP32-C3 but not the ESP8266: its
    weights stay in flash, but one operator's are copied into DRAM while it
    runs.  Refused at build, before anything is compiled, with the figures."""
    m = keras.Sequential([keras.Input((256,)), keras.layers.Dense(320), keras.layers.Dense(4)])
    path = tmp_path / "big.h5"
    m.save(path)
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(0).random((8, 256), dtype=np.float32))
    out = tmp_path / "out"
    r = run_cli("build", "--board", "qemu-esp8266", path, "--calib", calib, "-o", out / "p")
    assert r.returncode == 2
    err = [line for line in r.stderr.strip().splitlines() if not line.lstrip().startswith("..")]
    assert len(err) == 1, r.stderr
    assert "does not fit qemu-esp8266" in err[0] and "RAM: needs" in err[0], err[0]
    assert "weights in RAM: the largest operator's, staged from flash" in err[0], err[0]
    assert "71,680 usable" in err[0], err[0]
    assert not (out / "p").exists()


# ---------------------------------------------------------------------------
# slow: the echo firmware


@pytest.fixture(scope="module")
def echo_elfs(tmp_path_factory):
    core = tmp_path_factory.mktemp("core")
    elfs = {}
    for board in ESP_BOARDS:
        if any(shutil.which(t) is None for t in TOOLS[board]):
            continue
        proj = tmp_path_factory.mktemp(board)
        shutil.copytree(ROOT / "tests" / "firmware" / "echo" / "src", proj / "src")
        shutil.copy(ROOT / "firmware_templates" / "common" / "tg_hal.h", proj / "src")
        (proj / "platformio.ini").write_text("\n".join(
            [f"[env:{board}]", *pio_offline.platformio_ini_lines(board, core),
             "build_flags = -Wextra -Werror"]) + "\n")
        elfs[board] = pio_offline.run_build(proj, core_dir=core)
    return elfs


def _ask(port, data: bytes, timeout=5.0) -> str:
    port.write(data)
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not out.endswith(b"\n"):
        out += port.read(port.in_waiting or 1)
    return out.decode(errors="replace").strip()


@pytest.mark.slow
@pytest.mark.parametrize("board", ESP_BOARDS)
def test_echo_counter_timeouts_fault(board, echo_elfs):
    serial = pytest.importorskip("serial")
    _need(board)
    with QemuProcess(board, echo_elfs[board]) as q:
        port = serial.serial_for_url(q.url, timeout=1)
        port.write(b"a")
        assert port.read(1) == b"b"
        # exact instruction counts: a loop of 2(k+1) instructions measures
        # 2(k+1) + the same constant, every time
        consts = set()
        for k in (0, 1, 5, 17, 100, 255, 0, 255):
            reply = _ask(port, b"x" + bytes([k]))
            delta = int(reply.split()[1])
            consts.add(delta - 2 * (k + 1))
        assert len(consts) == 1, consts
        t = _ask(port, b"t").split()
        assert t[2] == "1"                       # TG_COUNTER_INSTRUCTIONS
        # the same 20,000-instruction loop, called with a constant: a slightly
        # different call sequence, the same count on every run
        assert abs(int(t[1]) - 20000 - consts.pop()) <= 4
        assert _ask(port, b"t").split()[1] == t[1]
        w = _ask(port, b"w").split()             # 100 ms read on an idle line
        assert w[1] == "-1" and 100 <= int(w[2]) < 400, w
        assert _ask(port, b"c") == "C 42"        # C++ constructor, virtual call
        used, size = map(int, _ask(port, b"k").split()[1:])
        assert 0 < used < size == 8192
        port.write(b"z")
        text = b""
        end = time.monotonic() + 5
        while time.monotonic() < end and b" ***" not in text:
            text += port.read(port.in_waiting or 1)
        assert b"*** tinygen fault:" in text, text


# ---------------------------------------------------------------------------
# slow: a model, 0 LSB against the tflite_micro interpreter


@pytest.mark.slow
@pytest.mark.parametrize("board", ESP_BOARDS)
def test_quickstart_bit_exact(board, tmp_path):
    _need(board)
    report = tmp_path / "r.json"
    r = run_cli("verify", "--board", board, QUICKSTART / "model.h5", "--calib",
                QUICKSTART / "calib.npy", "--samples", 6, "-o", tmp_path / "p",
                "--json", report, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and data["bit_exact"], data
    for o in data["outputs"]:
        assert o["max_abs_diff_lsb"] == 0
    assert data["latency"]["instructions"] > 0
    if board == "qemu-esp8266":
        _check_esp8266_flash_reads(tmp_path / "p" / ".pio" / "build" / board / "firmware.elf")


# ---------------------------------------------------------------------------
# slow: the other examples, 0 LSB on both cores.  One `tinygen verify` (one
# conversion, one build, one QEMU boot) per example and board, shared by every
# test that looks at it.

EXAMPLES = {
    "kws_cnn": ("model.h5", None),
    "lstm_anomaly": ("model.h5", None),
    "mobilenet_ssd": ("model.keras", "ssd.json"),
}
# mobilenet_ssd needs 110,656 B of arena alone: more than the ESP8266 has.
EXAMPLE_RUNS = [(e, b) for e in EXAMPLES for b in ESP_BOARDS
                if (e, b) != ("mobilenet_ssd", "qemu-esp8266")]


def _example_args(example):
    model, det = EXAMPLES[example]
    folder = ROOT / "examples" / example
    args = [folder / model, "--calib", folder / "calib.npy"]
    return args + (["--detection", folder / det] if det else [])


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory):
    """(example, board) -> (returncode, output, report dict, project dir),
    each verified once, on first use."""
    done = {}

    def get(example, board):
        if (example, board) not in done:
            d = tmp_path_factory.mktemp(f"{example}-{board}")
            r = run_cli("verify", "--board", board, *_example_args(example), "--samples", 4,
                        "-o", d / "p", "--json", d / "r.json", timeout=1200)
            report = json.loads((d / "r.json").read_text()) if r.returncode == 0 else {}
            done[example, board] = (r.returncode, r.stdout + r.stderr, report, d / "p")
        return done[example, board]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("example,board", EXAMPLE_RUNS)
def test_example_bit_exact(example, board, example_runs):
    _need(board)
    code, out, data, project = example_runs(example, board)
    assert code == 0, out
    assert data["passed"] and data["bit_exact"] and data["vectors"] == 4, data
    assert data["board"] == board and data["runtime"] == "aot"
    for o in data["outputs"]:
        assert o["max_abs_diff_lsb"] == 0, o
    lat = data["latency"]
    assert lat["unit"] == "instructions" and lat["instructions"] > lat["macs"] > 0
    if board == "qemu-esp8266":
        _check_esp8266_flash_reads(project / ".pio" / "build" / board / "firmware.elf")


def _dram_sections(elf):
    heads = subprocess.run(["xtensa-lx106-elf-objdump", "-h", str(elf)], capture_output=True,
                           text=True, check=True).stdout
    used = {}
    for m in re.finditer(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)", heads, re.M):
        if int(m.group(2), 16) and DRAM[0] <= int(m.group(3), 16) < DRAM[1]:
            used[m.group(1)] = int(m.group(2), 16)
    return used


@pytest.mark.slow
def test_kws_fits_esp8266_with_room_to_spare(example_runs, tmp_path):
    """kws_cnn on the ESP8266: the fit report says it fits with more than half
    of the DRAM free, and the linked ELF agrees (everything in DRAM, stack
    included, well under the 80 KB)."""
    _need("qemu-esp8266")
    r = run_cli("inspect", "--board", "qemu-esp8266", *_example_args("kws_cnn"))
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("fit on qemu-esp8266 (aot)"))
    m = re.search(r": fits.*RAM ([\d,]+) of ([\d,]+) B \(margin ([\d,]+)[;)]", line)
    assert m, line
    needed, available, margin = (int(g.replace(",", "")) for g in m.groups())
    assert margin > available // 2 and needed + margin == available, line
    assert re.search(r"arena 7,600 \+ weights [\d,]+\)$", line), line
    code, out, _data, project = example_runs("kws_cnn", "qemu-esp8266")
    assert code == 0, out
    used = _dram_sections(project / ".pio" / "build" / "qemu-esp8266" / "firmware.elf")
    assert {".rodata", ".bss", ".stack"} <= set(used), used
    assert sum(used.values()) < 80 * 1024 // 2, used


@pytest.mark.slow
def test_mobilenet_ssd_refused_on_esp8266_with_figures(tmp_path):
    _need("qemu-esp8266")
    r = run_cli("build", "--board", "qemu-esp8266", *_example_args("mobilenet_ssd"),
                "-o", tmp_path / "p")
    assert r.returncode == 2
    err = [x for x in r.stderr.strip().splitlines() if not x.lstrip().startswith("..")]
    assert len(err) == 1, r.stderr
    assert "does not fit qemu-esp8266 (aot): RAM: needs" in err[0], err[0]
    assert "110,656 arena" in err[0] and "71,680 usable" in err[0], err[0]
    assert not (tmp_path / "p").exists()


IROM = (0x40200000, 0x40300000)           # the ESP8266's flash window (irom0)
DRAM = (0x3FFE8000, 0x3FFFC000)


def _sections(elf):
    heads = subprocess.run(["xtensa-lx106-elf-objdump", "-h", str(elf)], capture_output=True,
                           text=True, check=True).stdout
    return {m.group(1): (int(m.group(3), 16), int(m.group(2), 16)) for m in re.finditer(
        r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)", heads, re.M) if int(m.group(2), 16)}


def _check_esp8266_flash_reads(elf, n_vectors=2):
    """The real ESP8266 reads its flash only with aligned 32-bit loads, and the
    weights stay there.  Shown two ways: statically, the flash window holds
    the code (.irom0.text) and the weights (.irom0.rodata: only the kernels'
    weight arrays); dynamically, the firmware runs inferences (checked against
    the tflite_micro interpreter) under the flash-load plugin, which stops
    QEMU at the first flash load that is not an aligned word and counts the
    loads from the weights: exactly one word per weight word per inference
    (each operator's weights are copied to RAM word by word before it runs)."""
    from esp_flash import loads, qemu_args, weights_range

    from tinygen.device.protocol import DeviceClient
    from tinygen.ir import parse_tflite
    from tinygen.reference import TflmReference
    in_flash = sorted(name for name, (addr, _size) in _sections(elf).items()
                      if IROM[0] <= addr < IROM[1])
    assert in_flash == [".irom0.rodata", ".irom0.text"], in_flash
    lo, hi = weights_range(elf)
    syms = subprocess.run(["xtensa-lx106-elf-nm", "-S", str(elf)], capture_output=True,
                          text=True, check=True).stdout
    staged = {}
    for line in syms.splitlines():
        parts = line.split()
        if len(parts) == 4 and lo <= int(parts[0], 16) < hi:
            staged[parts[3]] = int(parts[1], 16)
    assert staged and all(re.fullmatch(r"op\d+_\w+", n) for n in staged), staged
    assert all(size % 4 == 0 for size in staged.values()), staged

    tflite = (elf.parents[3] / "model.tflite").read_bytes()
    ir = parse_tflite(tflite)
    ref = TflmReference(tflite)
    rng = np.random.default_rng(7)
    with QemuProcess("qemu-esp8266", elf, extra_args=qemu_args(elf)) as q:
        with DeviceClient.open(q.url) as dev:
            dev.info()
            for _ in range(n_vectors):
                vec = [rng.integers(-128, 128, t.shape, dtype=np.int8)
                       for t in ir.input_tensors()]
                got = dev.infer(vec).outputs
                want = ref.run(vec)
                for g, w in zip(got, want):
                    assert np.array_equal(np.asarray(g).reshape(-1), np.asarray(w).reshape(-1))
    for _ in range(50):
        if "flash_loads:" in q.output:
            break
        time.sleep(0.1)
    total, weight_words = loads(q.output)
    assert weight_words == n_vectors * sum(staged.values()) // 4, (weight_words, staged)
    assert total > weight_words


@pytest.mark.slow
def test_weights_larger_than_dram_run_on_esp8266(keras, tmp_path):
    """120 KB of weights, more than the ESP8266's 80 KB of DRAM: they stay in
    flash, one 40 KB layer at a time is copied to RAM; 0 LSB, and the flash
    is read only with aligned 32-bit loads."""
    _need("qemu-esp8266")
    m = keras.Sequential([keras.Input((200,)), keras.layers.Dense(200, activation="relu"),
                          keras.layers.Dense(200, activation="relu"), keras.layers.Dense(200)])
    path = tmp_path / "wide.h5"
    m.save(path)
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(0).random((16, 200), dtype=np.float32))
    report = tmp_path / "r.json"
    r = run_cli("verify", "--board", "qemu-esp8266", path, "--calib", calib, "--samples", 3,
                "-o", tmp_path / "p", "--json", report, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(report.read_text())
    assert data["bit_exact"] and data["memory"]["model_flash"] > 80 * 1024, data["memory"]
    elf = tmp_path / "p" / ".pio" / "build" / "qemu-esp8266" / "firmware.elf"
    lo, hi = __import__("esp_flash").weights_range(elf)
    assert hi - lo >= 3 * 200 * 200
    used = _dram_sections(elf)
    assert sum(used.values()) <= 80 * 1024, used
    _check_esp8266_flash_reads(elf)
