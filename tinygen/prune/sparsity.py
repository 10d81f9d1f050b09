"""What the int8 weights say about pruning: exact zeros per layer, and the
signature of a pruned model whose zeros did not survive quantization.

Both structured removal and the sparse kernels pay only for *exact* int8
zeros.  A model pruned in float and then fine-tuned without its masks, or
quantized through a path that nudges weights (fake quantization without the
masks, adding noise, a dequantize/requantize round trip with another
scale), keeps a crowd of weights at a few LSB around zero instead: it looks
pruned, it is as costly as a dense model, and nothing would say so.

The criterion, per weight tensor of at least MIN_WEIGHTS values (q is the
int8 weight minus its zero point):

  near = share of |q| <= 2           the weights that were driven to zero
  exact = share of q == 0
  shoulder = share of 3 <= |q| <= 8

  lost zeros  <=>  near >= 30 %  and  exact < near / 2  and  shoulder < near / 10

Why these bounds: per-channel int8 scales put each channel's largest weight
at 127, so a trained dense layer has a few percent (a Gaussian) to about
15 % (a Laplacian with its maximum at 6 b) of its weights within +-2 LSB,
never 30 %.  A correctly pruned layer has its pruned share exactly at 0, so
exact is nearly all of near.  What remains is a layer whose weights gather
around zero without being zero; `shoulder` separates a pruned layer (a
crowd at zero, then a gap: the survivors are large) from a smooth dense
distribution that is merely narrow (it fills 3..8 with at least a third of
what it puts in -2..2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Model

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
MIN_WEIGHTS = 128
NEAR_LSB = 2
NEAR_SHARE = 0.30


@dataclass
class LayerSparsity:
    op: str                 # "CONV_2D (operator #3)"
    weights: int
    exact: float            # share of int8 weights equal to the zero point
    near: float             # share within +-NEAR_LSB of it
    shoulder: float         # share at 3..8 LSB

    @property
    def lost_zeros(self) -> bool:
        return (self.weights >= MIN_WEIGHTS and self.near >= NEAR_SHARE
                and self.exact < self.near / 2 and self.shoulder < self.near / 10)

    def describe(self) -> str:
        return (f"{self.op}: {self.near:.0%} of its {self.weights:,} int8 weights are within "
                f"+-{NEAR_LSB} LSB of zero but only {self.exact:.0%} are exactly zero")


def weight_sparsity(model: Model) -> list[LayerSparsity]:
    out = []
    for op in model.operators:
        if op.opcode not in WEIGHTED or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        w = model.tensors[op.inputs[1]]
        if not w.is_constant or w.dtype != "int8" or w.quant is None or w.num_elements == 0:
            continue
        q = w.data.astype(np.int64)
        zp = w.quant.zero_point.astype(np.int64)
        if len(zp) > 1:
            shape = [1] * q.ndim
            shape[w.quant.axis] = len(zp)
            q = q - zp.reshape(shape)
        else:
            q = q - int(zp[0]) if len(zp) else q
        a = np.abs(q)
        out.append(LayerSparsity(op=op.describe(), weights=int(a.size),
                                 exact=float(np.mean(a == 0)),
                                 near=float(np.mean(a <= NEAR_LSB)),
                                 shoulder=float(np.mean((a > NEAR_LSB) & (a <= 8)))))
    return out


def lost_zero_layers(model: Model) -> list[LayerSparsity]:
    return [s for s in weight_sparsity(model) if s.lost_zeros]
