"""`tinygen flash`: put a built project on its board.

Real boards go through PlatformIO's upload target (esptool, stlink, mbed);
emulated boards are "flashed" by starting QEMU with the firmware, its UART on a
free loopback port that any pyserial client (tinygen verify --port) can open.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..boards import get_board
from ..errors import TinygenError


def _project(out: Path) -> dict:
    manifest = out / "tinygen.json"
    if not manifest.exists():
        raise TinygenError(f"{out} is not a tinygen project (no tinygen.json); run `tinygen build` first")
    return json.loads(manifest.read_text())


def find_elf(out: Path) -> Path:
    elfs = sorted(out.glob(".pio/build/*/firmware.elf"))
    if not elfs:
        raise TinygenError(f"{out} has no built firmware (.pio/build/*/firmware.elf); "
                           "run `tinygen build` for this board first")
    return elfs[0]


def _monitor(qemu, interrupted: list) -> None:
    """An application prints text on its UART: show it, as `pio device monitor` would."""
    import serial
    port = serial.serial_for_url(qemu.url, timeout=0.2)
    try:
        while qemu.running() and not interrupted:
            data = port.read(256)
            if data:
                sys.stdout.write(data.decode("utf-8", errors="replace"))
                sys.stdout.flush()
    except (OSError, serial.SerialException):
        pass                     # QEMU went away: the caller reports nothing more
    finally:
        port.close()


def flash(args, con) -> int:
    out = Path(args.output)
    manifest = _project(out)
    board = get_board(args.board or manifest["board"])
    if board.id != manifest["board"]:
        raise TinygenError(f"{out} was built for {manifest['board']}, not {board.id}")
    if board.emulated:
        from .qemu import QemuProcess
        elf = find_elf(out)
        extra: list[str] = []
        update = manifest.get("update")
        if update:
            # the model slots live in a file beside the project, as flash would
            from ..project.updatable import flash_image_args
            extra = flash_image_args(board.qemu_machine, out / update["flash_image"])
        app = manifest.get("firmware") == "app"
        with QemuProcess(board.qemu_machine, elf, extra_args=extra) as qemu:
            con.out(f"{board.id}: QEMU {board.qemu_machine} running {elf}")
            if update:
                con.out(f"model slots: {out / update['flash_image']} (kept across restarts)")
            if app:
                con.out("the application's output follows; press Ctrl-C to stop")
            else:
                con.out(f"serial port: {qemu.url}   (e.g. tinygen verify --board {board.id} "
                        f"--port {qemu.url} MODEL)")
                con.out("press Ctrl-C to stop")
            # Ctrl-C only sets a flag: a KeyboardInterrupt raised inside Popen.poll()
            # can leave its wait lock taken, and stopping QEMU would then hang
            interrupted = []
            previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
            try:
                if app:
                    _monitor(qemu, interrupted)
                while qemu.running() and not interrupted:
                    time.sleep(0.2)
            finally:
                signal.signal(signal.SIGINT, previous)
            if interrupted:
                con.out("stopping QEMU")
            return 0
    cmd = [sys.executable, "-m", "platformio", "run", "-d", str(out), "-t", "upload"]
    if args.port:
        cmd += ["--upload-port", args.port]
    con.progress(" ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        raise TinygenError(f"upload to {board.id} failed: {lines[-1] if lines else 'no output'}")
    con.out(f"flashed {board.id} from {out}")
    return 0
