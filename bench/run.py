"""tinygen benchmark: the aot runtime against TFLM, MLPerf Tiny architectures and examples.

    python3 bench/run.py [--boards qemu-cortex-m4,qemu-cortex-m7,...] [--models ...]
                         [--tflm-trees DIR] [--host-runs N] [--merge]

For every model and emulated board it builds three firmwares from the same
.tflite: the aot runtime, TFLM compiled from a reference-kernel tree and TFLM
compiled from a CMSIS-NN tree (the trees in ../shared/tflm, or --tflm-trees).
All three go through the same PlatformIO platform, compiler and flags, run in
QEMU (-icount shift=0) and are read over the same serial protocol: guest
instructions of the second of two inferences, code flash from the linked ELF,
arena (reserved, and for TFLM what the interpreter reports using), stack high
water, and the outputs against the tflite_micro interpreter byte for byte.
Every ratio is between figures of the same run.  It also times the aot C code
against the tflite_micro interpreter on the host.  Boards that offer no TFLM
(qemu-esp32c3, qemu-esp8266) get aot rows only; on them and on
qemu-cortex-m4 a --profile build gives instructions per MAC per kernel family.

Writes bench/results.json and docs/benchmarks.md; prints the Markdown tables.
Figures are deterministic (instruction counts, bytes) except the host time
ratio, which is measured in one run on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinygen.analyze.ops import macs as op_macs  # noqa: E402
from tinygen.boards import get_board  # noqa: E402
from tinygen.device.protocol import DeviceClient  # noqa: E402
from tinygen.device.qemu import QemuProcess  # noqa: E402
from tinygen.errors import TinygenError  # noqa: E402
from tinygen.ir import parse_tflite  # noqa: E402
from tinygen.project.build import build  # noqa: E402
from tinygen.project.elf_size import measure_elf  # noqa: E402
from tinygen.reference import TflmReference  # noqa: E402
from tinygen.verify import stacked_outputs  # noqa: E402

# Issue #5's done-criteria, as fractions of TFLM + CMSIS-NN on qemu-cortex-m4.
TARGETS = {"instructions": 0.8, "arena": 0.75, "code": 0.5}
TARGET_BOARD = "qemu-cortex-m4"
MLPERF = ["ds_cnn_kws", "mobilenet_v1_vww", "resnet8_cifar", "fc_autoencoder_ad"]
# Zoo models beyond MLPerf Tiny (issue 19): depth multiplier > 1, int8 LSTM,
# streaming wake-word with external state, one-channel 96x96 person detection.
MORE = ["tiny_conv_kws", "lstm_classifier", "streaming_kws", "person_detection_96"]
# Issue 19's targets, fractions of TFLM + CMSIS-NN on qemu-cortex-m4: instructions
# per kind of model, arena and code for every model.
TARGETS_19 = {"cnn": 0.5, "lstm": 0.33, "arena": 0.45, "code": 0.25}
KIND_19 = {"ds_cnn_kws": "cnn", "mobilenet_v1_vww": "cnn", "resnet8_cifar": "cnn",
           "tiny_conv_kws": "cnn", "kws_cnn": "cnn", "quickstart": "cnn",
           "streaming_kws": "cnn", "person_detection_96": "cnn",
           "mobilenet_ssd": "cnn", "lstm_classifier": "lstm", "lstm_anomaly": "lstm"}
# The M4's multiply-accumulate ceiling: SMLAD does two 16-bit MACs per instruction.
M4_MACS_PER_INSTRUCTION = 2.0

# Instructions per MAC per core and kernel family: these boards also get a
# --profile build whose per-operator counts are summed by operator kind.  The
# Espressif cores run the portable C kernels (no SIMD MAC); TFLM is not
# offered on them (no C++ standard library for their bare-metal toolchains
# here, docs/espressif-cores.md), so their rows are aot only.
CORE_BOARDS = ("qemu-cortex-m4", "qemu-esp32c3", "qemu-esp8266")
FAMILIES = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise",
            "FULLY_CONNECTED": "fully connected", "UNIDIRECTIONAL_SEQUENCE_LSTM": "lstm"}

# The two TFLM builds, by their folder under --tflm-trees (see ../shared/tflm/README.md).
TFLM_FLAVOURS = {"reference": "TFLM ref", "cmsis-nn": "TFLM+CMSIS-NN"}
DEFAULT_TREES = ROOT.parent / "shared" / "tflm"

EXAMPLES = {
    "quickstart": ("examples/quickstart/model.h5", "examples/quickstart/calib.npy", None),
    "kws_cnn": ("examples/kws_cnn/model.h5", "examples/kws_cnn/calib.npy", None),
    "lstm_anomaly": ("examples/lstm_anomaly/model.h5", "examples/lstm_anomaly/calib.npy", None),
    "mobilenet_ssd": ("examples/mobilenet_ssd/model.keras", "examples/mobilenet_ssd/calib.npy",
                      "examples/mobilenet_ssd/ssd.json"),
}

HOST_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tg_model_api.h"
int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 100;
  if (tg_model_init() != 0) return 2;
  for (int i = 0; i < tg_model_info.num_inputs; i++) {
    uint8_t *in = tg_model_input(i);
    for (uint32_t b = 0; b < tg_model_info.inputs[i].bytes; b++) in[b] = (uint8_t)(b * 37u + 11u);
  }
  tg_model_run();
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int r = 0; r < runs; r++) { tg_model_reset(); tg_model_run(); }
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / runs);
  return 0;
}
"""


def make_model(name: str, work: Path) -> tuple[Path, Path, str | None]:
    if name in EXAMPLES:
        model, calib, det = EXAMPLES[name]
        return ROOT / model, ROOT / calib, (str(ROOT / det) if det else None)
    from tinygen.models import zoo
    m = zoo.build(name)
    path = work / f"{name}.keras"
    m.save(path)
    data = zoo.calibration_data(m, 32)
    if isinstance(data, list):              # one array per input, in input order
        calib = work / f"{name}_calib.npz"
        np.savez(calib, *data)
    else:
        calib = work / f"{name}_calib.npy"
        np.save(calib, data)
    return path, calib, None


