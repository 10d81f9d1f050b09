"""Host harness for the aot runtime: generate, compile, run, compare with TFLM.

    from tests.aot.harness import assert_bit_exact
    report = assert_bit_exact(tflite_bytes, tmp_path, n_inputs=3)

Steps: parse the .tflite into the IR, generate_aot() into a directory, add
tg_model_api.h and a small main (reads input bytes from stdin, writes output
bytes to stdout, as many inferences as inputs arrive), compile with the host
gcc (-Wall -Wextra -Werror), run it on random inputs, run the same inputs on
the TFLM interpreter, and require 0 LSB difference.

Kernel objects are cached per (source, flags) so each example compiles only
its model.c.  Everything here is reusable for any operator the aot runtime
supports (build the model with tests/aot/tflite_builder.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tinygen.codegen.aot import AotResult, generate_aot
from tinygen.ir import Model, parse_tflite

REPO = Path(__file__).resolve().parents[2]
HOST_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
ARM_CFLAGS = ("-std=c99", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
              "-mfpu=fpv4-sp-d16", "-Wall", "-Wextra", "-Werror", "-Os",
              "-ffunction-sections", "-fdata-sections")
SANITIZE = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all")

MAIN_C = r"""/* tinygen aot host test driver: stdin -> model -> stdout, repeatedly. */
#include <stdio.h>
#include "tg_model_api.h"

