"""The ESP8266's flash rule, enforced on the emulated board: a QEMU plugin
(tests/firmware/flash_loads/flash_loads.c) stops QEMU at the first load from
the flash window that is not an aligned 32-bit load, as the real chip faults,
and counts the loads that read weights.  Shared by test_espressif_cores.py
and tests/aot/test_aot_esp.py."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "firmware" / "flash_loads" / "flash_loads.c"
FLASH = (0x40200000, 0x40300000)        # the ESP8266's irom0 window
REPORT = re.compile(r"flash_loads: (\d+) aligned 32-bit loads from flash, (\d+) of them weights")


def plugin() -> Path | None:
    """The plugin, built once per content by the host gcc (None without gcc)."""
    if shutil.which("gcc") is None:
        return None
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    so = Path(tempfile.gettempdir()) / f"tg_flash_loads-{digest}.so"
    if not so.exists():
        tmp = so.with_suffix(f".{os.getpid()}.tmp.so")
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
                        str(SOURCE), "-o", str(tmp)], check=True, capture_output=True)
        tmp.replace(so)
    return so


def weights_range(elf: Path) -> tuple[int, int]:
    """[start, end) of .irom0.rodata, where the aot runtime keeps the weights
    on the ESP8266 ((0, 0) when the firmware has none there)."""
    heads = subprocess.run(["xtensa-lx106-elf-objdump", "-h", str(elf)], capture_output=True,
                           text=True, check=True).stdout
    m = re.search(r"^\s*\d+\s+\.irom0\.rodata\s+([0-9a-f]+)\s+([0-9a-f]+)", heads, re.M)
    if not m:
        return 0, 0
    size, start = int(m.group(1), 16), int(m.group(2), 16)
    return start, start + size


def qemu_args(elf: Path) -> list[str]:
    so = plugin()
    if so is None:
        raise RuntimeError("the flash-load plugin needs the host gcc")
    lo, hi = weights_range(elf)
    return ["-plugin", f"{so},lo={FLASH[0]:#x},hi={FLASH[1]:#x},wlo={lo:#x},whi={hi:#x}"]


def loads(qemu_output: str) -> tuple[int, int]:
    """(aligned loads from flash, of them from the weights) from QEMU's output;
    AssertionError on a violation or when the plugin did not report."""
    if "flash_loads: VIOLATION" in qemu_output:
        line = next(x for x in qemu_output.splitlines() if "VIOLATION" in x)
        raise AssertionError(line)
    m = REPORT.search(qemu_output)
    assert m, f"the flash-load plugin did not report: {qemu_output[-400:]}"
    return int(m.group(1)), int(m.group(2))
