"""The aot plan: every operator lowered to a kernel call with its parameters,
and the arena laid out for the calls' tensors and scratch.

This is what decides whether the aot runtime runs a model (analyze asks it,
op by op) and what codegen renders; it reads only the IR.
"""

from __future__ import annotations

from ..ir import Model
from .c_literals import C_TYPES, MAX_DIMS, c_float, c_type
from .fuse import fuse_streams
from .lowering import KernelCall, LoweringContext, LoweringError
from .memory import MemoryPlan, plan_memory
from .ops import lower

ARENA_ALIGN = 16


# memory_first: how much kernels' optional scratch may grow the arena over the
# plan in which every such kernel runs its scratch-free variant (e.g. the dsp
# convolutions' im2col columns, usually a few hundred bytes).  Never beyond
# that scratch-free plan without output/input overlap, so memory_first never
# needs more RAM than the planner did before overlaps existed.
SCRATCH_GROWTH = 0.125


# Cores whose instruction set has the DSP extension (SMLAD, SXTB16, ...).
DSP_CORES = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85")


# QEMU machines used directly (tests) rather than through a board id.
MACHINE_CORES = {"mps2-an386": "cortex-m4f", "mps2-an500": "cortex-m7",
                 "netduinoplus2": "cortex-m4f", "mps2-an385": "cortex-m3"}


def board_core(board: str) -> str | None:
    """The core of a board id or QEMU machine name; None for the host or an unknown name."""
    if board in MACHINE_CORES:
        return MACHINE_CORES[board]
    from ..boards import all_boards
    for b in all_boards():
        if board in (b.id, b.pio_board) or (b.qemu_machine and board == b.qemu_machine):
            return b.core
    return None


def dsp_core(core: str | None) -> bool:
    """True for cores with the DSP extension ("cortex-m4f", "cortex-m7", ...)."""
    if not core:
        return False
    c = core.lower()
    return any(c == d or (c.startswith(d) and not c[len(d):].isdigit()) for d in DSP_CORES)


def lowering_failure(op, exc: Exception) -> LoweringError:
    """exc as a LoweringError that says which operator and why, in one line.
    A lowering that trips over a model it did not anticipate (an exception
    other than LoweringError) is still a refusal, marked `internal` so the
    differential tests count it as a tinygen bug rather than a reason."""
    internal = not isinstance(exc, LoweringError)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in (f"{op.describe()}: ", f"{op.describe()} "):
        if detail.startswith(prefix):
            detail = detail[len(prefix):]
    if internal:
        detail = f"the aot lowering failed ({type(exc).__name__}: {detail})"
    err = LoweringError(f"{op.describe()}: {detail}")
    err.op_index, err.opcode, err.detail, err.internal = op.index, op.opcode, detail, internal
    return err


# Flash the firmware's code is assumed to take beside the weights when
# deciding whether 16-bit convolution and FC weights fit (aot code is 8-32 KB).
CODE_FLASH_ALLOWANCE = 64 * 1024


def wide_weights_fit(model: Model, flash_budget: int | None) -> bool:
    """Whether the dsp convolutions and FC layers may keep 16-bit weights: with every
    constant counted twice (an upper bound) the model still leaves the code
    its allowance in `flash_budget` bytes (the board's application flash;
    None: no limit).  Otherwise the convolutions read their int8 weights with
    the portable kernel and the FC layers with the int8 dsp one: slower, half
    the weight flash."""
    if flash_budget is None:
        return True
    return 2 * model.constant_bytes() + CODE_FLASH_ALLOWANCE <= flash_budget


def lower_each(model: Model, prefix: str = "op", core: str | None = None,
               fast_requant: bool = True,
               flash_budget: int | None = None) -> list[KernelCall | LoweringError]:
    """Every operator lowered on its own: its KernelCall, or the LoweringError
    that names it (op_index, opcode, detail).  The single place that decides
    whether the aot runtime runs an operator: `analyze` reports these results,
    generate_aot uses them."""
    ctx = LoweringContext(model, prefix=prefix, dsp=dsp_core(core), fast_requant=fast_requant,
                          wide_weights=wide_weights_fit(model, flash_budget))
    results: list[KernelCall | LoweringError] = []
    for op in model.operators:
        try:
            call = lower(op, ctx)
            # what generate_aot will need of the call's tensors, checked here
            # so that analysis and generation refuse the same operators
            for t in call.inputs + call.outputs:
                tt = model.tensors[t]
                c_type(tt.dtype, f"tensor '{tt.name}'")
            for t in call.outputs:
                if model.tensors[t].is_constant:
                    raise LoweringError(f"it writes the constant tensor '{model.tensors[t].name}'")
            results.append(call)
        except (LoweringError, ArithmeticError, IndexError, KeyError, TypeError,
                ValueError) as exc:
            results.append(lowering_failure(op, exc))
    return results