int main(void) {
  int n, i;
  if (tg_model_init() != 0) return 2;
  for (n = 0;; ++n) {
    for (i = 0; i < tg_model_info.num_inputs; ++i) {
      size_t want = tg_model_info.inputs[i].bytes;
      size_t got = fread(tg_model_input(i), 1, want, stdin);
      if (got == 0 && i == 0) return 0;
      if (got != want) return 3;
    }
    if (tg_model_run() != 0) return 4;
    for (i = 0; i < tg_model_info.num_outputs; ++i) {
      size_t want = tg_model_info.outputs[i].bytes;
      if (fwrite(tg_model_output(i), 1, want, stdout) != want) return 5;
    }
    fflush(stdout);
  }
}
"""


def _cache_dir() -> Path:
    d = Path(os.environ.get("TG_AOT_TEST_CACHE", Path(tempfile.gettempdir()) / "tg_aot_objcache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run(cmd: Sequence[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise AssertionError(f"command failed ({res.returncode}): {' '.join(cmd)}\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def _compile_cached(cc: str, flags: Sequence[str], src: Path, include_dir: Path) -> Path:
    """Object file for src; cached by content of src + every header beside it (minus model.h)."""
    h = hashlib.sha256()
    h.update(" ".join([cc, *flags]).encode())
    h.update(src.read_bytes())
    for hdr in sorted(include_dir.glob("*.h")):
        if hdr.name != "model.h":
            h.update(hdr.name.encode())
            h.update(hdr.read_bytes())
    obj = _cache_dir() / f"{src.stem}-{h.hexdigest()[:20]}.o"
    if not obj.exists():
        tmp = obj.with_suffix(f".{os.getpid()}.tmp.o")
        _run([cc, *flags, "-I", str(include_dir), "-c", str(src), "-o", str(tmp)])
        os.replace(tmp, obj)
    return obj


@dataclass
class HostBinary:
    exe: Path
    result: AotResult
    model: Model


def build_host(model: Model | bytes, workdir: Path, opt: str = "-O1", sanitize: bool = False,
               cc: str = "gcc", extra_flags: Sequence[str] = (),
               memory_first: bool = True) -> HostBinary:
    """generate_aot + compile a host executable that maps stdin inputs to stdout outputs."""
    if isinstance(model, (bytes, bytearray)):
        model = parse_tflite(bytes(model))
    workdir = Path(workdir)
    src_dir = workdir / "aot"
    if src_dir.exists():
        shutil.rmtree(src_dir)
    result = generate_aot(model, src_dir, board="host", copy_api_header=True,
                          memory_first=memory_first)
    main = workdir / "tg_host_main.c"
    main.write_text(MAIN_C)
    flags = [*HOST_CFLAGS, opt, *(SANITIZE if sanitize else ()), *extra_flags]
    objs = []
    for c_file in sorted(src_dir.glob("*.c")):
        if c_file.name == "model.c":
            obj = workdir / "model.o"
            _run([cc, *flags, "-I", str(src_dir), "-c", str(c_file), "-o", str(obj)])
        else:
            obj = _compile_cached(cc, flags, c_file, src_dir)
        objs.append(str(obj))
    exe = workdir / "tg_host_model"
    _run([cc, *flags, "-I", str(src_dir), str(main), *objs, "-o", str(exe)])
    return HostBinary(exe=exe, result=result, model=model)


def run_host(binary: HostBinary, batches: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
    """Run the host executable on several input sets; returns the outputs of each."""
    model = binary.model
    ins = [model.tensors[i] for i in model.inputs]
    outs = [model.tensors[i] for i in model.outputs]
    payload = bytearray()
    for inputs in batches:
        assert len(inputs) == len(ins)
        for t, arr in zip(ins, inputs):
            payload += np.ascontiguousarray(arr, dtype=t.np_dtype).tobytes()
    res = subprocess.run([str(binary.exe)], input=bytes(payload), capture_output=True,
                         timeout=120)
    if res.returncode != 0:
        raise AssertionError(f"aot host binary failed ({res.returncode}): "
                             f"{res.stderr.decode(errors='replace')}")
    data = res.stdout
    per = sum(t.nbytes for t in outs)
    assert len(data) == per * len(batches), (len(data), per, len(batches))
    results = []
    off = 0
    for _ in batches:
        row = []
        for t in outs:
            row.append(np.frombuffer(data[off:off + t.nbytes], dtype=t.np_dtype)
                       .reshape(t.shape).copy())
            off += t.nbytes
        results.append(row)
    return results


def tflm_arena_size(model: Model) -> int:
    acts = sum(t.nbytes for t in model.tensors if not t.is_constant)
    return int(max(64 * 1024, 4 * acts + 32 * 1024))


def run_tflm(tflite: bytes, batches: Sequence[Sequence[np.ndarray]],
             arena_size: int | None = None) -> list[list[np.ndarray]]:
    """The reference: TFLM's interpreter on the same .tflite."""
    from tflite_micro.python.tflite_micro import runtime
    model = parse_tflite(tflite)
    interp = runtime.Interpreter.from_bytes(bytes(tflite),
                                            arena_size=arena_size or tflm_arena_size(model))
    results = []
    for inputs in batches:
        for i, arr in enumerate(inputs):
            t = model.tensors[model.inputs[i]]
            interp.set_input(np.ascontiguousarray(arr, dtype=t.np_dtype).reshape(t.shape), i)
        interp.invoke()
        results.append([np.array(interp.get_output(j)).copy() for j in range(len(model.outputs))])
    return results


def random_inputs(model: Model, rng: np.random.Generator, n: int) -> list[list[np.ndarray]]:
    batches = []
    for _ in range(n):
        row = []
        for i in model.inputs:
            t = model.tensors[i]
            if t.dtype in ("int8", "uint8", "int16", "int32"):
                info = np.iinfo(t.np_dtype)
                lo, hi = max(info.min, -(1 << 15)), min(info.max, (1 << 15) - 1)
                row.append(rng.integers(lo, hi + 1, size=t.shape).astype(t.np_dtype))
            elif t.dtype == "float32":
                row.append(rng.standard_normal(t.shape).astype(np.float32))
            else:
                raise ValueError(f"no random inputs for {t.dtype}")
        batches.append(row)
    return batches


@dataclass
class Comparison:
    binary: HostBinary
    n_inputs: int
    max_abs_diff: float = 0.0
    mismatches: list[str] = field(default_factory=list)

    @property
    def arena_bytes(self) -> int:
        return self.binary.result.arena_bytes


