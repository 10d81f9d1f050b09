"""The aot kernels on the Espressif cores: RV32IMC (qemu-esp32c3) and Xtensa
LX106 (qemu-esp8266), 0 LSB against the tflite_micro interpreter.

    from harness_esp import ESP_BOARDS, assert_bit_exact_esp
    assert_bit_exact_esp(tflite_bytes, tmp_path, "qemu-esp8266", n_inputs=3)

The generated sources are compiled by the core's cross gcc with the flags,
board support (startup, HAL, libgcc helpers) and linker script of the
tinygen-qemu PlatformIO platform, read from the board's JSON so they cannot
drift from what `tinygen build` uses; PlatformIO itself is skipped (it costs
seconds per model, these tests build dozens).  The driver has the input sets
compiled in, runs them one after the other and prints each output as hex on
the UART, with the instructions of each tg_model_run() (rdinstret on RV32,
ICOUNT on LX106).  Kernel and board-support objects are cached by content.
On qemu-esp8266 the weights stay in flash (tinygen/plan/staging.py) and the
flash-load plugin (tests/esp_flash.py) runs with every test: a load from
flash that is not an aligned 32-bit word stops QEMU and fails the test, as
the real chip faults.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import esp_flash
import numpy as np
from harness import _bit_equal, _cache_dir, _run, random_inputs, run_tflm

from tinygen.codegen.aot import AotResult, generate_aot
from tinygen.ir import Model, parse_tflite

REPO = Path(__file__).resolve().parents[2]
PLATFORM = REPO / "firmware_templates" / "pio_platform"
COMMON = REPO / "firmware_templates" / "common"
ESP_BOARDS = ("qemu-esp32c3", "qemu-esp8266")
BSP_COMMON = ("hal.c", "tg_memory.c", "tg_fault_text.c", "tg_cxx_min.c")
# Outputs up to this many bytes come back whole (hex on the UART, some
# 10-30 KiB/s); bigger ones as their CRC-32, compared with the reference's.
HEX_MAX = 2048
QEMU = {"qemu-esp32c3": "qemu-system-riscv32", "qemu-esp8266": "qemu-system-xtensa"}

MAIN_C = r"""/* tinygen aot test driver for the emulated Espressif cores. */
#include <stdint.h>
#include <string.h>
#include "tg_hal.h"
#include "tg_model_api.h"
#include "tg_test_inputs.h"

/* the BSP's (picolibc's exit() reaches it with a CALL0 out of range on LX106) */
void _exit(int status);

/* The inputs are in flash on the ESP8266: aligned 32-bit loads only there. */
static void copy_from_flash(uint8_t *dst, const uint8_t *src, size_t n) {
  const volatile uint32_t *word = (const volatile uint32_t *)(const void *)src;
  size_t i, k;
  for (i = 0; i < n; i += 4) {
    uint32_t v = *word++;
    for (k = 0; k < 4 && i + k < n; ++k) dst[i + k] = (uint8_t)(v >> (8 * k));
  }
}

static void put(const char *s) { tg_hal_uart_write((const uint8_t *)s, strlen(s)); }

static void put_hex(const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char buf[64];
  size_t k = 0;
  while (n--) {
    buf[k++] = digits[*p >> 4];
    buf[k++] = digits[*p++ & 15];
    if (k == sizeof buf) {
      tg_hal_uart_write((const uint8_t *)buf, k);
      k = 0;
    }
  }
  tg_hal_uart_write((const uint8_t *)buf, k);
}