def host_time_ratio(project: Path, tflite: bytes, runs: int) -> dict:
    """aot C (gcc -O2, host) vs the tflite_micro interpreter's invoke(), same machine, one run."""
    src = project / "src"
    with tempfile.TemporaryDirectory() as d:
        drv = Path(d) / "driver.c"
        drv.write_text(HOST_DRIVER)
        exe = Path(d) / "bench"
        sources = [str(p) for p in src.glob("*.c")
                   if p.name not in ("tg_main.c", "tg_protocol.c")]
        proc = subprocess.run(["gcc", "-O2", "-std=gnu99", "-I", str(src), str(drv), *sources,
                               "-o", str(exe), "-lm"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"host build of the aot code failed:\n{proc.stderr[-2000:]}")
        aot_ns = float(subprocess.run([str(exe), str(runs)], check=True, capture_output=True,
                                      text=True).stdout)
    ref = TflmReference(tflite)
    ir = parse_tflite(tflite)
    x = [np.zeros(t.shape, t.np_dtype) for t in ir.input_tensors()]
    ref.run(x)
    interp = ref._interp
    t0 = time.perf_counter()
    for _ in range(runs):
        interp.invoke()
    tflm_ns = (time.perf_counter() - t0) / runs * 1e9
    return {"aot_ns": aot_ns, "tflm_ns": tflm_ns, "ratio": aot_ns / tflm_ns}


_PRODUCER = re.compile(
    r"DW_AT_producer\s*:\s*(?:\(indirect string, offset: 0x[0-9a-f]+\):\s*)?(.*)")
# Flags that only exist for one language; the rest must match between runtimes.
_LANGUAGE_FLAGS = re.compile(r"^-std=|^-fno-(exceptions|rtti|threadsafe-statics)$")


def compile_flags(elf: Path) -> list[str]:
    """What GCC recorded (DW_AT_producer, the firmware is built with -g) for
    every unit the project compiled: the flags actually used, not the ones we
    meant to pass.  newlib's and libgcc's prebuilt objects carry no -mcpu and
    are left out."""
    out = subprocess.run(["arm-none-eabi-readelf", "--debug-dump=info", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        m = _PRODUCER.search(line)
        if m and "-mcpu=" in m.group(1):
            found.add(m.group(1).strip())
    return sorted(found)


def codegen_flags(producers: list[str]) -> list[str]:
    return sorted({f for p in producers for f in p.split()
                   if f.startswith("-") and not _LANGUAGE_FLAGS.search(f)})


def run_firmware(res, board, vec: list[np.ndarray], ir, expect) -> dict:
    """Two inferences of one firmware in QEMU over the serial protocol."""
    with QemuProcess(board.qemu_machine, res.elf, qmp=True) as q, \
            DeviceClient.open(q.url) as dev:
        dev.info()
        first = dev.infer(vec)
        second = dev.infer(vec)
        # whole firmware: reset, protocol and both inferences (painted at reset)
        stack_used, _ = q.stack_usage()
        # after the inferences: anything TFLM allocates while invoking counts
        arena_used = dev.info(refresh=True).arena_used
    pairs = stacked_outputs(ir, [first.outputs, second.outputs], expect)
    # per inference: a runtime that drops a stateful model's state between
    # invokes is exact on the first and wrong on the second
    exact = [all(np.array_equal(np.ascontiguousarray(d[j]).view(np.uint8),
                                np.ascontiguousarray(r[j]).view(np.uint8)) for d, r in pairs)
             for j in range(2)]
    max_diff = max(float(np.max(np.abs(d.astype(np.float64) - r.astype(np.float64)), initial=0))
                   for d, r in pairs)
    sizes = measure_elf(res.elf, res.weight_symbols)
    return {
        "bit_exact": all(exact), "bit_exact_per_inference": exact, "max_abs_diff": max_diff,
        "instructions": int(second.counter), "instructions_first": int(first.counter),
        "flash_code": sizes.code, "flash_weights": sizes.weights, "ram_total": sizes.ram,
        "arena_reserved": res.arena_bytes, "arena_used": arena_used,
        "stack_high_water": stack_used, "compile_flags": compile_flags(res.elf),
    }


def per_family(res, board, vec: list[np.ndarray], ir) -> dict:
    """Per operator kind: MACs and guest instructions of the second of two
    inferences of a --profile build (the counter read around each operator)."""
    with QemuProcess(board.qemu_machine, res.elf) as q, DeviceClient.open(q.url) as dev:
        dev.info()
        dev.infer(vec)
        dev.infer(vec)
        counts = dev.read_profile()
    # a fused call (plan/fuse.py) runs the operators it absorbed, whose own
    # calls run nothing: its instructions count under its producer's family
    # (the first operator it absorbed), the MACs under each operator's own
    done_by = (res.memory_plan or {}).get("done_by") or [None] * len(ir.operators)
    producer: dict[int, int] = {}     # fused call -> the first operator it absorbed
    for i, by in enumerate(done_by):
        if by is not None:
            producer.setdefault(by, i)
    out: dict[str, dict[str, int]] = {}

    def family(i: int) -> dict[str, int]:
        return out.setdefault(FAMILIES.get(ir.operators[i].opcode, "other"),
                              {"macs": 0, "instructions": 0})

    for i, op in enumerate(ir.operators):
        family(i)["macs"] += op_macs(ir, op)
        family(producer.get(i, i))["instructions"] += int(counts[i]) if i < len(counts) else 0
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def run_one(name: str, board_id: str, work: Path, host_runs: int, trees: Path) -> dict:
    model, calib, det = make_model(name, work)
    if not model.exists():
        return {"model": name, "board": board_id, "skipped": f"{model} not found"}
    out = work / f"{name}-{board_id}"
    t0 = time.monotonic()
    board = get_board(board_id)
    try:
        res = build(model, board_id, runtime="aot", calib=calib, out_dir=out, detection=det,
                    firmware="protocol")
    except TinygenError as exc:   # e.g. refused at build: does not fit the board
        return {"model": name, "board": board_id, "skipped": f"refused at build: {exc}"}
    ir = res.conversion.ir
    rng = np.random.default_rng(0)
    vec = [rng.integers(-128, 128, t.shape, dtype=np.int8) for t in ir.input_tensors()]
    # the reference runs the same two inferences (stateful models carry their
    # state from the first into the second); SSD rows past num_detections are
    # undefined in TFLM and not compared
    ref = TflmReference(ir.tflite)
    expect = [ref.run(vec), ref.run(vec)]
    aot = run_firmware(res, board, vec, ir, expect)
    plan_arena = res.arena_bytes
    tflm_arena = ref.arena_usage().total
    macs = sum(op_macs(ir, op) for op in ir.operators)
    row = {
        "model": name, "board": board_id, "bit_exact": aot["bit_exact"], "macs": macs,
        "instructions": aot["instructions"], "instructions_first": aot["instructions_first"],
        "flash_code": aot["flash_code"], "flash_weights": aot["flash_weights"],
        "ram_activations": plan_arena, "ram_total": aot["ram_total"],
        "stack_high_water": aot["stack_high_water"], "compile_flags": aot["compile_flags"],
        "tflm_arena_host": tflm_arena, "tflm": {},
        "aot": {k: aot[k] for k in ("bit_exact", "bit_exact_per_inference", "max_abs_diff")},
    }
    if board_id in CORE_BOARDS:
        pres = build(out / "model.tflite", board_id, runtime="aot", profile=True,
                     out_dir=work / f"{name}-{board_id}-profile", firmware="protocol")
        row["per_family"] = per_family(pres, board, vec, ir)
    aot_flags = codegen_flags(aot["compile_flags"])
    if "tflm" not in board.runtimes:
        row["tflm_offered"] = False
        row["build_and_run_s"] = round(time.monotonic() - t0, 1)
        return row
    for flavour in TFLM_FLAVOURS:
        print(f"bench: {name} on {board_id}: TFLM {flavour}", file=sys.stderr, flush=True)
        try:
            # the aot project's .tflite, so that all three run the very same model
            tres = build(out / "model.tflite", board_id, runtime="tflm",
                         tflm_source=trees / flavour,
                         out_dir=work / f"{name}-{board_id}-{flavour}", firmware="protocol")
            if tres.conversion.ir.signature != ir.signature:
                raise RuntimeError("the TFLM build converted a different model")
            m = run_firmware(tres, board, vec, ir, expect)
            m["same_codegen_flags_as_aot"] = codegen_flags(m["compile_flags"]) == aot_flags
            m["tflm_flavour"] = tres.tflm_flavour
        except Exception as exc:  # a failed build is a result of the bench, shown in the table
            log = getattr(exc, "log_tail", "")
            print(f"bench: {name} on {board_id}: TFLM {flavour} failed: {exc}\n{log}",
                  file=sys.stderr, flush=True)
            m = {"error": _one_line(exc)}
        row["tflm"][flavour] = m
    cmsis, refk = row["tflm"]["cmsis-nn"], row["tflm"]["reference"]
    if "instructions" in cmsis:
        row["vs_tflm_cmsis_instructions"] = row["instructions"] / cmsis["instructions"]
        row["vs_tflm_code"] = row["flash_code"] / cmsis["flash_code"]
        if cmsis["arena_used"]:
            row["vs_tflm_arena"] = plan_arena / cmsis["arena_used"]
    if "instructions" in refk:
        row["vs_tflm_ref_instructions"] = row["instructions"] / refk["instructions"]
    if host_runs and board_id == TARGET_BOARD:
        row["host"] = host_time_ratio(out, ir.tflite, host_runs)
    row["build_and_run_s"] = round(time.monotonic() - t0, 1)
    return row


def row_ok(r: dict) -> bool:
    """aot and both TFLM builds ran and were bit-exact (skipped models are fine)."""
    if "skipped" in r:
        return True
    return r["bit_exact"] and all(t.get("bit_exact", False) for t in r["tflm"].values())


def targets_markdown(rows: list[dict]) -> str:
    """Issue #5's done-criteria, one line per MLPerf Tiny model, against the
    TFLM + CMSIS-NN figures of the same run."""
    lines = ["| model | instructions | target | arena | target | code flash | target | "
             "bit-exact | met |", "|" + "---|" * 9]
    for r in rows:
        if r.get("board") != TARGET_BOARD or r.get("model") not in MLPERF or "skipped" in r:
            continue
        b = r["tflm"]["cmsis-nn"]
        if "instructions" not in b:
            lines.append(f"| {r['model']} | TFLM+CMSIS-NN failed: {b['error']} |" + " |" * 7)
            continue
        t_ins = TARGETS["instructions"] * b["instructions"]
        t_ram = TARGETS["arena"] * b["arena_used"]
        t_code = TARGETS["code"] * b["flash_code"]
        met = (r["instructions"] <= t_ins and r["ram_activations"] <= t_ram
               and r["flash_code"] <= t_code and r["bit_exact"])
        lines.append(
            f"| {r['model']} | {r['instructions'] / 1e6:.2f} M "
            f"({r['instructions'] / b['instructions']:.2f}x) | <= {t_ins / 1e6:.2f} M | "
            f"{r['ram_activations']:,} B ({r['ram_activations'] / b['arena_used']:.2f}x) | "
            f"<= {int(t_ram):,} B | {r['flash_code'] / 1024:.1f} KB "
            f"({r['flash_code'] / b['flash_code']:.2f}x) | <= {t_code / 1024:.1f} KB | "
            f"{'yes' if r['bit_exact'] else 'NO'} | {'yes' if met else 'NO'} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def targets19_markdown(rows: list[dict]) -> str:
    """Issue 19's targets, every model of the run on the target board, against
    the TFLM + CMSIS-NN figures of the same run."""
    lines = ["| model | kind | instructions | target | arena | target | code flash | target | "
             "bit-exact | met |", "|" + "---|" * 10]
    for r in rows:
        if r.get("board") != TARGET_BOARD or "skipped" in r:
            continue
        b = r["tflm"]["cmsis-nn"]
        kind = KIND_19.get(r["model"], "other")
        if "instructions" not in b:
            lines.append(f"| {r['model']} | {kind} | TFLM+CMSIS-NN failed: {b['error']} |"
                         + " |" * 7)
            continue
        ti = TARGETS_19.get(kind)
        ins = r["instructions"] / b["instructions"]
        arena = r["ram_activations"] / b["arena_used"] if b["arena_used"] else None
        code = r["flash_code"] / b["flash_code"]
        met = ((ti is None or ins <= ti) and arena is not None
               and arena <= TARGETS_19["arena"] and code <= TARGETS_19["code"]
               and r["bit_exact"])
        arena_cell = f"{arena:.2f}x" if arena is not None else "-"
        lines.append(
            f"| {r['model']} | {kind} | {r['instructions'] / 1e6:.2f} M ({ins:.2f}x) | "
            f"{f'<= {ti:.2f}x' if ti else '-'} | {r['ram_activations']:,} B ({arena_cell}) | "
            f"<= {TARGETS_19['arena']:.2f}x | {r['flash_code'] / 1024:.1f} KB ({code:.2f}x) | "
            f"<= {TARGETS_19['code']:.2f}x | {'yes' if r['bit_exact'] else 'NO'} | "
            f"{'yes' if met else 'NO'} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _with_tflm(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("tflm_offered", True)]


def cores_markdown(rows: list[dict]) -> str:
    """aot instructions per MAC on each core of CORE_BOARDS, per model and per
    kernel family (summed over the run's models)."""
    boards = [b for b in CORE_BOARDS if any(r.get("board") == b for r in rows)]
    if not any(b != TARGET_BOARD for b in boards):
        return ""
    by = {(r["model"], r["board"]): r for r in rows}
    head = "| model | MACs | " + " | ".join(f"{b}: instructions (per MAC)" for b in boards) + " |"
    lines = [head, "|" + "---|" * (2 + len(boards))]
    for model in dict.fromkeys(r["model"] for r in rows):
        cells, macs = [], None
        for b in boards:
            r = by.get((model, b))
            if r is None:
                cells.append("-")
            elif "skipped" in r:
                cells.append("refused: does not fit" if "does not fit" in r["skipped"]
                             else "skipped")
            else:
                macs = r["macs"]
                exact = "" if r["bit_exact"] else " NOT bit-exact"
                cells.append(f"{r['instructions']:,} ({r['instructions'] / r['macs']:.1f})"
                             f"{exact}" if r["macs"] else f"{r['instructions']:,}")
        if any(c != "-" for c in cells):
            lines.append(f"| {model} | {'-' if macs is None else f'{macs:,}'} | "
                         + " | ".join(cells) + " |")
    fam_lines = ["| board | kernel family | MACs | instructions | instructions per MAC |",
                 "|" + "---|" * 5]
    # the same models on every core that has per-family figures
    # (the Espressif cores' models; a board joins when it has them all)
    esp = [b for b in boards if b != TARGET_BOARD and any("per_family" in r for r in rows
                                                          if r["board"] == b)]
    common = {m for (m, _b) in by if esp and all("per_family" in by.get((m, b), {})
                                                 for b in esp)}
    profiled = [b for b in boards if common and all("per_family" in by.get((m, b), {})
                                                    for m in common)]
    for b in profiled:
        total: dict[str, dict[str, int]] = {}
        for r in rows:
            if r.get("board") != b or r.get("model") not in common:
                continue
            for fam, f in r["per_family"].items():
                t = total.setdefault(fam, {"macs": 0, "instructions": 0})
                t["macs"] += f["macs"]
                t["instructions"] += f["instructions"]
        for fam in [*FAMILIES.values(), "other"]:
            t = total.get(fam)
            if t and t["instructions"]:
                per = f"{t['instructions'] / t['macs']:.1f}" if t["macs"] else "-"
                fam_lines.append(f"| {b} | {fam} | {t['macs']:,} | {t['instructions']:,} | "
                                 f"{per} |")
    return ("\n".join(lines) + "\n\nPer kernel family, summed over the models that ran on "
            f"every core below ({', '.join(sorted(common))}); a fused call's instructions "
            "count under its producer's family, the MACs under each operator's own:\n\n"
            + "\n".join(fam_lines))


def roofline_markdown(rows: list[dict]) -> str:
    """MACs per instruction: how close each runtime comes to the core's
    multiply-accumulate ceiling (2 per SMLAD on the M4 and M7).  Time outside
    dot products (requantization, im2col, activations, softmax) counts against
    it, so a kernel's own rate is higher than its model's."""
    lines = ["| model | board | MACs | aot MACs/instr | of 2/instr | TFLM+CMSIS-NN MACs/instr | "
             "of 2/instr |", "|" + "---|" * 7]
    for r in rows:
        if "skipped" in r or not r.get("macs"):
            continue
        a = r["macs"] / r["instructions"]
        cm = r["tflm"]["cmsis-nn"]
        c = r["macs"] / cm["instructions"] if "instructions" in cm else None
        lines.append(
            f"| {r['model']} | {r['board']} | {r['macs']:,} | {a:.2f} | "
            f"{a / M4_MACS_PER_INSTRUCTION:.0%} | {'-' if c is None else f'{c:.2f}'} | "
            f"{'-' if c is None else f'{c / M4_MACS_PER_INSTRUCTION:.0%}'} |")
    return "\n".join(lines) if len(lines) > 2 else ""


# the figures a re-run is compared on, by (label, getter)
MOVED_FIGURES = [
    ("aot instructions", lambda r: r.get("instructions")),
    ("aot code flash", lambda r: r.get("flash_code")),
    ("aot arena", lambda r: r.get("ram_activations")),
    ("TFLM+CMSIS-NN instructions", lambda r: r.get("tflm", {}).get("cmsis-nn", {}).get(
        "instructions")),
]


def moved_markdown(before: list[dict], after: list[dict]) -> str:
    """Each figure of this run that differs from the committed results.json
    (same model and board): before -> after and the ratio; rows new to this
    run are listed as new."""
    old = {(r["model"], r["board"]): r for r in before if "skipped" not in r}
    lines = []
    for r in after:
        if "skipped" in r:
            continue
        prev = old.get((r["model"], r["board"]))
        if prev is None:
            lines.append(f"- {r['model']} on {r['board']}: new row")
            continue
        for label, get in MOVED_FIGURES:
            a, b = get(prev), get(r)
            if a is not None and b is not None and a != b:
                lines.append(f"- {r['model']} on {r['board']}, {label}: {a:,} -> {b:,} "
                             f"({b / a:.2f}x)")
    return "\n".join(lines)


def merged_rows(before: list[dict], run: list[dict]) -> list[dict]:
    """The committed rows with this run's rows in place of the same model and
    board (new ones appended): a partial re-run keeps the other figures."""
    fresh = {(r["model"], r["board"]): r for r in run}
    rows = [fresh.pop((r["model"], r["board"]), r) for r in before]
    return rows + [r for r in run if (r["model"], r["board"]) in fresh]


def _cell(t: dict, key: str, fmt: str = "{:,}") -> str:
    if "error" in t:
        return "failed"
    v = t.get(key)
    return "-" if v is None else fmt.format(v)


def _ratio(r: dict, key: str) -> str:
    return f"{r[key]:.2f}x" if key in r else "-"


def _exact(t: dict) -> str:
    if "error" in t:
        return "failed"
    return "yes" if t["bit_exact"] else f"NO ({_mismatch(t)})"


def _mismatch(t: dict) -> str:
    which = "2nd inference" if t["bit_exact_per_inference"][0] else "both inferences"
    return f"{which}, max Δ {t['max_abs_diff']:g}"


def _flash_total(t: dict) -> int:
    # the ELF's flash is split into code flash and model flash (elf_size.ElfSizes.code)
    return t["flash_code"] + t["flash_weights"]


def _total_cell(t: dict) -> str:
    if "error" in t:
        return "failed"
    return "-" if t.get("flash_code") is None else f"{_flash_total(t):,}"


def markdown(rows: list[dict]) -> str:
    """Three tables: instructions; code flash, arena and stack; model flash and the
    totals.  Columns take the words of docs/sizes.md (tinygen.sizes)."""
    ins = ["| model | board | aot | TFLM ref | TFLM+CMSIS-NN | aot / TFLM ref | "
           "aot / TFLM+CMSIS-NN | bit-exact aot / ref / CMSIS-NN |", "|" + "---|" * 8]
    mem = ["| model | board | code flash aot | code flash TFLM ref | code flash TFLM+CMSIS-NN | "
           "aot / CMSIS-NN | arena aot | TFLM arena reserved | used, ref | used, CMSIS-NN | "
           "aot / CMSIS-NN used | stack aot / ref / CMSIS-NN |", "|" + "---|" * 12]
    more = ["| model | board | model flash aot | model flash TFLM | "
            "total flash aot / ref / CMSIS-NN | total RAM aot / ref / CMSIS-NN | "
            "TFLM arena, host | host time aot/TFLM | same codegen flags |", "|" + "---|" * 9]
    for r in rows:
        if "skipped" in r:
            for t, n in ((ins, 6), (mem, 10), (more, 7)):
                t.append(f"| {r['model']} | {r['board']} | skipped: {r['skipped']} |" + " |" * n)
            continue
        ref, cm = r["tflm"]["reference"], r["tflm"]["cmsis-nn"]
        pre = f"| {r['model']} | {r['board']} | "
        ins.append(
            pre + f"{r['instructions']:,} | {_cell(ref, 'instructions')} | "
            f"{_cell(cm, 'instructions')} | {_ratio(r, 'vs_tflm_ref_instructions')} | "
            f"{_ratio(r, 'vs_tflm_cmsis_instructions')} | "
            f"{_exact(r['aot'])} / {_exact(ref)} / {_exact(cm)} |")
        reserved = _cell(cm if "error" not in cm else ref, "arena_reserved", "{:,} B")
        mem.append(
            pre + f"{r['flash_code']:,} B | {_cell(ref, 'flash_code', '{:,} B')} | "
            f"{_cell(cm, 'flash_code', '{:,} B')} | {_ratio(r, 'vs_tflm_code')} | "
            f"{r['ram_activations']:,} B | {reserved} | {_cell(ref, 'arena_used', '{:,} B')} | "
            f"{_cell(cm, 'arena_used', '{:,} B')} | {_ratio(r, 'vs_tflm_arena')} | "
            f"{r['stack_high_water']:,} / {_cell(ref, 'stack_high_water')} / "
            f"{_cell(cm, 'stack_high_water')} B |")
        host = f"{r['host']['ratio']:.2f}" if "host" in r else "-"
        same = [("yes" if t["same_codegen_flags_as_aot"] else "NO") if "error" not in t
                else "failed" for t in (ref, cm)]
        model_data = _cell(cm if "error" not in cm else ref, "flash_weights", "{:,} B")
        more.append(
            pre + f"{r['flash_weights']:,} B | {model_data} | "
            f"{_flash_total(r):,} / {_total_cell(ref)} / {_total_cell(cm)} B | "
            f"{r['ram_total']:,} / {_cell(ref, 'ram_total')} / {_cell(cm, 'ram_total')} B | "
            f"{r['tflm_arena_host']:,} B | {host} | {' / '.join(same)} |")
    return "\n\n".join("\n".join(t) for t in (ins, mem, more))


def failures_markdown(rows: list[dict]) -> str:
    """Failed builds and outputs that differ from the interpreter, listed
    where a reader of the tables cannot miss them."""
    lines = []
    for r in rows:
        if "skipped" in r:
            continue
        for who, t in [("aot", r["aot"])] + [(TFLM_FLAVOURS[f], t) for f, t in r["tflm"].items()]:
            if "error" in t:
                lines.append(f"- {r['model']} on {r['board']}, {who}: build or run failed: "
                             f"`{t['error']}`")
            elif not t["bit_exact"]:
                lines.append(f"- {r['model']} on {r['board']}, {who}: outputs differ from the "
                             f"tflite_micro interpreter: {_mismatch(t)}")
    return ("**Not bit-exact or failed in this run** (see "
            "[performance.md](performance.md#the-tflm-figures-measured-live) for why):\n\n"
            + "\n".join(lines) + "\n\n") if lines else ""


def flags_markdown(rows: list[dict]) -> str:
    """The compilers and flags every firmware of the run was built with, per
    board, as recorded in the ELFs."""
    by_board: dict[str, dict[str, set]] = {}
    for r in rows:
        if "skipped" in r:
            continue
        seen = by_board.setdefault(r["board"], {"aot": set(), "TFLM": set()})
        seen["aot"].update(r["compile_flags"])
        for t in r["tflm"].values():
            seen["TFLM"].update(t.get("compile_flags", []))
    lines = []
    for board, seen in by_board.items():
        for who, producers in seen.items():
            for p in sorted(producers):
                lines.append(f"- {board}, {who}: `{p}`")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# --ablation: what each technique of the dsp kernels and the planner is worth


ABLATION_VARIANTS = [
    ("portable C kernels", dict(core="portable")),
    ("dsp kernels, reference requantization", dict(core="cortex-m4f", fast_requant=False)),
    ("dsp kernels", dict(core="cortex-m4f")),
]


def _family(kernel: str) -> str:
    if kernel.startswith("tg_lstm"):
        return "lstm"
    if "depthwise" in kernel:
        return "depthwise"
    if "conv2d" in kernel:
        return "conv"
    if "fully_connected" in kernel:
        return "fc"
    return "other"


def ablation(models: list[str], work: Path) -> list[dict]:
    """Each MLPerf model under each variant: guest instructions (second of two
    inferences, per kernel family from the TG_PROFILE_OPS hook) and the arena
    with and without output/input overlaps, built for QEMU mps2-an386 by the
    test harness (tests/aot/harness.py: -O2, semihosting driver)."""
    import functools

    sys.path.insert(0, str(ROOT / "tests" / "aot"))
    import harness  # noqa: E402

    from tinygen.codegen import aot  # noqa: E402
    from tinygen.convert import convert  # noqa: E402
    from tinygen.load import load_model  # noqa: E402

    rows = []
    for name in models:
        path, calib, _ = make_model(name, work)
        tfl = convert(load_model(path), calib).ir.tflite
        model = parse_tflite(tfl)
        batches = harness.random_inputs(model, np.random.default_rng(0), 2)
        for label, opts in ABLATION_VARIANTS:
            harness.generate_aot = functools.partial(aot.generate_aot, **opts)
            binary = harness.build_m4(model, work / f"abl-{name}", profile_ops=True)
            ticks: list[int] = []
            per_op: list[int] = []
            outs = harness.run_m4(binary, batches, icount=True, ticks_out=ticks,
                                  op_ticks_out=per_op)
            ref = harness.run_tflm(tfl, batches)
            exact = all(harness._bit_equal(r, o)[0] for rr, oo in zip(ref, outs)
                        for r, o in zip(rr, oo))
            fam: dict[str, int] = {}
            calls = binary.result.calls
            for call, t in zip(calls, per_op):
                # a fused call counts under its producer's family (the first
                # operator it absorbed; that call keeps its kernel's name)
                kernel = calls[min(call.fused)].kernel if call.fused else call.kernel
                fam[_family(kernel)] = fam.get(_family(kernel), 0) + 40 * t
            plan_opts = {k: v for k, v in opts.items() if k in ("core", "fast_requant")}
            _, no_overlap = aot.plan_aot(model, overlap=False, **plan_opts)
            rows.append({"model": name, "variant": label, "instructions": 40 * ticks[-1],
                         "families": fam, "arena": binary.result.arena_bytes,
                         "arena_no_overlap": no_overlap.arena_bytes, "bit_exact": exact})
            print(f"ablation: {name}: {label}: {40 * ticks[-1]:,}", file=sys.stderr, flush=True)
    return rows


def ablation_markdown(rows: list[dict]) -> str:
    lines = ["| model | kernels | instructions | conv | depthwise | FC | LSTM | other | arena "
             "(no overlap) | bit-exact |", "|" + "---|" * 10]
    for r in rows:
        f = r["families"]
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['instructions']:,} | "
            + " | ".join(f"{f.get(k, 0):,}" for k in ("conv", "depthwise", "fc", "lstm", "other"))
            + f" | {r['arena']:,} B ({r['arena_no_overlap']:,} B) | "
            f"{'yes' if r['bit_exact'] else 'NO'} |")
    return "\n".join(lines)


def ablation_part() -> str:
    """The ablation table of bench/ablation.json (`--ablation`) for the doc."""
    path = ROOT / "bench" / "ablation.json"
    if not path.exists():
        return ""
    return (
        "## Ablation: each technique with and without it (qemu-cortex-m4)\n\n"
        "Made by `python3 bench/run.py --ablation` (bench/ablation.json): each model built "
        "three ways by the test harness (`-O2`, QEMU mps2-an386 `-icount`, per-kernel-family "
        "instructions from the `TG_PROFILE_OPS` hook, second of two inferences), all "
        "bit-exact. *portable C kernels*: no DSP layouts (what ESP32 and the host run, here "
        "compiled for the M4). *dsp kernels, reference requantization*: the `SMLAD` data "
        "layouts (im2col into 16-bit columns with the 2x2 micro-kernel, four-channel "
        "depthwise, four-row FC, the LSTM's four gates interleaved on int8 weights, 16-bit "
        "convolution and FC weights where the flash holds them, a layer streamed into the "
        "next where that shrinks the arena) with TFLite's 64-bit "
        "`MultiplyByQuantizedMultiplier`. *dsp kernels*: plus the exact "
        "`SMMULR` requantization proved per layer and what builds on it (the unrolled 3x3 "
        "depthwise on doubled weights, the LSTM's doubled 16-bit weights and `SMUAD` "
        "activations). A fused call counts under "
        "its producer's family (a residual block streamed conv -> conv -> ADD under conv). "
        "The arena column is the plan with output-over-input overlaps, in "
        "brackets without them. Techniques measured one at a time elsewhere (row-wise "
        "border gathers, ADD operand tables, depth multiplier as a convolution, streaming "
        "fusions, narrow parameter structs, activation tables) are in "
        "[performance.md](performance.md) with their before/after figures.\n\n"
        + ablation_markdown(json.loads(path.read_text())) + "\n\n")


def per_op(models: list[str], work: Path) -> list[dict]:
    """Per-operator roofline of the aot firmware on qemu-cortex-m4 (mps2-an386,
    the test harness: -O2, dsp kernels, TG_PROFILE_OPS): for each kernel call
    its MACs, the bytes it moves (activations read and written, constants
    read), its guest instructions (second of two inferences, 40-instruction
    resolution) and MACs per instruction against the 2 of SMLAD."""
    sys.path.insert(0, str(ROOT / "tests" / "aot"))
    import harness  # noqa: E402

    from tinygen.convert import convert  # noqa: E402
    from tinygen.load import load_model  # noqa: E402

    rows = []
    for name in models:
        path, calib, _ = make_model(name, work)
        tfl = convert(load_model(path), calib).ir.tflite
        model = parse_tflite(tfl)
        batches = harness.random_inputs(model, np.random.default_rng(0), 2)
        binary = harness.build_m4(model, work / f"op-{name}", profile_ops=True)
        ticks: list[int] = []
        counts: list[int] = []
        harness.run_m4(binary, batches, icount=True, ticks_out=ticks, op_ticks_out=counts)
        producer = {o: op for op in model.operators for o in op.outputs}
        ops = []
        for call, t in zip(binary.result.calls, counts):
            op = producer.get(call.outputs[0]) if call.outputs else None
            moved = sum(model.tensors[i].nbytes for i in list(call.inputs) + list(call.outputs))
            moved += sum(int(np.asarray(c.values).nbytes) for c in call.constants)
            # a fused call (plan/fuse.py) also does the MACs of the operators
            # it absorbed, whose own calls run no code
            macs = (op_macs(model, op) if op else 0) + sum(
                op_macs(model, model.operators[j]) for j in call.fused)
            entry = {"kernel": call.kernel, "opcode": op.opcode if op else "",
                     "macs": 0 if call.absorbed_by is not None else macs,
                     "bytes": int(moved), "instructions": 40 * t}
            if call.absorbed_by is not None:
                entry["absorbed_by"] = int(call.absorbed_by)
            ops.append(entry)
        rows.append({"model": name, "board": TARGET_BOARD, "instructions": 40 * ticks[-1],
                     "ops": ops})
        print(f"per-op: {name}: {40 * ticks[-1]:,}", file=sys.stderr, flush=True)
    return rows


def per_op_markdown(rows: list[dict]) -> str:
    out = ["# Per-operator roofline (aot, qemu-cortex-m4)", "",
           "Made by `python3 bench/run.py --per-op` (raw figures: bench/per_op.json); the "
           "model-level figures are in [benchmarks.md](benchmarks.md). Per kernel call of "
           "the aot firmware: multiply-accumulates, bytes moved (activations read and "
           "written plus the constants the call reads: weights, folded biases, "
           "requantization records), guest instructions of the second of two inferences "
           "(QEMU `-icount`, counted in steps of 40) and MACs per instruction against the "
           "Cortex-M4's 2 per `SMLAD`. Calls without MACs (pooling, softmax, copies) show "
           "instructions per byte moved instead. A fused call (plan/fuse.py) counts the "
           "MACs of the operators it absorbed; their rows say `done by`.", ""]
    for r in rows:
        out += [f"## {r['model']}: {r['instructions']:,} instructions", "",
                "| # | kernel | op | MACs | bytes moved | instructions | share | MACs/instr | "
                "of 2/instr | instr/byte |", "|" + "---|" * 10]
        for i, o in enumerate(r["ops"]):
            if "absorbed_by" in o:
                out.append(f"| {i} | - | {o['opcode']} | done by #{o['absorbed_by']} | "
                           "| | | | | |")
                continue
            if o["instructions"] == 0 and o["macs"] == 0:
                continue
            rate = o["macs"] / o["instructions"] if o["instructions"] and o["macs"] else None
            per_byte = o["instructions"] / o["bytes"] if o["bytes"] else None
            out.append(
                f"| {i} | {o['kernel']} | {o['opcode']} | {o['macs']:,} | {o['bytes']:,} | "
                f"{o['instructions']:,} | {o['instructions'] / r['instructions']:.0%} | "
                f"{'-' if rate is None else f'{rate:.2f}'} | "
                f"{'-' if rate is None else f'{rate / M4_MACS_PER_INSTRUCTION:.0%}'} | "
                f"{'-' if per_byte is None or o['macs'] else f'{per_byte:.1f}'} |")
        out.append("")
    return "\n".join(out)


def tflm_trees(option: str | None) -> Path:
    """The folder holding the reference/ and cmsis-nn/ TFLM trees (one line if not)."""
    trees = Path(option) if option else DEFAULT_TREES
    missing = [f for f in TFLM_FLAVOURS
               if not (trees / f / "tensorflow" / "lite" / "micro").is_dir()]
    if missing:
        raise SystemExit(
            f"bench/run.py: no TFLM tree {', '.join(str(trees / f) for f in missing)}: the "
            "TFLM columns are measured live from a reference and a CMSIS-NN tree made by "
            "create_tflm_tree.py; give --tflm-trees DIR holding reference/ and cmsis-nn/")
    return trees.resolve()


NOTES = """\
Every figure in a row comes from the same run, the same .tflite and the same emulated board:
the aot firmware and two TFLM firmwares (TFLM with its reference kernels, TFLM with the CMSIS-NN
kernels; the trees in `../shared/tflm`, made by TFLM's `create_tflm_tree.py`, see
`TFLM_TREE_PROVENANCE.txt` there) are built by the same PlatformIO platform
(`firmware_templates/pio_platform`) with the same compiler and optimization flags, linked with
`-O2 --specs=nano.specs --specs=nosys.specs -Wl,--gc-sections`, and run with the same startup,
HAL and serial protocol. The compile flags below are what GCC recorded in each firmware's debug
information (`DW_AT_producer`), not what was meant to be passed; the `same codegen flags` column
checks, per build, that TFLM's units were compiled with exactly aot's code-generation flags (the
language's own flags aside: `-std`, and for C++ `-fno-exceptions -fno-rtti
-fno-threadsafe-statics`).

{flags}

tinygen's MLPerf Tiny models are the reference architectures built in Keras with random weights
(tinygen/zoo.py), quantized with 32 calibration vectors; the examples are the trained models in
`examples/`.

- **Instructions**: guest instructions of the second of two inferences on QEMU with `-icount
  shift=0`, read over the serial protocol (the firmware's counter around the model's run call).
- **Bit-exact**: both inferences equal the tflite_micro interpreter's two on the same input,
  byte for byte (a stateful model carries its state into the second; SSD rows past
  num_detections, which TFLM leaves undefined, are not compared). A mismatch says `NO` with the
  inference that differed and the largest difference (in LSB; in output units for float
  outputs), a build that failed says `failed`; either is listed above the tables and makes
  `bench/run.py` exit 1.
Sizes use the words of [sizes.md](sizes.md) (model flash, code flash, total flash, arena, stack,
total RAM); bench/results.json keeps its older keys (`flash_code`, `flash_weights`,
`ram_activations`) so that earlier runs stay comparable.

- **Model flash**: the model's constant data in the linked ELF (aot: the weight arrays and
  per-channel requantization tables; TFLM: the .tflite flatbuffer array).
- **Code flash**: the firmware's flash minus model flash ("text minus model"), protocol, HAL and
  startup included, read from the linked ELF; **total flash** is their sum. TFLM's is what
  tinygen's tflm glue links: with the CMSIS-NN tree it registers the int8-only kernels where
  every use of an operator is int8 (`AddConv2D(Register_CONV_2D_INT8())`, ...), so the int4
  and int16 paths are not linked ([tflm-source.md](tflm-source.md)); rows measured before that
  change (the generic `Add<Op>()`) showed 25-37 KB more TFLM + CMSIS-NN code flash.
- **Arena**: aot's planned arena (activations and kernel scratch). TFLM reserved: the arena the
  tflm build gives the interpreter (the host recording allocator's figure plus tinygen's margin);
  used: what the TFLM interpreter on the device reports using (`arena_used_bytes()`, protocol
  1.1), read after the two inferences. `aot / CMSIS-NN used` divides aot's arena by that.
- **Stack**: the high-water mark of the whole firmware (startup, serial protocol and both
  inferences), read from guest memory over QEMU's QMP socket after the run: the BSP paints the
  stack at reset and the bench finds the lowest overwritten word.
- **Total RAM**: `.data` + `.bss` of the linked ELF (the arena, the reserved stack and the
  runtime's state).
- **TFLM arena, host**: TFLM's recording allocator for the same .tflite in the 64-bit host
  build of tflite_micro. **Host time**: aot C at `-O2` vs tflite_micro `invoke()` on the host,
  one run on a shared machine (the only timed figure).
"""


def stored_pruning_section() -> str:
    """bench/pruning.py's section, kept when this run rewrites the document."""
    from pruning import stored_section
    return stored_section()


def run_all(args, out: Path) -> list[dict]:
    """Every model on every board; the rows so far are kept in a .partial.json
    next to --out, so that a long run stopped half-way still leaves its figures."""
    names = [] if args.report_only else args.models.split(",")
    if not names:
        return []
    trees = tflm_trees(args.tflm_trees)
    partial = out.with_suffix(".partial.json")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tinygen-bench-") as d:
        work = Path(d)
        for name in names:
            for board in args.boards.split(","):
                print(f"bench: {name} on {board}", file=sys.stderr, flush=True)
                rows.append(run_one(name, board, work, args.host_runs, trees))
                partial.write_text(json.dumps(rows, indent=2))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boards",
                    default="qemu-cortex-m4,qemu-cortex-m7,qemu-esp32c3,qemu-esp8266")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: rewrite --doc from the rows in --out")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of --out for model/board pairs this run does not "
                         "measure (e.g. --boards qemu-esp32c3 --merge)")
    ap.add_argument("--models", default=",".join(MLPERF + MORE + list(EXAMPLES)))
    ap.add_argument("--tflm-trees", default=None,
                    help=f"folder holding the reference/ and cmsis-nn/ TFLM trees "
                         f"(default {DEFAULT_TREES})")
    ap.add_argument("--host-runs", type=int, default=50,
                    help="inferences timed on the host per side (0: skip)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--per-op", action="store_true",
                    help="instead: the per-operator roofline of each model's aot firmware on "
                         "qemu-cortex-m4; writes bench/per_op.json and docs/roofline.md")
    ap.add_argument("--from-json", default=None,
                    help="no run: take the rows of this file (a --out of an earlier run) as "
                         "this run's and write results and doc from them")
    ap.add_argument("--ablation", action="store_true",
                    help="instead: each kernel variant on the MLPerf models (instructions per "
                         "kernel family, arena with/without overlaps); writes "
                         "bench/ablation.json and prints a Markdown table")
    args = ap.parse_args(argv)
    if args.ablation:
        names = args.models.split(",")
        with tempfile.TemporaryDirectory(prefix="tinygen-ablation-") as d:
            rows = ablation(names, Path(d))
        # the other models' rows stay as measured before
        path = ROOT / "bench" / "ablation.json"
        kept = [r for r in (json.loads(path.read_text()) if path.exists() else [])
                if r["model"] not in names]
        rows = kept + rows
        path.write_text(json.dumps(rows, indent=2))
        print(ablation_markdown(rows))
        return 0 if all(r["bit_exact"] for r in rows) else 1
    if args.per_op:
        with tempfile.TemporaryDirectory(prefix="tinygen-per-op-") as d:
            rows = per_op(args.models.split(","), Path(d))
        (ROOT / "bench" / "per_op.json").write_text(json.dumps(rows, indent=2))
        (ROOT / "docs" / "roofline.md").write_text(per_op_markdown(rows))
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    committed = json.loads(out.read_text()) if out.exists() else []
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
    else:
        rows = run_all(args, out)
    moved = moved_markdown(committed, rows)
    if args.merge or args.report_only:
        # keep the earlier run's rows for model/board pairs not measured now
        rows = merged_rows(committed, rows)
    table = markdown(_with_tflm(rows))
    targets = targets_markdown(rows)
    targets19 = targets19_markdown(rows)
    roofline = roofline_markdown(_with_tflm(rows))
    cores = cores_markdown(rows)
    print(table)
    for extra in (targets, targets19, roofline, cores):
        if extra:
            print("\n" + extra)
    print("\nMoved against the committed figures:\n" + (moved or "nothing"))
    out.write_text(json.dumps(rows, indent=2))
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    target_part = (
        f"## Issue #5 targets ({TARGET_BOARD})\n\n"
        "Done when, for each MLPerf Tiny model: instructions <= 0.8x TFLM+CMSIS-NN, arena "
        "<= 0.75x the arena TFLM+CMSIS-NN uses, code flash <= 0.5x TFLM+CMSIS-NN's code flash, "
        "bit-exact. TFLM+CMSIS-NN is measured in the same run on the same .tflite (ratios in "
        "brackets).\n\n" + targets + "\n\n") if targets else ""
    target19_part = (
        f"## Issue #19 targets ({TARGET_BOARD})\n\n"
        f"Against TFLM+CMSIS-NN in the same run: instructions <= {TARGETS_19['cnn']}x on "
        f"every CNN and <= {TARGETS_19['lstm']}x on every LSTM, arena <= "
        f"{TARGETS_19['arena']}x the arena TFLM+CMSIS-NN uses and code flash <= "
        f"{TARGETS_19['code']}x for every model, bit-exact.\n\n" + targets19 + "\n\n"
    ) if targets19 else ""
    roofline_part = (
        "## Roofline: MACs per instruction\n\n"
        "Multiply-accumulates of the model's convolutions, fully connected layers and LSTM "
        "gate matmuls (tinygen.analyze.ops.macs) divided by the instructions of one "
        "inference, against the Cortex-M4/M7 ceiling of 2 MACs per instruction (SMLAD: two "
        "16-bit products and an accumulate). Everything outside the dot products "
        "(requantization, im2col, activations, softmax, LSTM gate arithmetic) counts "
        "against the rate. Per operator (MACs, bytes moved, instructions per MAC of each "
        "kernel call): [roofline.md](roofline.md), `python3 bench/run.py --per-op`.\n\n"
        + roofline + "\n\n") if roofline else ""
    cores_part = (
        "## Instructions per MAC per core (aot)\n\n"
        "The same .tflite on each core: guest instructions of the second of two inferences "
        "(QEMU -icount; rdinstret on qemu-esp32c3, ICOUNT on qemu-esp8266) per "
        "multiply-accumulate. The Cortex-M4 runs the dsp kernels (SMLAD), the ESP32-C3 "
        "(RV32IMC) and ESP8266 (LX106: no 32x32 multiply-accumulate, no divide) the portable "
        "C kernels; TFLM is not offered on the Espressif cores "
        "([espressif-cores.md](espressif-cores.md)). Per kernel family: a second, --profile "
        "build of the same model, the counter read around each operator, summed over the "
        "models that ran on every core (time outside the dot products, e.g. requantization "
        "and im2col, counts). Rows of other boards may come from an earlier run "
        "(`--merge`).\n\n" + cores + "\n\n") if cores else ""
    # bench/farm_scale.py's section (between its markers) is kept as it is
    old = Path(args.doc).read_text() if Path(args.doc).exists() else ""
    begin, stop = "<!-- farm_scale.py: begin -->", "<!-- farm_scale.py: end -->"
    kept = old[old.index(begin):old.index(stop) + len(stop)] + "\n" \
        if begin in old and stop in old else ""
    Path(args.doc).write_text(
        "# Benchmarks\n\nMade by `python3 bench/run.py` (raw figures: bench/results.json); "
        "how the figures came about: [performance.md](performance.md).\n\n"
        + target_part
        + target19_part
        + roofline_part
        + cores_part
        + ablation_part()
        + ("## Moved against the committed figures\n\n"
           "What this run measured differently from the bench/results.json it replaced (same "
           "model and board); a row re-run with `--merge` keeps the other rows' figures.\n\n"
           + (moved or "Nothing moved.") + "\n\n")
        + "## aot against TFLM, all models and emulated boards\n\n"
        + NOTES.format(flags=flags_markdown(rows)) + "\n"
        + failures_markdown(rows)
        + table + "\n"
        + ("\n" + stored_pruning_section() if stored_pruning_section() else "")
        + ("\n" + kept if kept else ""))
    return 0 if all(row_ok(r) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
