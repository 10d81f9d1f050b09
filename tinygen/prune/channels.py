"""Structured pruning made real: channels that cannot change the model's
outputs are removed from the int8 .tflite before either runtime sees it.

A channel of an activation tensor can go when every reader can do without
it and its writer can stop producing it:

  * a CONV_2D or FULLY_CONNECTED ("mixer") writes each output channel with
    its own filter row, so it can drop any of them;
  * a DEPTHWISE_CONV_2D with depth multiplier 1, the pooling ops and a
    spatial MEAN (global average pooling) carry
    channel c of their input to channel c of their output ("tied"): the
    channel goes from both tensors or from neither;
  * a mixer that reads the channel can do without it when its weights on
    that channel are all zero, or when the channel holds the same int8 value
    k at every position for every input: then it adds (k - zero_point) *
    sum(weights) to the accumulator, a constant that moves into its bias.

A channel is constant when its writer adds nothing that varies: a mixer or
depthwise output channel whose weights on varying inputs are all zero holds
requantize(bias + constant contributions), computed here with TFLM's
integer arithmetic.  Padding breaks that for a spatial convolution (a tap
in the padding reads real zero, not k), so a constant input channel of a
window that can reach the padding is foldable only when k equals the input
zero point (both then contribute 0).

Every step is exact integer arithmetic, so the smaller model computes the
same int8 outputs as the original, bit for bit; the tests check that
against the tflite_micro interpreter running the original.  The model's
inputs and outputs never change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..convert import parse_checked
from ..ir import Model, Operator, Tensor
from ..plan.fixedpoint import divide_by_pot, high_mul
from ..plan.lowering import LoweringError, activation_range_int8, quantize_multiplier
from ..plan.ops.conv import conv_window, per_channel_multipliers

MIXERS = ("CONV_2D", "FULLY_CONNECTED")
POOLS = ("AVERAGE_POOL_2D", "MAX_POOL_2D")


@dataclass
class ChannelRemoval:
    """What the pass did: removed channels per activation tensor (named by its writer)."""
    removed: dict[str, list[int]] = field(default_factory=dict)
    channels_before: int = 0          # activation channels the pass could consider
    weights_before: int = 0           # bytes of constant tensors
    weights_after: int = 0

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.removed.values())

    def summary(self) -> str:
        if not self.removed:
            return "no removable channels"
        layers = ", ".join(f"{name}: {len(cs)}" for name, cs in self.removed.items())
        return (f"removed {self.count} channels ({layers}); constants "
                f"{self.weights_before:,} -> {self.weights_after:,} B")


# ---------------------------------------------------------------------------
# TFLM's integer requantization (MultiplyByQuantizedMultiplier, double rounding)


def requantize(acc: int, multiplier: int, shift: int) -> int:
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return divide_by_pot(high_mul(acc * (1 << left), multiplier), right)


# ---------------------------------------------------------------------------
# what each operator is, for this pass


def _weights_zero_point_ok(t: Tensor | None) -> bool:
    return t is not None and t.quant is not None and not np.any(t.quant.zero_point)


def _is_mixer(model: Model, op: Operator) -> bool:
    if op.opcode not in MIXERS or len(op.inputs) < 2 or op.inputs[1] < 0:
        return False
    w = model.tensors[op.inputs[1]]
    inp = model.tensors[op.inputs[0]]
    if not (w.is_constant and w.dtype == "int8" and _weights_zero_point_ok(w)
            and inp.dtype == "int8" and model.tensors[op.outputs[0]].dtype == "int8"):
        return False
    if w.quant.per_channel and w.quant.axis != 0:
        return False
    if op.opcode == "CONV_2D":
        return len(w.shape) == 4 and len(inp.shape) == 4 and int(w.shape[3]) == int(inp.shape[3])
    return (len(w.shape) == 2 and op.options.get("weights_format", 0) in (0, "DEFAULT")
            and int(w.shape[1]) % max(1, int(inp.shape[-1])) == 0)


def _is_tied(model: Model, op: Operator) -> bool:
    inp = model.tensors[op.inputs[0]]
    out = model.tensors[op.outputs[0]]
    if inp.dtype != "int8" or out.dtype != "int8" or len(inp.shape) != 4:
        return False
    if op.opcode in POOLS:
        return (inp.quant is not None and out.quant is not None
                and float(inp.scale) == float(out.scale) and inp.zero_point == out.zero_point)
    if op.opcode == "MEAN" and len(op.inputs) >= 2 and op.inputs[1] >= 0:
        axes = model.tensors[op.inputs[1]].data
        return (axes is not None and sorted(int(a) % 4 for a in np.ravel(axes)) == [1, 2]
                and out.shape and int(out.shape[-1]) == int(inp.shape[3])
                and inp.quant is not None and out.quant is not None)
    if op.opcode == "DEPTHWISE_CONV_2D" and len(op.inputs) >= 2:
        w = model.tensors[op.inputs[1]]
        return (w.is_constant and w.dtype == "int8" and _weights_zero_point_ok(w)
                and len(w.shape) == 4 and int(w.shape[3]) == int(inp.shape[3])
                and int(out.shape[3]) == int(inp.shape[3])
                and (not w.quant.per_channel or w.quant.axis == 3))
    return False


def _window_stays_inside(model: Model, op: Operator, fh: int, fw: int) -> bool:
    """No tap of any output pixel reads the padding."""
    inp = model.tensors[op.inputs[0]]
    out = model.tensors[op.outputs[0]]
    win = conv_window(op, inp.shape, fh, fw, out.shape)
    _, ih, iw, _ = (int(d) for d in inp.shape)
    _, oh, ow, _ = (int(d) for d in out.shape)
    return (win["pad_h"] == 0 and win["pad_w"] == 0
            and (oh - 1) * win["stride_h"] + (fh - 1) * win["dilation_h"] < ih
            and (ow - 1) * win["stride_w"] + (fw - 1) * win["dilation_w"] < iw)


def _requant_constants(model: Model, op: Operator, channels: int):
    """(multipliers, shifts, act_min, act_max, output zero point) as TFLM's Prepare."""
    inp = model.tensors[op.inputs[0]]
    w = model.tensors[op.inputs[1]]
    out = model.tensors[op.outputs[0]]
    if op.opcode == "FULLY_CONNECTED" and not w.quant.per_channel:
        product = float(np.float32(inp.scale) * np.float32(w.scale))
        m, s = quantize_multiplier(product / float(np.float32(out.scale)))
        mult, shift = np.full(channels, m), np.full(channels, s)
    else:
        mult, shift = per_channel_multipliers(op, inp, w, out, channels)
    act = op.options.get("fused_activation_function", "NONE")
    lo, hi = activation_range_int8(act, out.scale, out.zero_point)
    return mult, shift, lo, hi, out.zero_point


