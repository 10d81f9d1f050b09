"""Which runtime runs which operator, decided in one place.

`inspect`, `build` and `verify` all read these answers (through `analyze`),
and the aot answer comes from the code that generates: every operator is put
through the aot lowering (`codegen.aot.lower_each`), so an operator whose
parameters the lowering refuses is unsupported here too, with the lowering's
reason, instead of being reported as supported and failing later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Model
from .tflm_resolver import TFLM_RESOLVER


@dataclass
class Support:
    runtime: str
    op_reasons: dict[int, str] = field(default_factory=dict)   # operator index -> why not
    model_reason: str | None = None        # a refusal that is not one operator's
    internal: set[int] = field(default_factory=set)   # op_reasons that are lowering bugs
    calls: list | None = None              # aot: the kernel calls, when every op lowered
    plan: object | None = None             # aot: their arena plan

    @property
    def ok(self) -> bool:
        return not self.op_reasons and self.model_reason is None

    def runs(self, op_index: int) -> bool:
        return op_index not in self.op_reasons


def tflm_support(model: Model) -> Support:
    s = Support("tflm")
    for op in model.operators:
        if op.opcode not in TFLM_RESOLVER:
            s.op_reasons[op.index] = "TFLM has no kernel for it"
    return s


def aot_support(model: Model, core: str | None = None,
                flash_budget: int | None = None) -> Support:
    from ..plan.aot import ARENA_ALIGN, SCRATCH_GROWTH, check_model_io, choose_scratch, lower_each
    from ..plan.lowering import LoweringError
    s = Support("aot")
    try:
        check_model_io(model)
    except LoweringError as exc:
        s.model_reason = str(exc)
    results = lower_each(model, core=core, flash_budget=flash_budget)
    for op, r in zip(model.operators, results):
        if isinstance(r, LoweringError):
            s.op_reasons[op.index] = r.detail
            if r.internal:
                s.internal.add(op.index)
    if s.ok:
        s.calls, s.plan = choose_scratch(model, results, ARENA_ALIGN, True, SCRATCH_GROWTH)
    return s


def runtime_support(model: Model, runtime: str, core: str | None = None,
                    flash_budget: int | None = None) -> Support:
    if runtime == "tflm":
        return tflm_support(model)
    if runtime == "aot":
        return aot_support(model, core, flash_budget)
    raise ValueError(runtime)


def unsupported_message(model: Model, support: Support,
                        alternative: Support | None = None,
                        alternative_offered: bool = True) -> str | None:
    """One line: the first operator the runtime does not run (its name, index
    and the reason, which names the parameter and its value), the other ops
    it does not run, and `--runtime tflm` when TFLM runs the model."""
    rt = support.runtime
    if support.ok:
        return None
    hint = ""
    if (alternative is not None and alternative.ok and alternative_offered
            and alternative.runtime != rt):
        hint = f"; TFLM runs it: use --runtime {alternative.runtime}"
    if support.model_reason and not support.op_reasons:
        return f"the {rt} runtime cannot run this model: {support.model_reason}{hint}"
    first = min(support.op_reasons)
    op = model.operators[first]
    others = [model.operators[i] for i in sorted(support.op_reasons) if i != first]
    tail = ""
    if others:
        shown = ", ".join(f"{o.opcode} #{o.index}" for o in others[:4])
        more = f" and {len(others) - 4} more" if len(others) > 4 else ""
        tail = f" (also: {shown}{more})"
    return (f"the {rt} runtime does not run {op.opcode} at operator #{op.index} of "
            f"{len(model.operators)}: {support.op_reasons[first]}{tail}{hint}")