def check_model_io(model: Model) -> None:
    """What the aot model API (tg_model_api.h) can carry; LoweringError otherwise."""
    if model.num_subgraphs > 1:
        used = {op.opcode for op in model.operators}
        if used & {"CALL", "IF", "WHILE", "CALL_ONCE"}:
            raise LoweringError("models with control flow (several subgraphs) are not supported "
                                "by the aot runtime")
    tensors = model.tensors
    for role, idxs in (("input", model.inputs), ("output", model.outputs)):
        for i in idxs:
            t = tensors[i]
            if t.dtype not in C_TYPES or C_TYPES[t.dtype][1] is None:
                raise LoweringError(f"model {role} '{t.name}' has type {t.dtype}, which the "
                                    "model API does not carry")
            if len(t.shape) > MAX_DIMS:
                raise LoweringError(f"model {role} '{t.name}' has more than {MAX_DIMS} dimensions")
    for i in model.inputs:
        if tensors[i].is_constant:
            raise LoweringError(f"model input '{tensors[i].name}' is a constant")
    for i in list(model.inputs) + list(model.outputs):
        if tensors[i].quant:
            c_float(tensors[i].scale)


def lower_model(model: Model, prefix: str = "op", core: str | None = None,
                fast_requant: bool = True, flash_budget: int | None = None) -> list[KernelCall]:
    """One KernelCall per operator; LoweringError names the operator and its position."""
    check_model_io(model)
    results = lower_each(model, prefix=prefix, core=core, fast_requant=fast_requant,
                         flash_budget=flash_budget)
    for r in results:
        if isinstance(r, LoweringError):
            raise r
    return results


def plan_aot(model: Model, memory_first: bool = True, alignment: int = ARENA_ALIGN,
             core: str | None = None, scratch_growth: float = SCRATCH_GROWTH,
             overlap: bool = True, fast_requant: bool = True, fuse: bool = True,
             flash_budget: int | None = None) -> tuple[list[KernelCall], MemoryPlan]:
    """The kernel calls and arena plan generate_aot would use (no files written);
    raises LoweringError like generate_aot.  fuse=False: no operator fusion.
    flash_budget: the board's application flash (wide_weights_fit)."""
    calls = lower_model(model, core=core, fast_requant=fast_requant, flash_budget=flash_budget)
    return choose_scratch(model, calls, alignment, memory_first, scratch_growth, overlap, fuse)


def choose_scratch(model: Model, calls: list[KernelCall], alignment: int, memory_first: bool,
                   growth: float = SCRATCH_GROWTH, overlap: bool = True, fuse: bool = True
                   ) -> tuple[list[KernelCall], MemoryPlan]:
    """_choose_scratch, then the fusions of plan/fuse.py that shrink the arena."""
    calls, plan = _choose_scratch(model, calls, alignment, memory_first, growth, overlap)
    if fuse:
        calls, plan = fuse_streams(model, calls, plan, alignment, overlap)
    return calls, plan


def _choose_scratch(model: Model, calls: list[KernelCall], alignment: int, memory_first: bool,
                    growth: float = SCRATCH_GROWTH, overlap: bool = True
                    ) -> tuple[list[KernelCall], MemoryPlan]:
    """Kernels with scratch memory are faster; where a call offers a scratch-free
    fallback and the scratch would make the arena larger than the budget (the
    scratch-free plan plus `growth` of it, and at most that plan without
    output/input overlaps), use fallbacks, largest scratch first, until it
    fits (unless memory_first is False)."""
    plan = plan_memory(model, calls, alignment=alignment, overlap=overlap)
    optional = [i for i, c in enumerate(calls) if c.scratch_bytes > 0 and c.fallback is not None]
    if not memory_first or not optional:
        return calls, plan
    lean_calls = [c.fallback if i in optional else c for i, c in enumerate(calls)]
    lean = plan_memory(model, lean_calls, alignment=alignment, overlap=overlap)
    if plan.arena_bytes <= lean.arena_bytes:
        return calls, plan          # the scratch costs nothing (the budget is >= lean)
    plain = plan_memory(model, lean_calls, alignment=alignment, search_budget=16, overlap=False)
    budget = min(lean.arena_bytes + int(lean.arena_bytes * max(growth, 0.0)),
                 max(plain.arena_bytes, lean.arena_bytes))
    if plan.arena_bytes <= budget:
        return calls, plan
    for i in sorted(optional, key=lambda i: -calls[i].scratch_bytes):
        trial = list(calls)
        trial[i] = calls[i].fallback
        p = plan_memory(model, trial, alignment=alignment, search_budget=16, overlap=overlap)
        if p.arena_bytes < plan.arena_bytes:
            calls, plan = trial, p
        if plan.arena_bytes <= budget:
            break
    if plan.arena_bytes > budget or plan.arena_bytes >= lean.arena_bytes:
        return lean_calls, lean
    return calls, plan