def _tap_sums(model: Model, op: Operator) -> np.ndarray:
    """[out channel][input channel] sum of the weights over the taps (mixers)."""
    inp = model.tensors[op.inputs[0]]
    w = model.tensors[op.inputs[1]].data.astype(np.int64)
    if op.opcode == "CONV_2D":
        return w.sum(axis=(1, 2))
    c = int(inp.shape[-1])
    return w.reshape(w.shape[0], -1, c).sum(axis=1)


def _bias(model: Model, op: Operator, channels: int) -> np.ndarray:
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = model.tensors[op.inputs[2]]
        if b.data is None or b.dtype != "int32":
            raise LoweringError("bias")
        return b.data.reshape(-1).astype(np.int64)
    return np.zeros(channels, np.int64)


# ---------------------------------------------------------------------------
# the analysis


def constant_channels(model: Model) -> dict[int, dict[int, int]]:
    """tensor index -> {channel: int8 value it holds for every input and position}."""
    const: dict[int, dict[int, int]] = {}
    for op in model.operators:
        try:
            found = _op_constants(model, op, const)
        except (LoweringError, ValueError, KeyError, IndexError):
            found = {}
        if found:
            const[op.outputs[0]] = found
    return const


def _op_constants(model: Model, op: Operator, const) -> dict[int, int]:
    if op.opcode in POOLS and _is_tied(model, op):
        got = const.get(op.inputs[0], {})
        if not got:
            return {}
        act = op.options.get("fused_activation_function", "NONE")
        out = model.tensors[op.outputs[0]]
        lo, hi = activation_range_int8(act, out.scale, out.zero_point)
        return {c: min(max(k, lo), hi) for c, k in got.items()}
    if op.opcode == "MEAN" and _is_tied(model, op):
        # the mean of a channel at the input's zero point is the output's zero
        # point whatever the scales (TFLM sums x - zero_point: 0); other
        # constants are left to be computed, not assumed
        inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
        return {c: out.zero_point for c, k in const.get(op.inputs[0], {}).items()
                if k == inp.zero_point}
    depthwise = op.opcode == "DEPTHWISE_CONV_2D" and _is_tied(model, op)
    if not (depthwise or _is_mixer(model, op)):
        return {}
    inp = model.tensors[op.inputs[0]]
    w = model.tensors[op.inputs[1]]
    zp_in = inp.zero_point
    known = const.get(op.inputs[0], {})
    if depthwise:
        fh, fw = int(w.shape[1]), int(w.shape[2])
        channels = int(w.shape[3])
        sums = np.zeros((channels, channels), np.int64)
        sums[np.arange(channels), np.arange(channels)] = w.data.astype(np.int64).sum(axis=(0, 1, 2))
        nonzero = np.zeros((channels, channels), bool)
        nonzero[np.arange(channels), np.arange(channels)] = np.any(w.data != 0, axis=(0, 1, 2))
    else:
        channels = int(w.shape[0])
        sums = _tap_sums(model, op)
        if op.opcode == "CONV_2D":
            fh, fw = int(w.shape[1]), int(w.shape[2])
            nonzero = np.any(w.data != 0, axis=(1, 2))
        else:
            fh = fw = 1
            c = int(inp.shape[-1])
            nonzero = np.any(w.data.reshape(channels, -1, c) != 0, axis=1)
    spatial = op.opcode != "FULLY_CONNECTED"
    inside = not spatial or _window_stays_inside(model, op, fh, fw)
    bias = _bias(model, op, channels)
    mult, shift, lo, hi, zp_out = _requant_constants(model, op, channels)
    found = {}
    for o in range(channels):
        reads = np.flatnonzero(nonzero[o])
        ok = all(int(c) in known and (inside or known[int(c)] == zp_in) for c in reads)
        if not ok:
            continue
        acc = int(bias[o]) + sum((known[int(c)] - zp_in) * int(sums[o, c]) for c in reads)
        acc = ((acc + (1 << 31)) % (1 << 32)) - (1 << 31)
        q = requantize(acc, int(mult[o]), int(shift[o])) + zp_out
        found[o] = min(max(q, lo), hi)
    return found


