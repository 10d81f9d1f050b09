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
        return {"flash_weights": manifest.get("weights_bytes"),
                "ram_activations": manifest.get("arena_bytes")}
    from ..project.elf_size import measure_elf
    s = measure_elf(elfs[0], manifest.get("weight_symbols", []))
    return {"flash_total": s.text, "flash_code": s.code, "flash_weights": s.weights,
            "ram_activations": s.arena or manifest.get("arena_bytes"),
            "ram_total": s.ram, "ram_other": s.ram - (s.arena or 0)}


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
        _calls, plan = plan_aot(ir)
        return plan_manifest(plan, ir)
    except Exception:  # a model the aot planner cannot take: no picture
        return None

