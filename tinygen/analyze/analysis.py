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
from .support import Support, aot_support, runtime_support, unsupported_message


@dataclass
class Analysis:
    model_signature: str
    model_bytes: int
    ops: list[OpReport]
    params: int
    weights_biases_bytes: int    # the constant tensors (weights, biases)
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


def aot_plan_summary(model: Model, core: str | None = None) -> tuple[int, int, int] | None:
    """(arena bytes, weights bytes, distinct kernels) of the aot runtime, or None
    when it does not run the model (analyze reports why)."""
    s = aot_support(model, core)
    if not s.ok:
        return None
    return _aot_summary(model, s)


def _aot_summary(model: Model, s: Support) -> tuple[int, int, int]:
    # What the kernels keep in flash, in their layouts (16-bit convolution
    # weights are twice the model's int8 ones), small tables included.
    from ..plan.staging import const_bytes
    flash = sum(const_bytes(c) for call in s.calls for c in call.constants)
    return s.plan.arena_bytes, max(flash, model.constant_bytes()), len({c.kernel for c in s.calls})


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
    core = board.core if board else None
    budget = int(board.app_flash_bytes) if board else None
    support = {rt: runtime_support(model, rt, core, budget) for rt in runtimes}
    ops = op_reports(model, runtimes, support=support)
    tflm_offered = board is None or "tflm" in board.runtimes
    unsupported = {rt: unsupported_message(model, support[rt], support.get("tflm"),
                                           tflm_offered) for rt in runtimes}
    tflm_arena = {"total": 0, "head": 0, "tail": 0}
    if unsupported.get("tflm") is None:
        try:
            usage = _isolated(lambda: _measure_tflm_arena(model))
        except TinygenError as exc:
            # TFLM's complaint is generic ("failed to allocate tensors");
            # the aot lowering's, when it has one, names the parameter.
            aot_msg = unsupported_message(model, support["aot"]) if "aot" in support else None
            if aot_msg:
                err = TinygenError(f"{exc}; {aot_msg}")
                err.exit_code = exc.exit_code
                raise err from None
            raise
        tflm_arena = {"total": usage[0], "head": usage[1], "tail": usage[2]}
    aot = _aot_summary(model, support["aot"]) if "aot" in runtimes and support["aot"].ok else None

    def tinfo(t):
        return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
                "scale": t.scale, "zero_point": t.zero_point}

    a = Analysis(
        model_signature=model.signature, model_bytes=len(model.tflite), ops=ops,
        params=sum(r.params for r in ops), weights_biases_bytes=model.constant_bytes(),
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
            else:
                need = fitmod.aot_need(model, aot[0], aot[1], aot[2])
                if board.weights_in_flash:
                    from ..plan.staging import flash_bytes, stage_bytes
                    need.ram_stage = stage_bytes(support["aot"].calls)
                    need.flash_staged = flash_bytes(support["aot"].calls)
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
    if runtime in board.runtimes:
        raise TinygenError(f"the {runtime} runtime was not analyzed for {board.id} "
                           "(a tinygen bug: please report it with the model)")
    raise TinygenError(f"board {board.id} does not offer the {runtime} runtime "
                       f"(it has: {', '.join(board.runtimes)})")