class _Groups:
    """Union-find over (tensor, channel): the channels tied ops carry along."""

    def __init__(self):
        self.parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def removable_channels(model: Model) -> dict[int, set[int]]:
    """tensor index -> channels the rewrite may drop (never all of a tensor's)."""
    if model.num_subgraphs != 1:
        return {}
    const = constant_channels(model)
    producer: dict[int, Operator] = {}
    readers: dict[int, list[Operator]] = {}
    for op in model.operators:
        for t in op.outputs:
            producer[t] = op
        for t in op.inputs:
            if t >= 0:
                readers.setdefault(t, []).append(op)
    fixed = set(model.inputs) | set(model.outputs)
    kinds: dict[int, str] = {}
    for op in model.operators:
        try:
            kinds[op.index] = ("mixer" if _is_mixer(model, op) else
                               "tied" if _is_tied(model, op) else "other")
        except (LoweringError, ValueError, KeyError, IndexError):
            kinds[op.index] = "other"

    groups = _Groups()
    candidates = []
    for t, tt in enumerate(model.tensors):
        if tt.is_constant or tt.dtype != "int8" or not tt.shape or t in fixed:
            continue
        if t not in producer or tt.is_variable:
            continue
        channels = int(tt.shape[-1])
        for c in range(channels):
            candidates.append((t, c))
            groups.find((t, c))
    for op in model.operators:
        if kinds[op.index] == "tied":
            for c in range(int(model.tensors[op.outputs[0]].shape[-1])):
                groups.union((op.inputs[0], c), (op.outputs[0], c))

    ok: dict[tuple[int, int], bool] = {}
    for t, c in candidates:
        ok[(t, c)] = _channel_ok(model, t, c, producer, readers, kinds, const, fixed)
    members: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for node in groups.parent:
        members.setdefault(groups.find(node), []).append(node)
    result: dict[int, set[int]] = {}
    for nodes in members.values():
        if all(ok.get(n, False) for n in nodes):
            for t, c in nodes:
                result.setdefault(t, set()).add(c)
    # a tensor keeps at least one channel (its group keeps it everywhere)
    for t in list(result):
        if t in result and len(result[t]) >= int(model.tensors[t].shape[-1]):
            keep = min(result[t])
            root = groups.find((t, keep))
            for t2, c2 in members[root]:
                result.get(t2, set()).discard(c2)
    return {t: cs for t, cs in result.items() if cs}


