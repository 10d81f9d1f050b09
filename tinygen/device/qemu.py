"""Running firmware of the emulated boards in qemu-system-arm.

    with QemuProcess("netduinoplus2", elf) as qemu:
        port = serial.serial_for_url(qemu.url, timeout=1)   # socket://127.0.0.1:PORT

QEMU is started with ``-icount shift=0`` (every guest instruction is 1 ns of
virtual time, which makes the boards' counters exact instruction counts) and
its first UART served on a free loopback TCP port with ``server=on,wait=on``:
the guest does not start until the first client connects, so nothing it
sends is lost.  Only one client is served at a time, and bytes the guest
sends while no client is connected are dropped.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Sequence

from ..errors import TinygenError

QEMU_BINARY = "qemu-system-arm"
# Machines of the non-ARM emulated boards: (binary, arguments before -kernel,
# Debian package).  qemu-esp32c3 is an RV32IMC hart on `virt` with no
# firmware (-bios none: QEMU's reset code jumps to 0x80000000);
# qemu-esp8266 is the LX106 core on the nommu Xtensa FPGA board.
MACHINE_BINARIES = {
    "virt": ("qemu-system-riscv32", ["-bios", "none"], "qemu-system-misc"),
    "lx60-nommu": ("qemu-system-xtensa", ["-cpu", "lx106"], "qemu-system-misc"),
}
_READY_MARKER = b"QEMU waiting for connection on:"
_PORT_IN_USE = (b"Address already in use", b"Failed to bind socket")
_PORT_ATTEMPTS = 5
_OUTPUT_LIMIT = 64 * 1024


class QemuError(TinygenError):
    """QEMU could not be started, or stopped unexpectedly."""


def machine_for_board(board: str) -> str:
    """QEMU machine of a tinygen-qemu PlatformIO board id (boards/*.json)."""
    from ..project.pio_offline import PLATFORM_DIR
    path = PLATFORM_DIR / "boards" / f"{board}.json"
    try:
        return json.loads(path.read_text())["build"]["qemu_machine"]
    except (OSError, KeyError, ValueError):
        raise QemuError(f"{board!r} is not a tinygen-qemu board (no {path})") from None


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout)


def _read_output(proc: subprocess.Popen, buffer: bytearray, lock: threading.Lock,
                 ready: threading.Event) -> None:
    """Collect QEMU's output until EOF (a plain function: a thread holding a
    bound method would keep the QemuProcess alive)."""
    fd = proc.stdout.fileno()
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        with lock:
            buffer += chunk
            if len(buffer) > _OUTPUT_LIMIT:
                del buffer[:-_OUTPUT_LIMIT]
            if _READY_MARKER in buffer:
                ready.set()


def _libc_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up here, not in the child: dlopen after fork in a threaded parent
# can deadlock.
_PRCTL = _libc_prctl() if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class QemuProcess:
    """One qemu-system-arm running one ELF, its UART on ``self.url``.

    ``machine`` is a QEMU machine name (``netduinoplus2``, ``mps2-an386``,
    ``mps2-an500``) or a tinygen-qemu board id (``qemu-stm32f405`` ...).
    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    QEMU's own output (stdout and stderr) is kept in :attr:`output` for error
    messages.  QEMU is also stopped when this object is garbage-collected
    or the interpreter exits, and with ``die_with_parent`` (Linux) it gets
    SIGTERM when the thread that started it ends, so a killed test run leaves
    no QEMU behind; start it from a thread that outlives it.
    """

    def __init__(self, machine: str, elf: str | os.PathLike, *,
                 qemu: str = QEMU_BINARY, icount_shift: int | None = 0,
                 extra_args: Sequence[str] = (), start_timeout: float = 10.0,
                 stop_timeout: float = 5.0, die_with_parent: bool = True,
                 qmp: bool = False):
        if machine.startswith("qemu-"):
            machine = machine_for_board(machine)
        self.machine = machine
        self.elf = Path(elf).resolve()
        self._machine_args: list[str] = []
        self._package = "qemu-system-arm"
        if qemu == QEMU_BINARY and machine in MACHINE_BINARIES:
            qemu, self._machine_args, self._package = MACHINE_BINARIES[machine]
        self.qemu = qemu
        self.icount_shift = icount_shift
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.die_with_parent = die_with_parent and _PRCTL is not None
        # a QMP socket for read_memory(): off by default, the boards need none
        self.qmp = qmp
        self._qmp_dir: str | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._reader: threading.Thread | None = None
        self._output = bytearray()
        self._lock = threading.Lock()

    @classmethod
    def for_board(cls, board: str, elf: str | os.PathLike, **kwargs) -> "QemuProcess":
        return cls(machine_for_board(board), elf, **kwargs)

    # -- properties --------------------------------------------------------

    @property
    def url(self) -> str:
        """pyserial URL of the guest's UART: ``socket://127.0.0.1:PORT``."""
        if self.port is None:
            raise QemuError("QEMU has not been started")
        return f"socket://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    @property
    def output(self) -> str:
        """Everything QEMU printed (stdout and stderr), at most the last 64 KiB."""
        with self._lock:
            return self._output.decode(errors="replace")

    def command(self, port: int) -> list[str]:
        cmd = [self.qemu, "-M", self.machine, *self._machine_args,
               "-nographic", "-monitor", "none"]
        if self.icount_shift is not None:
            cmd += ["-icount", f"shift={self.icount_shift}"]
        cmd += ["-kernel", str(self.elf),
                "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"]
        if self._qmp_dir is not None:
            cmd += ["-qmp", f"unix:{self._qmp_socket},server=on,wait=off"]
        return cmd + self.extra_args

    @property
    def _qmp_socket(self) -> str:
        return os.path.join(self._qmp_dir, "qmp.sock")

    def read_memory(self, address: int, size: int, timeout: float = 10.0) -> bytes:
        """``size`` bytes of guest physical memory at ``address`` (QMP
        ``pmemsave``), read while the guest runs.  Needs ``qmp=True``."""
        if not self.qmp:
            raise QemuError("read_memory needs QemuProcess(..., qmp=True)")
        self.check()
        dump = os.path.join(self._qmp_dir, "mem.bin")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self._qmp_socket)
            reader = sock.makefile("rb")
            _qmp_reply(reader)                                   # the greeting
            for command in ({"execute": "qmp_capabilities"},
                            {"execute": "pmemsave",
                             "arguments": {"val": address, "size": size, "filename": dump}}):
                sock.sendall(json.dumps(command).encode() + b"\n")
                reply = _qmp_reply(reader)
                if "error" in reply:
                    raise QemuError(f"QMP {command['execute']} failed: {reply['error']}")
        data = Path(dump).read_bytes()
        os.unlink(dump)
        if len(data) != size:
            raise QemuError(f"QMP pmemsave wrote {len(data)} bytes, expected {size}")
        return data

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> str:
        """Start QEMU and wait until its UART port listens; returns :attr:`url`."""
        if self.running():
            return self.url
        if shutil.which(self.qemu) is None:
            raise QemuError(f"{self.qemu} not found; install the Debian package {self._package}")
        if not self.elf.is_file():
            raise QemuError(f"firmware {self.elf} does not exist")
        for _attempt in range(_PORT_ATTEMPTS):
            port = free_loopback_port()
            if self._launch(port):
                self.port = port
                return self.url
        raise QemuError(f"QEMU could not bind a loopback port after {_PORT_ATTEMPTS} attempts:\n"
                        f"{self.output.strip()}")

    def _launch(self, port: int) -> bool:
        """Start QEMU on ``port``; False if the port was taken meanwhile."""
        self._output.clear()
        if self.qmp:
            self._qmp_dir = tempfile.mkdtemp(prefix="tg-qmp-")
        cmd = self.command(port)
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if self.die_with_parent else None)
        # Stops QEMU on stop(), garbage collection or interpreter exit.
        self._finalizer = weakref.finalize(self, _terminate, self._proc, self.stop_timeout)
        ready = threading.Event()
        self._reader = threading.Thread(target=_read_output,
                                        args=(self._proc, self._output, self._lock, ready),
                                        name=f"qemu-{self.machine}-output", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.start_timeout
        while not ready.wait(0.02):
            if self._proc.poll() is not None:
                self._reap()
                out = self.output.encode()
                if any(marker in out for marker in _PORT_IN_USE):
                    return False
                raise QemuError(f"QEMU ({' '.join(cmd)}) exited with status "
                                f"{self._proc.returncode}:\n{self.output.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise QemuError(f"QEMU did not open its serial port within "
                                f"{self.start_timeout:.0f} s ({' '.join(cmd)}):\n"
                                f"{self.output.strip()}")
        return True

    def stack_usage(self) -> tuple[int, int]:
        """(bytes used, bytes reserved) of the firmware's stack so far, the
        region found from the ELF's __tg_stack_bottom / __tg_stack_top (the
        tinygen QEMU boards' linker script).  Needs ``qmp=True``."""
        from ..project.elf_size import elf_symbols
        sym = elf_symbols(self.elf, ["__tg_stack_bottom", "__tg_stack_top"])
        bottom, top = sym["__tg_stack_bottom"], sym["__tg_stack_top"]
        return stack_high_water(self, bottom, top), top - bottom

    def check(self) -> None:
        """Raise :class:`QemuError` if QEMU is no longer running."""
        if self._proc is None:
            raise QemuError("QEMU has not been started")
        if self._proc.poll() is not None:
            self._reap()
            raise QemuError(f"QEMU ({self.machine}) exited with status "
                            f"{self._proc.returncode}:\n{self.output.strip()}")

    def stop(self) -> int | None:
        """Terminate QEMU (SIGTERM, then SIGKILL after ``stop_timeout``) and
        reap it; returns its exit status.  Safe to call more than once."""
        proc = self._proc
        if proc is None:
            return None
        if self._finalizer is not None:
            self._finalizer()  # runs _terminate once
        self._reap()
        return proc.returncode

    def _reap(self) -> None:
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(self.stop_timeout)
        if self._reader is not None:
            self._reader.join(self.stop_timeout)
        if proc is not None and proc.stdout is not None and proc.returncode is not None:
            proc.stdout.close()
        if self._qmp_dir is not None and (proc is None or proc.returncode is not None):
            shutil.rmtree(self._qmp_dir, ignore_errors=True)
            self._qmp_dir = None

    def __enter__(self) -> "QemuProcess":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"<QemuProcess {self.machine} {self.elf.name} port={self.port} {state}>"


def _qmp_reply(reader) -> dict:
    """The next QMP reply (or greeting), skipping asynchronous events."""
    while True:
        line = reader.readline()
        if not line:
            raise QemuError("QEMU closed its QMP socket")
        msg = json.loads(line)
        if "event" not in msg:
            return msg


# Written over the stack region by the tinygen QEMU BSP at reset
# (firmware_templates/pio_platform/bsp/include/tg_qemu.h).
STACK_PAINT = 0xCAFED00D


def stack_high_water(qemu: QemuProcess, stack_bottom: int, stack_top: int) -> int:
    """Bytes of the stack region the firmware has used so far: from the top
    down to the lowest word that no longer holds the reset-time paint."""
    region = qemu.read_memory(stack_bottom, stack_top - stack_bottom)
    words = memoryview(region).cast("I")                   # the guests are little-endian
    untouched = 0
    while untouched < len(words) and words[untouched] == STACK_PAINT:
        untouched += 1
    return (stack_top - stack_bottom) - 4 * untouched
