"""Flash and RAM figures read from a linked firmware ELF (arm-none-eabi-nm)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import TinygenError


@dataclass
class ElfSizes:
    text: int                    # everything in flash: code + rodata + .data init image
    data: int
    bss: int
    weights: int                 # the model's constant arrays
    arena: int                   # the activation arena symbol(s)

    @property
    def code(self) -> int:
        """Firmware flash minus the model weights."""
        return self.text - self.weights

    @property
    def ram(self) -> int:
        return self.data + self.bss


ARENA_SYMBOLS = ("tg_arena", "g_arena")


def _tool(name: str) -> str:
    path = shutil.which(f"arm-none-eabi-{name}")
    if path is None:
        raise TinygenError(f"arm-none-eabi-{name} not found; install Debian's gcc-arm-none-eabi")
    return path


def measure_elf(elf: Path, weight_symbols: list[str] | tuple[str, ...] = ()) -> ElfSizes:
    out = subprocess.run([_tool("size"), "-B", str(elf)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    text, data, bss = (int(v) for v in out[1].split()[:3])
    weights = arena = 0
    wanted = set(weight_symbols)
    nm = subprocess.run([_tool("nm"), "-S", "--size-sort", str(elf)], capture_output=True,
                        text=True, check=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        size, name = int(parts[1], 16), parts[3]
        if name in wanted:
            weights += size
        elif name in ARENA_SYMBOLS:
            arena += size
    return ElfSizes(text=text + data, data=data, bss=bss, weights=weights, arena=arena)


def elf_symbols(elf: Path, names: list[str] | tuple[str, ...]) -> dict[str, int]:
    """Addresses of the named symbols (a missing one is an error)."""
    nm = subprocess.run([_tool("nm"), str(elf)], capture_output=True, text=True,
                        check=True).stdout
    found = {}
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in names:
            found[parts[2]] = int(parts[0], 16)
    missing = [n for n in names if n not in found]
    if missing:
        raise TinygenError(f"{elf}: no symbol {', '.join(missing)}")
    return found