def _channel_ok(model, t, c, producer, readers, kinds, const, fixed) -> bool:
    if t in fixed or t not in producer or kinds[producer[t].index] == "other":
        return False
    for op in readers.get(t, []):
        kind = kinds[op.index]
        if kind == "tied":
            if op.inputs[0] != t:
                return False
            continue
        if kind != "mixer" or op.inputs[0] != t or t in op.inputs[1:]:
            return False
        w = model.tensors[op.inputs[1]].data
        if op.opcode == "CONV_2D":
            reads = np.any(w[..., c] != 0)
        else:
            cc = int(model.tensors[t].shape[-1])
            reads = np.any(w.reshape(w.shape[0], -1, cc)[..., c] != 0)
        if not reads:
            continue
        k = const.get(t, {}).get(c)
        if k is None:
            return False
        if op.opcode == "CONV_2D" and k != model.tensors[t].zero_point:
            fh, fw = int(w.shape[1]), int(w.shape[2])
            if not _window_stays_inside(model, op, fh, fw):
                return False
    return True


# ---------------------------------------------------------------------------
# the rewrite


def remove_channels(model: Model) -> tuple[Model, ChannelRemoval]:
    """The model without its removable channels (itself when there are none)."""
    report = ChannelRemoval(weights_before=model.constant_bytes())
    report.weights_after = report.weights_before
    try:
        drop = removable_channels(model)
    except Exception:  # an operator this analysis did not foresee: keep every channel
        drop = {}
    if not drop:
        return model, report
    tflite = _rewrite(model, drop)
    new = parse_checked(tflite, "the model without its removed channels")
    writer = {op.outputs[0]: op for op in model.operators}
    report.removed = {writer[t].describe(): sorted(cs) for t, cs in sorted(drop.items())}
    report.weights_after = new.constant_bytes()
    return new, report