def _bit_equal(ref: np.ndarray, ours: np.ndarray) -> tuple[bool, float]:
    ref = np.asarray(ref).reshape(ours.shape)
    if ref.dtype.kind == "f":
        same = np.array_equal(ref.astype(ours.dtype).view(np.uint8), ours.view(np.uint8))
    else:
        same = np.array_equal(ref.astype(np.int64), ours.astype(np.int64))
    diff = float(np.max(np.abs(ref.astype(np.float64) - ours.astype(np.float64)))) \
        if ours.size else 0.0
    return same, diff


def compare(tflite: bytes, workdir: Path, n_inputs: int = 3, seed: int = 0,
            inputs: Sequence[Sequence[np.ndarray]] | None = None, opt: str = "-O1",
            sanitize: bool = False, reference: bytes | None = None,
            cc: str = "gcc", memory_first: bool = True) -> Comparison:
    """reference: run this .tflite on TFLM instead of `tflite` (an equivalent
    model TFLM can run, e.g. with an explicit zero bias where TFLM crashes on
    an omitted one)."""
    model = parse_tflite(tflite)
    binary = build_host(model, workdir, opt=opt, sanitize=sanitize, cc=cc,
                        memory_first=memory_first)
    batches = list(inputs) if inputs is not None else \
        random_inputs(model, np.random.default_rng(seed), n_inputs)
    ref = run_tflm(reference or tflite, batches)
    ours = run_host(binary, batches)
    cmp = Comparison(binary=binary, n_inputs=len(batches))
    for k, (r_row, o_row) in enumerate(zip(ref, ours)):
        for j, (r, o) in enumerate(zip(r_row, o_row)):
            same, diff = _bit_equal(r, o)
            cmp.max_abs_diff = max(cmp.max_abs_diff, diff)
            if not same:
                rr = np.asarray(r).reshape(o.shape).astype(np.int64)
                bad = np.argwhere(rr != o.astype(np.int64))
                cmp.mismatches.append(
                    f"input set {k}, output {j}: {len(bad)} of {o.size} elements differ, "
                    f"max |delta| {diff:g}; first at {bad[:5].tolist()}: "
                    f"tflm {[int(rr[tuple(i)]) for i in bad[:5]]} vs aot "
                    f"{[int(o[tuple(i)]) for i in bad[:5]]}")
    return cmp


def assert_bit_exact(tflite: bytes, workdir: Path, n_inputs: int = 3, seed: int = 0,
                     inputs=None, opt: str = "-O1", sanitize: bool = False,
                     reference: bytes | None = None, cc: str = "gcc",
                     memory_first: bool = True) -> Comparison:
    """generate_aot + host build + run; 0 LSB difference from TFLM or AssertionError.
    memory_first=False keeps kernels that use scratch memory (faster variants)."""
    cmp = compare(tflite, workdir, n_inputs=n_inputs, seed=seed, inputs=inputs, opt=opt,
                  sanitize=sanitize, reference=reference, cc=cc, memory_first=memory_first)
    if cmp.mismatches:
        raise AssertionError("aot differs from TFLM:\n" + "\n".join(cmp.mismatches[:6]))
    return cmp


def compile_cortex_m4(src_dir: Path, cc: str = "arm-none-eabi-gcc",
                      flags: Sequence[str] = ARM_CFLAGS) -> dict[str, int]:
    """Compile every .c in src_dir for Cortex-M4F with -Werror; returns text+data
    bytes per object (from arm-none-eabi-size)."""
    src_dir = Path(src_dir)
    if not (src_dir / "tg_model_api.h").exists():
        shutil.copyfile(REPO / "firmware_templates" / "common" / "tg_model_api.h",
                        src_dir / "tg_model_api.h")
    out = src_dir / "arm-obj"
    out.mkdir(exist_ok=True)
    sizes = {}
    for c_file in sorted(src_dir.glob("*.c")):
        obj = out / (c_file.stem + ".o")
        _run([cc, *flags, "-I", str(src_dir), "-c", str(c_file), "-o", str(obj)])
        res = _run(["arm-none-eabi-size", "-A", str(obj)])
        total = 0
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith((".text", ".rodata", ".data")) \
                    and parts[1].isdigit():
                total += int(parts[1])
        sizes[c_file.name] = total
    return sizes


