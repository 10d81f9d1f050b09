"""Where the model slots go on a real board's flash: an ESP32 partition
table, or an STM32 sector plan, generated and checked (alignment, no
overlap, inside the chip, room left for the application).

    plan = plan_for(board, image_bytes, slots=2, app_bytes=...)
    plan.text()          # partitions.csv (ESP32) or a sector table (STM32)

Each slot needs a status sector, an image area and a delta area
(docs/model-update.md); the two state records need an erase unit each.  On
STM32 the erase unit is the chip's sector, which is large and uneven on the
F4/F7 (16 to 256 KB) and H7 (128 KB): the plan takes whole sectors from the
top of the flash.  Only the plan exists for real boards: the slot code has a
flash driver for the emulated board only (tg_flash_ram.c), so nothing of
this ran on hardware.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..boards import Board
from ..errors import TinygenError

KB = 1024

# Erase sectors from the reference manuals: STM32F446 (RM0390), STM32F746
# (RM0385, single bank), STM32H743 (RM0433: two banks of 8 x 128 KB),
# STM32L432 (RM0394: 2 KB pages).
STM32_SECTORS = {
    "nucleo_f446re": [16 * KB] * 4 + [64 * KB] + [128 * KB] * 3,
    "disco_f746ng": [32 * KB] * 4 + [128 * KB] + [256 * KB] * 3,
    "nucleo_h743zi": [128 * KB] * 16,
    "nucleo_l432kc": [2 * KB] * 128,
}
STM32_FLASH_BASE = 0x08000000

ESP32_SECTOR = 4 * KB
ESP32_APP_ALIGN = 64 * KB
# ESP-IDF's single-app layout: bootloader and partition table below 0x9000.
ESP32_FIXED = [("nvs", "data", "nvs", 0x9000, 0x5000),
               ("phy_init", "data", "phy", 0xE000, 0x1000)]
ESP32_APP_OFFSET = 0x10000
ESP32_SUBTYPE = "0x40"          # first of the custom data subtypes


@dataclass
class Region:
    name: str
    offset: int
    size: int
    sectors: list[int] = field(default_factory=list)   # STM32: sector numbers


@dataclass
class FlashPlan:
    board: str
    flash_bytes: int
    kind: str                   # "esp32-partitions" or "stm32-sectors"
    regions: list[Region]
    slot_bytes: int             # what one slot needs
    image_bytes: int

    def text(self) -> str:
        if self.kind == "esp32-partitions":
            lines = ["# Name, Type, SubType, Offset, Size, Flags",
                     "# tinygen model slots: tg_state_a/b (state records), tg_slot_N "
                     "(status sector, image area, delta area)"]
            for r in self.regions:
                typ, sub = _esp_types(r.name)
                lines.append(f"{r.name}, {typ}, {sub}, 0x{r.offset:x}, 0x{r.size:x},")
            return "\n".join(lines) + "\n"
        lines = [f"# {self.board}: flash at 0x{STM32_FLASH_BASE:08x}, "
                 f"{self.flash_bytes // KB} KB", "# region, address, size, sectors"]
        for r in self.regions:
            secs = f"{r.sectors[0]}..{r.sectors[-1]}" if len(r.sectors) > 1 else str(r.sectors[0])
            lines.append(f"{r.name}, 0x{STM32_FLASH_BASE + r.offset:08x}, {r.size // KB} KB, "
                         f"sectors {secs}")
        return "\n".join(lines) + "\n"


def _esp_types(name: str) -> tuple[str, str]:
    for n, typ, sub, _o, _s in ESP32_FIXED:
        if n == name:
            return typ, sub
    if name == "factory":
        return "app", "factory"
    return "data", ESP32_SUBTYPE


def slot_bytes_for(image_bytes: int, sector: int = 4 * KB) -> int:
    """Status sector + image area + delta area, as the slot code lays them out."""
    area = -(-image_bytes // sector) * sector + sector
    return sector + 2 * area


def plan_for(board: Board, image_bytes: int, slots: int = 2, app_bytes: int = 0) -> FlashPlan:
    if board.emulated:
        raise TinygenError(f"{board.id} is emulated: its slots live in QEMU's file-backed "
                           "partition, no plan needed")
    if board.family == "esp32":
        return _esp32(board, image_bytes, slots, app_bytes)
    if board.id in STM32_SECTORS:
        return _stm32(board, image_bytes, slots, app_bytes)
    raise TinygenError(f"no flash plan for {board.id} yet (ESP32 boards and "
                       f"{', '.join(sorted(STM32_SECTORS))})")


def _esp32(board: Board, image_bytes: int, slots: int, app_bytes: int) -> FlashPlan:
    slot = slot_bytes_for(image_bytes, ESP32_SECTOR)
    models = 2 * ESP32_SECTOR + slots * slot
    top = board.flash_bytes
    # model partitions at the top of the flash, the app gets the rest
    start = (top - models) // ESP32_SECTOR * ESP32_SECTOR
    app_size = (start - ESP32_APP_OFFSET) // ESP32_APP_ALIGN * ESP32_APP_ALIGN
    if app_size < app_bytes or app_size <= 0:
        raise TinygenError(f"{board.id}: {slots} slots of {slot:,} B leave {max(app_size, 0):,} B "
                           f"for the application, which needs {app_bytes:,} B")
    regions = [Region(n, o, s) for n, _t, _s, o, s in ESP32_FIXED]
    regions.append(Region("factory", ESP32_APP_OFFSET, app_size))
    at = start
    regions.append(Region("tg_state_a", at, ESP32_SECTOR))
    regions.append(Region("tg_state_b", at + ESP32_SECTOR, ESP32_SECTOR))
    at += 2 * ESP32_SECTOR
    for k in range(1, slots + 1):
        regions.append(Region(f"tg_slot_{k}", at, slot))
        at += slot
    plan = FlashPlan(board.id, board.flash_bytes, "esp32-partitions", regions, slot, image_bytes)
    check(plan, app_bytes)
    return plan


def _stm32(board: Board, image_bytes: int, slots: int, app_bytes: int) -> FlashPlan:
    sizes = STM32_SECTORS[board.id]
    if sum(sizes) != board.flash_bytes:
        raise TinygenError(f"{board.id}: the sector map ({sum(sizes)} B) disagrees with "
                           f"boards/{board.id}.toml ({board.flash_bytes} B)")
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    # the slot code's own unit is 4 KB (a status sector); a sector of the chip
    # holds one region and is never shared
    slot = slot_bytes_for(image_bytes, max(4 * KB, min(sizes)))
    regions: list[Region] = []
    i = len(sizes) - 1

    def take(name: str, need: int) -> None:
        nonlocal i
        got: list[int] = []
        while sum(sizes[s] for s in got) < need:
            if i < 0:
                raise TinygenError(f"{board.id}: the flash has no room for {name}")
            got.insert(0, i)
            i -= 1
        regions.append(Region(name, offsets[got[0]], sum(sizes[s] for s in got), got))

    for k in range(slots, 0, -1):
        take(f"tg_slot_{k}", slot)
    take("tg_state_b", STATE_BYTES)
    take("tg_state_a", STATE_BYTES)
    regions.reverse()
    app_end = offsets[i + 1] if i + 1 < len(sizes) else board.flash_bytes
    regions.insert(0, Region("application", 0, app_end, list(range(0, i + 1))))
    if app_end < app_bytes or i < 0:
        raise TinygenError(f"{board.id}: {slots} slots of {slot:,} B in whole sectors leave "
                           f"{app_end:,} B for the application, which needs {app_bytes:,} B")
    plan = FlashPlan(board.id, board.flash_bytes, "stm32-sectors", regions, slot, image_bytes)
    check(plan, app_bytes)
    return plan


STATE_BYTES = 20


def check(plan: FlashPlan, app_bytes: int = 0) -> None:
    """Inside the chip, aligned, no overlap, enough room; raises TinygenError."""
    spans = sorted((r.offset, r.offset + r.size, r.name) for r in plan.regions)
    for (_a0, a1, an), (b0, _b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise TinygenError(f"{plan.board}: {an} and {bn} overlap")
    for r in plan.regions:
        if r.offset < 0 or r.offset + r.size > plan.flash_bytes:
            raise TinygenError(f"{plan.board}: {r.name} ends beyond the {plan.flash_bytes} B flash")
        if plan.kind == "esp32-partitions":
            align = ESP32_APP_ALIGN if r.name == "factory" else ESP32_SECTOR
            if r.offset % align or r.size % ESP32_SECTOR:
                raise TinygenError(f"{plan.board}: {r.name} is not aligned to {align} B")
        if r.name.startswith("tg_slot_") and r.size < plan.slot_bytes:
            raise TinygenError(f"{plan.board}: {r.name} is smaller than a slot")
    app = next(r for r in plan.regions if r.name in ("factory", "application"))
    if app.size < app_bytes:
        raise TinygenError(f"{plan.board}: the application region is smaller than the app")
