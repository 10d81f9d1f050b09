"""Sparse weights for FULLY_CONNECTED and 1x1 CONV_2D, chosen per layer.

An unstructurally pruned layer keeps its shape; what changes is how many of
its int8 weights are exactly zero.  tg_sparse_mm_s8 stores only the non-zero
ones as compressed rows (per output channel a start offset, then a column
index and a value per weight) and multiplies only those.

The cost model puts both variants side by side for each layer:

  * flash: the bytes of each variant's constant arrays, exactly as the
    backend will write them (weights, indices, bias and requantization
    tables);
  * instructions: INSTRUCTIONS_PER_NONZERO per stored weight and pair of
    input vectors (they share one pass over the weights) plus
    SPARSE_PER_OUTPUT per output value for the sparse kernel, against
    DENSE_PER_MAC[kernel] per multiply-accumulate for the dense kernel that
    would run instead.

The sparse kernel is used when it is no larger and no slower, so it never
trades one for the other behind the user's back.  The constants are guest
instructions measured under QEMU -icount (below).
"""

from __future__ import annotations

import numpy as np

from ...ir import Operator
from ..lowering import ConstArray, KernelCall, LoweringContext

# Guest instructions (QEMU -icount, mps2-an386, Cortex-M4F, -O2), measured on
# kws_cnn's 1x1 convolutions (125 pixels, 48 -> 48) pruned to 90 % and 75 %:
# the sparse kernel took 260,840 and 455,440 instructions for 231 and 576
# stored weights, i.e. 9.0 per stored weight and pair of pixels plus 22 per
# output value; the dense dsp kernel 398,200 (1.38 per multiply-accumulate,
# its requantization included; 328,160 = 1.14 since its weights are 16-bit
# lanes, docs/performance.md section 16) and the dense FULLY_CONNECTED
# 48 -> 12 dsp kernel 1,120 (1.94; 1.16 with 16-bit weights, fc_autoencoder_ad's
# layers in the bench's ablation, larger layers: the lower figure errs towards
# dense).  The portable dense kernels (cores
# without DSP) were not measured: they get the int8 dsp figure, 1.38, which
# is lower than theirs, so the model can only err towards dense.
INSTRUCTIONS_PER_NONZERO = 9.0
SPARSE_PER_OUTPUT = 22.0
DENSE_PER_MAC = {
    "tg_conv2d_dsp_s8": 1.14,
    "tg_fully_connected_dsp_s8": 1.94,
    "tg_fully_connected_dsp_w16_s8": 1.16,
}
DENSE_DEFAULT = 1.38

# "auto" (the cost model), "always" or "never": tests and the benchmark pin it
POLICY = "auto"


def flash_bytes(call: KernelCall) -> int:
    return sum(int(np.asarray(c.values).nbytes) for c in call.constants)


def dense_instructions(call: KernelCall, rows: int, units: int, depth: int) -> float:
    return DENSE_PER_MAC.get(call.kernel, DENSE_DEFAULT) * rows * units * depth


def sparse_instructions(rows: int, units: int, nonzero: int) -> float:
    return (INSTRUCTIONS_PER_NONZERO * -(-rows // 2) * nonzero
            + SPARSE_PER_OUTPUT * rows * units)


def pairs_overlap(rows: int, depth: int, units: int) -> int:
    """How far after its input the output may start (KernelCall.overlap): both
    output rows of a pair of input vectors are written while the pair is
    read, and after every earlier pair's."""
    gaps = [r * depth - (r + min(2, rows - r)) * units for r in range(0, rows, 2)]
    return int(min(gaps)) if gaps else 0


def maybe_sparse(op: Operator, ctx: LoweringContext, dense: KernelCall, w_rows: np.ndarray,
                 fast: bool, records: np.ndarray, rows: int, act_min: int,
                 act_max: int) -> KernelCall:
    """`dense`, or the sparse variant when the cost model (or POLICY) says so."""
    units, depth = (int(d) for d in w_rows.shape)
    nonzero = int(np.count_nonzero(w_rows))
    if POLICY == "never" or nonzero >= (1 << 16) or rows < 1:
        return dense
    sparse = sparse_call(op, ctx, dense, w_rows, fast, records, rows, act_min, act_max)
    fl_d, fl_s = flash_bytes(dense), flash_bytes(sparse)
    in_d = dense_instructions(dense, rows, units, depth)
    in_s = sparse_instructions(rows, units, nonzero)
    share = 1.0 - nonzero / max(1, units * depth)
    note = (f" [{share:.0%} zero: sparse {fl_s:,} B ~{in_s:,.0f} instr, "
            f"dense {fl_d:,} B ~{in_d:,.0f} instr]")
    if POLICY == "always" or (fl_s <= fl_d and in_s <= in_d):
        sparse.comment += note
        return sparse
    dense.comment += note if share >= 0.25 else ""
    return dense


def sparse_call(op: Operator, ctx: LoweringContext, dense: KernelCall, w_rows: np.ndarray,
                fast: bool, records: np.ndarray, rows: int, act_min: int,
                act_max: int) -> KernelCall:
    """records: [units][4] requantization records (tg_dsp.h) with kbias first."""
    units, depth = (int(d) for d in w_rows.shape)
    mask = w_rows != 0
    starts = np.zeros(units + 1, np.int64)
    starts[1:] = np.cumsum(mask.sum(axis=1))
    cols = np.nonzero(mask)[1]
    vals = w_rows[mask].astype(np.int8)
    narrow = depth <= 256
    consts = [
        ConstArray(ctx.name(op, "sp_start"), "uint16_t", starts.astype(np.uint16), align=4),
        ConstArray(ctx.name(op, "sp_col"), "uint8_t" if narrow else "uint16_t",
                   cols.astype(np.uint8 if narrow else np.uint16), align=4),
        ConstArray(ctx.name(op, "sp_val"), "int8_t", vals, align=4),
        ConstArray(ctx.name(op, "rq"), "int32_t", records.reshape(-1).astype(np.int32),
                   align=4, is_weight=False),
    ]
    params = {
        "rows": str(rows), "depth": str(depth), "units": str(units),
        "fast": "1" if fast else "0", "act_full": "1" if act_min <= -128 and act_max >= 127
        else "0", "act_min": str(act_min), "act_max": str(act_max),
        "row_start": ctx.name(op, "sp_start"),
        "col8": ctx.name(op, "sp_col") if narrow else "NULL",
        "col16": "NULL" if narrow else ctx.name(op, "sp_col"),
        "val": ctx.name(op, "sp_val"), "rq": ctx.name(op, "rq"),
    }
    base = dense.comment.split(" [")[0]
    return KernelCall(
        kernel="tg_sparse_mm_s8", params_type="tg_sparse_mm_params", params=params,
        inputs=list(dense.inputs), outputs=list(dense.outputs),
        sources=["tg_sparse_mm.c", "tg_sparse_mm.h"], constants=consts,
        comment=base + " [sparse]", overlap=pairs_overlap(rows, depth, units))
