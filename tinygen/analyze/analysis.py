"""The analyze stage as one call: what `tinygen inspect` shows and `build` checks."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np

from ..boards import Board
from ..errors import TinygenError
from ..ir import Model
from . import fit as fitmod
from .ops import OpReport, op_reports


@dataclass
class Analysis:
    model_signature: str
    model_bytes: int
    ops: list[OpReport]
    params: int
    weights_bytes: int
    macs: int
    tflm_arena: dict                      # measured: total, head, tail
    tflm_arena_planned: int               # what a tflm build reserves (measured + margin)
    aot_arena: int | None                 # tinygen's planner, when the aot runtime supports the model
    inputs: list[dict]
    outputs: list[dict]
    unsupported: dict[str, str | None] = field(default_factory=dict)   # runtime -> message
    fits: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        return d


def zero_inputs(model: Model) -> list[np.ndarray]:
    return [np.full(t.shape, t.zero_point, dtype=t.np_dtype) for t in model.input_tensors()]


def unsupported_message(model: Model, runtime: str, ops: list[OpReport]) -> str | None:
    missing = [r for r in ops if not r.supported.get(runtime, True)]
    if not missing:
        return None
    first = missing[0]
    others = sorted({r.opcode for r in missing[1:]} - {first.opcode})
    tail = f" (also: {', '.join(others)})" if others else ""
    return (f"the {runtime} runtime does not support {first.opcode} at operator "
            f"#{first.index} of {len(model.operators)}{tail}")


def aot_plan_summary(model: Model, core: str | None = None) -> tuple[int, int, int] | None:
    """(arena bytes, weights bytes, distinct kernels) of the aot runtime, or None
    when it cannot lower the model (reported separately as unsupported)."""
    from ..codegen.aot import plan_aot
    from ..codegen.aot_lowering import LoweringError
    try:
        calls, plan = plan_aot(model, core=core)
    except LoweringError:
        return None
    # The model's constant tensors are what goes to flash (plus small tables).
    return plan.arena_bytes, model.constant_bytes(), len({c.kernel for c in calls})


def _measure_tflm_arena(model: Model) -> tuple[int, int, int]:
    from ..reference import TflmReference
    ref = TflmReference(model.tflite)
    ref.run(zero_inputs(model))
    usage = ref.arena_usage()
    return usage.total, usage.head, usage.tail


def _isolated(fn):
    """fn() in a forked child process, so that a crash of native code (the
    TFLM interpreter is C++ and trusts the model: a damaged .tflite whose
    shapes contradict each other makes it read out of bounds) is a one-line
    error instead of the end of tinygen.  TinygenErrors come back as they
    are; fn's result must be JSON-serialisable."""
    if not hasattr(os, "fork"):
        return fn()
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: report, never return
        try:
            os.close(read_end)
            try:
                reply = {"value": fn()}
            except TinygenError as exc:
                reply = {"error": str(exc), "exit_code": exc.exit_code}
            except BaseException as exc:  # noqa: BLE001 - re-raised in the parent
                reply = {"bug": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
            with os.fdopen(write_end, "w") as f:
                json.dump(reply, f)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or not text:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        why = f"signal {signal.Signals(sig).name}" if sig else f"exit status {os.WEXITSTATUS(status)}"
        raise TinygenError(f"the TFLM interpreter crashed on this model ({why}): the .tflite is "
                           "malformed (tensor shapes or operator data that contradict each other)")
    reply = json.loads(text)
    if "error" in reply:
        exc = TinygenError(reply["error"])
        exc.exit_code = reply["exit_code"]
        raise exc
    if "bug" in reply:
        raise RuntimeError(f"measuring the TFLM arena failed in the child process: {reply['bug']}")
    return reply["value"]


def analyze(model: Model, board: Board | None = None,
            runtimes: tuple[str, ...] = ("tflm", "aot")) -> Analysis:
    ops = op_reports(model, runtimes)
    unsupported = {rt: unsupported_message(model, rt, ops) for rt in runtimes}
    tflm_arena = {"total": 0, "head": 0, "tail": 0}
    if unsupported.get("tflm") is None:
        usage = _isolated(lambda: _measure_tflm_arena(model))
        tflm_arena = {"total": usage[0], "head": usage[1], "tail": usage[2]}
    aot = aot_plan_summary(model, board.core if board else None) if "aot" in runtimes and unsupported.get("aot") is None else None

    def tinfo(t):
        return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
                "scale": t.scale, "zero_point": t.zero_point}

    a = Analysis(
        model_signature=model.signature, model_bytes=len(model.tflite), ops=ops,
        params=sum(r.params for r in ops), weights_bytes=model.constant_bytes(),
        macs=sum(r.macs for r in ops), tflm_arena=tflm_arena,
        tflm_arena_planned=fitmod.tflm_arena_with_margin(tflm_arena["total"]) if tflm_arena["total"] else 0,
        aot_arena=aot[0] if aot else None,
        inputs=[tinfo(t) for t in model.input_tensors()],
        outputs=[tinfo(t) for t in model.output_tensors()],
        unsupported=unsupported)
    if board is not None:
        for rt in board.runtimes:
            if rt not in runtimes:
                continue
            if unsupported.get(rt):
                a.fits.append({"board": board.id, "runtime": rt, "fits": False,
                               "problems": [unsupported[rt]]})
                continue
            if rt == "tflm":
                need = fitmod.tflm_need(model, tflm_arena["total"])
            elif aot is not None:
                need = fitmod.aot_need(model, aot[0], aot[1], aot[2])
            else:
                continue
            a.fits.append(fitmod.fit(board, need).as_dict())
    return a


def require_fit(analysis: Analysis, board: Board, runtime: str) -> dict:
    """Raise a one-line error unless the model runs and fits with this runtime."""
    msg = analysis.unsupported.get(runtime)
    if msg:
        raise TinygenError(f"cannot build for {board.id}: {msg}")
    for f in analysis.fits:
        if f["runtime"] == runtime:
            if not f["fits"]:
                raise TinygenError(f"model does not fit {board.id} ({runtime}): "
                                   + "; ".join(f["problems"]))
            return f
    raise TinygenError(f"board {board.id} does not offer the {runtime} runtime "
                       f"(it has: {', '.join(board.runtimes)})")
