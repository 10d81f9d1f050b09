"""The emulated boards end to end.

The tinygen-qemu PlatformIO platform builds tests/firmware/echo (a program
that uses nothing but tg_hal.h) offline in a fresh PlatformIO core dir, QEMU
runs it, and pyserial talks to it over the loopback TCP port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinygen.device.qemu import QemuError, QemuProcess, machine_for_board, stack_high_water
from tinygen.project import pio_offline
from tinygen.project.elf_size import elf_symbols

serial = pytest.importorskip("serial")

ROOT = Path(__file__).resolve().parent.parent
ECHO_SRC = ROOT / "tests" / "firmware" / "echo" / "src"
TG_HAL_H = ROOT / "firmware_templates" / "common" / "tg_hal.h"
LOOP_ROUNDS = 10000  # tests/firmware/echo/src/main.c

have_tools = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi")


# ---------------------------------------------------------------------------
# Offline provisioning and configuration (fast)


def test_platformio_ini_lines(tmp_path):
    lines = pio_offline.platformio_ini_lines("qemu-cortex-m4", tmp_path)
    platform_dir = (ROOT / "firmware_templates" / "pio_platform").resolve()
    assert lines == [
        f"platform = symlink://{platform_dir}",
        "platform_packages = platformio/toolchain-gccarmnoneeabi@symlink://"
        f"{tmp_path.resolve()}/tinygen-packages/toolchain-gccarmnoneeabi",
        "board = qemu-cortex-m4",
    ]
    with pytest.raises(pio_offline.TinygenError):
        pio_offline.platformio_ini_lines("nucleo_f446re")


@have_tools
def test_prepare_core_dir_is_idempotent(tmp_path):
    core = pio_offline.prepare_core_dir(tmp_path / "core")
    scons = core / "packages" / "tool-scons"
    piopm = json.loads((scons / ".piopm").read_text())
    assert piopm["spec"] == {"owner": "platformio", "id": None, "name": "tool-scons",
                             "requirements": "~4.41101.0", "uri": None}
    assert json.loads((scons / "package.json").read_text())["version"] == "4.41101.0"
    gcc = pio_offline.toolchain_dir(core) / "bin" / "arm-none-eabi-gcc"
    assert gcc.is_symlink() and os.access(gcc, os.X_OK)
    files = [p for p in core.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    before = {p: p.stat().st_mtime_ns for p in files}
    assert pio_offline.prepare_core_dir(core) == core
    assert {p: p.stat().st_mtime_ns for p in files} == before
    version = subprocess.run([sys.executable, str(scons / "scons.py"), "--version"],
                             capture_output=True, text=True, timeout=60)
    assert "SCons" in version.stdout, version.stdout + version.stderr


def test_board_files_agree_with_tinygen_boards():
    from tinygen.boards import get_board
    for board in pio_offline.EMULATED_BOARDS:
        assert machine_for_board(board) == get_board(board).qemu_machine


def test_qemu_errors_are_clear(tmp_path):
    with pytest.raises(QemuError, match="does not exist"):
        QemuProcess("mps2-an386", tmp_path / "missing.elf").start()
    with pytest.raises(QemuError, match="not a tinygen-qemu board"):
        QemuProcess("qemu-nonexistent", tmp_path / "x.elf")


@have_tools
def test_qemu_failure_reports_its_output(tmp_path):
    elf = tmp_path / "empty.elf"
    elf.write_bytes(b"")
    qemu = QemuProcess("no-such-machine", elf)
    with pytest.raises(QemuError, match="exited with status 1") as info:
        qemu.start()
    assert "no-such-machine" in str(info.value)  # QEMU's own message
    assert not qemu.running()


# ---------------------------------------------------------------------------
# Build with PlatformIO, run in QEMU (slow)


@pytest.fixture(scope="module")
def pio_core(tmp_path_factory):
    return pio_offline.prepare_core_dir(tmp_path_factory.mktemp("pio-core"))


@pytest.fixture(scope="module")
def echo_firmware(pio_core, tmp_path_factory):
    """board -> firmware.elf of tests/firmware/echo, built once per board."""
    built: dict[str, Path] = {}

    def build(board: str) -> Path:
        if board not in built:
            project = tmp_path_factory.mktemp(f"echo-{board}")
            (project / "src").mkdir()
            for source in ECHO_SRC.iterdir():
                shutil.copy(source, project / "src")
            shutil.copy(TG_HAL_H, project / "src")
            (project / "platformio.ini").write_text("\n".join(
                [f"[env:{board}]", *pio_offline.platformio_ini_lines(board, pio_core),
                 "build_src_flags = -Wextra -Werror", ""]))
            built[board] = pio_offline.run_build(project, board, core_dir=pio_core)
        return built[board]

    return build


def _connect(qemu: QemuProcess):
    """Open the guest's UART and wait until the firmware answers.

    QEMU's STM32 USART discards what arrives before the firmware has enabled
    it, so the first bytes after connecting can be lost: ping until 'a' comes
    back as 'b'."""
    port = serial.serial_for_url(qemu.url, timeout=0.2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        port.write(b"a")
        if port.read(1) == b"b":
            time.sleep(0.05)
            port.reset_input_buffer()
            port.timeout = 5
            return port
        qemu.check()
    port.close()
    raise AssertionError(f"no answer from the firmware\n{qemu.output}")


def _ask(port, command: bytes, prefix: str) -> list[int]:
    port.write(command)
    line = port.readline().decode(errors="replace")
    assert line.startswith(prefix + " ") and line.endswith("\n"), repr(line)
    return [int(field) for field in line.split()[1:]]


@have_tools
@pytest.mark.slow
@pytest.mark.parametrize("board", [b for b in pio_offline.EMULATED_BOARDS
                                   if not b.startswith("qemu-esp")])  # those: test_espressif_cores.py
def test_echo_and_counter(board, echo_firmware):
    elf = echo_firmware(board)
    with QemuProcess(board, elf) as qemu:
        port = _connect(qemu)
        try:
            payload = bytes(b for b in range(256) if b not in b"txmwfkcz") * 4
            port.write(payload)
            assert port.read(len(payload)) == bytes((b + 1) & 0xFF for b in payload)

            # The counter: exact guest instructions, the same on every run
            # (the idle time between commands shifts the timer phase).
            runs = []
            for _ in range(5):
                delta, unit = _ask(port, b"t", "T")
                assert unit == 1  # TG_COUNTER_INSTRUCTIONS
                runs.append(delta)
                time.sleep(0.003)
            assert len(set(runs)) == 1, runs
            overhead = runs[0] - 2 * LOOP_ROUNDS
            assert 0 < overhead < 400, runs
            # ... and resolves single instructions: loops of 2(k+1) instructions
            # measure exactly 2(k+1) + a constant.
            offsets = {_ask(port, b"x" + bytes([k]), "X")[0] - 2 * (k + 1)
                       for k in (0, 1, 2, 3, 7, 19, 20, 33, 101, 255)}
            assert len(offsets) == 1, offsets

            (value,) = _ask(port, b"f", "F")
            assert value == 1414 + 1732  # hard-float sqrtf and double sqrt
            assert _ask(port, b"c", "C") == [42]  # C++ constructor ran
            used, size = _ask(port, b"k", "K")
            assert 0 < used < size

            # tg_hal_uart_read(100) with nothing to read: virtual time follows
            # wall-clock time while the core sleeps in WFI (so on an overloaded
            # host, where QEMU wakes late, the wait is longer in both).
            started = time.monotonic()
            got, waited = _ask(port, b"w", "W")
            assert got == -1 and 100 <= waited < 2000
            assert time.monotonic() - started < 3
            (m1,) = _ask(port, b"m", "M")
            time.sleep(0.3)
            (m2,) = _ask(port, b"m", "M")
            assert 150 <= m2 - m1 <= 1500  # lags wall-clock time on a busy host

            # A fault is reported as one text line and the core halts.
            port.write(b"z")
            line = port.readline().decode(errors="replace").strip()
            line = line or port.readline().decode(errors="replace").strip()
            assert line.startswith("*** tinygen fault: exception=00000003"), line
            port.write(b"a")
            port.timeout = 0.3
            assert port.read(1) == b""
            qemu.check()
        finally:
            port.close()
    assert not qemu.running()


@have_tools
@pytest.mark.slow
@pytest.mark.parametrize("board", ["qemu-stm32f405", "qemu-cortex-m4"])
def test_guest_memory_and_stack_high_water_over_qmp(board, echo_firmware):
    """read_memory sees what the linker put there, and the stack high-water
    mark read from outside agrees with the firmware's own figure."""
    elf = echo_firmware(board)
    sym = elf_symbols(elf, ["tg_vector_table", "__tg_stack_bottom", "__tg_stack_top"])
    bottom, top = sym["__tg_stack_bottom"], sym["__tg_stack_top"]
    with QemuProcess(board, elf, qmp=True) as qemu:
        port = _connect(qemu)
        try:
            # word 0 of the vector table is the initial stack pointer
            assert int.from_bytes(qemu.read_memory(sym["tg_vector_table"], 4), "little") == top
            own_used, size = _ask(port, b"k", "K")
            assert size == top - bottom
            outside = stack_high_water(qemu, bottom, top)
            # the reply was formatted after the firmware measured, in deeper frames
            assert own_used <= outside < own_used + 512, (own_used, outside)
            assert qemu.stack_usage() == (outside, size)   # the region found from the ELF
        finally:
            port.close()
    with pytest.raises(QemuError, match="qmp=True"):
        QemuProcess(board, elf).read_memory(0, 4)