def _rewrite(model: Model, drop: dict[int, set[int]]) -> bytes:
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    m = fb.ModelT.InitFromPackedBuf(bytearray(model.tflite), 0)
    sg = m.subgraphs[0]
    const = constant_channels(model)
    uses: dict[int, int] = {}
    for op in model.operators:
        for t in op.inputs:
            if t >= 0:
                uses[t] = uses.get(t, 0) + 1

    def keep_mask(t: int) -> np.ndarray:
        mask = np.ones(int(model.tensors[t].shape[-1]), bool)
        mask[sorted(drop.get(t, ()))] = False
        return mask

    def set_constant(op_index: int, pos: int, values: np.ndarray, like: int,
                     scale=None, zero_point=None):
        """Give operator input `pos` new contents (a fresh tensor if it was shared)."""
        opt = sg.operators[op_index]
        old = opt.inputs[pos] if pos < len(opt.inputs) else -1
        if old >= 0 and uses.get(old, 0) == 1:
            tt = sg.tensors[old]
        else:
            import copy
            tt = copy.deepcopy(sg.tensors[like])
            tt.name = (tt.name or b"") + f"/pruned{op_index}_{pos}".encode()
            sg.tensors.append(tt)
            while len(opt.inputs) <= pos:
                opt.inputs = list(opt.inputs) + [-1]
            inputs = list(opt.inputs)
            inputs[pos] = len(sg.tensors) - 1
            opt.inputs = inputs
        buf = fb.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8)
        m.buffers.append(buf)
        tt.buffer = len(m.buffers) - 1
        tt.shape = np.array(values.shape, np.int32)
        tt.shapeSignature = None
        if scale is not None:
            q = tt.quantization or fb.QuantizationParametersT()
            q.scale = np.asarray(scale, np.float32)
            q.zeroPoint = np.asarray(zero_point, np.int64)
            q.min = q.max = None
            tt.quantization = q

    for op in model.operators:
        inp, out = op.inputs[0], op.outputs[0]
        if op.opcode in MIXERS and (inp in drop or out in drop):
            w_t = model.tensors[op.inputs[1]]
            w = w_t.data
            rows = keep_mask(out) if out in drop else np.ones(w.shape[0], bool)
            channels = int(w.shape[0])
            bias = _bias(model, op, channels)
            if inp in drop:
                sums = _tap_sums(model, op)
                k = const.get(inp, {})
                zp_in = model.tensors[inp].zero_point
                for c in drop[inp]:
                    if c in k:
                        bias = bias + (k[c] - zp_in) * sums[:, c]
                cols = keep_mask(inp)
                if op.opcode == "CONV_2D":
                    w = w[..., cols]
                else:
                    cc = len(cols)
                    w = w.reshape(channels, -1, cc)[..., cols].reshape(channels, -1)
            w = w[rows]
            scale = zp = None
            if w_t.quant.per_channel:
                scale, zp = w_t.quant.scale[rows], w_t.quant.zero_point[rows]
            set_constant(op.index, 1, w.astype(np.int8), op.inputs[1], scale, zp)
            bias = (((bias + (1 << 31)) % (1 << 32)) - (1 << 31)).astype(np.int32)[rows]
            has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
            in_scale = np.float32(model.tensors[inp].scale)
            w_scales = w_t.quant.scale[rows] if w_t.quant.per_channel else \
                np.full(int(rows.sum()), w_t.quant.scale[0])
            if has_bias or np.any(bias):
                bscale = (in_scale * w_scales.astype(np.float32)).astype(np.float32)
                if has_bias and not model.tensors[op.inputs[2]].quant.per_channel \
                        and not w_t.quant.per_channel:
                    bscale = bscale[:1]
                set_constant(op.index, 2, bias, op.inputs[2] if has_bias else op.inputs[1],
                             bscale, np.zeros(len(bscale), np.int64))
        elif op.opcode == "DEPTHWISE_CONV_2D" and out in drop:
            w_t = model.tensors[op.inputs[1]]
            cols = keep_mask(out)
            scale = zp = None
            if w_t.quant.per_channel:
                scale, zp = w_t.quant.scale[cols], w_t.quant.zero_point[cols]
            set_constant(op.index, 1, w_t.data[..., cols].astype(np.int8), op.inputs[1], scale, zp)
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                b_t = model.tensors[op.inputs[2]]
                bscale = bzp = None
                if b_t.quant is not None and b_t.quant.per_channel:
                    bscale, bzp = b_t.quant.scale[cols], b_t.quant.zero_point[cols]
                set_constant(op.index, 2, _bias(model, op, len(cols))[cols].astype(np.int32),
                             op.inputs[2], bscale, bzp)
    for t, cs in drop.items():
        tt = sg.tensors[t]
        shape = np.array(tt.shape, np.int32)
        shape[-1] -= len(cs)
        tt.shape = shape
        if tt.shapeSignature is not None and len(tt.shapeSignature):
            sig = np.array(tt.shapeSignature, np.int32)
            sig[-1] = shape[-1]
            tt.shapeSignature = sig
    # buffers no tensor (or metadata entry) refers to any more: emptied
    used = {tt.buffer for tt in sg.tensors}
    used |= {md.buffer for md in (m.metadata or [])}
    for i, buf in enumerate(m.buffers):
        if i not in used and i > 0:
            buf.data = None
    b = flatbuffers.Builder(len(model.tflite) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