def tflm_arena_usage(tflite: bytes, arena_size: int | None = None) -> dict[str, int]:
    """TFLM's own arena figures for a model ('total', 'head' = planned
    activations, 'tail' = persistent interpreter data), read from
    print_allocations() (which prints from C, so the fd is redirected)."""
    import re

    from tflite_micro.python.tflite_micro import runtime
    model = parse_tflite(tflite)
    interp = runtime.Interpreter.from_bytes(bytes(tflite),
                                            arena_size=arena_size or tflm_arena_size(model))
    for i, idx in enumerate(model.inputs):
        t = model.tensors[idx]
        interp.set_input(np.zeros(t.shape, t.np_dtype), i)
    interp.invoke()
    with tempfile.TemporaryFile() as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            interp.print_allocations()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if m:
            out[key] = int(m.group(1))
    return out


def link_cortex_m4(src_dir: Path, workdir: Path, cc: str = "arm-none-eabi-gcc") -> dict[str, int]:
    """Link the generated sources with a stub main for Cortex-M4F (newlib nosys,
    --gc-sections); returns the ELF's text/data/bss sizes in bytes."""
    src_dir, workdir = Path(src_dir), Path(workdir)
    if not (src_dir / "tg_model_api.h").exists():
        shutil.copyfile(REPO / "firmware_templates" / "common" / "tg_model_api.h",
                        src_dir / "tg_model_api.h")
    main = workdir / "tg_m4_main.c"
    main.write_text('#include "tg_model_api.h"\n'
                    "int main(void) {\n"
                    "  if (tg_model_init() != 0) return 1;\n"
                    "  return tg_model_run() + (int)tg_model_output(0)[0];\n"
                    "}\n")
    elf = workdir / "model_m4.elf"
    _run([cc, *ARM_CFLAGS, "-I", str(src_dir), str(main), *map(str, sorted(src_dir.glob("*.c"))),
          "--specs=nosys.specs", "--specs=nano.specs", "-Wl,--gc-sections", "-o", str(elf)])
    res = _run(["arm-none-eabi-size", str(elf)])
    text, data, bss = (int(v) for v in res.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


# ---------------------------------------------------------------------------
# the same generated code on an emulated Cortex-M4F (QEMU mps2-an386)

M4_STARTUP_C = r"""/* Minimal Cortex-M4F start-up for QEMU mps2-an386 with semihosting (tests only). */
#include <stdint.h>
extern uint32_t __bss_start__, __bss_end__, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void exit(int);
void Reset_Handler(void);
void _init(void);
void _fini(void);
void _init(void) {}
void _fini(void) {}
static void Default_Handler(void) { for (;;) {} }
__attribute__((section(".isr_vector"), used))
void (*const tg_vectors[16])(void) = {
  (void (*)(void))(uintptr_t)(&_estack), Reset_Handler, Default_Handler, Default_Handler,
  Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
  Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler,
};
void Reset_Handler(void) {
  uint32_t *p;
  *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);   /* enable the FPU */
  __asm volatile("dsb\n isb");
  for (p = &__bss_start__; p < &__bss_end__; ++p) *p = 0;
  initialise_monitor_handles();
  exit(main());
}
"""

M4_LINKER = """MEMORY {
  FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
  RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M
}
ENTRY(Reset_Handler)
SECTIONS {
  .text : { KEEP(*(.isr_vector)) *(.text*) *(.rodata*) KEEP(*(.init)) KEEP(*(.fini)) . = ALIGN(4); } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  .data : { . = ALIGN(4); *(.data*) . = ALIGN(4); } > RAM
  .bss (NOLOAD) : { . = ALIGN(4); __bss_start__ = .; *(.bss*) *(COMMON) . = ALIGN(4); __bss_end__ = .; } > RAM
  . = ALIGN(8);
  end = .; _end = .; __end__ = .;
  _estack = ORIGIN(RAM) + LENGTH(RAM);
}
"""

M4_MAIN_C = r"""/* tinygen aot QEMU test driver: tg_in.bin -> model -> tg_out.bin (semihosting). */
#include <stdint.h>
#include <stdio.h>
#include "tg_model_api.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

#ifdef TG_PROFILE_OPS
static uint32_t tg_op_ticks[1024];
static uint32_t tg_op_start;
void tg_profile_op(int op_index, int phase);
void tg_profile_op(int op_index, int phase) {
  if (phase == 0) {
    tg_op_start = SYST_CVR;
  } else if (op_index >= 0 && op_index < 1024) {
    tg_op_ticks[op_index] += (tg_op_start - SYST_CVR) & 0xFFFFFFu;
  }
}
#endif

int main(void) {
  FILE *in = fopen("tg_in.bin", "rb");
  FILE *out = fopen("tg_out.bin", "wb");
  FILE *ticks = fopen("tg_ticks.bin", "wb");
  int i;
  if (in == NULL || out == NULL || ticks == NULL) return 10;
  if (tg_model_init() != 0) return 2;
  SYST_RVR = 0xFFFFFFu;
  SYST_CVR = 0u;
  SYST_CSR = 5u;                      /* enabled, processor clock, no interrupt */
  for (;;) {
    uint32_t t0, t1;
    for (i = 0; i < tg_model_info.num_inputs; ++i) {
      size_t want = tg_model_info.inputs[i].bytes;
      size_t got = fread(tg_model_input(i), 1, want, in);
      if (got == 0 && i == 0) {
#ifdef TG_PROFILE_OPS
        FILE *ops = fopen("tg_op_ticks.bin", "wb");
        if (ops == NULL || fwrite(tg_op_ticks, sizeof tg_op_ticks, 1, ops) != 1) return 7;
        fclose(ops);
#endif
        fclose(out); fclose(in); fclose(ticks); return 0;
      }
      if (got != want) return 3;
    }
    t0 = SYST_CVR;
    if (tg_model_run() != 0) return 4;
    t1 = SYST_CVR;
    t0 = (t0 - t1) & 0xFFFFFFu;        /* SysTick counts down (24 bits) */
    if (fwrite(&t0, sizeof t0, 1, ticks) != 1) return 6;
    for (i = 0; i < tg_model_info.num_outputs; ++i) {
      size_t want = tg_model_info.outputs[i].bytes;
      if (fwrite(tg_model_output(i), 1, want, out) != want) return 5;
    }
  }
}
"""


def qemu_available() -> bool:
    return shutil.which("qemu-system-arm") is not None and \
        shutil.which("arm-none-eabi-gcc") is not None


def build_m4(model: Model | bytes, workdir: Path, opt: str = "-O2",
             profile_ops: bool = False, memory_first: bool = True) -> HostBinary:
    """generate_aot + an ELF for QEMU's mps2-an386 (Cortex-M4F, hard float,
    newlib semihosting for file I/O)."""
    if isinstance(model, (bytes, bytearray)):
        model = parse_tflite(bytes(model))
    workdir = Path(workdir)
    src_dir = workdir / "aot"
    if src_dir.exists():
        shutil.rmtree(src_dir)
    result = generate_aot(model, src_dir, board="mps2-an386", copy_api_header=True,
                          memory_first=memory_first)
    (workdir / "startup.c").write_text(M4_STARTUP_C)
    (workdir / "m4.ld").write_text(M4_LINKER)
    (workdir / "main.c").write_text(M4_MAIN_C)
    flags = [f for f in ARM_CFLAGS if f != "-Os"] + [opt]
    if profile_ops:
        flags.append("-DTG_PROFILE_OPS")
    elf = workdir / "model_m4.elf"
    _run(["arm-none-eabi-gcc", *flags, "-I", str(src_dir), str(workdir / "startup.c"),
          str(workdir / "main.c"), *map(str, sorted(src_dir.glob("*.c"))),
          "-nostartfiles", "--specs=rdimon.specs", "-T", str(workdir / "m4.ld"),
          "-Wl,--gc-sections", "-o", str(elf)])
    return HostBinary(exe=elf, result=result, model=model)


def run_m4(binary: HostBinary, batches: Sequence[Sequence[np.ndarray]],
           timeout: float = 300, icount: bool = False,
           ticks_out: list | None = None,
           op_ticks_out: list | None = None) -> list[list[np.ndarray]]:
    """Run the ELF under QEMU.  With icount=True QEMU executes one guest
    instruction per virtual ns; the SysTick ticks of each tg_model_run() are
    appended to ticks_out (x40 = guest instructions on mps2: an instruction
    count, not real cycles)."""
    model = binary.model
    workdir = binary.exe.parent
    ins = [model.tensors[i] for i in model.inputs]
    outs = [model.tensors[i] for i in model.outputs]
    payload = bytearray()
    for inputs in batches:
        for t, arr in zip(ins, inputs):
            payload += np.ascontiguousarray(arr, dtype=t.np_dtype).tobytes()
    (workdir / "tg_in.bin").write_bytes(bytes(payload))
    out_file = workdir / "tg_out.bin"
    for stale in (out_file, workdir / "tg_op_ticks.bin"):
        if stale.exists():
            stale.unlink()
    cmd = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting",
           "-monitor", "none", "-serial", "none", "-kernel", str(binary.exe)]
    if icount:
        cmd += ["-icount", "shift=0"]
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"QEMU run failed ({res.returncode}): "
                             f"{res.stdout.decode(errors='replace')}"
                             f"{res.stderr.decode(errors='replace')}")
    data = out_file.read_bytes()
    per = sum(t.nbytes for t in outs)
    assert len(data) == per * len(batches), (len(data), per, len(batches))
    if ticks_out is not None:
        ticks_out.extend(np.frombuffer((workdir / "tg_ticks.bin").read_bytes(), "<u4").tolist())
    ops_file = workdir / "tg_op_ticks.bin"
    if op_ticks_out is not None and ops_file.exists():
        per_op = np.frombuffer(ops_file.read_bytes(), "<u4")[:len(model.operators)]
        op_ticks_out.extend((per_op // max(len(batches), 1)).tolist())
    results, off = [], 0
    for _ in batches:
        row = []
        for t in outs:
            row.append(np.frombuffer(data[off:off + t.nbytes], dtype=t.np_dtype)
                       .reshape(t.shape).copy())
            off += t.nbytes
        results.append(row)
    return results


def assert_bit_exact_m4(tflite: bytes, workdir: Path, n_inputs: int = 3, seed: int = 0,
                        inputs=None, reference: bytes | None = None,
                        memory_first: bool = True) -> HostBinary:
    """As assert_bit_exact, but the generated code runs on an emulated Cortex-M4F."""
    model = parse_tflite(tflite)
    binary = build_m4(model, workdir, memory_first=memory_first)
    batches = list(inputs) if inputs is not None else \
        random_inputs(model, np.random.default_rng(seed), n_inputs)
    ref = run_tflm(reference or tflite, batches)
    ours = run_m4(binary, batches)
    for k, (r_row, o_row) in enumerate(zip(ref, ours)):
        for j, (r, o) in enumerate(zip(r_row, o_row)):
            same, diff = _bit_equal(r, o)
            if not same:
                raise AssertionError(f"Cortex-M4 aot differs from TFLM: input set {k}, "
                                     f"output {j}, max |delta| {diff:g}")
    return binary