@have_tools
@pytest.mark.slow
def test_qemu_process_lifecycle(echo_firmware):
    elf = echo_firmware("qemu-cortex-m4")
    qemu = QemuProcess("mps2-an386", elf)
    url = qemu.start()
    assert re.fullmatch(r"socket://127\.0\.0\.1:\d+", url) and qemu.running()
    pid = qemu.pid
    qemu.stop()
    qemu.stop()  # idempotent
    assert not qemu.running() and qemu.returncode is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie
    assert "QEMU waiting for connection" in qemu.output
    with pytest.raises(QemuError, match="exited with status"):
        qemu.check()


@have_tools
@pytest.mark.slow
def test_build_failure_shows_the_log(pio_core, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.c").write_text("int main(void) { return undefined_name; }\n")
    (tmp_path / "platformio.ini").write_text("\n".join(
        ["[env:qemu-stm32f405]", *pio_offline.platformio_ini_lines("qemu-stm32f405", pio_core),
         ""]))
    with pytest.raises(pio_offline.PioBuildError) as info:
        pio_offline.run_build(tmp_path, core_dir=pio_core)
    assert "undefined_name" in str(info.value)
    assert "undefined_name" in info.value.log_tail


@have_tools
@pytest.mark.slow
def test_two_checkouts_keep_their_own_platform(pio_core, tmp_path, monkeypatch):
    """Two tinygen checkouts share one core dir (packages, build cache) but
    not the installed platform: building from one never reinstalls the
    other's, which raced as "UnknownPlatform" when both built at once."""
    def echo_project(name: str) -> Path:
        project = tmp_path / name
        (project / "src").mkdir(parents=True)
        for source in ECHO_SRC.iterdir():
            shutil.copy(source, project / "src")
        shutil.copy(TG_HAL_H, project / "src")
        (project / "platformio.ini").write_text("\n".join(
            ["[env:qemu-cortex-m4]", *pio_offline.platformio_ini_lines("qemu-cortex-m4", pio_core),
             ""]))
        return project

    def installed_source(platforms: Path) -> str:
        links = list(platforms.glob("*.pio-link"))
        assert len(links) == 1, links
        return json.loads(links[0].read_text())["spec"]["uri"]

    pio_offline.run_build(echo_project("first"), core_dir=pio_core)
    first = pio_offline.platforms_dir(pio_core)
    ours = pio_offline.PLATFORM_DIR.resolve()
    assert installed_source(first) == f"symlink://{ours}"

    other = tmp_path / "other-checkout" / "firmware_templates" / "pio_platform"
    shutil.copytree(pio_offline.PLATFORM_DIR.parent, other.parent)  # the platform reads ../common
    monkeypatch.setattr(pio_offline, "PLATFORM_DIR", other)
    pio_offline.run_build(echo_project("second"), core_dir=pio_core)
    second = pio_offline.platforms_dir(pio_core)
    assert second != first and installed_source(second) == f"symlink://{other.resolve()}"
    assert installed_source(first) == f"symlink://{ours}"   # still this checkout's
