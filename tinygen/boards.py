"""Board descriptions, one TOML file per board in boards/."""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import TinygenError
from .paths import BOARDS_DIR

DEFAULT_EMULATED_BOARD = "qemu-stm32f405"


@dataclass(frozen=True)
class Board:
    id: str
    name: str
    kind: str                    # "real" or "emulated"
    core: str
    clock_mhz: int
    flash_bytes: int
    app_flash_bytes: int
    ram_bytes: int
    ram_reserved_bytes: int
    psram_bytes: int
    pio_platform: str
    pio_board: str
    pio_framework: str
    upload_protocol: str
    serial_port: str
    baud: int
    runtimes: tuple[str, ...]
    default_runtime: str
    qemu_machine: str = ""
    notes: str = ""
    # Weights in flash, copied per operator into a RAM staging buffer with
    # aligned 32-bit loads (tinygen/plan/staging.py): the aot runtime on the
    # ESP8266 (nodemcuv2 and its emulated twin), whose flash takes no byte loads.
    weights_in_flash: bool = False
    # Datasheet run current (mA) at the board's clock and supply voltage, with where
    # the figures come from (real boards only: QEMU has no power model).
    run_current_ma: float = 0.0
    supply_v: float = 0.0
    power_source: str = ""
    # A camera on the board ([camera] in its file): the sensor, its pixel formats
    # and esp32-camera's pin map (pin name -> GPIO, -1 for none); an application
    # built with an image front end captures its frames from it.
    camera: tuple[tuple[str, object], ...] = ()

    @property
    def emulated(self) -> bool:
        return self.kind == "emulated"

    @property
    def family(self) -> str:
        if self.emulated:            # before the core: qemu-esp8266 is an Xtensa core too
            return "qemu"
        if self.core == "xtensa-lx106":
            return "esp8266"         # Arduino core (no ESP-IDF, no TFLM component)
        if self.core.startswith(("xtensa", "riscv-esp")):
            return "esp32"           # ESP-IDF with espressif/esp-tflite-micro
        return "stm32"

    @property
    def ram_available_bytes(self) -> int:
        return self.ram_bytes - self.ram_reserved_bytes


def board_from_toml(path: Path) -> Board:
    try:
        d = tomllib.loads(path.read_text())
        mem, pio, ser, rt = d["memory"], d["platformio"], d["serial"], d["runtimes"]
        return Board(
            id=d["id"], name=d["name"], kind=d["kind"], core=d["core"],
            clock_mhz=int(d["clock_mhz"]), flash_bytes=int(mem["flash_bytes"]),
            app_flash_bytes=int(mem["app_flash_bytes"]), ram_bytes=int(mem["ram_bytes"]),
            ram_reserved_bytes=int(mem["ram_reserved_bytes"]), psram_bytes=int(mem["psram_bytes"]),
            pio_platform=pio["platform"], pio_board=pio["board"], pio_framework=pio["framework"],
            upload_protocol=pio["upload_protocol"], serial_port=ser["port"], baud=int(ser["baud"]),
            runtimes=tuple(rt["supported"]), default_runtime=rt["default"],
            qemu_machine=d.get("qemu", {}).get("machine", ""), notes=d.get("notes", ""),
            weights_in_flash=bool(mem.get("weights_in_flash", False)),
            camera=_camera(d.get("camera", {})),
            **_power(d.get("power", {}), int(d["clock_mhz"]), d["kind"]))
    except (KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise TinygenError(f"board file {path} is malformed: {exc}") from None


def _camera(c: dict) -> tuple[tuple[str, object], ...]:
    if not c:
        return ()
    pins = {str(k): int(v) for k, v in c["pins"].items()}
    formats = tuple(str(f) for f in c["pixel_formats"])
    return (("sensor", str(c["sensor"])), ("pixel_formats", formats),
            ("xclk_hz", int(c.get("xclk_hz", 20000000))), ("pins", tuple(pins.items())))


def _power(p: dict, clock_mhz: int, kind: str) -> dict:
    if not p:
        return {}
    if kind == "emulated":
        # An emulated board's energy would be a real chip's figure applied to
        # an instruction count: invented twice over.
        raise ValueError("[power] is for real boards; an emulated board has no energy figure")
    if int(p["clock_mhz"]) != clock_mhz:
        # A datasheet current holds at one clock; quoting it at another is wrong.
        raise ValueError(f"[power] clock_mhz {p['clock_mhz']} is not the board's clock_mhz "
                         f"{clock_mhz}: give the datasheet current at the board's clock")
    return {"run_current_ma": float(p["run_current_ma"]), "supply_v": float(p["voltage_v"]),
            "power_source": str(p["source"])}


def all_boards() -> list[Board]:
    return sorted((board_from_toml(p) for p in BOARDS_DIR.glob("*.toml")),
                  key=lambda b: (b.kind != "emulated", b.id))


def get_board(board_id: str) -> Board:
    boards = {b.id: b for b in all_boards()}
    if board_id in boards:
        return boards[board_id]
    close = difflib.get_close_matches(board_id, boards, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise TinygenError(f"unknown board '{board_id}'{hint} (`tinygen boards` lists them)")
