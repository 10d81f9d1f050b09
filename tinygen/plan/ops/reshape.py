"""RESHAPE, SQUEEZE and EXPAND_DIMS: the bytes stay as they are.

The call is marked `view`: the memory planner gives the output the input's
buffer and the backend then emits no code for it.  The copy kernel runs only
when the buffers cannot be shared (a constant input).
"""

from __future__ import annotations

from ...ir import Operator
from ..lowering import KernelCall, LoweringContext, LoweringError, lowers


@lowers("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def lower_reshape(op: Operator, ctx: LoweringContext) -> KernelCall:
    if not op.inputs or op.inputs[0] < 0:
        raise LoweringError(f"{op.describe()}: the input is missing")
    inp = ctx.model.tensors[op.inputs[0]]
    out = ctx.model.tensors[op.outputs[0]]
    if inp.dtype != out.dtype or inp.nbytes != out.nbytes:
        raise LoweringError(
            f"{op.describe()}: input {inp.dtype}{list(inp.shape)} and output "
            f"{out.dtype}{list(out.shape)} do not hold the same bytes")
    return KernelCall(
        kernel="tg_reshape", params_type="tg_reshape_params",
        params={"bytes": f"{inp.nbytes}u"},
        inputs=[op.inputs[0]], outputs=[op.outputs[0]],
        sources=["tg_reshape.c", "tg_reshape.h"], view=True,
        comment=f"{op.opcode} {list(inp.shape)} -> {list(out.shape)}")
