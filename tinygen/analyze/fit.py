"""Memory needs of a model per runtime, and whether they fit a board."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..boards import Board
from ..ir import Model

# TFLM's arena is measured by the host build of the interpreter (64-bit), whose
# bookkeeping structs are larger than on a 32-bit MCU, so the figure is an upper
# bound.  The build adds this margin on top for kernel scratch variations.
TFLM_ARENA_MARGIN_FRACTION = 0.10
TFLM_ARENA_MARGIN_MIN = 1024

# Code size estimates (bytes) used before anything is linked; a build replaces
# them with figures read from the ELF.
TFLM_CODE_BASE = 45_000
TFLM_CODE_PER_OP = 4_000
AOT_CODE_BASE = 3_000          # protocol, model glue, startup
AOT_CODE_PER_KERNEL = 1_500


def tflm_arena_with_margin(measured_total: int) -> int:
    margin = max(TFLM_ARENA_MARGIN_MIN, int(measured_total * TFLM_ARENA_MARGIN_FRACTION))
    return (measured_total + margin + 15) // 16 * 16


@dataclass
class MemoryNeed:
    runtime: str
    model_flash: int             # sizes.py: the .tflite array (tflm), constant arrays (aot)
    code_flash_estimate: int
    arena: int
    ram_other_estimate: int = 2048
    # weights_in_flash boards: the RAM staging buffer (largest operator's
    # weights) and the weights that stay in flash (tinygen/plan/staging.py)
    ram_stage: int = 0
    flash_staged: int = 0

    @property
    def flash_total(self) -> int:
        return self.model_flash + self.code_flash_estimate

    @property
    def ram_total(self) -> int:
        return self.arena + self.ram_other_estimate


@dataclass
class Fit:
    board: str
    runtime: str
    fits: bool
    # Needed, in sizes.py's words; code flash is an estimate until the firmware is linked.
    flash_total: int
    flash_available: int
    ram_total: int
    ram_available: int
    model_flash: int = 0
    code_flash: int = 0
    arena: int = 0
    arena_in_psram: bool = False
    psram_available: int = 0
    weights_in_ram: int = 0      # bytes of ram_total that are constants (ESP8266)
    problems: list[str] = field(default_factory=list)

    @property
    def flash_margin(self) -> int:
        return self.flash_available - self.flash_total

    @property
    def ram_margin(self) -> int:
        return self.ram_available - self.ram_total

    def as_dict(self) -> dict:
        d = asdict(self)
        d["flash_margin"] = self.flash_margin
        d["ram_margin"] = self.ram_margin
        return d


def tflm_need(model: Model, measured_arena_total: int) -> MemoryNeed:
    return MemoryNeed(
        runtime="tflm", model_flash=len(model.tflite),
        code_flash_estimate=TFLM_CODE_BASE + TFLM_CODE_PER_OP * len(model.op_names()),
        arena=tflm_arena_with_margin(measured_arena_total))


def aot_need(model: Model, arena_bytes: int, weights_bytes: int, kernels: int) -> MemoryNeed:
    return MemoryNeed(runtime="aot", model_flash=weights_bytes,
                      code_flash_estimate=AOT_CODE_BASE + AOT_CODE_PER_KERNEL * kernels,
                      arena=arena_bytes, ram_other_estimate=1024)


def fit(board: Board, need: MemoryNeed) -> Fit:
    problems = []
    flash_ok = need.flash_total <= board.app_flash_bytes
    if not flash_ok:
        problems.append(
            f"flash: needs {need.flash_total:,} bytes, {board.id} has {board.app_flash_bytes:,} "
            f"for the application ({need.flash_total - board.app_flash_bytes:,} too many)")
    ram_avail = board.ram_available_bytes
    in_psram = False
    ram_needed = need.ram_total
    weights_in_ram = 0
    if board.weights_in_flash:
        # ESP8266 (aot): one operator's weights at a time, copied from flash;
        # constants other than weights (small tables) stay in DRAM
        weights_in_ram = need.ram_stage + max(0, need.model_flash - need.flash_staged)
    ram_needed += weights_in_ram
    ram_ok = ram_needed <= ram_avail
    if not ram_ok and board.psram_bytes and need.arena <= board.psram_bytes:
        # The arena moves to external PSRAM; internal RAM keeps the rest.
        in_psram = True
        ram_needed = need.ram_other_estimate
        ram_ok = ram_needed <= ram_avail
    if not ram_ok:
        where = " (and PSRAM)" if board.psram_bytes else ""
        weights = (f", {weights_in_ram:,} weights in RAM: the largest operator's, "
                   f"staged from flash" if board.weights_in_flash else "")
        problems.append(
            f"RAM: needs {ram_needed:,} bytes ({need.arena:,} arena{weights}), {board.id} "
            f"has {ram_avail:,} usable{where} ({ram_needed - ram_avail:,} too many)")
    return Fit(board=board.id, runtime=need.runtime, fits=flash_ok and ram_ok,
               flash_total=need.flash_total, flash_available=board.app_flash_bytes,
               ram_total=ram_needed, ram_available=ram_avail, model_flash=need.model_flash,
               code_flash=need.code_flash_estimate, arena=need.arena, arena_in_psram=in_psram,
               psram_available=board.psram_bytes, problems=problems,
               weights_in_ram=weights_in_ram)
