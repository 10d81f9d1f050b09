"""tinygen benchmark: the aot runtime on the MLPerf Tiny architectures and the examples.

    python3 bench/run.py [--boards qemu-cortex-m4,qemu-cortex-m7] [--models ...] [--quick]

For every model and emulated board it builds the aot firmware, runs it in QEMU
(-icount shift=0) and reads the guest instructions of the second of two
inferences over the serial protocol, exactly as the TFLM baseline in
docs/benchmarks.md was measured.  It also reads flash and RAM from the linked
ELF, compares the aot activation RAM with TFLM's arena (recording allocator),
and times the aot C code against the tflite_micro interpreter on the host in
one run.  Every run also checks the outputs against tflite_micro (0 LSB).

Writes bench/results.json and docs/benchmarks.md; prints the Markdown table.
Figures are deterministic (instruction counts, bytes) except the host time
ratio, which is measured in one run on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinygen.boards import get_board  # noqa: E402
from tinygen.build.elf_size import measure_elf  # noqa: E402
from tinygen.build.project import build  # noqa: E402
from tinygen.device.protocol import DeviceClient  # noqa: E402
from tinygen.device.qemu import QemuProcess  # noqa: E402
from tinygen.ir import parse_tflite  # noqa: E402
from tinygen.reference import TflmReference  # noqa: E402
from tinygen.verify import stacked_outputs  # noqa: E402

# TFLM measured on qemu-cortex-m4 (mps2-an386, -icount shift=0), second of two
# inferences, cortex-m4+fp -O2, MLPerf Tiny reference int8 models (issue #5).
# Targets (issue #5): instructions <= 0.8x the CMSIS-NN figure, activation RAM
# <= 0.75x the arena, code <= 0.5x TFLM's code.
TARGETS = {"instructions": 0.8, "arena": 0.75, "code": 0.5}
TFLM_BASELINE = {
    "ds_cnn_kws": {"ref": 43.1e6, "cmsis": 7.70e6, "arena": 22820, "code": 77.7 * 1024},
    "mobilenet_v1_vww": {"ref": 100.5e6, "cmsis": 24.1e6, "arena": 100708, "code": 81.4 * 1024},
    "resnet8_cifar": {"ref": 107.5e6, "cmsis": 29.9e6, "arena": 54996, "code": 78.8 * 1024},
    "fc_autoencoder_ad": {"ref": 1.95e6, "cmsis": 0.583e6, "arena": 2580, "code": 46.9 * 1024},
}

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
    from tinygen import zoo
    m = zoo.build(name)
    path = work / f"{name}.keras"
    m.save(path)
    calib = work / f"{name}_calib.npy"
    np.save(calib, zoo.calibration_data(m, 32))
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


def run_one(name: str, board_id: str, work: Path, host_runs: int) -> dict:
    model, calib, det = make_model(name, work)
    if not model.exists():
        return {"model": name, "board": board_id, "skipped": f"{model} not found"}
    out = work / f"{name}-{board_id}"
    t0 = time.monotonic()
    res = build(model, board_id, runtime="aot", calib=calib, out_dir=out, detection=det)
    ir = res.conversion.ir
    board = get_board(board_id)
    rng = np.random.default_rng(0)
    vec = [rng.integers(-128, 128, t.shape, dtype=np.int8) for t in ir.input_tensors()]
    with QemuProcess(board.qemu_machine, res.elf, qmp=True) as q, \
            DeviceClient.open(q.url) as dev:
        dev.info()
        first = dev.infer(vec)
        second = dev.infer(vec)
        # whole firmware: reset, protocol and both inferences (painted at reset)
        stack_used, _ = q.stack_usage()
    # the reference runs the same two inferences (stateful models carry their
    # state from the first into the second); SSD rows past num_detections are
    # undefined in TFLM and not compared
    ref = TflmReference(ir.tflite)
    expect = [ref.run(vec), ref.run(vec)]
    exact = all(np.array_equal(np.ascontiguousarray(d).view(np.uint8),
                               np.ascontiguousarray(r).view(np.uint8))
                for d, r in stacked_outputs(ir, [first.outputs, second.outputs], expect))
    tflm_arena = ref.arena_usage().total
    sizes = measure_elf(res.elf, res.weight_symbols)
    plan_arena = res.arena_bytes
    row = {
        "model": name, "board": board_id, "bit_exact": bool(exact),
        "instructions": int(second.counter), "instructions_first": int(first.counter),
        "flash_code": sizes.code, "flash_weights": sizes.weights,
        "ram_activations": plan_arena, "ram_total": sizes.ram, "stack_high_water": stack_used,
        "tflm_arena": tflm_arena, "activation_ratio_vs_tflm": plan_arena / tflm_arena,
        "build_and_run_s": round(time.monotonic() - t0, 1),
    }
    if name in TFLM_BASELINE and board_id == "qemu-cortex-m4":
        b = TFLM_BASELINE[name]
        row["vs_tflm_cmsis_instructions"] = row["instructions"] / b["cmsis"]
        row["vs_tflm_ref_instructions"] = row["instructions"] / b["ref"]
        row["vs_tflm_code"] = row["flash_code"] / b["code"]
        row["vs_tflm_baseline_arena"] = plan_arena / b["arena"]
    if host_runs and board_id == "qemu-cortex-m4":
        row["host"] = host_time_ratio(out, ir.tflite, host_runs)
    return row


def targets_markdown(rows: list[dict]) -> str:
    """Issue #5's done-criteria on qemu-cortex-m4, one line per MLPerf Tiny model."""
    lines = ["| model | instructions | target | activation RAM | target | code | target | "
             "bit-exact | met |", "|" + "---|" * 9]
    for r in rows:
        if r.get("board") != "qemu-cortex-m4" or r.get("model") not in TFLM_BASELINE \
                or "skipped" in r:
            continue
        b = TFLM_BASELINE[r["model"]]
        t_ins = TARGETS["instructions"] * b["cmsis"]
        t_ram = TARGETS["arena"] * b["arena"]
        t_code = TARGETS["code"] * b["code"]
        met = (r["instructions"] <= t_ins and r["ram_activations"] <= t_ram
               and r["flash_code"] <= t_code and r["bit_exact"])
        lines.append(
            f"| {r['model']} | {r['instructions'] / 1e6:.2f} M "
            f"({r['instructions'] / b['cmsis']:.2f}x) | <= {t_ins / 1e6:.2f} M | "
            f"{r['ram_activations']:,} B ({r['ram_activations'] / b['arena']:.2f}x) | "
            f"<= {int(t_ram):,} B | {r['flash_code'] / 1024:.1f} KB "
            f"({r['flash_code'] / b['code']:.2f}x) | <= {t_code / 1024:.1f} KB | "
            f"{'yes' if r['bit_exact'] else 'NO'} | {'yes' if met else 'NO'} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def markdown(rows: list[dict]) -> str:
    head = ("| model | board | instructions | vs TFLM+CMSIS-NN | code flash | vs TFLM code | "
            "weights | activation RAM | vs TFLM arena | RAM total | stack used | "
            "host time aot/TFLM | bit-exact |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['board']} | skipped: {r['skipped']} |" + " |" * 10)
            continue

        def ratio(key):
            return f"{r[key]:.2f}x" if key in r else "-"
        host = f"{r['host']['ratio']:.2f}" if "host" in r else "-"
        lines.append(
            f"| {r['model']} | {r['board']} | {r['instructions']:,} | "
            f"{ratio('vs_tflm_cmsis_instructions')} | {r['flash_code']:,} B | "
            f"{ratio('vs_tflm_code')} | {r['flash_weights']:,} B | {r['ram_activations']:,} B | "
            f"{r['activation_ratio_vs_tflm']:.2f}x | {r['ram_total']:,} B | "
            f"{r['stack_high_water']:,} B | {host} | "
            f"{'yes' if r['bit_exact'] else 'NO'} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# --ablation: what each technique of the dsp kernels and the planner is worth


ABLATION_VARIANTS = [
    ("portable C kernels", dict(core="portable")),
    ("dsp kernels, reference requantization", dict(core="cortex-m4f", fast_requant=False)),
    ("dsp kernels", dict(core="cortex-m4f")),
]


def _family(kernel: str) -> str:
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
            for call, t in zip(binary.result.calls, per_op):
                fam[_family(call.kernel)] = fam.get(_family(call.kernel), 0) + 40 * t
            _, no_overlap = aot.plan_aot(model, overlap=False,
                                         **{k: v for k, v in opts.items() if k == "core"})
            rows.append({"model": name, "variant": label, "instructions": 40 * ticks[-1],
                         "families": fam, "arena": binary.result.arena_bytes,
                         "arena_no_overlap": no_overlap.arena_bytes, "bit_exact": exact})
            print(f"ablation: {name}: {label}: {40 * ticks[-1]:,}", file=sys.stderr, flush=True)
    return rows


def ablation_markdown(rows: list[dict]) -> str:
    lines = ["| model | kernels | instructions | conv | depthwise | FC | other | arena "
             "(no overlap) | bit-exact |", "|" + "---|" * 9]
    for r in rows:
        f = r["families"]
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['instructions']:,} | "
            + " | ".join(f"{f.get(k, 0):,}" for k in ("conv", "depthwise", "fc", "other"))
            + f" | {r['arena']:,} B ({r['arena_no_overlap']:,} B) | "
            f"{'yes' if r['bit_exact'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boards", default="qemu-cortex-m4,qemu-cortex-m7")
    ap.add_argument("--models", default=",".join(list(TFLM_BASELINE) + list(EXAMPLES)))
    ap.add_argument("--host-runs", type=int, default=50,
                    help="inferences timed on the host per side (0: skip)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--ablation", action="store_true",
                    help="instead: each kernel variant on the MLPerf models (instructions per "
                         "kernel family, arena with/without overlaps); writes "
                         "bench/ablation.json and prints a Markdown table")
    args = ap.parse_args(argv)
    if args.ablation:
        names = [m for m in args.models.split(",") if m in TFLM_BASELINE]
        with tempfile.TemporaryDirectory(prefix="tinygen-ablation-") as d:
            rows = ablation(names, Path(d))
        (ROOT / "bench" / "ablation.json").write_text(json.dumps(rows, indent=2))
        print(ablation_markdown(rows))
        return 0 if all(r["bit_exact"] for r in rows) else 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinygen-bench-") as d:
        work = Path(d)
        for name in args.models.split(","):
            for board in args.boards.split(","):
                print(f"bench: {name} on {board}", file=sys.stderr, flush=True)
                rows.append(run_one(name, board, work, args.host_runs))
    table = markdown(rows)
    targets = targets_markdown(rows)
    print(table)
    if targets:
        print("\n" + targets)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    doc = Path(args.doc)
    target_part = (
        "## Issue #5 targets (qemu-cortex-m4)\n\n"
        "Done when, for each MLPerf Tiny model: instructions <= 0.8x TFLM+CMSIS-NN, activation "
        "RAM <= 0.75x TFLM's arena, code <= 0.5x TFLM's code, bit-exact. Ratios in brackets "
        "are against the baseline figures below.\n\n" + targets + "\n\n") if targets else ""
    doc.write_text(
        "# Benchmarks\n\nMade by `python3 bench/run.py` (raw figures: bench/results.json); "
        "how the figures came about: [performance.md](performance.md).\n\n"
        + target_part +
        "## All models and emulated boards\n\n"
        "Instructions: guest instructions of the second of two inferences on QEMU with "
        "`-icount shift=0`, read over the serial protocol (the same count as the TFLM "
        "baseline). TFLM+CMSIS-NN baseline: the figures "
        "in issue #5 for the MLPerf Tiny reference models on qemu-cortex-m4 (7.70 M, 24.1 M, "
        "29.9 M, 0.583 M instructions; arena 22,820 / 100,708 / 54,996 / 2,580 B; code 77.7 / "
        "81.4 / 78.8 / 46.9 KB). tinygen's models are the same architectures built in Keras "
        "with random weights (tinygen/zoo.py). Code flash is the firmware's flash minus the "
        "model data (weight arrays and the per-channel requantization tables, as TFLM's "
        "text-minus-model counts it), protocol and startup included. Activation RAM is the aot "
        "arena (activations and kernel scratch); `vs TFLM arena` divides it by TFLM's arena "
        "for the same .tflite measured with the recording allocator (64-bit host build). "
        "Bit-exact: both inferences equal TFLM's two on the same input, byte for byte (a "
        "stateful model carries its state into the second; SSD rows past num_detections, "
        "which TFLM leaves undefined, are not compared). Stack used: the high-water mark of "
        "the whole firmware (startup, serial protocol and both inferences), read from guest "
        "memory over QEMU's QMP socket after the run: the BSP paints the stack at reset and "
        "the bench finds the lowest overwritten word. Host time: aot C at -O2 vs "
        "tflite_micro invoke(), one run on a shared machine.\n\n"
        + table + "\n")
    return 0 if all(r.get("bit_exact", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
