"""Latency, per-operator time, flash/RAM from the linked ELF, stack high-water
mark and the aot memory plan: the figures a report shows beside the verdict."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from ..errors import TinygenError
from ..ir import Model
from .results import BoardRun


def memory_figures(project_dir: Path | None) -> dict:
    if project_dir is None:
        return {}
    manifest_path = project_dir / "tinygen.json"
    if not manifest_path.exists():
        return {}
    manifest = json.loads(manifest_path.read_text())
    elfs = sorted(project_dir.glob(".pio/build/*/firmware.elf"))
    if not elfs:
        return {"model_flash": manifest.get("model_flash", manifest.get("weights_bytes")),
                "arena": manifest.get("arena_bytes")}
    from ..project.elf_size import measure_elf
    s = measure_elf(elfs[0], manifest.get("weight_symbols", []))
    # The names and their definitions: tinygen/sizes.py (docs/sizes.md).
    return {"model_flash": s.weights, "code_flash": s.code, "flash_total": s.text,
            "arena": s.arena or manifest.get("arena_bytes"), "ram_total": s.ram}


def add_stack_figure(runs: list[BoardRun], qemu, warn) -> None:
    """The firmware's stack high-water mark after the whole run, read from
    the emulated board's memory (its BSP paints the stack at reset)."""
    try:
        used, size = qemu.stack_usage()
    except (TinygenError, OSError, subprocess.SubprocessError) as exc:
        warn(f"stack high-water mark not read: {exc}")
        return
    for r in runs:
        if r.report is not None:
            r.report.memory["stack_used"] = used
            r.report.memory["stack_size"] = size


def latency_figures(counters: list[int], unit: str) -> dict:
    key = "instructions" if unit == "instructions" else "cycles"
    c = np.asarray(counters, dtype=np.int64)
    # Like MLPerf Tiny, quote a warm inference: the second one when there are two or more.
    steady = int(c[1]) if len(c) > 1 else int(c[0])
    return {key: steady, "unit": unit, "min": int(c.min()), "max": int(c.max()),
            "mean": float(c.mean()), "per_vector": [int(v) for v in c]}


def profile_figures(ir: Model, profiles: list[list[int]]) -> list[dict]:
    """Per operator: mean/min/max counter over the vectors and share of the sum."""
    if not profiles:
        return []
    p = np.asarray([row[: len(ir.operators)] for row in profiles], dtype=np.float64)
    means = p.mean(axis=0)
    total = float(means.sum()) or 1.0
    return [{"index": i, "op": op.opcode, "mean": float(means[i]), "min": int(p[:, i].min()),
             "max": int(p[:, i].max()), "share": float(means[i] / total)}
            for i, op in enumerate(ir.operators) if i < p.shape[1]]


def load_memory_plan(project_dir: Path | None, ir: Model, runtime: str) -> dict | None:
    """The aot arena plan: from the project's manifest, else planned again."""
    if project_dir is not None and (project_dir / "tinygen.json").exists():
        plan = json.loads((project_dir / "tinygen.json").read_text()).get("memory_plan")
        if plan:
            return plan
    if runtime != "aot":
        return None
    try:
        from ..plan.aot import plan_aot
        from ..project.build import plan_manifest
        calls, plan = plan_aot(ir)
        return plan_manifest(plan, ir, calls)
    except Exception:  # a model the aot planner cannot take: no picture
        return None



def model_macs(ir: Model) -> int:
    from ..analyze.ops import macs
    total = 0
    for op in ir.operators:
        try:
            total += macs(ir, op)
        except Exception:  # an operand the MAC count cannot read: counted as none
            continue
    return total


def time_and_energy(latency: dict, board, macs: int) -> dict:
    """Milliseconds at the board's clock, MACs per cycle (instruction) and the
    energy per inference from datasheet run current and voltage.

    Real boards count cycles, so their time is measured; emulated boards count
    guest instructions (QEMU -icount), so their time assumes one instruction per
    cycle: an estimate, and said to be one.  Energy is always an estimate (a
    datasheet current, not a measured one), MLPerf Tiny's µJ per inference."""
    unit = latency.get("unit")
    count = latency.get("cycles" if unit == "cycles" else "instructions")
    if not count or not board.clock_mhz:
        return {}
    measured = unit == "cycles"
    out: dict = {
        "ms": count / (board.clock_mhz * 1e3), "clock_mhz": board.clock_mhz,
        "ms_basis": (f"measured: cycle counter at {board.clock_mhz} MHz" if measured else
                     f"estimate: {count:,} instructions at {board.clock_mhz} MHz, one "
                     "instruction per cycle (QEMU counts instructions, not cycles)"),
    }
    if macs:
        out["macs"] = macs
        out["macs_per_cycle" if measured else "macs_per_instruction"] = macs / count
    for op in latency.get("per_op") or []:
        op["ms"] = op["mean"] / (board.clock_mhz * 1e3)
    if board.emulated:
        out["energy_basis"] = ("none: emulated board (QEMU has no power model; the board's real "
                               "counterpart, run with --port, gets a datasheet estimate)")
    elif board.run_current_ma <= 0:
        out["energy_basis"] = (f"unknown: boards/{board.id}.toml has no datasheet run current "
                               "([power])")
    else:
        out["energy_uj"] = board.run_current_ma * board.supply_v * out["ms"]  # mA x V x ms = µJ
        out["energy_basis"] = (f"estimate: {board.run_current_ma:g} mA x {board.supply_v:g} V x "
                               f"{out['ms']:.3f} ms at {board.clock_mhz} MHz; datasheet run "
                               f"current of the chip, not the board ({board.power_source})")
    return out