/* zlib's CRC-32: outputs too big to send whole in reasonable time */
static uint32_t crc32(const uint8_t *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  int k;
  while (n--) {
    c ^= *p++;
    for (k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

static void put_u64(uint64_t v) {
  char buf[24];
  int k = 23;
  buf[k] = 0;
  do {
    buf[--k] = (char)('0' + v % 10u);
    v /= 10u;
  } while (v);
  put(&buf[k]);
}

int main(void) {
  const uint8_t *in = tg_test_inputs;
  int n, i;
  tg_hal_init();
  while (tg_hal_uart_read(1000) != 'g') {
  }
#ifdef TG_TEST_READ_FLASH_BYTE
  { /* the negative control: one byte load from flash */
    volatile const uint8_t *probe = tg_test_inputs + 1;
    (void)*probe;
  }
#endif
  if (tg_model_init() != 0) {
    put("ERR init\n");
    _exit(2);
  }
  for (n = 0; n < TG_TEST_SETS; ++n) {
    uint64_t t0, t1;
    for (i = 0; i < tg_model_info.num_inputs; ++i) {
      copy_from_flash(tg_model_input(i), in, tg_model_info.inputs[i].bytes);
      in += (tg_model_info.inputs[i].bytes + 3u) & ~3u;
    }
    t0 = tg_hal_counter();
    if (tg_model_run() != 0) {
      put("ERR run\n");
      _exit(4);
    }
    t1 = tg_hal_counter();
    put("N ");
    put_u64(t1 - t0);
    put("\n");
    for (i = 0; i < tg_model_info.num_outputs; ++i) {
      size_t bytes = tg_model_info.outputs[i].bytes;
      if (bytes > TG_TEST_HEX_MAX) {
        put("C ");
        put_u64(crc32(tg_model_output(i), bytes));
      } else {
        put("O ");
        put_hex(tg_model_output(i), bytes);
      }
      put("\n");
    }
  }
  put("END\n");
  _exit(0);
}
"""


def esp_available(board: str) -> bool:
    cfg = board_config(board)["build"]
    return shutil.which(QEMU[board]) is not None and \
        shutil.which(cfg["toolchain_prefix"] + "gcc") is not None


def board_config(board: str) -> dict:
    return json.loads((PLATFORM / "boards" / f"{board}.json").read_text())


@dataclass
class Toolchain:
    cc: str
    cflags: list[str]
    bsp_flags: list[str]
    ldflags: list[str]
    bsp_sources: list[Path] = field(default_factory=list)


def toolchain(board: str) -> Toolchain:
    """The tinygen-qemu builder's settings for this board (builder/main.py)."""
    b = board_config(board)["build"]
    specs = "--specs=" + b.get("libc_specs", "picolibc.specs")
    machine = b.get("cflags_machine", "").split()
    cflags = [*machine, specs, "-O2", "-ffunction-sections", "-fdata-sections", "-std=gnu11",
              "-Wall", "-Wextra", "-Werror", "-DTG_QEMU_BOARD=1",
              f"-I{PLATFORM / 'bsp' / 'include'}"]
    bsp_flags = [f"-DF_CPU={b['f_cpu']}", f"-DTG_QEMU_BSP_{b['tinygen_bsp'].upper()}",
                 f"-I{PLATFORM / 'bsp' / 'src'}", f"-I{COMMON}"]
    ldflags = [*b.get("link_machine", "").split(), specs, "-nostartfiles",
               "-Wl,--no-warn-rwx-segments", "-O2", "-Wl,--gc-sections",
               f"-L{PLATFORM / 'ldscripts'}", f"-T{PLATFORM / 'ldscripts' / b['ldscript']}"]
    sources = [PLATFORM / "bsp" / "src" / s
               for s in [*BSP_COMMON, *b["tinygen_bsp_sources"].split()]]
    return Toolchain(cc=b["toolchain_prefix"] + "gcc", cflags=cflags, bsp_flags=bsp_flags,
                     ldflags=ldflags, bsp_sources=sources)


def _compile(cc: str, flags: Sequence[str], src: Path, headers: Sequence[Path],
             obj_name: str) -> Path:
    """Object for src, cached by the compiler, flags, source and headers."""
    h = hashlib.sha256(" ".join([cc, *flags]).encode())
    h.update(src.read_bytes())
    for hdr in sorted(headers):
        h.update(hdr.name.encode())
        h.update(hdr.read_bytes())
    obj = _cache_dir() / f"{obj_name}-{h.hexdigest()[:20]}.o"
    if not obj.exists():
        tmp = obj.with_suffix(f".{os.getpid()}.tmp.o")
        _run([cc, *flags, "-c", str(src), "-o", str(tmp)])
        os.replace(tmp, obj)
    return obj


def _bsp_objects(board: str, tc: Toolchain) -> list[Path]:
    headers = [*(PLATFORM / "bsp").rglob("*.h"), *COMMON.glob("tg_hal.h")]
    # the board support's object names must hold "tinygen_bsp": the ESP8266's
    # linker script puts those in IRAM (vectors, UART, counter), the rest in flash
    return [_compile(tc.cc, [*tc.cflags, *tc.bsp_flags], src, headers,
                     f"{board}-tinygen_bsp-{src.stem}") for src in tc.bsp_sources]


@dataclass
class EspBinary:
    board: str
    elf: Path
    result: AotResult
    model: Model
    n_sets: int
    flash_loads: tuple[int, int] = (0, 0)   # ESP8266: (loads from flash, of weights)


def _inputs_header(model: Model, batches: Sequence[Sequence[np.ndarray]]) -> str:
    blob = bytearray()
    for inputs in batches:
        for idx, arr in zip(model.inputs, inputs):
            blob += np.ascontiguousarray(arr, dtype=model.tensors[idx].np_dtype).tobytes()
            blob += bytes(-len(blob) % 4)
    body = ",".join(str(b) for b in blob) or "0"
    # in the code region: on the ESP8266 it has ~1 MB, its DRAM 80 KB
    return (f"#define TG_TEST_SETS {len(batches)}\n#define TG_TEST_HEX_MAX {HEX_MAX}\n"
            f"static const uint8_t tg_test_inputs[{max(len(blob), 1)}] "
            f"__attribute__((aligned(4), section(\".text.tg_test_inputs\"))) = {{{body}}};\n")


def build_esp(model: Model | bytes, workdir: Path, board: str,
              batches: Sequence[Sequence[np.ndarray]], memory_first: bool = True,
              driver_defines: Sequence[str] = ()) -> EspBinary:
    """generate_aot for the board's core + an ELF running `batches`."""
    if isinstance(model, (bytes, bytearray)):
        model = parse_tflite(bytes(model))
    workdir = Path(workdir)
    src_dir = workdir / "aot"
    if src_dir.exists():
        shutil.rmtree(src_dir)
    result = generate_aot(model, src_dir, board=board, copy_api_header=True,
                          memory_first=memory_first)
    (src_dir / "tg_test_inputs.h").write_text(_inputs_header(model, batches))
    (workdir / "tg_esp_main.c").write_text(MAIN_C)
    tc = toolchain(board)
    flags = [*tc.cflags, f"-I{src_dir}", f"-I{COMMON}"]
    headers = [h for h in src_dir.glob("*.h") if h.name not in ("model.h", "tg_test_inputs.h")]
    objs = []
    for c_file in sorted(src_dir.glob("*.c")):
        if c_file.name == "model.c":
            obj = workdir / "model.o"
            _run([tc.cc, *flags, "-c", str(c_file), "-o", str(obj)])
        else:
            obj = _compile(tc.cc, flags, c_file, headers, f"{board}-{c_file.stem}")
        objs.append(obj)
    main_o = workdir / "tg_esp_main.o"
    _run([tc.cc, *flags, *(f"-D{d}" for d in driver_defines), "-c",
          str(workdir / "tg_esp_main.c"), "-o", str(main_o)])
    elf = workdir / "model.elf"
    _run([tc.cc, *tc.ldflags, str(main_o), *map(str, objs), *map(str, _bsp_objects(board, tc)),
          "-lm", "-o", str(elf)])
    return EspBinary(board=board, elf=elf, result=result, model=model, n_sets=len(batches))


class Transcript(Exception):
    """The UART text lost bytes on the way (it happens at connection time)."""


def _boot(binary: EspBinary, timeout: float, extra_args: Sequence[str]) -> tuple[bytes, str]:
    if binary.board == "qemu-esp8266":
        # the chip's rule: flash is read with aligned 32-bit loads only
        extra_args = [*esp_flash.qemu_args(binary.elf), *extra_args]
    import serial

    from tinygen.device.qemu import QemuProcess
    text = b""
    with QemuProcess(binary.board, binary.elf, extra_args=extra_args) as q:
        port = serial.serial_for_url(q.url, timeout=0.2)
        try:
            port.write(b"g")                  # the driver waits for it before printing
            end = time.monotonic() + timeout
            while b"END\n" not in text and b"ERR" not in text and b"***" not in text:
                if time.monotonic() > end:
                    raise AssertionError(f"{binary.board}: no END after {timeout} s; got "
                                         f"{text[-300:]!r}; QEMU: {q.output[-300:]}")
                try:
                    text += port.read(port.in_waiting or 1)
                except serial.SerialException:      # QEMU stopped (the flash plugin)
                    break
            if b"END\n" not in text:          # a fault line: read the rest of it
                time.sleep(0.3)
                try:
                    text += port.read(port.in_waiting)
                except serial.SerialException:
                    pass
        finally:
            port.close()
    if b"END\n" not in text:
        for _ in range(20):                          # QEMU's last words, if it stopped
            if "flash_loads:" in q.output or q.returncode is None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{binary.board}: the firmware failed: {text[-400:]!r}; "
                             f"QEMU: {q.output[-400:]}")
    return text, q.output


def _parse(binary: EspBinary, text: bytes, counts_out: list | None) -> list[list]:
    """Exactly n_sets of: `N <count>`, then one `O <hex>` (the exact size) or
    `C <crc>` line per output; anything else means lost bytes."""
    outs = [binary.model.tensors[i] for i in binary.model.outputs]
    lines = text.decode(errors="replace").split("END\n")[0].splitlines()
    if len(lines) != binary.n_sets * (1 + len(outs)):
        raise Transcript(f"{len(lines)} lines")
    results: list[list] = []
    counts = []
    for k in range(binary.n_sets):
        head, *body = lines[k * (1 + len(outs)):(k + 1) * (1 + len(outs))]
        if not (head.startswith("N ") and head[2:].isdigit()):
            raise Transcript(head[:40])
        counts.append(int(head[2:]))
        row: list = []
        for t, line in zip(outs, body):
            if line.startswith("O ") and len(line) == 2 + 2 * t.nbytes:
                data = bytes.fromhex(line[2:])
                row.append(np.frombuffer(data, dtype=t.np_dtype).reshape(t.shape).copy())
            elif line.startswith("C ") and line[2:].isdigit() and t.nbytes > HEX_MAX:
                row.append(Crc32(int(line[2:])))
            else:
                raise Transcript(line[:40])
        results.append(row)
    if counts_out is not None:
        counts_out.extend(counts)
    return results


def run_esp(binary: EspBinary, timeout: float = 120, counts_out: list | None = None,
            extra_args: Sequence[str] = (), qemu_output: list | None = None) -> list[list]:
    """Boot the ELF in QEMU (-icount shift=0) and read every output set; once
    more if the transcript lost bytes (never a verdict on a broken one)."""
    for attempt in (1, 2):
        text, output = _boot(binary, timeout, extra_args)
        try:
            results = _parse(binary, text, counts_out)
        except Transcript as exc:
            if attempt == 2:
                raise AssertionError(f"{binary.board}: UART transcript lost bytes twice "
                                     f"({exc}): {text[:300]!r}") from None
            continue
        if qemu_output is not None:
            qemu_output.append(output)
        if binary.board == "qemu-esp8266":
            binary.flash_loads = esp_flash.loads(output)
        return results
    raise AssertionError("unreachable")


@dataclass
class Crc32:
    """An output the firmware sent as the CRC-32 of its bytes."""
    value: int


def _same(ref: np.ndarray, ours) -> tuple[bool, float | str]:
    if isinstance(ours, Crc32):
        data = np.ascontiguousarray(ref).tobytes()
        return zlib.crc32(data) == ours.value, "CRC-32 of the output bytes differs"
    return _bit_equal(ref, ours)


def assert_bit_exact_esp(tflite: bytes, workdir: Path, board: str, n_inputs: int = 3,
                         seed: int = 0, inputs=None, reference: bytes | None = None,
                         memory_first: bool = True, counts_out: list | None = None,
                         extra_args: Sequence[str] = (),
                         qemu_output: list | None = None) -> EspBinary:
    """As harness.assert_bit_exact, on an emulated Espressif core."""
    model = parse_tflite(tflite)
    batches = list(inputs) if inputs is not None else \
        random_inputs(model, np.random.default_rng(seed), n_inputs)
    binary = build_esp(model, workdir, board, batches, memory_first=memory_first)
    ref = run_tflm(reference or tflite, batches)
    ours = run_esp(binary, counts_out=counts_out, extra_args=extra_args,
                   qemu_output=qemu_output)
    for k, (r_row, o_row) in enumerate(zip(ref, ours)):
        for j, (r, o) in enumerate(zip(r_row, o_row)):
            t = model.tensors[model.outputs[j]]
            same, diff = _same(np.asarray(r).astype(t.np_dtype).reshape(t.shape), o)
            if not same:
                raise AssertionError(f"{board} aot differs from TFLM: input set {k}, "
                                     f"output {j}, max |delta| {diff}")
    if board == "qemu-esp8266":
        lo, hi = esp_flash.weights_range(binary.elf)
        # weights in flash were read from there (and only with aligned words)
        assert (binary.flash_loads[1] > 0) == (hi > lo), (binary.flash_loads, hi - lo)
    return binary
